# arm-smmu-v3 probed ionest's SMMUv3 from the device tree (no error, its interrupts as ITS MSIs) and
# put the virtio-blk function (00:01.0, StreamID 0x8 by the PCIe host's iommu-map) in a DMA domain.
. /lib/ionest/iommu-group.sh
ktap_sub_plan 5
dmesg >/tmp/dmesg.txt
grep -E 'arm-smmu-v3 [0-9a-f]+\.smmuv3: ' /tmp/dmesg.txt >/tmp/smmu.txt
while read -r l; do echo "# $l"; done </tmp/smmu.txt
if grep -q 'ias [0-9]*-bit, oas [0-9]*-bit' /tmp/smmu.txt; then
	ktap_sub_ok driver_probed
else
	ktap_sub_fail driver_probed "no 'ias/oas' probe line from arm-smmu-v3"
fi
bad=$(grep -c -i -E 'fail|error|timeout|abort|event 0x|unknown|falling back' /tmp/smmu.txt)
if [ "$bad" = 0 ]; then
	ktap_sub_ok no_driver_complaints
else
	ktap_sub_fail no_driver_complaints "$bad complaint line(s) above"
fi
if grep -q 'arm-smmu-v3-evtq' /proc/interrupts && grep -q 'arm-smmu-v3-gerror' /proc/interrupts; then
	ktap_sub_ok evtq_and_gerror_msis
else
	ktap_sub_fail evtq_and_gerror_msis "no arm-smmu-v3-evtq/gerror interrupts: $(grep -i smmu /proc/interrupts)"
fi
ktap_dma_domain_checks 0000:00:01.0 virtio_blk
ktap_sub_done
