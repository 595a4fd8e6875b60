# The passed-through function (00:02.0) sits behind ionest's virtio-iommu: Linux's virtio-iommu
# driver probed (00:1f.0), the function is in an IOMMU group whose default domain translates (DMA or
# DMA-FQ: every buffer virtio_blk maps is a virtio-iommu MAP that ionest forwards to the host IOAS),
# and the driver reported no failed request (a host refusal would come back as S_NOMEM/S_DEVERR);
# PROBE gave the group the host's reserved IOVA window (the outer SMMU driver's software MSI window
# 0x8000000-0x80fffff, minus ionest's own MSI region inside it) as a reserved region.
. /lib/ionest/iommu-group.sh
ktap_sub_plan 5
n=$(ls /sys/class/iommu 2>/dev/null | wc -l)
if [ "$n" -ge 1 ] && [ -d /sys/bus/pci/devices/0000:00:1f.0 ]; then
	ktap_sub_ok viommu_registered
else
	ktap_sub_fail viommu_registered "no virtio-iommu at 00:1f.0 / in /sys/class/iommu; dmesg: $(dmesg | grep -i -m3 'virtio.iommu\|viommu')"
fi
ktap_dma_domain_checks 0000:00:02.0 passthrough_function
grp=$(readlink /sys/bus/pci/devices/0000:00:02.0/iommu_group 2>/dev/null)
resv=/sys/kernel/iommu_groups/${grp##*/}/reserved_regions
while read -r l; do echo "# reserved_regions: $l"; done <"$resv"
if grep -q '^0x0*8000000 0x[0-9a-f]* reserved' "$resv" 2>/dev/null; then
	ktap_sub_ok host_reserved_window_in_group
else
	ktap_sub_fail host_reserved_window_in_group "no reserved region at 0x8000000 in $resv"
fi
errs=$(dmesg | grep -i 'virtio_iommu\|viommu' | grep -ci 'fail\|error\|timeout')
if [ "$errs" -eq 0 ]; then
	ktap_sub_ok no_viommu_request_errors
else
	dmesg | grep -i 'virtio_iommu\|viommu' | while read -r l; do echo "# $l"; done
	ktap_sub_fail no_viommu_request_errors "$errs virtio-iommu error line(s) in dmesg"
fi
ktap_sub_done
