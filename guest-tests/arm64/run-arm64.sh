#!/usr/bin/env bash
# The outer arm64 run of docs/arm64.md: QEMU TCG emulates an arm64 host with EL2
# (-M virt,virtualization=on,gic-version=3 -cpu max), whose Linux has a real /dev/kvm; its /init runs
# the cross-built ionest, which boots a nested arm64 Linux guest under that KVM; the guest's /init
# prints a line and powers off (PSCI SYSTEM_OFF), ionest exits 0, the host powers off.
#
#   run-arm64.sh -b BUILD_ARM64 -k HOST_KERNEL [-g GUEST_KERNEL] [-c GUEST_CPUS] [-t TIMEOUT_S]
#                [-a GUEST_CMDLINE] [-m GUEST_MEMORY] [-D]
#
# Builds the nested guest's initramfs (uncompressed cpio, guest-tests/initramfs/mkcpio.py) under
# BUILD_ARM64/arm64-run/ and runs it with guest-tests/arm64/arm64-vmm.sh (the arm64 host with ionest,
# the same path the arm64 guest suites take). Streams the console with time stamps and checks: the
# host reached /init and has /dev/kvm, the guest printed its line, ionest exited 0, and (unless -D)
# the virtio-blk round trip over the arm64 PCIe host: the pattern this script wrote into the disk
# image read by the guest from /dev/vda, the guest's pattern found in the image afterwards.
# Prints the measured times (host boot to /init, nested guest boot to /init, whole run).
# Exit status: 0 pass, 1 fail, 77 skip (reason on stderr, "SKIP:").
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
cache="${IONEST_CACHE:-$HOME/.cache/ionest}"
build="" host_kernel="" guest_kernel="" cpus=2 timeout=600 guest_cmdline="" guest_memory=256M disk=1
while getopts "b:k:g:c:t:a:m:D" o; do
  case "$o" in
    b) build="$OPTARG" ;; k) host_kernel="$OPTARG" ;; g) guest_kernel="$OPTARG" ;; c) cpus="$OPTARG" ;;
    t) timeout="$OPTARG" ;; a) guest_cmdline="$OPTARG" ;; m) guest_memory="$OPTARG" ;; D) disk=0 ;;
    *) echo "usage: $0 -b BUILD_ARM64 -k HOST_KERNEL [-g GUEST_KERNEL] [-c CPUS] [-t S] [-a CMDLINE] [-m MEM]" >&2; exit 2 ;;
  esac
done
guest_kernel="${guest_kernel:-$host_kernel}"
log() { printf '[run-arm64] %s\n' "$*"; }
skip() { echo "run-arm64: SKIP: $*" >&2; exit 77; }
die() { echo "run-arm64: ERROR: $*" >&2; exit 1; }

# arm64-vmm.sh checks QEMU, EL2 and the binaries (skip or error with the reason).
[[ -n "$build" && -n "$host_kernel" ]] || die "-b BUILD_ARM64 and -k HOST_KERNEL are required"
ionest="$(cat "$build/ionest-path.txt" 2>/dev/null || true)"
busybox="$cache/arm64/busybox/bin/busybox"
[[ -x "$busybox" ]] || skip "no arm64 busybox at $busybox (scripts/setup-arm64.sh unpacks busybox-static:arm64)"
mkcpio=("$repo/guest-tests/initramfs/mkcpio.py")

work="$build/arm64-run"
rm -rf "$work"
mkdir -p "$work"

# --- the nested guest's initramfs: its /init prints a line and powers off ---
cat > "$work/guest-init" <<'INIT'
#!/bin/busybox sh
/bin/busybox mount -t proc proc /proc
echo ionest-init-start
read -r up _ </proc/uptime
n=$(/bin/busybox grep -c '^processor' /proc/cpuinfo)
echo "ionest-arm64-guest: hello from the nested guest: /init at uptime ${up}s, ${n} CPU(s) online, $(/bin/busybox uname -m)"
/bin/busybox mount -t devtmpfs dev /dev
/bin/busybox mount -t sysfs sys /sys
echo "ionest-arm64-guest: PCI functions: $(/bin/busybox ls /sys/bus/pci/devices 2>/dev/null | /bin/busybox tr '\n' ' ')"
if [ -b /dev/vda ]; then
  # virtio-blk round trip: read the host's pattern (sector 0), write ours at 4 KiB; the host checks it.
  got=$(/bin/busybox head -c 25 /dev/vda)
  echo "ionest-arm64-guest: virtio-blk read '$got'"
  echo -n "ionest-arm64-guest-wrote" | /bin/busybox dd of=/dev/vda bs=4096 seek=1 conv=notrunc 2>/dev/null
  /bin/busybox sync
  /bin/busybox grep -i -m3 'virtio\|ITS' /proc/interrupts
