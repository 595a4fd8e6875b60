# The virtio-iommu driver probed ionest's device (00:1f.0) and took the virtio-blk function (00:01.0)
# into a DMA-API domain; the IOMMU's own function is not translated (iommu-map leaves it out).
ktap_sub_plan 4
blk=/sys/bus/pci/devices/0000:00:01.0
self=/sys/bus/pci/devices/0000:00:1f.0
n=$(ls /sys/class/iommu 2>/dev/null | wc -l)
if [ "$n" -ge 1 ]; then
	ktap_sub_ok iommu_registered
else
	ktap_sub_fail iommu_registered "no /sys/class/iommu entry; dmesg: $(dmesg | grep -i -m3 'virtio.iommu\|viommu')"
fi
if [ -e "$blk/iommu_group" ]; then
	ktap_sub_ok virtio_blk_in_group
else
	ktap_sub_fail virtio_blk_in_group "$blk has no iommu_group (iommu-map not applied?)"
fi
group=$(readlink "$blk/iommu_group" 2>/dev/null)
type=$(cat "/sys/kernel/iommu_groups/${group##*/}/type" 2>/dev/null)
case "$type" in
DMA | DMA-FQ) ktap_sub_ok dma_api_domain ;;
*) ktap_sub_fail dma_api_domain "group ${group##*/} type '$type', expected DMA or DMA-FQ" ;;
esac
if [ -d "$self" ] && [ ! -e "$self/iommu_group" ]; then
	ktap_sub_ok iommu_function_not_translated
else
	ktap_sub_fail iommu_function_not_translated "$self: $(ls "$self" 2>&1 | grep -c iommu_group) iommu_group link(s)"
fi
ktap_sub_done
