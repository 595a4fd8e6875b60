#!/usr/bin/env bash
# The outer arm64 run of docs/arm64.md: QEMU TCG emulates an arm64 host with EL2
# (-M virt,virtualization=on,gic-version=3 -cpu max), whose Linux has a real /dev/kvm; its /init runs
# the cross-built ionest, which boots a nested arm64 Linux guest under that KVM; the guest's /init
# prints a line and powers off (PSCI SYSTEM_OFF), ionest exits 0, the host powers off.
#
#   run-arm64.sh -b BUILD_ARM64 -k HOST_KERNEL [-g GUEST_KERNEL] [-c GUEST_CPUS] [-t TIMEOUT_S]
#                [-a GUEST_CMDLINE] [-m GUEST_MEMORY] [-D]
#
# Builds two initramfs images (uncompressed cpio, guest-tests/initramfs/mkcpio.py) under
# BUILD_ARM64/arm64-run/: guest.cpio (busybox + /init) and host.cpio (busybox, ionest + its shared
# libraries and loader, the guest kernel and guest.cpio, /init). Streams the console with time stamps
# and checks: the host reached /init and has /dev/kvm, the guest printed its line, ionest exited 0,
# and (unless -D) the virtio-blk round trip over the arm64 PCIe host: the host's pattern read by the
# guest from /dev/vda, the guest's pattern found by the host in the disk file afterwards.
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

command -v qemu-system-aarch64 >/dev/null || skip "qemu-system-aarch64 not installed (scripts/setup-arm64.sh)"
qemu-system-aarch64 -machine virt,help 2>/dev/null | grep -q '^ *virtualization=' ||
  skip "this qemu-system-aarch64 cannot emulate EL2 (-M virt,virtualization=on): no /dev/kvm for the arm64 host"
[[ -n "$build" && -n "$host_kernel" ]] || die "-b BUILD_ARM64 and -k HOST_KERNEL are required"
ionest="$(cat "$build/ionest-path.txt" 2>/dev/null || true)"
[[ -x "$ionest" ]] || die "no aarch64 ionest in $build (make arm64-build)"
file -b "$ionest" | grep -q aarch64 || die "$ionest is not an aarch64 binary"
[[ -r "$host_kernel" ]] || die "host kernel $host_kernel missing (make arm64-kernel)"
[[ -r "$guest_kernel" ]] || die "guest kernel $guest_kernel missing"
busybox="$cache/arm64/busybox/bin/busybox"
[[ -x "$busybox" ]] || skip "no arm64 busybox at $busybox (scripts/setup-arm64.sh unpacks busybox-static:arm64)"
sysroot_libs=(/usr/lib/aarch64-linux-gnu /lib/aarch64-linux-gnu /usr/aarch64-linux-gnu/lib)
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

