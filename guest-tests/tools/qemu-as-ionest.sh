#!/usr/bin/env bash
# Peer check (optional, not used by `make test`): runs QEMU with TCG behind
# ionest's command line, so the guest pipeline (kernel, initramfs, suites,
# harness) can be checked independently of the VMM:
#   ionest_guest_runner --vmm guest-tests/tools/qemu-as-ionest.sh ...
# Needs qemu-system-x86 (not installed by scripts/setup.sh). QEMU+KVM dies in
# early boot on these machines, hence TCG. --iommu=vtd adds QEMU's intel-iommu.
set -euo pipefail
kernel="" initrd="" cmdline="" memory=256 cpus=1 disk="" timeout=600 iommu=none
while (($#)); do
  case "$1" in
    --help) echo "qemu-as-ionest.sh --kernel K --initrd I --cmdline C --memory M --cpus N --disk D --timeout S [--iommu=vtd|none]"; exit 0 ;;
    --kernel) kernel=$2; shift ;;
    --initrd) initrd=$2; shift ;;
    --cmdline) cmdline=$2; shift ;;
    --memory) memory=$2; shift ;;
    --cpus) cpus=$2; shift ;;
    --disk) disk=$2; shift ;;
    --timeout) timeout=$2; shift ;;
    --iommu=*) iommu=${1#--iommu=} ;;
    *) echo "qemu-as-ionest: unknown argument $1" >&2; exit 2 ;;
  esac
  shift
done
# QEMU boots a bzImage (the vmlinux ELF has no PVH note).
[[ "$kernel" == */vmlinux && -f "${kernel%/vmlinux}/bzImage" ]] && kernel="${kernel%/vmlinux}/bzImage"
machine=q35 extra=()
if [[ "$iommu" == vtd ]]; then
  machine=q35,kernel-irqchip=split
  extra=(-device intel-iommu,intremap=on,x-scalable-mode=on)
fi
args=(-accel tcg -machine "$machine" -cpu max -m "$memory" -smp "$cpus" -nographic -serial stdio -monitor none
  -no-reboot -kernel "$kernel" -initrd "$initrd" -append "$cmdline" "${extra[@]}")
[[ -n "$disk" ]] && args+=(-drive "file=$disk,if=virtio,format=raw")
exec timeout "$timeout" qemu-system-x86_64 "${args[@]}"
