# Real virtio-blk I/O through each default-domain type of vda's IOMMU group, switched at runtime
# (Documentation/ABI/testing/sysfs-kernel-iommu_groups: unbind, write <group>/type, rebind).
# Per type: data written at its own disk offset, page cache dropped, read back and compared; the
# domain's translation type is read from /sys/kernel/debug/iommu/intel/dmar_translation_struct:
#   scalable mode: PASID entry (RID_PASID 0) PGTT, bits 8:6 (VT-d spec 9.6): 1 first-stage, 4 pass-through
#   legacy mode:   context entry TT, bits 3:2 (VT-d spec 9.3): 0 multi-level (second-stage), 2 pass-through
# Shared by vtd (scalable, default DMA-FQ) and vtd-legacy (sm_off + iommu=pt, default identity).
types="DMA identity DMA-FQ"
ktap_sub_plan 6
cd -P /sys/block/vda/device/.. 2>/dev/null || { ktap_sub_fail find_vda_pci_function "no /sys/block/vda"; ktap_sub_done; }
pcidev=${PWD##*/}
cd -P iommu_group 2>/dev/null && group=$PWD
cd /
set -- $group/devices/*
if [ -z "$group" ] || [ $# != 1 ]; then
	ktap_sub_fail find_vda_pci_function "vda at $pcidev, group '$group' with $# devices (need exactly 1)"
	ktap_sub_done
fi
ktap_sub_ok find_vda_pci_function
bdf=${pcidev#*:} # 0000:00:03.0 -> 00:03.0 (debugfs format)
drv=/sys/bus/pci/drivers/virtio-pci
dbg=/sys/kernel/debug/iommu/intel/dmar_translation_struct
# 256 KiB of varied data (busybox's own text) as the pattern.
dd if=/bin/busybox of=/tmp/pat bs=64k skip=4 count=4 2>/dev/null

# translation_type: sets tt to "first-stage", "second-stage", "pass-through", "nested" or "?..."
translation_type() {
	tt="no entry for $bdf in $dbg"
	[ -r $dbg ] || { tt="no $dbg (CONFIG_INTEL_IOMMU_DEBUGFS?)"; return; }
	local IFS=" 	" b rt ctx pasid pe v
	while read -r b rt ctx pasid pe; do
		[ "$b" = "$bdf" ] || continue
		if [ "$pasid" = -1 ]; then # legacy
			v=$(((${ctx#*:} >> 2) & 3))
			case $v in 0) tt=second-stage ;; 2) tt=pass-through ;; *) tt="?TT=$v" ;; esac
		elif [ "$pasid" = 0 ]; then
			v=$(((${pe##*:} >> 6) & 7))
			case $v in 1) tt=first-stage ;; 2) tt=second-stage ;; 3) tt=nested ;; 4) tt=pass-through ;; *) tt="?PGTT=$v" ;; esac
		fi
	done <$dbg
}
legacy=0
read -r cmdline </proc/cmdline
case " $cmdline " in *" intel_iommu="*sm_off*) legacy=1 ;; esac

n=0
for t in $types; do
	n=$((n + 1))
	err=""
	echo "$pcidev" >$drv/unbind || err="unbind failed"
	[ -z "$err" ] && { echo "$t" >$group/type || err="write '$t' to $group/type failed"; }
	echo "$pcidev" >$drv/bind || err="$err; rebind failed"
	got=""
	read -r got <$group/type
	[ -z "$err" ] && [ "$got" != "$t" ] && err="group type is '$got' after writing '$t'"
	blk=""
	for b in /sys/bus/pci/devices/$pcidev/virtio*/block/*; do [ -e "$b" ] && blk=${b##*/}; done
	[ -z "$err" ] && [ -z "$blk" ] && err="no block device after rebind"
	if [ -z "$err" ]; then
		if ! dd if=/tmp/pat of=/dev/$blk bs=64k seek=$((16 * n)) conv=fsync 2>/tmp/dd.err; then
			err="write: $(cat /tmp/dd.err)"
		else
			echo 3 >/proc/sys/vm/drop_caches
			dd if=/dev/$blk of=/tmp/rb bs=64k skip=$((16 * n)) count=4 2>/dev/null
			cmp -s /tmp/pat /tmp/rb || err="read-back of 256 KiB at $n MiB differs from what was written"
		fi
	fi
	if [ -z "$err" ]; then
		translation_type
		want=first-stage
		[ $legacy = 1 ] && want=second-stage
		[ "$t" = identity ] && want=pass-through
		[ "$tt" = "$want" ] || err="I/O ok but $bdf translates $tt, want $want"
	fi
	[ -z "$err" ] && ktap_sub_ok "io_verified_$t" || ktap_sub_fail "io_verified_$t" "$err"
done
# DMA faults or IOMMU errors during the switches?
dmesg >/tmp/dmesg2.txt
if grep -q -E 'DMAR: DRHD: handling fault|DMAR: \[(DMA Read|DMA Write|INTR-REMAP)|Buffer I/O error|I/O error, dev vd' /tmp/dmesg2.txt; then
	ktap_sub_fail no_faults_during_switches "$(grep -m3 -E 'DMAR: |I/O error' /tmp/dmesg2.txt)"
else
	ktap_sub_ok no_faults_during_switches
fi
# Leave the disk for later tests: rebind if a step above left it unbound.
[ -e $drv/$pcidev ] || echo "$pcidev" >$drv/bind
[ -e $drv/$pcidev ] && ktap_sub_ok vda_bound_at_end || ktap_sub_fail vda_bound_at_end "virtio-pci not bound to $pcidev"
ktap_sub_done
