# PROBE's RESV_MEM MSI region (virtio 1.2 §5.13.6.8.1) reached the IOMMU core: the ITS doorbell page
# (0x08090000, GITS_TRANSLATER's 64 KiB frame) is a reserved "msi" region of the virtio-blk group, so
# MSIs use the physical doorbell, untranslated (and the MSI-X interrupts of the round trip arrived).
group=$(readlink /sys/bus/pci/devices/0000:00:01.0/iommu_group 2>/dev/null)
regions="/sys/kernel/iommu_groups/${group##*/}/reserved_regions"
[ -r "$regions" ] || { echo "# no $regions"; exit 1; }
while read -r start end kind; do echo "# reserved: $start $end $kind"; done <"$regions"
grep -q '^0x0000000008090000 0x000000000809ffff msi$' "$regions"
