#!/usr/bin/env bash
# Copies a dynamically linked host program and the shared libraries it needs (ldd) into OUT_DIR, for
# a guest initramfs: OUT_DIR/bin/NAME, OUT_DIR/lib/*.so*, OUT_DIR/ld-linux-x86-64.so.2 (the guest
# runs it as `OUT_DIR/ld-linux-x86-64.so.2 --library-path OUT_DIR/lib OUT_DIR/bin/NAME`, or however
# its payload.txt places them). Stale libraries of an older bundle are removed. Debug info stripped.
# Usage: bundle-dynamic.sh BINARY OUT_DIR NAME
set -euo pipefail
bin="${1:?usage: bundle-dynamic.sh BINARY OUT_DIR NAME}"
out="${2:?usage: bundle-dynamic.sh BINARY OUT_DIR NAME}"
name="${3:?usage: bundle-dynamic.sh BINARY OUT_DIR NAME}"
[[ -x "$bin" ]] || { echo "bundle: $bin missing: build it first" >&2; exit 1; }
mkdir -p "$out/bin" "$out/lib"
libs=()
interp=""
while read -r line; do
  # "libfoo.so.1 => /lib/x86_64-linux-gnu/libfoo.so.1 (0x...)" or "/lib64/ld-linux-x86-64.so.2 (0x...)"
  if [[ "$line" == *"=> /"* ]]; then
    libs+=("$(awk '{print $3}' <<<"$line")")
  elif [[ "$line" == /*ld-linux* ]]; then
    interp="$(awk '{print $1}' <<<"$line")"
  elif [[ "$line" == *"not found"* ]]; then
    echo "bundle: $bin: $line" >&2
    exit 1
  fi
done < <(ldd "$bin")
[[ -n "$interp" ]] || { echo "bundle: $bin: no ELF interpreter in ldd output" >&2; exit 1; }
find "$out/lib" -type f -delete
for l in "${libs[@]}"; do
  cp -L "$l" "$out/lib/"
  strip --strip-unneeded "$out/lib/$(basename "$l")" 2>/dev/null || true
done
cp -L "$interp" "$out/ld-linux-x86-64.so.2"
rsync -c "$bin" "$out/bin/$name"
strip --strip-debug "$out/bin/$name" 2>/dev/null || true
echo "bundle: $out (${#libs[@]} libraries, $(du -sh "$out" | cut -f1))"
