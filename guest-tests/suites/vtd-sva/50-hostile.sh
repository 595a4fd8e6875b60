# Hostile guest (busybox ash, sourced by /init): ionest_hostile.ko drives the last ionest-dmatest
# function (1de5:1110) to DMA outside its mappings, after dma_unmap, with a PASID never set up, and
# to send spoofed interrupts (compatibility-format MSI with IR on; remappable MSI naming another
# requester's IRTE), and through a PASID after iommu_detach_device_pasid(). Checks the module's per-attempt verdicts (device STATUS/FAULT_INFO), the DMAR
# driver's architected fault lines (VT-d §7.1.3 DMA faults; Appendix A reasons 0x25/0x26 for
# interrupt remapping), and that the VMM still serves the device afterwards.
# Needs /lib/ionest/ionest_hostile.ko (guest-tests/modules/build-modules.sh) and --iommu=vtd with
# at least one `--device dmatest` (the vtd-sva suite has two; the last one is attacked).
ko=/lib/ionest/ionest_hostile.ko
[ -f "$ko" ] || skip_test "$ko missing (guest-tests/modules/build-modules.sh)"
[ -d /sys/class/iommu/dmar0 ] || skip_test "no VT-d (--iommu=vtd)"
bdf=
for d in /sys/bus/pci/devices/*; do
	read -r v <"$d/vendor"; read -r p <"$d/device"
	[ "$v:$p" = "0x1de5:0x1110" ] && bdf=${d##*/}
done
[ -n "$bdf" ] || skip_test "no ionest-dmatest function (--device dmatest)"
dev=/sys/bus/pci/devices/$bdf
short=${bdf#*:} # "00:03.0", as the DMAR driver prints the requester

faults="unmapped_iova after_unmap stale_pasid pasid_after_teardown compat_msi foreign_irte"
names="mapped_dma $faults"
ktap_sub_plan 15
[ -e "$dev/driver" ] && echo "$bdf" >"$dev/driver/unbind"
echo ionest_hostile >"$dev/driver_override"
if insmod "$ko" "bdf=$bdf" && echo "$bdf" >/sys/bus/pci/drivers_probe && [ -e /sys/bus/pci/drivers/ionest_hostile/"$bdf" ]; then
	ktap_sub_ok "bound_$bdf"
else
	ktap_sub_fail "bound_$bdf" "ionest_hostile did not bind (see dmesg)"
fi

# One pass over the relevant log lines (each read is syscalls; keep the input small).
dmesg | grep -E 'ionest_hostile: |Request device' >/tmp/hostile.log
dmar=""
for n in $names; do eval "v_$n=missing; e_$n="; done
while IFS= read -r l; do
	case "$l" in
	*"ionest_hostile: ok "*|*"ionest_hostile: not ok "*)
		rest=${l#*ionest_hostile: }
		case "$rest" in "not ok "*) verdict=fail; rest=${rest#not ok } ;; *) verdict=ok; rest=${rest#ok } ;; esac
		rest=${rest#* } # drop the number
		last=${rest%% *}
		diag=${rest#* # }
		case "$diag" in SKIP*) verdict=skip ;; esac
		eval "v_$last=\$verdict; d_$last=\$diag" ;;
	*"ionest_hostile: expect: dmar "*)
		eval "e_$last=\${l#*expect: dmar }" ;;
	*"Request device"*) dmar="$dmar
$l" ;;
	esac
done </tmp/hostile.log

for n in $names; do
	eval "v=\$v_$n; d=\$d_$n"
	case "$v" in
	ok) ktap_sub_ok "$n" ;;
	skip) ktap_sub_skip "$n" "${d#SKIP }" ;;
	*) ktap_sub_fail "$n" "module verdict $v: $d" ;;
	esac
done

# The DMAR driver's fault line for each blocked attempt (drivers/iommu/intel/dmar.c
# dmar_fault_do_one), with the same address and fault reason the device reported.
for n in $faults; do
	eval "v=\$v_$n; e=\$e_$n"
	if [ "$v" = skip ]; then ktap_sub_skip "dmar_$n" "attempt skipped"; continue; fi
	found=
	case "$e" in
	"DMA Read NO_PASID addr="*)
		a=${e#*addr=}; a=${a%% *}; r=${e##*reason=}
		case "$dmar" in *"[DMA Read NO_PASID] Request device [$short] fault addr $a [fault reason $r]"*) found=1 ;; esac ;;
	"DMA Read PASID "*)
		p=${e#DMA Read PASID }; p=${p%% *}; a=${e#*addr=}; a=${a%% *}; r=${e##*reason=}
		case "$dmar" in *"[DMA Read PASID $p] Request device [$short] fault addr $a [fault reason $r]"*) found=1 ;; esac ;;
	"INTR-REMAP reason="*)
		r=${e##*reason=}
		case "$dmar" in *"[INTR-REMAP] Request device [$short] fault index "*"[fault reason $r]"*) found=1 ;; esac ;;
	esac
	if [ -n "$found" ]; then ktap_sub_ok "dmar_$n"; else ktap_sub_fail "dmar_$n" "no DMAR fault line for '${e:-no expectation}'"; fi
done

# Still alive: config space of the attacked function answers through the VMM.
read -r v <"$dev/vendor"
if [ "$v" = 0x1de5 ]; then ktap_sub_ok vmm_alive; else ktap_sub_fail vmm_alive "vendor reads '$v'"; fi
grep -F 'ionest_hostile' /tmp/hostile.log | sed 's/^/    # /'
echo "$dmar" | sed -n 's/^\[/    # [/p'
ktap_sub_done
