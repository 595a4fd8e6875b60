#!/usr/bin/env bash
# Builds the kernel's own PCI/DMA test programs statically for the guest:
#   tools/pci/pcitest.c                                -> $IONEST_CACHE/guest-bin/pcitest
#   tools/testing/selftests/dma/dma_map_benchmark.c    -> $IONEST_CACHE/guest-bin/dma_map_benchmark
# from the cached guest kernel tree (KSRC in $IONEST_CACHE/kernel/current/tree.env, written by
# guest-tests/build-kernel.sh) and its uAPI headers ($IONEST_CACHE/headers/include).
# Idempotent: a no-op when the outputs are newer than their sources and this script.
# ARCH=arm64: cross-built (aarch64-linux-gnu-gcc) from the arm64 kernel's tree and headers
# (guest-tests/arm64/build-kernel.sh) into $IONEST_CACHE/arm64/guest-bin/ for the arm64 suites.
set -euo pipefail
cache="${IONEST_CACHE:-$HOME/.cache/ionest}"
cc=gcc libc_a=/usr/lib/x86_64-linux-gnu/libc.a
if [[ "${ARCH:-x86}" == arm64 ]]; then
  cache="$cache/arm64" cc=aarch64-linux-gnu-gcc libc_a=/usr/aarch64-linux-gnu/lib/libc.a
fi
out="$cache/guest-bin"
hdrs="$cache/headers/include"
die() { echo "build-pcitest: ERROR: $*" >&2; exit 1; }

ksrc=""
if [[ -r "$cache/kernel/current/tree.env" ]]; then
  ksrc="$(sed -n 's/^KSRC=//p' "$cache/kernel/current/tree.env" | tr -d '"')"
fi
if [[ -z "$ksrc" ]]; then
  shopt -s nullglob
  trees=("$cache"/src/*/)
  shopt -u nullglob
  [[ ${#trees[@]} -eq 1 ]] || die "no unique kernel tree in $cache/src/ (run guest-tests/build-kernel.sh / make kernel)"
  ksrc="${trees[0]%/}"
fi
[[ -r "$ksrc/tools/pci/pcitest.c" ]] || die "$ksrc/tools/pci/pcitest.c missing (run make kernel)"
[[ -r "$hdrs/linux/pcitest.h" ]] || die "$hdrs/linux/pcitest.h missing (run make kernel: it installs uAPI headers)"
[[ -r "$libc_a" ]] || die "static glibc $libc_a missing (apt-get install libc6-dev; arm64: libc6-dev-arm64-cross)"
mkdir -p "$out"

# build NAME SRC [EXTRA_CFLAGS...]
build() {
  local name="$1" src="$2"
  shift 2
  local dst="$out/$name" self="${BASH_SOURCE[0]}" stamp="$out/.$name.src"
  # Up to date: newer than its source and this script, and built from the same tree + headers.
  if [[ -x "$dst" && "$dst" -nt "$src" && "$dst" -nt "$self" && "$dst" -nt "$hdrs/linux/pcitest.h" &&
        "$(cat "$stamp" 2>/dev/null)" == "$src" ]]; then
    echo "build-pcitest: $dst up to date"
    return
  fi
  "$cc" -static -O2 -Wall -o "$dst.tmp" "$src" -I"$hdrs" "$@" ||
    die "compiling $src failed (see above)"
  mv -f "$dst.tmp" "$dst"
  echo "$src" >"$stamp"
  echo "build-pcitest: built $dst"
}

build pcitest "$ksrc/tools/pci/pcitest.c"
# map_benchmark.h is a kernel-internal header the selftest includes next to the uAPI ones.
inc="$(mktemp -d)"
trap 'rm -rf "$inc"' EXIT
mkdir -p "$inc/linux"
cp "$ksrc/include/linux/map_benchmark.h" "$inc/linux/"
build dma_map_benchmark "$ksrc/tools/testing/selftests/dma/dma_map_benchmark.c" -I"$inc"
