# The virtio-iommu driver probed ionest's device (00:1f.0) and took the virtio-blk function (00:01.0)
# into a DMA-API domain; the IOMMU's own function is not translated (iommu-map leaves it out).
. /lib/ionest/iommu-group.sh
ktap_sub_plan 4
self=/sys/bus/pci/devices/0000:00:1f.0
n=$(ls /sys/class/iommu 2>/dev/null | wc -l)
if [ "$n" -ge 1 ]; then
	ktap_sub_ok iommu_registered
else
	ktap_sub_fail iommu_registered "no /sys/class/iommu entry; dmesg: $(dmesg | grep -i -m3 'virtio.iommu\|viommu')"
fi
ktap_dma_domain_checks 0000:00:01.0 virtio_blk
if [ -d "$self" ] && [ ! -e "$self/iommu_group" ]; then
	ktap_sub_ok iommu_function_not_translated
else
	ktap_sub_fail iommu_function_not_translated "$self: $(ls "$self" 2>&1 | grep -c iommu_group) iommu_group link(s)"
fi
ktap_sub_done
