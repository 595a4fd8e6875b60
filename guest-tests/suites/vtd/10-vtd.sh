# The guest kernel found and enabled the emulated VT-d (booted with --iommu=vtd): DMAR parsed,
# translation + interrupt remapping (x2APIC mode) on, CAP/ECAP as the VMM says, groups populated.
# Kernel messages: drivers/iommu/intel/{dmar.c,iommu.c,irq_remapping.c}. Shared by vtd and vtd-legacy.
ktap_sub_plan 9
dmesg >/tmp/dmesg.txt
# One grep for all patterns (each process start costs seconds here).
grep -o -E 'DMAR: Host address width|Intel\(R\) Virtualization Technology for Directed I/O|Enabled IRQ remapping in [a-z0-9]* mode|DMAR: DRHD: handling fault|DMAR: \[(DMA Read|DMA Write|INTR-REMAP)|DMAR:.*Firmware Bug|DMAR:.*(failed|Failed)|x2apic: enabled by BIOS|Switched APIC routing to: cluster x2apic|x2apic enabled' \
	/tmp/dmesg.txt >/tmp/vtd-hits.txt
haw=0 te=0 ir="" x2=0 bad=""
while read -r h; do
	case "$h" in
	"DMAR: Host address width") haw=1 ;;
	"Intel(R) Virtualization"*) te=1 ;;
	"Enabled IRQ remapping in "*) ir=${h#Enabled IRQ remapping in } ;;
	*x2apic*) x2=1 ;;
	*) bad="$bad [$h]" ;;
	esac
done </tmp/vtd-hits.txt

[ $haw = 1 ] && ktap_sub_ok dmar_table_parsed || ktap_sub_fail dmar_table_parsed "no 'DMAR: Host address width' in dmesg"
[ -z "$bad" ] && ktap_sub_ok no_dmar_faults_or_errors || ktap_sub_fail no_dmar_faults_or_errors "$bad"
[ -e /sys/class/iommu/dmar0 ] && ktap_sub_ok dmar0_registered || ktap_sub_fail dmar0_registered "no /sys/class/iommu/dmar0"
[ $te = 1 ] && ktap_sub_ok translation_enabled || ktap_sub_fail translation_enabled "DMA remapping not enabled"
# IR with EIM (ECAP.EIM, VT-d spec 11.4.3) lets Linux run the APIC in x2APIC mode (VT-d spec 5.1.4).
if [ "$ir" = "x2apic mode" ] && [ $x2 = 1 ]; then
	ktap_sub_ok irq_remapping_x2apic
else
	ktap_sub_fail irq_remapping_x2apic "IRQ remapping mode '${ir:-not enabled}', x2apic message seen: $x2"
fi

cap="" ecap=""
[ -r /sys/class/iommu/dmar0/intel-iommu/cap ] && read -r cap </sys/class/iommu/dmar0/intel-iommu/cap
[ -r /sys/class/iommu/dmar0/intel-iommu/ecap ] && read -r ecap </sys/class/iommu/dmar0/intel-iommu/ecap
# The host passes `ionest --print-vtd-caps` as ionest.vtd_cap=/ionest.vtd_ecap= (guest_runner.cc).
read -r cmdline </proc/cmdline
want_cap="" want_ecap="" caps_na=0 legacy=0
for w in $cmdline; do
	case "$w" in
	ionest.vtd_cap=*) want_cap=${w#*=} ;;
	ionest.vtd_ecap=*) want_ecap=${w#*=} ;;
	ionest.vtd_caps=unavailable) caps_na=1 ;;
	intel_iommu=*sm_off*) legacy=1 ;;
	esac
done
if [ -z "$cap" ] || [ -z "$ecap" ]; then
	ktap_sub_fail cap_ecap_match_vmm "cannot read dmar0 cap/ecap"
elif [ $caps_na = 1 ] || [ -z "$want_cap" ]; then
	ktap_sub_skip cap_ecap_match_vmm "the VMM did not report its caps (ionest --print-vtd-caps unavailable)"
elif [ $((0x$cap)) = $((want_cap)) ] && [ $((0x$ecap)) = $((want_ecap)) ]; then
	ktap_sub_ok cap_ecap_match_vmm
else
	ktap_sub_fail cap_ecap_match_vmm "guest sees cap=0x$cap ecap=0x$ecap, VMM says cap=$want_cap ecap=$want_ecap"
fi

# ECAP.SMTS bit 43, ECAP.FLTS bit 47 (VT-d spec 11.4.3). vtd runs scalable mode with first-stage
# DMA domains; vtd-legacy (intel_iommu=sm_off) the legacy context format.
if [ -z "$ecap" ]; then
	ktap_sub_fail scalable_first_stage_support "cannot read dmar0 ecap"
elif [ $legacy = 1 ]; then
	ktap_sub_skip scalable_first_stage_support "intel_iommu=sm_off: legacy mode requested"
elif [ $(((0x$ecap >> 43) & 1)) = 1 ] && [ $(((0x$ecap >> 47) & 1)) = 1 ]; then
	ktap_sub_ok scalable_first_stage_support
else
	ktap_sub_fail scalable_first_stage_support "ecap=0x$ecap: SMTS=$(((0x$ecap >> 43) & 1)) FLTS=$(((0x$ecap >> 47) & 1))"
fi

# Every PCI function sits in an IOMMU group; the group's type is the kernel's default domain.
ngroups=0 nodev=""
for g in /sys/kernel/iommu_groups/*; do
	[ -d "$g/devices" ] && ngroups=$((ngroups + 1))
done
for d in /sys/bus/pci/devices/*; do
	[ -e "$d/iommu_group" ] || nodev="$nodev ${d##*/}"
done
[ $ngroups -gt 0 ] && [ -z "$nodev" ] && ktap_sub_ok iommu_groups_populated ||
	ktap_sub_fail iommu_groups_populated "$ngroups groups; PCI functions without a group:$nodev"

want_type=DMA-FQ
[ $legacy = 1 ] && want_type=identity # vtd-legacy boots with iommu=pt
case " $cmdline " in *" iommu=pt "*) want_type=identity ;; esac
gtype=""
[ -r /sys/block/vda/device/../iommu_group/type ] && read -r gtype </sys/block/vda/device/../iommu_group/type
[ "$gtype" = "$want_type" ] && ktap_sub_ok vda_default_domain_$want_type ||
	ktap_sub_fail vda_default_domain_$want_type "vda's iommu_group type is '$gtype'"
ktap_sub_done
