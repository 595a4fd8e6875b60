#!/usr/bin/env bash
# Builds every guest-tests/programs/<name>.c as a static guest program into
# $IONEST_CACHE/guest-bin/<name> (gcc -static -O2, kernel uAPI headers from the cached kernel
# build, guest-tests/modules/*/ for shared ioctl headers). Idempotent: rebuilt only when the
# source, a shared header or the headers changed. Env: IONEST_CACHE, CC, ARCH (x86_64, the default,
# or arm64: aarch64-linux-gnu-gcc and the arm64 kernel's headers, into $IONEST_CACHE/arm64/guest-bin).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cache="${IONEST_CACHE:-$HOME/.cache/ionest}"
log() { printf '[build-programs] %s\n' "$*"; }
die() { log "ERROR: $*"; exit 1; }
case "${ARCH:-x86_64}" in
  x86_64 | x86) cc="${CC:-gcc}" libc=/usr/lib/x86_64-linux-gnu/libc.a kernel_script=guest-tests/build-kernel.sh ;;
  arm64 | aarch64)
    cache="$cache/arm64" cc="${CC:-aarch64-linux-gnu-gcc}" libc=/usr/aarch64-linux-gnu/lib/libc.a
    kernel_script="guest-tests/arm64/build-kernel.sh (make arm64-kernel)" ;;
  *) die "ARCH=${ARCH}: x86_64 or arm64" ;;
esac
out="$cache/guest-bin"
hdr="$cache/headers/include"

[[ -d "$hdr/linux" ]] || die "$hdr missing: run $kernel_script (it installs the uAPI headers)"
command -v "$cc" >/dev/null || die "$cc not found (scripts/setup-arm64.sh installs the cross compiler; apt-get install gcc)"
[[ -f "$libc" ]] || die "static glibc missing: $libc (apt-get install libc6-dev, or libc6-dev-arm64-cross)"
mkdir -p "$out"

shopt -s nullglob
incs=() shared=()
for d in "$here"/../modules/*/; do incs+=(-I "$d"); shared+=("$d"*.h); done
built=0 fresh=0
for c in "$here"/*.c; do
  name="$(basename "$c" .c)"
  stamp="$( { "$cc" --version | head -n1; readlink -f "$hdr"; cat "$c" "${shared[@]}"; } | sha256sum | cut -c1-16)"
  if [[ -x "$out/$name" && "$(cat "$out/.$name.stamp" 2>/dev/null)" == "$stamp" ]]; then
    fresh=$((fresh + 1)); continue
  fi
  log "building $name"
  # The guest kernel's uAPI headers take precedence over the host's linux/*.h.
  "$cc" -static -O2 -Wall -Wextra -Werror -I "$hdr" "${incs[@]}" -o "$out/$name.tmp" "$c" ||
    die "$name failed to compile"
  mv "$out/$name.tmp" "$out/$name"
  echo "$stamp" > "$out/.$name.stamp"
  built=$((built + 1))
done
log "$built built, $fresh up to date -> $out/"
