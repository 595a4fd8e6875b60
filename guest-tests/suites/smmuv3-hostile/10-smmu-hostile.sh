# Hostile SMMUv3 driver (busybox ash, sourced by /init). ionest_smmu_hostile.ko binds to the device
# tree's SMMUv3 (Linux's arm-smmu-v3 is blacklisted on the command line), owns its registers and
# attacks the model; it logs one KTAP-style line per attempt ("ionest_smmu_hostile: ok N name # ..."),
# each already checked against the architected result (IHI0070 §5.2/§5.4 ILLEGAL STEs/CDs, §7.1
# command errors, §7.2 event queue overflow, §7.3 event records): the list is in the module's
# header. This script turns those lines into subtests, requires every attempt to have reported, and
# checks that the VMM still serves the attacked function afterwards.
ko=/lib/ionest/ionest_smmu_hostile.ko
[ -f "$ko" ] || skip_test "$ko missing (ARCH=arm64 guest-tests/modules/build-modules.sh)"
smmu=
for d in /sys/bus/platform/devices/*.smmuv3; do [ -e "$d" ] && smmu=$d; done
[ -n "$smmu" ] || skip_test "no SMMUv3 platform device (--iommu=smmuv3)"

names="probe dmatest enable bad_streamid bypass_dma ste_invalid ste_reserved_config ste_s1cdmax_illegal
cd_invalid cd_t0sz_illegal cd_tg0_reserved cd_aa32 bad_substreamid substream_on_bypass translation_fault
evtq_msi translated_dma cmd_reserved_opcode cmd_reserved_bits cmd_sync_reserved_cs cmd_tlbi_el3
cmdq_fetch_abort cmdq_prod_beyond_size evtq_overflow evtq_write_abort still_serving"
ktap_sub_plan 28
if [ -e "$smmu/driver" ]; then
	d=$(readlink "$smmu/driver")
	ktap_sub_fail smmu_bound "${smmu##*/} already driven by ${d##*/} (initcall_blacklist=arm_smmu_driver_init missing?)"
elif insmod "$ko" && [ -e /sys/bus/platform/drivers/ionest_smmu_hostile/"${smmu##*/}" ]; then
	ktap_sub_ok smmu_bound
else
	ktap_sub_fail smmu_bound "ionest_smmu_hostile did not bind to ${smmu##*/} (see dmesg)"
fi

# One pass over the module's lines (each read is syscalls; keep the input small).
dmesg | grep -F 'ionest_smmu_hostile: ' >/tmp/smmu-hostile.log
all=" $(echo $names) "
for n in $names; do eval "v_$n=missing; d_$n="; done
while IFS= read -r l; do
	case "$l" in
	*"ionest_smmu_hostile: ok "* | *"ionest_smmu_hostile: not ok "*)
		rest=${l#*ionest_smmu_hostile: }
		case "$rest" in "not ok "*) verdict=fail; rest=${rest#not ok } ;; *) verdict=ok; rest=${rest#ok } ;; esac
		rest=${rest#* } # drop the number
		name=${rest%% *}
		diag=${rest#* # }
		case "$diag" in SKIP*) verdict=skip ;; esac
		case "$all" in *" $name "*) eval "v_$name=\$verdict; d_$name=\$diag" ;; esac ;;
	esac
done </tmp/smmu-hostile.log
for n in $names; do
	eval "v=\$v_$n; d=\$d_$n"
	case "$v" in
	ok) ktap_sub_ok "$n" ;;
	skip) ktap_sub_skip "$n" "${d#SKIP }" ;;
	*) ktap_sub_fail "$n" "module verdict $v${d:+: $d}" ;;
	esac
done

# Still alive: the attacked function's config space answers through the VMM after the attack.
alive=
for d in /sys/bus/pci/devices/*; do
	read -r v <"$d/vendor"; read -r p <"$d/device"
	[ "$v:$p" = "0x1de5:0x1110" ] && alive=${d##*/}
done
if [ -n "$alive" ] && od -An -tx2 -N2 "/sys/bus/pci/devices/$alive/config" | grep -q 1de5; then
	ktap_sub_ok vmm_alive
else
	ktap_sub_fail vmm_alive "no answer from the dmatest function's config space"
fi
sed 's/^/    # /' /tmp/smmu-hostile.log
ktap_sub_done
