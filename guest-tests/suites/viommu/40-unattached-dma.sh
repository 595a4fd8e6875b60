# DMA of an endpoint no driver has attached yet (virtio 1.2 §5.13.4.2: the device's `bypass` config
# field decides, its reset value set by ionest's --virtio-iommu boot-bypass=on|off). On a device tree
# Linux ATTACHes an endpoint only when a driver binds it, so the unbound dmatest function is
# unattached here. Its BAR is programmed through /dev/mem (busybox devmem) for a 64-byte read of guest
# RAM. boot-bypass=on (suites/viommu, the default): the read completes and nothing is reported.
# boot-bypass=off (suites/viommu-nobypass, kernel command line ionest_boot_bypass=off): the read is
# blocked, the job ends in a translation error at that address, and Linux's virtio-iommu driver logs
# the fault event it received (§5.13.7: R_DOMAIN, "domain fault from EP <id>").
ktap_sub_plan 2
want=${ionest_boot_bypass:-on}
fn=
for d in /sys/bus/pci/devices/*; do
	[ "$(cat $d/vendor):$(cat $d/device)" = 0x1de5:0x1110 ] && [ ! -e $d/driver ] && { fn=$d; break; }
done
if [ ! -e /dev/mem ] || [ -z "$fn" ]; then
	ktap_sub_fail unattached_dma_$want "need /dev/mem (CONFIG_DEVMEM) and an unbound dmatest function"
	ktap_sub_fail fault_event_$want "skipped"
	ktap_sub_done
fi
# The endpoint ID is the requester ID (iommu-map is the identity on bus 0): devfn.
bdf=${fn##*/}
slot=${bdf#*:*:}; fnum=${slot#*.}; slot=${slot%.*}
ep=$((0x$slot * 8 + fnum))
read -r bar0 _ <$fn/resource
# Memory decode + bus mastering (PCI COMMAND, offset 4): no driver enabled them.
printf '\006\000' | dd of=$fn/config bs=1 seek=4 count=2 conv=notrunc 2>/dev/null
reg() { printf '0x%x' $((bar0 + $1)); }
src=$(($(sed -n 's/^ *\([0-9a-f]*\)-.* : System RAM$/0x\1/p' /proc/iomem | head -1) + 0x100000))
before=$(dmesg | grep -c "fault from EP $ep ")
devmem $(reg 0x10) 64 $src       # SRC
devmem $(reg 0x20) 64 64         # LEN
devmem $(reg 0x38) 64 0x41       # CTRL: READ, no page requests
devmem $(reg 0x40) 64 1          # DOORBELL: start
status=1 i=0
while [ $i -lt 50 ] && [ $((status & 1)) = 1 ]; do  # BUSY
	status=$(devmem $(reg 0x48) 64)
	i=$((i + 1))
done
fault=$(devmem $(reg 0x50) 64)
echo "# $bdf (EP $ep), boot-bypass=$want: STATUS $status FAULT_ADDR $fault (read of $(printf '0x%x' $src))"
case "$want:$((status & 6)):$(((status >> 8) & 0xff))" in
on:2:*) ktap_sub_ok unattached_dma_$want ;;
off:4:4) if [ $((fault)) = $src ]; then ktap_sub_ok unattached_dma_$want; else
	ktap_sub_fail unattached_dma_$want "blocked, but FAULT_ADDR $fault is not the read's address"; fi ;;
*) ktap_sub_fail unattached_dma_$want "STATUS $status: want $([ $want = on ] && echo DONE || echo 'ERROR, translation (code 4)')" ;;
esac
sleep 1  # the event queue interrupt is handled before dmesg is read
line=$(dmesg | grep "fault from EP $ep " | tail -n 1)
events=$(($(dmesg | grep -c "fault from EP $ep ") - before))
echo "# Linux logged $events fault event(s) from EP $ep: $line"
addr=$(printf '%#x' $src)
if [ $want = on ] && [ "$events" = 0 ]; then
	ktap_sub_ok fault_event_$want
elif [ $want = off ] && [ "$events" -ge 1 ] && case "$line" in *"domain fault from EP $ep at $addr [R]"*) true ;; *) false ;; esac; then
	ktap_sub_ok fault_event_$want
else
	ktap_sub_fail fault_event_$want "$events fault event(s) logged (want $([ $want = on ] && echo none || echo "domain fault at $addr [R]")): $line"
fi
ktap_sub_done
