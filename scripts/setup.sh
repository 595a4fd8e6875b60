#!/usr/bin/env bash
# Installs the Debian 12 packages ionest needs (build, tests, guest kernel,
# guest initramfs). Idempotent: installs only what is missing; uses sudo only
# when not root.
set -euo pipefail

packages=(
  # toolchain and build
  build-essential g++ cmake ninja-build pkg-config git python3 rsync file xz-utils
  clang-14 libclang-rt-14-dev            # libFuzzer build (build-fuzz/)
  linux-libc-dev                         # <linux/kvm.h>
  # libraries
  libabsl-dev libcapstone-dev libfdt-dev libgtest-dev libgmock-dev libbenchmark-dev
  libzstd-dev liblzma-dev zlib1g-dev
  acpica-tools                           # iasl/acpiexec cross-checks of the ACPI tables (firmware tests)
  # guest kernel (guest-tests/build-kernel.sh)
  linux-source-6.12 flex bison libelf-dev bc libssl-dev cpio kmod
  patch libc6-dev                        # kernel + selftest patches; static guest programs (libc.a)
  # guest initramfs
  busybox-static
  # guest-tests/qemu-host: QEMU TCG (q35 + intel-iommu + edu) as a real-kernel host for the
  # passthrough code, no /dev/kvm needed
  qemu-system-x86
)

missing=()
for p in "${packages[@]}"; do
  # One status line per installed architecture (multi-arch hosts, e.g. after setup-arm64.sh).
  if ! dpkg-query -W -f='${Status}\n' "$p" 2>/dev/null | grep -q '^install ok installed$'; then
    missing+=("$p")
  fi
done
if ((${#missing[@]} == 0)); then
  echo "setup: all ${#packages[@]} packages installed"
  exit 0
fi

sudo=()
if [[ "$(id -u)" != 0 ]]; then
  command -v sudo >/dev/null || { echo "setup: need root or sudo to install: ${missing[*]}" >&2; exit 1; }
  sudo=(sudo)
fi
echo "setup: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
"${sudo[@]}" apt-get update -qq
"${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
