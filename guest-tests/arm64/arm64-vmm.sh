#!/usr/bin/env bash
# ionest for arm64 as the guest runner (and run-arm64.sh) sees a VMM: it takes ionest's own options,
# boots an arm64 Linux host under QEMU TCG with EL2 (-M virt,virtualization=on,gic-version=3 -cpu max),
# whose /init runs the cross-built aarch64 ionest with those options under the host's real /dev/kvm,
# and exits with ionest's exit status. The console (outer host's, with the nested guest's inside)
# goes to stdout. docs/arm64.md.
#
#   arm64-vmm.sh --ionest AARCH64_IONEST --host-kernel IMAGE [--host-memory MIB] [--host-arg ARG]...
#                [--interactive] [--passthrough-disk] --kernel GUEST_IMAGE --initrd GUEST_CPIO [--disk FILE]
#                [ionest options]...
#
# The options are accepted in any order (the runner appends its --vmm-arg ones last). --disk FILE is
# the outer host's virtio-blk disk (QEMU -drive), handed to ionest as --disk /dev/vda: what the
# nested guest writes lands in FILE, which the caller checks after the run. --host-arg adds one
# argument to the QEMU command line (e.g. an emulated function for passthrough). --interactive: the
# terminal is the nested guest's console (ionest --console inside); Ctrl-A x quits ionest (and so the
# guest), Ctrl-] x quits QEMU (its escape moved off Ctrl-A so that ionest gets it).
# --passthrough-disk (issue 10 item 4; needs --disk): the disk's virtio-blk-pci function (modern,
# VIRTIO_F_ACCESS_PLATFORM, at the host's 0000:00:05.0) sits behind QEMU's own SMMUv3 (-M virt,iommu=smmuv3);
# the host /init binds it to vfio-pci (driver_override, unbind, drivers_probe), checks /dev/iommu and its
# /dev/vfio/devices/vfioN, and ionest passes it through (--device vfio,host=0000:00:05.0, no --disk): the
# nested guest's own virtio_blk drives it. The guest command line gets ionest_pt_host=<BDF>,
# ionest_pt_id=1af4:1042 and ionest_pt_serial=<the drive's serial> (suites/passthrough-arm64 checks
# them); after the run the console must hold ionest's passthrough report for that BDF, else exit 1;
# with --iommu=virtio also its "translated via virtio-iommu forwarding" line and a non-zero
# IOMMU_IOAS_MAP count at exit (suites/passthrough-viommu-arm64).
# Exit: ionest's status; 77 with "arm64-vmm: SKIP: <reason>" on stderr when this machine cannot run
# it (no qemu-system-aarch64, no EL2, no arm64 busybox, no aarch64 ionest built, no /dev/kvm in the
# host); 1 on other errors.
# Env: IONEST_CACHE (arm64 busybox under $IONEST_CACHE/arm64/busybox), ARM64_VMM_WORK (scratch dir).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
cache="${IONEST_CACHE:-$HOME/.cache/ionest}"
skip() { echo "arm64-vmm: SKIP: $*" >&2; exit 77; }
die() { echo "arm64-vmm: ERROR: $*" >&2; exit 1; }

