# Hand QEMU's edu (1234:11e8 at 00:04.0) to vfio-pci as a host admin would (driver_override +
# drivers_probe) and check what ionest needs: its own IOMMU group, /dev/iommu, the VFIO cdev.
bdf=0000:00:04.0
d=/sys/bus/pci/devices/$bdf
read -r vendor <$d/vendor && read -r device <$d/device || exit 1
[ "$vendor $device" = "0x1234 0x11e8" ] || { echo "# $bdf is $vendor $device, not edu"; exit 1; }
echo vfio-pci >$d/driver_override || exit 1
echo $bdf >/sys/bus/pci/drivers_probe
drv=$(readlink $d/driver)
grp=$(readlink $d/iommu_group)
set -- $d/iommu_group/devices/*
cdev=$(ls $d/vfio-dev 2>/dev/null)
echo "# $bdf driver ${drv##*/}, group ${grp##*/} ($# member(s)), cdev $cdev"
[ "${drv##*/}" = vfio-pci ] && [ $# -eq 1 ] && [ -c /dev/iommu ] && [ -c /dev/vfio/devices/$cdev ]
