# Hostile virtio-iommu driver (busybox ash, sourced by /init): Linux's virtio-iommu driver is kept
# out by initcall_blacklist, ionest_viommu_hostile.ko binds the device through the virtio core and
# makes its attempts against ionest's virtio-iommu with the unbound dmatest function as endpoint.
# Each module line "ionest_viommu_hostile: ok|not ok N name # diag" becomes a subtest; two more
# check that the module bound the device and that every attempt ran (ionest kept answering).
ko=/lib/ionest/ionest_viommu_hostile.ko
[ -f "$ko" ] || skip_test "$ko missing (ARCH=arm64 guest-tests/modules/build-modules.sh)"
bdf=
for d in /sys/bus/pci/devices/*; do
	[ "$(cat $d/vendor):$(cat $d/device)" = 0x1de5:0x1110 ] && [ ! -e $d/driver ] && { bdf=${d##*/}; break; }
done
[ -n "$bdf" ] || skip_test "no unbound ionest-dmatest function (--device dmatest)"
if [ -d /sys/bus/virtio/drivers/virtio_iommu ] && ls /sys/bus/virtio/drivers/virtio_iommu | grep -q virtio; then
	skip_test "Linux's virtio-iommu driver owns the device (initcall_blacklist=virtio_iommu_drv_init missing)"
fi
insmod "$ko" "bdf=$bdf"
rc=$?
dmesg | grep 'ionest_viommu_hostile: ' >/tmp/vh.log
lines=$(grep -c -E 'ionest_viommu_hostile: (ok|not ok) ' /tmp/vh.log)
ktap_sub_plan $((lines + 2))
if [ $rc = 0 ] && ls /sys/bus/virtio/drivers/ionest_viommu_hostile/ 2>/dev/null | grep -q virtio; then
	ktap_sub_ok bound
else
	ktap_sub_fail bound "insmod rc $rc; $(grep -m3 -v ': ok\|: not ok' /tmp/vh.log)"
fi
while IFS= read -r l; do
	rest=${l#*ionest_viommu_hostile: }
	case "$rest" in
	"ok "*) rest=${rest#ok }; verdict=ok ;;
	"not ok "*) rest=${rest#not ok }; verdict=fail ;;
	*) continue ;;
	esac
	rest=${rest#* }     # drop the number
	name=${rest%% *}
	diag=${rest#* # }
	case "$verdict:$diag" in
	ok:SKIP*) ktap_sub_skip "$name" "${diag#SKIP }" ;;
	ok:*) echo "    # $name: $diag"; ktap_sub_ok "$name" ;;
	*) ktap_sub_fail "$name" "$diag" ;;
	esac
done </tmp/vh.log
done_line=$(grep -m1 'ionest_viommu_hostile: done:' /tmp/vh.log)
case "$done_line" in
*"done: $lines attempts"*) ktap_sub_ok all_attempts_answered ;;
*) ktap_sub_fail all_attempts_answered "module log ends with '${done_line:-no done line}' after $lines attempt lines" ;;
esac
rmmod ionest_viommu_hostile 2>/dev/null
ktap_sub_done