# --- ionest's shared libraries (readelf NEEDED, recursively) and the loader ---
find_lib() {
  for d in "${sysroot_libs[@]}"; do [[ -e "$d/$1" ]] && { echo "$d/$1"; return 0; }; done
  return 1
}
declare -A libs=()
queue=("$ionest")
while ((${#queue[@]})); do
  f="${queue[0]}"; queue=("${queue[@]:1}")
  while read -r name; do
    [[ -n "$name" && -z "${libs[$name]:-}" ]] || continue
    path="$(find_lib "$name")" || die "shared library $name of $(basename "$f") not found for aarch64"
    libs[$name]="$path"
    queue+=("$path")
  done < <(readelf -d "$f" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p')
done
loader="$(find_lib ld-linux-aarch64.so.1)" || die "no aarch64 loader ld-linux-aarch64.so.1 (libc6:arm64)"

guest_args="--kernel /guest/Image --initrd /guest/guest.cpio --cpus $cpus --memory $guest_memory --timeout $((timeout - 60))"
((disk)) && guest_args+=" --disk /tmp/disk.img"
cat > "$work/host-init" <<INIT
#!/bin/busybox sh
export PATH=/bin LD_LIBRARY_PATH=/lib/aarch64-linux-gnu
mount -t proc proc /proc; mount -t sysfs sys /sys; mount -t devtmpfs dev /dev
read -r up _ </proc/uptime
echo "arm64-host: /init at uptime \${up}s, \$(grep -c '^processor' /proc/cpuinfo) CPU(s)"
if [ ! -e /dev/kvm ]; then
  echo "arm64-host: SKIP: no /dev/kvm (the host kernel's KVM did not initialise: EL2 missing?)"
  dmesg | grep -i kvm
  poweroff -f
fi
echo "arm64-host: \$(dmesg | grep -m1 -o 'kvm \[1\]: .*mode initialized.*' || echo 'kvm: (init line not found)')"
if [ $disk = 1 ]; then
  dd if=/dev/zero of=/tmp/disk.img bs=1M count=4 2>/dev/null
  echo -n "ionest-arm64-host-pattern" | dd of=/tmp/disk.img conv=notrunc 2>/dev/null
fi
echo "arm64-host: running ionest $guest_args --cmdline '$guest_cmdline'"
ionest $guest_args --cmdline '$guest_cmdline'
rc=\$?
read -r up2 _ </proc/uptime
echo "arm64-host: ionest exit status \$rc at uptime \${up2}s (started at \${up}s)"
[ $disk = 1 ] && echo "arm64-host: disk at 4 KiB after the guest: '\$(dd if=/tmp/disk.img bs=4096 skip=1 count=1 2>/dev/null | head -c 24)'"
poweroff -f
INIT
{
  echo "dir /bin 755"; echo "dir /dev 755"; echo "dir /proc 755"; echo "dir /sys 755"; echo "dir /tmp 755"
  echo "dir /lib 755"; echo "dir /lib/aarch64-linux-gnu 755"; echo "dir /guest 755"
  echo "nod /dev/console 600 c 5 1"
  echo "file /bin/busybox $busybox 755"
  for a in sh mount grep dmesg poweroff cat dd head; do echo "slink /bin/$a busybox 777"; done
  echo "file /bin/ionest $ionest 755"
  echo "file /lib/ld-linux-aarch64.so.1 $(readlink -f "$loader") 755"
  for name in "${!libs[@]}"; do echo "file /lib/aarch64-linux-gnu/$name $(readlink -f "${libs[$name]}") 755"; done
  echo "file /guest/Image $guest_kernel 644"
  echo "file /guest/guest.cpio $work/guest.cpio 644"
  echo "file /init $work/host-init 755"
} | "${mkcpio[@]}" "$work/host.cpio"
log "host initramfs $(( $(stat -c %s "$work/host.cpio") >> 20 )) MiB (ionest + ${#libs[@]} libraries + guest kernel + guest initramfs)"

qemu=(qemu-system-aarch64 -M virt,virtualization=on,gic-version=3 -cpu max -smp 2 -m 2048 -nographic -no-reboot
      -kernel "$host_kernel" -initrd "$work/host.cpio" -append "console=ttyAMA0 rdinit=/init panic=-1")
log "running (timeout ${timeout}s): ${qemu[*]}"
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
done < <(timeout --foreground -k 10 "$timeout" "${qemu[@]}" </dev/null 2>&1)
set -e
elapsed total

guest_line="$(grep -m1 'ionest-arm64-guest: hello' "$console" || true)"
boot_report="$(grep -m1 'ionest: boot timing:' "$console" | sed 's/.*boot timing: //' || true)"
log "measured: host /init at ${t_host:-never} s; ionest started at ${t_ionest:-never} s; nested guest /init at ${t_guest:-never} s; ionest exit at ${t_exit:-never} s; whole run ${total} s"
[[ -n "$boot_report" ]] && log "ionest's own boot timing (from its start): $boot_report"
if grep -q 'arm64-host: SKIP' "$console"; then skip "$(grep -m1 -o 'no /dev/kvm.*' "$console")"; fi
[[ -n "$t_host" ]] || die "the arm64 host never reached /init (console: $console)"
[[ -n "$guest_line" ]] || die "the nested guest's line never appeared (console: $console)"
[[ "$status" == 0 ]] || die "ionest exit status '${status:-none}', expected 0 (guest poweroff) (console: $console)"
if ((disk)); then
  grep -q "virtio-blk read 'ionest-arm64-host-pattern'" "$console" || die "the guest did not read the host's pattern from /dev/vda"
  grep -q "disk at 4 KiB after the guest: 'ionest-arm64-guest-wrote'" "$console" ||
    die "the guest's write to /dev/vda did not reach the disk file"
  log "virtio-blk round trip over the PCIe host (MSI-X through the ITS): ok"
fi
log "PASS: ${guest_line#*] }"
