#!/usr/bin/env bash
# Copies the passthrough test bed (built by CMake in BUILD_DIR) and the shared libraries it needs
# (ldd) into $IONEST_CACHE/guest-passthrough/, where guest-tests/suites/passthrough/payload.txt
# picks them up: bin/ionest_passthrough_testbed, lib/*.so*, ld-linux-x86-64.so.2.
# Idempotent (rsync -c). Usage: bundle-testbed.sh BUILD_DIR
set -euo pipefail
build="${1:?usage: bundle-testbed.sh BUILD_DIR}"
cache="${IONEST_CACHE:-$HOME/.cache/ionest}"
out="$cache/guest-passthrough"
bin="$build/guest-tests/ionest_passthrough_testbed"
[[ -x "$bin" ]] || { echo "bundle-testbed: $bin missing: run 'make build' first" >&2; exit 1; }
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
    echo "bundle-testbed: $line" >&2; exit 1
  fi
done < <(ldd "$bin")
[[ -n "$interp" ]] || { echo "bundle-testbed: no ELF interpreter in ldd output" >&2; exit 1; }
# Only what ldd names; stale libraries of an older bundle are removed.
find "$out/lib" -type f -delete
for l in "${libs[@]}"; do cp -L "$l" "$out/lib/"; strip --strip-unneeded "$out/lib/$(basename "$l")" 2>/dev/null || true; done
cp -L "$interp" "$out/ld-linux-x86-64.so.2"
rsync -c "$bin" "$out/bin/ionest_passthrough_testbed"
strip --strip-debug "$out/bin/ionest_passthrough_testbed" 2>/dev/null || true
echo "bundle-testbed: $out ($(ls "$out/lib" | wc -l) libraries, $(du -sh "$out" | cut -f1))"