ionest="" host_kernel="" host_memory="" kernel="" initrd="" disk="" guest_memory=256 timeout=600
host_args=() ionest_args=() interactive=0 passthrough_disk=0
# --passthrough-disk: where QEMU puts the disk's function in the host, and its modern virtio-blk id.
# The serial (virtio-blk GET_ID) is QEMU's drive property: only the real function answers with it.
pt_bdf=0000:00:05.0 pt_id=1af4:1042 pt_serial=ionest-passthrough
need() { (($# >= 2)) || die "option $1 needs a value"; }
while (($#)); do
  case "$1" in
    --ionest) need "$@"; ionest="$2"; shift 2 ;;
    --host-kernel) need "$@"; host_kernel="$2"; shift 2 ;;
    --host-memory) need "$@"; host_memory="$2"; shift 2 ;;
    --host-arg) need "$@"; host_args+=("$2"); shift 2 ;;
    --interactive) interactive=1; shift ;;
    --passthrough-disk) passthrough_disk=1; shift ;;
    --kernel) need "$@"; kernel="$2"; shift 2 ;;
    --initrd) need "$@"; initrd="$2"; shift 2 ;;
    --disk) need "$@"; disk="$2"; shift 2 ;;
    --memory) need "$@"; ionest_args+=("$1" "$2")
      case "$2" in *G) guest_memory=$((${2%G} * 1024)) ;; *M) guest_memory=${2%M} ;; *) guest_memory=$(($2 >> 20)) ;; esac
      shift 2 ;;
    --timeout) need "$@"; timeout="$2"; ionest_args+=("$1" "$2"); shift 2 ;;
    --cmdline)
      need "$@"; cmdline_index=${#ionest_args[@]}; ionest_args+=("$1" "$2"); shift 2 ;;
    --cpus | --device | --iommu | --virtio-iommu) need "$@"; ionest_args+=("$1" "$2"); shift 2 ;;
    --help) sed -n '2,30p' "${BASH_SOURCE[0]}"; exit 0 ;;
    *) ionest_args+=("$1"); shift ;;
  esac
done

command -v qemu-system-aarch64 >/dev/null || skip "qemu-system-aarch64 is not installed (run scripts/setup-arm64.sh)"
qemu-system-aarch64 -machine virt,help 2>/dev/null | grep -q '^ *virtualization=' ||
  skip "this qemu-system-aarch64 cannot emulate EL2 (-M virt,virtualization=on): its arm64 host would have no /dev/kvm"
busybox="$cache/arm64/busybox/bin/busybox"
[[ -x "$busybox" ]] || skip "no arm64 busybox at $busybox (scripts/setup-arm64.sh unpacks busybox-static:arm64)"
[[ -n "$ionest" && -x "$ionest" ]] || skip "no aarch64 ionest at '${ionest}' (make arm64-build)"
file -b "$ionest" | grep -q aarch64 || die "$ionest is not an aarch64 binary (make arm64-build)"
[[ -n "$host_kernel" && -r "$host_kernel" ]] || die "no arm64 host kernel at '${host_kernel}' (make arm64-kernel)"
[[ -n "$kernel" && -r "$kernel" ]] || die "no guest kernel at '${kernel}' (--kernel)"
[[ -n "$initrd" && -r "$initrd" ]] || die "no guest initramfs at '${initrd}' (--initrd)"
[[ -z "$disk" || -w "$disk" ]] || die "disk image '$disk' is not writable"
if ((passthrough_disk)); then
  [[ -n "$disk" ]] || die "--passthrough-disk needs --disk FILE (the function passed through is that disk's)"
  qemu-system-aarch64 -machine virt,help 2>/dev/null | grep -q '^ *iommu=' ||
    skip "this qemu-system-aarch64 has no -M virt,iommu=smmuv3: the arm64 host would have no IOMMU for vfio-pci"
  # The nested guest learns which function it should see (its test checks the ids).
  if [[ -n "${cmdline_index:-}" ]]; then
    ionest_args[cmdline_index + 1]+=" ionest_pt_host=$pt_bdf ionest_pt_id=$pt_id ionest_pt_serial=$pt_serial"
  else
    ionest_args+=(--cmdline "ionest_pt_host=$pt_bdf ionest_pt_id=$pt_id ionest_pt_serial=$pt_serial")
  fi
fi
# The host holds its initramfs (ionest, the guest kernel and initramfs) in RAM besides the guest's.
host_memory="${host_memory:-$((guest_memory + 768))}"

work="${ARM64_VMM_WORK:-$(mktemp -d "${TMPDIR:-/tmp}/ionest-arm64-vmm.XXXXXX")}"
mkdir -p "$work"
[[ -n "${ARM64_VMM_WORK:-}" ]] || trap 'rm -rf "$work"' EXIT

