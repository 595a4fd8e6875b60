#!/usr/bin/env bash
# Installs what the arm64 pipeline needs (docs/arm64.md), on top of scripts/setup.sh's packages.
# Idempotent: installs only what is missing; uses sudo only when not root.
#
#   - the aarch64 cross toolchain (gcc/g++-aarch64-linux-gnu) for ionest and the arm64 kernel;
#   - the arm64 libraries ionest links (Debian multiarch, `dpkg --add-architecture arm64`):
#     Abseil, Capstone, GoogleTest, Google Benchmark, zstd/xz/zlib co-install as :arm64 -dev
#     packages. libfdt-dev:arm64 does NOT co-install (it would replace libfdt-dev:amd64), so only
#     libfdt1:arm64 (the shared library) is installed: the headers come from libfdt-dev:amd64
#     (architecture independent) and cmake/aarch64-linux-gnu.cmake links libfdt.so.1;
#   - busybox-static:arm64 does not co-install either (it Conflicts/Replaces the amd64 busybox the
#     x86 guests need): its .deb is fetched with `apt-get download` and unpacked into
#     $IONEST_CACHE/arm64/busybox/ (no dpkg install);
#   - qemu-system-aarch64 (package qemu-system-arm), which must offer `-M virt,virtualization=on`
#     (EL2 under TCG) so that the arm64 guest has a /dev/kvm.
#
# Exit status: 0 ready; 77 skip (the reason on stderr, one line starting "setup-arm64: SKIP:");
# anything else: an error.
set -euo pipefail

cache="${IONEST_CACHE:-$HOME/.cache/ionest}"
skip() { echo "setup-arm64: SKIP: $*" >&2; exit 77; }

sudo=()
if [[ "$(id -u)" != 0 ]]; then
  command -v sudo >/dev/null || skip "need root or sudo to install the arm64 packages"
  sudo=(sudo)
fi
apt_get() { "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 "$@"; }

updated=0
if ! dpkg --print-foreign-architectures | grep -qx arm64; then
  echo "setup-arm64: dpkg --add-architecture arm64"
  "${sudo[@]}" dpkg --add-architecture arm64
  apt_get update -qq || skip "apt-get update failed after dpkg --add-architecture arm64 (no arm64 packages reachable?)"
  updated=1
fi

packages=(
  qemu-system-arm                          # qemu-system-aarch64: the outer arm64 host (TCG, EL2)
  qemu-user                                # qemu-aarch64: runs the cross-built unit tests (ctest)
  gcc-aarch64-linux-gnu g++-aarch64-linux-gnu
  libfdt-dev                               # headers (amd64; also what the x86 build uses)
  libabsl-dev:arm64 libcapstone-dev:arm64 libgtest-dev:arm64 libgmock-dev:arm64 libbenchmark-dev:arm64
  libzstd-dev:arm64 liblzma-dev:arm64 zlib1g-dev:arm64
  libfdt1:arm64                            # libfdt.so.1 only (see above)
  linux-source-6.12 flex bison bc libssl-dev libelf-dev cpio xz-utils   # the arm64 kernel
)
missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q '^install ok installed$'; then
    missing+=("$p")
  fi
done
if ((${#missing[@]} > 0)); then
  echo "setup-arm64: installing ${missing[*]}"
  ((updated)) || apt_get update -qq || skip "apt-get update failed (no Debian package registry reachable?)"
  updated=1
  if ! apt_get install -y -qq --no-install-recommends "${missing[@]}"; then
    skip "could not install: ${missing[*]} (Debian 12 with the arm64 architecture enabled is required)"
  fi
else
  echo "setup-arm64: all ${#packages[@]} packages installed"
fi

# busybox-static:arm64, unpacked (not installed).
bb="$cache/arm64/busybox/bin/busybox"
if [[ ! -x "$bb" ]]; then
  tmp="$(mktemp -d)"
  trap 'rm -rf "$tmp"' EXIT
  ((updated)) || apt_get update -qq || skip "apt-get update failed (no Debian package registry reachable?)"
  (cd "$tmp" && apt-get download -qq busybox-static:arm64) || skip "apt-get download busybox-static:arm64 failed"
  rm -rf "$cache/arm64/busybox"
  mkdir -p "$cache/arm64/busybox"
  dpkg-deb -x "$tmp"/busybox-static_*_arm64.deb "$cache/arm64/busybox"
  [[ -x "$bb" ]] || skip "busybox-static:arm64 has no bin/busybox"
  echo "setup-arm64: busybox (arm64) in $bb"
fi

# EL2 under TCG: the virt machine must know `virtualization=on` (QEMU >= 2.12 for TCG EL2 with -cpu max).
command -v qemu-system-aarch64 >/dev/null || skip "qemu-system-aarch64 not found (apt-get install qemu-system-arm)"
if ! qemu-system-aarch64 -machine virt,help 2>/dev/null | grep -q '^ *virtualization='; then
  skip "$(qemu-system-aarch64 --version | head -n1) has no virt,virtualization=on (no emulated EL2: the arm64 host would have no /dev/kvm)"
fi
[[ -r /usr/src/linux-source-6.12.tar.xz ]] || skip "/usr/src/linux-source-6.12.tar.xz missing"
[[ -e /usr/lib/aarch64-linux-gnu/libfdt.so.1 ]] || skip "libfdt1:arm64 did not install /usr/lib/aarch64-linux-gnu/libfdt.so.1"
echo "setup-arm64: ready ($(qemu-system-aarch64 --version | head -n1))"
