# /dev/vda is the arm64 host's virtio-blk-pci function that ionest passed through (arm64-vmm.sh
# --passthrough-disk puts ionest_pt_host/_id/_serial on our command line), not an emulated disk:
# it sits at ionest's first --device slot (vfio@02.0) with the host function's ids, answers GET_ID
# with QEMU's drive serial, nothing sits at the emulated disk's 00:01.0, and its MSI-X interrupts
# (host eventfd -> ionest's forwarder -> KVM_SIGNAL_MSI -> the ITS) arrived.
ktap_sub_plan 4
echo "# host function ${ionest_pt_host:-?} (${ionest_pt_id:-?}, serial ${ionest_pt_serial:-?})"
blkdev=$(readlink -f /sys/block/vda/device 2>/dev/null)
fn=${blkdev%/*}
bdf=${fn##*/}
echo "# /dev/vda: ${blkdev:-none}"
id="$(cat "$fn/vendor" 2>/dev/null):$(cat "$fn/device" 2>/dev/null)"
id=$(echo "$id" | sed 's/0x//g')
if [ "$bdf" = 0000:00:02.0 ] && [ -n "${ionest_pt_id:-}" ] && [ "$id" = "$ionest_pt_id" ]; then
	ktap_sub_ok vda_is_vfio_function
else
	ktap_sub_fail vda_is_vfio_function "vda on '$bdf' ($id), expected 0000:00:02.0 (${ionest_pt_id:-no ionest_pt_id=})"
fi
serial=$(cat /sys/block/vda/serial 2>/dev/null)
if [ -n "${ionest_pt_serial:-}" ] && [ "$serial" = "$ionest_pt_serial" ]; then
	ktap_sub_ok serial_from_host_device
else
	ktap_sub_fail serial_from_host_device "serial '$serial', expected '${ionest_pt_serial:-}' (QEMU's drive)"
fi
if [ ! -e /sys/bus/pci/devices/0000:00:01.0 ]; then
	ktap_sub_ok no_emulated_disk
else
	ktap_sub_fail no_emulated_disk "a function at 00:01.0: $(cat /sys/bus/pci/devices/0000:00:01.0/uevent | tr '\n' ' ')"
fi
virtio=$(readlink -f /sys/block/vda/device 2>/dev/null)
virtio=${virtio##*/}
grep -E "${virtio:-none}-" /proc/interrupts | while read -r l; do echo "# $l"; done
# One line per request queue (virtioN-req.Q): the sum over queues and CPUs.
req=$(grep "${virtio:-none}-req" /proc/interrupts | awk '{ for (i = 2; i <= NF && $i ~ /^[0-9]+$/; i++) n += $i } END { print n + 0 }')
if [ "${req:-0}" -gt 0 ]; then
	ktap_sub_ok msix_request_interrupts
else
	ktap_sub_fail msix_request_interrupts "no ${virtio:-virtio?}-req MSI-X interrupts counted"
fi
ktap_sub_done
