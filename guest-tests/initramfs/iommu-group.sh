# Sourced by guest suite scripts as /lib/ionest/iommu-group.sh (busybox ash; add it with payload.txt).
# ktap_dma_domain_checks BDF NAME: two KTAP subtests of the calling script: NAME_in_group (the PCI
# function at /sys/bus/pci/devices/BDF has an IOMMU group) and dma_api_domain (its group's default
# domain is a translating DMA-API one, strict DMA or lazy DMA-FQ).
ktap_dma_domain_checks() {
	_fn=/sys/bus/pci/devices/$1
	if [ -e "$_fn/iommu_group" ]; then
		ktap_sub_ok "$2_in_group"
	else
		ktap_sub_fail "$2_in_group" "$_fn has no iommu_group (the firmware's iommu-map/VIOT not applied?)"
	fi
	_group=$(readlink "$_fn/iommu_group" 2>/dev/null)
	_type=$(cat "/sys/kernel/iommu_groups/${_group##*/}/type" 2>/dev/null)
	case "$_type" in
	DMA | DMA-FQ) ktap_sub_ok dma_api_domain ;;
	*) ktap_sub_fail dma_api_domain "group ${_group##*/} type '$_type', expected DMA or DMA-FQ" ;;
	esac
}
