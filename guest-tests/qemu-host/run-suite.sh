#!/usr/bin/env bash
# CTest entry of the QEMU-host suite (guest_qemu-host): boots ionest's guest kernel under QEMU TCG
# (qemu-vmm.sh) with qemu-host.cpio through ionest_guest_runner, which streams and logs the serial
# console, parses the KTAP and writes <results>/qemu-host.{log,summary}.
# Exit 0 passed, 1 failed, 77 skipped (the reason is printed and lands in the summary): no
# qemu-system-x86_64 (Debian package qemu-system-x86, installed by scripts/setup.sh), no kernel or
# no initramfs (make kernel qemu-host-initramfs).
set -euo pipefail
here="$(cd "${BASH_SOURCE[0]%/*}" && pwd)"
runner="" kernel="" initrd="" results="." timeout=240
while (($#)); do
  case "$1" in
    --runner) runner=$2; shift ;;
    --kernel) kernel=$2; shift ;;
    --initrd) initrd=$2; shift ;;
    --results) results=$2; shift ;;
    --timeout) timeout=$2; shift ;;
    *) echo "run-suite.sh: unknown argument $1" >&2; exit 2 ;;
  esac
  shift
done
mkdir -p "$results"
summary="$results/qemu-host.summary"
skip() {
  echo "harness[qemu-host]: SKIP: $*"
  printf 'passed 0\nfailed 0\nskipped 1\nnote %s\n' "$*" >"$summary"
  exit 77
}
command -v qemu-system-x86_64 >/dev/null ||
  skip "qemu-system-x86_64 not found (Debian package qemu-system-x86: run scripts/setup.sh)"
[[ -n "$kernel" && -f "$kernel" ]] || skip "guest kernel not found: '$kernel' (make kernel)"
[[ -n "$initrd" && -f "$initrd" ]] || skip "initramfs not found: '$initrd' (make qemu-host-initramfs)"
# No KVM check: QEMU runs with TCG. 1 vCPU, 256 MiB; intel_iommu=on is the kernel default too.
exec "$runner" --name qemu-host --vmm "$here/qemu-vmm.sh" --no-kvm-check --kernel "$kernel" --initrd "$initrd" \
  --cpus 1 --memory 256M --timeout "$timeout" --grace 15 \
  --cmdline-extra "intel_iommu=on panic=-1 rcupdate.rcu_cpu_stall_suppress=1" \
  --log "$results/qemu-host.log" --summary "$summary" --work-dir "$results"
