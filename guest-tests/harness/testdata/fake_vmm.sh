#!/bin/sh
# Stand-in for the ionest VMM in the harness's own tests: accepts the VMM's
# CLI and plays a scripted guest console selected by --fake=MODE.
cmdline="" disk="" mode=pass
if [ "$1" = --help ]; then
	echo "usage: fake_vmm.sh --kernel K ... [--iommu=vtd|none]"
	exit 0
fi
case " $* " in
*" --print-vtd-caps "*)
	# --vtd-profile=nocaps plays a VMM without the option.
	case " $* " in *" --vtd-profile=nocaps "*) echo "unknown option --print-vtd-caps" >&2; exit 2 ;; esac
	echo "cap=0x00d2008c40660462 ecap=0x0000f0050f5e"
	exit 0 ;;
esac
while [ $# -gt 0 ]; do
	case "$1" in
	--cmdline) cmdline=$2; shift ;;
	--disk) disk=$2; shift ;;
	--fake=*) mode=${1#--fake=} ;;
	--kernel | --initrd | --memory | --cpus | --timeout) shift ;;
	esac
	shift
done
if [ "$mode" = cannotrun ]; then
	echo "fake_vmm: SKIP: no emulator here (install it)" >&2
	exit 77
fi
nonce=""
for w in $cmdline; do
	case "$w" in ionest_nonce=*) nonce=${w#ionest_nonce=} ;; esac
done
echo "[    0.000000] Linux version 6.12.117 (fake)"
echo "[    0.000000] Command line: $cmdline"
echo "vmm: starting" >&2
echo "ionest-init-start"
printf 'KTAP version 1\r\n'
[ "$mode" = noplan ] || printf '1..2\r\n'
case "$mode" in
hang)
	echo "ok 1 first"
	exec sleep 600 ;;
panic)
	echo "[    5.0] Kernel panic - not syncing: Attempted to kill init!"
	exec sleep 600 ;;
noplan)
	echo "ok 1 first"
	echo "[    9.0] reboot: Power down"
	exit 0 ;;
esac
echo "    KTAP version 1"
echo "    1..2"
echo "    ok 1 sub_a"
if [ "$mode" = fail ]; then echo "    not ok 2 sub_b"; else echo "    ok 2 sub_b # SKIP not here"; fi
echo "ok 1 nested"
echo "ok 2 second"
[ -n "$disk" ] && [ "$mode" != nodisk ] && printf 'ionest-guest-pattern-%s\n' "$nonce" | dd of="$disk" conv=notrunc status=none
if [ "$mode" = halt ]; then
	echo "[   10.0] reboot: Power off not available: System halted instead"
	exec sleep 600
fi
echo "[   10.0] reboot: Power down"
[ "$mode" = vmmerror ] && exit 3
exit 0
