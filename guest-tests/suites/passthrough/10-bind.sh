# Hand 00:02.0 and 00:05.0 to vfio-pci (driver_override + drivers_probe, as a host admin would) and
# check what the testbed needs: /dev/iommu and the VFIO cdevs.
for bdf in 0000:00:02.0 0000:00:05.0; do
	echo vfio-pci >/sys/bus/pci/devices/$bdf/driver_override || exit 1
	echo $bdf >/sys/bus/pci/drivers_probe
	drv=$(readlink /sys/bus/pci/devices/$bdf/driver)
	echo "# $bdf driver ${drv##*/}, cdev $(ls /sys/bus/pci/devices/$bdf/vfio-dev 2>/dev/null)"
	[ "${drv##*/}" = vfio-pci ] || exit 1
done
for bdf in 0000:00:03.0 0000:00:04.0 0000:00:05.1; do
	drv=$(readlink /sys/bus/pci/devices/$bdf/driver)
	echo "# $bdf driver ${drv##*/} group $(readlink /sys/bus/pci/devices/$bdf/iommu_group | sed 's|.*/||')"
done
ls -l /dev/iommu /dev/vfio/devices/ | while read -r l; do echo "# $l"; done
[ -c /dev/iommu ] && [ -c /dev/vfio/devices/vfio0 ]
