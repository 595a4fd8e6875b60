#!/usr/bin/env bash
# The "VMM" of the QEMU-host suite: takes ionest's command line (as ionest_guest_runner passes it)
# and runs QEMU with TCG (no /dev/kvm needed): q35, an Intel VT-d with interrupt remapping
# (intel-iommu, QEMU 7.2 defaults: legacy mode, 39-bit, no nesting), and QEMU's `edu` device at
# 00:04.0 for the guest to bind to vfio-pci. The guest is the host of ionest's passthrough code.
set -euo pipefail
kernel="" initrd="" cmdline="" memory=256M cpus=1 timeout=300
while (($#)); do
  case "$1" in
    --kernel) kernel=$2; shift ;;
    --initrd) initrd=$2; shift ;;
    --cmdline) cmdline=$2; shift ;;
    --memory) memory=$2; shift ;;
    --cpus) cpus=$2; shift ;;
    --timeout) timeout=$2; shift ;;
    --help) echo "qemu-vmm.sh --kernel K --initrd I --cmdline C [--memory M] [--cpus N] [--timeout S]"; exit 0 ;;
    *) echo "qemu-vmm.sh: unknown argument $1" >&2; exit 2 ;;
  esac
  shift
done
# QEMU boots a bzImage; the Makefile's kernel variable names the vmlinux ELF next to it.
[[ "$kernel" == */vmlinux && -f "${kernel%/vmlinux}/bzImage" ]] && kernel="${kernel%/vmlinux}/bzImage"
[[ "$memory" =~ ^[0-9]+$ ]] && memory="${memory}M"
exec timeout --kill-after=10 "$timeout" qemu-system-x86_64 -accel tcg -machine q35 -cpu max -m "$memory" \
  -smp "$cpus" -nodefaults -no-user-config -display none -serial stdio -monitor none -no-reboot \
  -kernel "$kernel" -initrd "$initrd" -append "$cmdline" \
  -device intel-iommu,intremap=on -device edu,addr=04.0
