# virtio-blk round trip on /dev/vda. The harness wrote
# "ionest-host-pattern-<nonce>" at offset 0 of the image; we read it, write
# "ionest-guest-pattern-<nonce>", drop the page cache and read it back from
# the device. After power-off the harness checks the image holds our pattern.
ktap_sub_plan 3
nonce=${ionest_nonce:-}
if [ ! -b /dev/vda ] || [ -z "$nonce" ]; then
	ktap_sub_fail host_pattern_read "no /dev/vda or no ionest_nonce= (vda: $(ls /sys/block 2>&1))"
	ktap_sub_fail guest_pattern_write "skipped: no disk"
	ktap_sub_fail guest_pattern_readback "skipped: no disk"
	ktap_sub_done
fi
line=""
read -r line </dev/vda
if [ "$line" = "ionest-host-pattern-$nonce" ]; then
	ktap_sub_ok host_pattern_read
else
	ktap_sub_fail host_pattern_read "read '$line'"
fi
# Closing the block device writes its dirty pages back.
if printf 'ionest-guest-pattern-%s\n' "$nonce" >/dev/vda; then
	ktap_sub_ok guest_pattern_write
else
	ktap_sub_fail guest_pattern_write "write to /dev/vda failed"
fi
echo 3 >/proc/sys/vm/drop_caches
line=""
read -r line </dev/vda
if [ "$line" = "ionest-guest-pattern-$nonce" ]; then
	ktap_sub_ok guest_pattern_readback
else
	ktap_sub_fail guest_pattern_readback "read '$line' after dropping caches"
fi
ktap_sub_done
