# The passed-through function moved between domain types while no driver holds it (Linux:
# unbind, write the group's type, rebind): identity = ATTACH_F_BYPASS (ionest: the guest-RAM IOAS),
# then back to DMA (a fresh paging domain: a new host IOAS). After each move virtio_blk probes again
# (MSI-X vectors allocated anew on the host) and reads the line 20-virtio-blk.sh wrote.
ktap_sub_plan 4
bdf=0000:00:02.0
fn=/sys/bus/pci/devices/$bdf
nonce=${ionest_nonce:-}
grp=$(readlink $fn/iommu_group 2>/dev/null)
gtype=/sys/kernel/iommu_groups/${grp##*/}/type
# move TYPE: unbind virtio-pci, set the group's type, rebind, wait for /dev/vda.
move() {
	echo $bdf >/sys/bus/pci/drivers/virtio-pci/unbind 2>/dev/null
	echo "$1" >"$gtype" 2>/dev/null
	echo $bdf >/sys/bus/pci/drivers/virtio-pci/bind 2>/dev/null
	i=0
	while [ ! -b /dev/vda ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i + 1)); done
	t=""
	read -r t <"$gtype" 2>/dev/null
	echo "# group ${grp##*/} type '$t' (wanted $1), /dev/vda $([ -b /dev/vda ] && echo present || echo missing)"
	[ "$t" = "$1" ] && [ -b /dev/vda ]
}
check_read() {
	echo 3 >/proc/sys/vm/drop_caches
	line=""
	read -r line </dev/vda
	if [ "$line" = "ionest-guest-pattern-$nonce" ]; then
		ktap_sub_ok "$1"
	else
		ktap_sub_fail "$1" "read '$line'"
	fi
}
if move identity; then
	ktap_sub_ok moved_to_identity
else
	ktap_sub_fail moved_to_identity "see the lines above"
fi
check_read read_in_identity_domain
if move DMA; then
	ktap_sub_ok moved_back_to_dma
else
	ktap_sub_fail moved_back_to_dma "see the lines above"
fi
check_read read_in_new_dma_domain
dmesg | grep -i 'virtio_iommu\|viommu\|virtio_blk' | tail -5 | while read -r l; do echo "# $l"; done
ktap_sub_done
