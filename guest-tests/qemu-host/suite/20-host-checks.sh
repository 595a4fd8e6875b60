# ionest's passthrough host code (vmm/passthrough.h, devices/vfio/*, iommu/iommufd/*) against this
# real 6.12 kernel: IOAS + VT-d reserved ranges, BAR0, DMA both ways through the VT-d, DMA outside
# the IOAS blocked, MSI forwarding, iommufd nesting ops, release (nested KTAP from the program).
export LD_LIBRARY_PATH=/lib/ionest-qh
/bin/ionest_qemu_host_checks --host 0000:00:04.0 --ram 8M
rc=$?
dmesg | grep -E 'DMAR|vfio|iommufd|WARNING|BUG' | tail -n 12 | while read -r l; do echo "# $l"; done
exit $rc
