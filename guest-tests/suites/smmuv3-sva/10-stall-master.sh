# The firmware side of SVA with stalls: the dmatest function (1de5:1110) has the device tree node
# Linux's of_pci code attached (dma-can-stall, pasid-num-bits: iommu/iommu.txt), arm-smmu-v3
# probed the SMMU without complaint, and ionest_dmatest.ko got IOPF and SVA enabled on it.
ktap_sub_plan 4
fn=
for d in /sys/bus/pci/devices/*; do
	[ "$(cat $d/vendor)" = 0x1de5 ] && [ "$(cat $d/device)" = 0x1110 ] && { fn=$d; break; }
done
echo "# dmatest function: ${fn##*/}"
if [ -e $fn/of_node/dma-can-stall ] && [ -e $fn/of_node/pasid-num-bits ]; then
	ktap_sub_ok dt_node_dma_can_stall
else
	ktap_sub_fail dt_node_dma_can_stall "$fn/of_node: $(ls $fn/of_node/ 2>&1 | tr '\n' ' ')"
fi
dmesg >/tmp/dmesg-probe.txt
grep -E 'arm-smmu-v3 [0-9a-f]+\.smmuv3: ' /tmp/dmesg-probe.txt | while read -r l; do echo "# $l"; done
bad=$(grep -E 'arm-smmu-v3 [0-9a-f]+\.smmuv3: ' /tmp/dmesg-probe.txt | grep -c -i -E 'fail|error|timeout|abort|event 0x|unknown|falling back')
if [ "$bad" = 0 ]; then
	ktap_sub_ok no_smmu_complaints
else
	ktap_sub_fail no_smmu_complaints "$bad complaint line(s) above"
fi
if insmod /lib/ionest/ionest_dmatest.ko; then
	ktap_sub_ok insmod_ionest_dmatest
else
	ktap_sub_fail insmod_ionest_dmatest "insmod failed"
fi
dmesg | grep -E 'ionest_dmatest|ionest-dmatest|IOPF|SVA' | while read -r l; do echo "# $l"; done
if dmesg | grep -q '/dev/ionest-dmatest0: iopf=1 sva=1' && [ -c /dev/ionest-dmatest0 ]; then
	ktap_sub_ok iopf_and_sva_enabled
else
	ktap_sub_fail iopf_and_sva_enabled "no 'iopf=1 sva=1' probe line (stall_enabled? ARM_SMMU_FEAT_SVA?)"
fi
ktap_sub_done