fi
/bin/busybox poweroff -f
INIT
{
  echo "dir /bin 755"; echo "dir /dev 755"; echo "dir /proc 755"; echo "dir /sys 755"
  echo "nod /dev/console 600 c 5 1"
  echo "file /bin/busybox $busybox 755"
  echo "slink /bin/sh busybox 777"
  echo "file /init $work/guest-init 755"
} | "${mkcpio[@]}" "$work/guest.cpio"

disk_img="$work/disk.img"
if ((disk)); then
  dd if=/dev/zero of="$disk_img" bs=1M count=4 status=none
  printf 'ionest-arm64-host-pattern' | dd of="$disk_img" conv=notrunc status=none
fi
vmm=("$here/arm64-vmm.sh" --ionest "$ionest" --host-kernel "$host_kernel" --kernel "$guest_kernel"
     --initrd "$work/guest.cpio" --cpus "$cpus" --memory "$guest_memory" --timeout "$timeout"
     --cmdline "$guest_cmdline")
((disk)) && vmm+=(--disk "$disk_img")
log "running (timeout ${timeout}s): ${vmm[*]}"
# Seconds since the start, 0.1 s resolution, without a process per console line.
start_us=${EPOCHREALTIME/./}
elapsed() { local d=$(( ${EPOCHREALTIME/./} - start_us )); printf -v "$1" '%d.%d' $((d / 1000000)) $((d % 1000000 / 100000)); }
t_host="" t_ionest="" t_guest="" t_exit="" status=""
console="$work/console.log"
: > "$console"
set +e
while IFS= read -r line; do
  elapsed now
  line="${line//$'\r'/}"
  printf -v stamped '[%6ss] %s' "$now" "$line"
  echo "$stamped"
  echo "$stamped" >> "$console"
  case "$line" in
    *"arm64-host: /init at"*) t_host="$now" ;;
    *"arm64-host: running ionest"*) t_ionest="$now" ;;
    "ionest-init-start") [[ -n "$t_guest" ]] || t_guest="$now" ;;  # the guest /init's first line
    *"arm64-host: ionest exit status "*) t_exit="$now"; status="${line##*exit status }"; status="${status%% *}" ;;
  esac
done < <(ARM64_VMM_WORK="$work/vmm" "${vmm[@]}" 2>&1; echo "run-arm64: arm64-vmm.sh exit status $?")
set -e
elapsed total

guest_line="$(grep -m1 'ionest-arm64-guest: hello' "$console" || true)"
boot_report="$(grep -m1 'ionest: boot timing:' "$console" | sed 's/.*boot timing: //' || true)"
log "measured: host /init at ${t_host:-never} s; ionest started at ${t_ionest:-never} s; nested guest /init at ${t_guest:-never} s; ionest exit at ${t_exit:-never} s; whole run ${total} s"
[[ -n "$boot_report" ]] && log "ionest's own boot timing (from its start): $boot_report"
if grep -q 'arm64-vmm: SKIP' "$console"; then skip "$(grep -m1 -o 'arm64-vmm: SKIP: .*' "$console")"; fi
[[ -n "$t_host" ]] || die "the arm64 host never reached /init (console: $console)"
[[ -n "$guest_line" ]] || die "the nested guest's line never appeared (console: $console)"
[[ "$status" == 0 ]] || die "ionest exit status '${status:-none}', expected 0 (guest poweroff) (console: $console)"
if ((disk)); then
  grep -q "virtio-blk read 'ionest-arm64-host-pattern'" "$console" || die "the guest did not read the host's pattern from /dev/vda"
  got="$(dd if="$disk_img" bs=4096 skip=1 count=1 status=none | head -c 24)"
  [[ "$got" == ionest-arm64-guest-wrote ]] ||
    die "the guest's write to /dev/vda did not reach the disk file $disk_img (found '$got' at 4 KiB)"
  log "virtio-blk round trip over the PCIe host (MSI-X through the ITS): ok"
fi
log "PASS: ${guest_line#*] }"
