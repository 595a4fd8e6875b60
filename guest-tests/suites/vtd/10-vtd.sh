# The guest kernel found and enabled the emulated VT-d (booted with --iommu=vtd).
# Kernel messages: drivers/iommu/intel/{dmar.c,iommu.c,irq_remapping.c}.
ktap_sub_plan 7
dmesg >/tmp/dmesg.txt
# One grep for all patterns (each process start costs seconds here).
grep -o -E 'DMAR: Host address width|Intel\(R\) Virtualization Technology for Directed I/O|Enabled IRQ remapping|DMAR: DRHD: handling fault|DMAR: \[(DMA Read|DMA Write|INTR-REMAP)|DMAR:.*Firmware Bug|DMAR:.*(failed|Failed)' \
	/tmp/dmesg.txt >/tmp/vtd-hits.txt
haw=0 te=0 ir=0 bad=""
while read -r h; do
	case "$h" in
	"DMAR: Host address width") haw=1 ;;
	"Intel(R) Virtualization"*) te=1 ;;
	"Enabled IRQ remapping") ir=1 ;;
	*) bad="$bad [$h]" ;;
	esac
done </tmp/vtd-hits.txt

[ $haw = 1 ] && ktap_sub_ok dmar_table_parsed || ktap_sub_fail dmar_table_parsed "no 'DMAR: Host address width' in dmesg"
[ -z "$bad" ] && ktap_sub_ok no_dmar_faults_or_errors || ktap_sub_fail no_dmar_faults_or_errors "$bad"
[ -e /sys/class/iommu/dmar0 ] && ktap_sub_ok dmar0_registered || ktap_sub_fail dmar0_registered "no /sys/class/iommu/dmar0"
[ $te = 1 ] && ktap_sub_ok translation_enabled || ktap_sub_fail translation_enabled "DMA remapping not enabled"
[ $ir = 1 ] && ktap_sub_ok irq_remapping_enabled || ktap_sub_fail irq_remapping_enabled "no 'Enabled IRQ remapping'"

# ECAP.SMTS is bit 43 (VT-d spec 11.4.3); the kernel then runs in scalable mode.
ecap=""
[ -r /sys/class/iommu/dmar0/intel-iommu/ecap ] && read -r ecap </sys/class/iommu/dmar0/intel-iommu/ecap
if [ -z "$ecap" ]; then
	ktap_sub_fail scalable_mode "cannot read dmar0 ecap"
elif [ $(((0x$ecap >> 43) & 1)) = 1 ]; then
	ktap_sub_ok scalable_mode
else
	ktap_sub_skip scalable_mode "ECAP.SMTS=0 (ecap=$ecap): legacy mode"
fi

# The virtio-blk PCI function sits in an IOMMU group with a DMA-API domain.
group=/sys/block/vda/device/../iommu_group
gtype=""
[ -r $group/type ] && read -r gtype <$group/type
case "$gtype" in
DMA*) ktap_sub_ok vda_behind_iommu_dma_domain ;;
*) ktap_sub_fail vda_behind_iommu_dma_domain "vda's iommu_group type is '$gtype'" ;;
esac
ktap_sub_done
