#!/usr/bin/env bash
# Builds qemu-host.cpio: the checks binary (CMake target ionest_qemu_host_checks in BUILD_DIR) and the
# shared libraries it needs (ldd) are copied to $IONEST_CACHE/qemu-host/, which suite/payload.txt
# puts into the initramfs (guest-tests/initramfs/build-initramfs.sh) with suite/*.sh as /tests.
# Idempotent. Usage: bundle.sh BUILD_DIR OUT.cpio
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
build="${1:?usage: bundle.sh BUILD_DIR OUT.cpio}"
cpio="${2:?usage: bundle.sh BUILD_DIR OUT.cpio}"
cache="${IONEST_CACHE:-$HOME/.cache/ionest}"
out="$cache/qemu-host"
bin="$build/guest-tests/qemu-host/ionest_qemu_host_checks"
[[ -x "$bin" ]] || { echo "qemu-host bundle: $bin missing: build the CMake target ionest_qemu_host_checks" >&2; exit 1; }
mkdir -p "$out/bin" "$out/lib"
libs=() interp=""
while read -r line; do
  if [[ "$line" == *"=> /"* ]]; then
    libs+=("$(awk '{print $3}' <<<"$line")")
  elif [[ "$line" == /*ld-linux* ]]; then
    interp="$(awk '{print $1}' <<<"$line")"
  elif [[ "$line" == *"not found"* ]]; then
    echo "qemu-host bundle: $line" >&2; exit 1
  fi
done < <(ldd "$bin")
[[ -n "$interp" ]] || { echo "qemu-host bundle: no ELF interpreter in ldd output" >&2; exit 1; }
find "$out/lib" -type f -delete
for l in "${libs[@]}"; do
  cp -L "$l" "$out/lib/"
  strip --strip-unneeded "$out/lib/$(basename "$l")" 2>/dev/null || true
done
cp -L "$interp" "$out/ld-linux-x86-64.so.2"
cp "$bin" "$out/bin/ionest_qemu_host_checks"
strip --strip-debug "$out/bin/ionest_qemu_host_checks" 2>/dev/null || true
echo "qemu-host bundle: $out (${#libs[@]} libraries, $(du -sh "$out" | cut -f1))"
mkdir -p "$(dirname "$cpio")"
"$here/../initramfs/build-initramfs.sh" -o "$cpio" -t "$here/suite"
