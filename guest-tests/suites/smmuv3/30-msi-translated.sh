# The virtio-blk function's MSI-X writes went through the SMMU: Linux reserves its software MSI window
# (IOMMU_RESV_SW_MSI, 0x08000000) and maps the ITS doorbell there, so the MSI-X address is an IOVA
# that only a translated MSI turns into the ITS's GITS_TRANSLATER; the round trip's request
# interrupts arrived, and the SMMU reported no event.
group=$(readlink /sys/bus/pci/devices/0000:00:01.0/iommu_group 2>/dev/null)
regions="/sys/kernel/iommu_groups/${group##*/}/reserved_regions"
[ -r "$regions" ] || { echo "# no $regions"; exit 1; }
while read -r start end kind; do echo "# reserved: $start $end $kind"; done <"$regions"
grep -q '^0x0000000008000000 0x00000000080fffff msi$' "$regions" || { echo "# no SW MSI window"; exit 1; }
req=$(grep 'virtio0-req' /proc/interrupts | awk '{ n = 0; for (i = 2; i <= NF && $i ~ /^[0-9]+$/; i++) n += $i; print n }')
echo "# virtio0-req interrupts: ${req:-none}"
[ "${req:-0}" -gt 0 ] || exit 1
events=$(dmesg | grep -c 'arm-smmu-v3.*event 0x')
echo "# SMMU events logged: $events"
[ "$events" = 0 ]