# --- ionest's shared libraries (readelf NEEDED, recursively) and the loader, from the multiarch dirs ---
sysroot_libs=(/usr/lib/aarch64-linux-gnu /lib/aarch64-linux-gnu /usr/aarch64-linux-gnu/lib)
find_lib() {
  local d
  for d in "${sysroot_libs[@]}"; do [[ -e "$d/$1" ]] && { echo "$d/$1"; return 0; }; done
  return 1
}
declare -A libs=()
queue=("$ionest")
while ((${#queue[@]})); do
  f="${queue[0]}"; queue=("${queue[@]:1}")
  while read -r name; do
    [[ -n "$name" && -z "${libs[$name]:-}" ]] || continue
    path="$(find_lib "$name")" || die "shared library $name of $(basename "$f") not found for aarch64 (scripts/setup-arm64.sh)"
    libs[$name]="$path"
    queue+=("$path")
  done < <(readelf -d "$f" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p')
done
loader="$(find_lib ld-linux-aarch64.so.1)" || die "no aarch64 loader ld-linux-aarch64.so.1 (libc6:arm64)"

# --- the host's /init: ionest with the caller's options, its exit status reported on the console ---
((interactive)) && ionest_args+=(--console)
quote() { local s="${1//\'/\'\\\'\'}"; printf "'%s'" "$s"; }
cmd="ionest --kernel /guest/kernel --initrd /guest/initrd"
if ((passthrough_disk)); then
  cmd+=" --device vfio,host=$pt_bdf"
elif [[ -n "$disk" ]]; then
  cmd+=" --disk /dev/vda"
fi
for a in "${ionest_args[@]}"; do cmd+=" $(quote "$a")"; done
cat > "$work/host-init" <<INIT
#!/bin/busybox sh
export PATH=/bin LD_LIBRARY_PATH=/lib/aarch64-linux-gnu
mount -t proc proc /proc; mount -t sysfs sys /sys; mount -t devtmpfs dev /dev
read -r up _ </proc/uptime
echo "arm64-host: /init at uptime \${up}s, \$(grep -c '^processor' /proc/cpuinfo) CPU(s)"
if [ ! -e /dev/kvm ]; then
  echo "arm64-host: SKIP: no /dev/kvm in the arm64 host (its KVM did not initialise: QEMU without EL2?)"
  dmesg | grep -i kvm
  poweroff -f
fi
echo "arm64-host: \$(dmesg | grep -m1 -o 'kvm \[1\]: .*mode initialized.*' || echo 'kvm: (init line not found)')"
if [ "$passthrough_disk" = 1 ]; then
  # The disk's function to vfio-pci (Documentation/driver-api/vfio.rst, "VFIO Usage Example").
  pt_fail() {
    echo "arm64-host: PASSTHROUGH-ERROR: \$*"
    dmesg | grep -i -E 'smmu|iommu|vfio' | tail -20
    poweroff -f
  }
  d=/sys/bus/pci/devices/$pt_bdf
  [ -e "\$d" ] || pt_fail "no PCI function $pt_bdf in the host (QEMU's virtio-blk-pci addr=05.0): \$(ls /sys/bus/pci/devices)"
  id="\$(cat \$d/vendor):\$(cat \$d/device)"
  id="\$(echo "\$id" | sed 's/0x//g')"
  [ "\$id" = "$pt_id" ] || pt_fail "$pt_bdf is \$id, expected $pt_id (modern virtio-blk)"
  [ -e /dev/iommu ] || pt_fail "no /dev/iommu (host kernel without CONFIG_IOMMUFD?)"
  [ -e "\$d/iommu_group" ] || pt_fail "$pt_bdf has no IOMMU group (QEMU's SMMUv3 not probed: -M virt,iommu=smmuv3, CONFIG_ARM_SMMU_V3)"
  drv=none
  [ -e "\$d/driver" ] && drv=\$(basename "\$(readlink "\$d/driver")")
  echo "arm64-host: passthrough: $pt_bdf (\$id) driver \$drv, IOMMU group \$(basename "\$(readlink "\$d/iommu_group")")"
  dmesg | grep -m1 -E 'arm-smmu-v3.*ias' | sed 's/^/arm64-host: /'
  echo vfio-pci >"\$d/driver_override" || pt_fail "writing driver_override"
  if [ -e "\$d/driver" ]; then echo "$pt_bdf" >"\$d/driver/unbind" || pt_fail "unbinding from \$drv"; fi
  echo "$pt_bdf" >/sys/bus/pci/drivers_probe
  now=none
  [ -e "\$d/driver" ] && now=\$(basename "\$(readlink "\$d/driver")")
  [ "\$now" = vfio-pci ] || pt_fail "$pt_bdf not bound to vfio-pci after drivers_probe (driver: \$now)"
  cdev=\$(ls "\$d/vfio-dev" 2>/dev/null | head -1)
  [ -n "\$cdev" ] && [ -c "/dev/vfio/devices/\$cdev" ] ||
    pt_fail "no /dev/vfio/devices/vfioN for $pt_bdf (vfio-dev: '\$cdev'; CONFIG_VFIO_DEVICE_CDEV?)"
  echo "arm64-host: passthrough: $pt_bdf bound to vfio-pci (driver_override, unbind from \$drv, drivers_probe), /dev/vfio/devices/\$cdev, /dev/iommu present"
fi
# From here on the console carries the nested guest's output (KTAP the runner parses): the host's own
# kernel messages (e.g. "hrtimer: interrupt took ...") would land in the middle of its lines. They
# stay in the host's dmesg; only emergencies still reach the console.
echo 1 >/proc/sys/kernel/printk
echo "arm64-host: running $(printf '%s' "$cmd" | sed 's/[$`\\"]/\\&/g')"
$cmd
rc=\$?
read -r up2 _ </proc/uptime
echo "arm64-host: ionest exit status \$rc at uptime \${up2}s (started at \${up}s)"
sync
poweroff -f
INIT
{
  echo "dir /bin 755"; echo "dir /dev 755"; echo "dir /proc 755"; echo "dir /sys 755"; echo "dir /tmp 755"
  echo "dir /lib 755"; echo "dir /lib/aarch64-linux-gnu 755"; echo "dir /guest 755"
  echo "nod /dev/console 600 c 5 1"
  echo "file /bin/busybox $busybox 755"
  for a in sh mount grep dmesg poweroff cat dd head sync sed ls readlink basename; do echo "slink /bin/$a busybox 777"; done
  echo "file /bin/ionest $ionest 755"
  echo "file /lib/ld-linux-aarch64.so.1 $(readlink -f "$loader") 755"
  for name in "${!libs[@]}"; do echo "file /lib/aarch64-linux-gnu/$name $(readlink -f "${libs[$name]}") 755"; done
  echo "file /guest/kernel $(readlink -f "$kernel") 644"
  echo "file /guest/initrd $(readlink -f "$initrd") 644"
  echo "file /init $work/host-init 755"
} | "$repo/guest-tests/initramfs/mkcpio.py" "$work/host.cpio"

qemu=(qemu-system-aarch64 -M virt,virtualization=on,gic-version=3 -cpu max -smp 2 -m "$host_memory"
      -nographic -no-reboot -kernel "$host_kernel" -initrd "$work/host.cpio"
      -append "console=ttyAMA0 rdinit=/init panic=-1")
if ((passthrough_disk)); then
  # QEMU's SMMUv3 (stage 1) in front of the PCIe root bus; the function does its DMA through it
  # (iommu_platform=on: VIRTIO_F_ACCESS_PLATFORM, so IOVAs = the nested guest's addresses get translated).
  qemu[2]+=",iommu=smmuv3"
  qemu+=(-drive "file=$disk,format=raw,if=none,id=disk0,cache=writethrough"
         -device "virtio-blk-pci,drive=disk0,addr=05.0,disable-legacy=on,iommu_platform=on,serial=$pt_serial")
elif [[ -n "$disk" ]]; then
  qemu+=(-drive "file=$disk,format=raw,if=none,id=disk0,cache=writethrough" -device virtio-blk-pci,drive=disk0)
fi
qemu+=("${host_args[@]}")
echo "arm64-vmm: host initramfs $(($(stat -c %s "$work/host.cpio") >> 20)) MiB; running: ${qemu[*]}" >&2
# The host boots in a few seconds; ionest's own --timeout bounds the guest.
set +e
if ((interactive)); then
  "${qemu[@]}" -echr 29 2>&1 | tee "$work/console.log"
else
  timeout --foreground -k 10 "$((timeout + 120))" "${qemu[@]}" </dev/null 2>&1 | tee "$work/console.log"
fi
set -e
if grep -q 'arm64-host: SKIP' "$work/console.log"; then
  skip "$(grep -m1 -o 'no /dev/kvm.*' "$work/console.log" | tr -d '\r')"
fi
status="$(sed -n 's/.*arm64-host: ionest exit status \([0-9]*\).*/\1/p' "$work/console.log" | head -1)"
if grep -q 'arm64-host: PASSTHROUGH-ERROR' "$work/console.log"; then
  die "$(grep -m1 -o 'PASSTHROUGH-ERROR: .*' "$work/console.log" | tr -d '\r')"
fi
[[ -n "$status" ]] || die "the arm64 host never reported ionest's exit status (QEMU died or timed out?)"
if ((passthrough_disk)); then
  # ionest's start-up report (vmm/pci_functions.cc: "ionest: <Passthrough::Describe()>").
  report="$(grep -E "^(ionest: )?vfio@[0-9a-f]{2}\.[0-7]: host $pt_bdf, /dev/vfio/devices/vfio[0-9]+, iommufd device [0-9]+" \
            "$work/console.log" | head -1 | tr -d '\r')"
  iommufd="$(grep -m1 -o 'ionest: iommufd: IOAS .*' "$work/console.log" | tr -d '\r')"
  if [[ -z "$report" || -z "$iommufd" ]]; then
    echo "arm64-vmm: ERROR: ionest exited $status but never reported passing $pt_bdf through (no 'ionest: iommufd: IOAS' + 'vfio@DD.F: host $pt_bdf, ...' lines)" >&2
    exit 1
  fi
  echo "arm64-vmm: passthrough: ionest reported: $iommufd | $report" >&2
  if [[ " ${ionest_args[*]} " =~ \ --iommu(=|\ )virtio\  ]]; then
    # Behind ionest's virtio-iommu the function must be translated by forwarding the guest's
    # MAP/UNMAP to host IOASes (vmm/passthrough.cc prints the start-up line and the exit counts).
    fwd="$(grep -m1 -E "^(ionest: )?vfio@[0-9a-f]{2}\.[0-7]: translated via virtio-iommu forwarding" "$work/console.log" | tr -d '\r')"
    counts="$(grep -m1 -o 'ionest: virtio-iommu forwarding: [0-9]* IOMMU_IOAS_MAP.*' "$work/console.log" | tr -d '\r')"
    maps="$(sed -n 's/^ionest: virtio-iommu forwarding: \([0-9]*\) IOMMU_IOAS_MAP.*/\1/p' <<<"$counts")"
    if [[ -z "$fwd" || -z "$counts" || "${maps:-0}" -eq 0 ]]; then
      echo "arm64-vmm: ERROR: --iommu=virtio, but ionest did not report the passthrough function as translated via virtio-iommu forwarding with MAPs done ('$fwd' / '$counts')" >&2
      exit 1
    fi
    echo "arm64-vmm: passthrough: $fwd | $counts" >&2
  fi
fi
exit "$status"
