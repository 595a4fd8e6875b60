#!/usr/bin/env bash
# Builds qemu-host.cpio: the checks binary (CMake target ionest_qemu_host_checks in BUILD_DIR) and the
# shared libraries it needs are copied to $IONEST_CACHE/qemu-host/ (initramfs/bundle-dynamic.sh), which suite/payload.txt
# puts into the initramfs (guest-tests/initramfs/build-initramfs.sh) with suite/*.sh as /tests.
# Idempotent. Usage: bundle.sh BUILD_DIR OUT.cpio
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
build="${1:?usage: bundle.sh BUILD_DIR OUT.cpio}"
cpio="${2:?usage: bundle.sh BUILD_DIR OUT.cpio}"
cache="${IONEST_CACHE:-$HOME/.cache/ionest}"
out="$cache/qemu-host"
bin="$build/guest-tests/qemu-host/ionest_qemu_host_checks"
"$here/../initramfs/bundle-dynamic.sh" "$bin" "$out" ionest_qemu_host_checks
mkdir -p "$(dirname "$cpio")"
"$here/../initramfs/build-initramfs.sh" -o "$cpio" -t "$here/suite"
