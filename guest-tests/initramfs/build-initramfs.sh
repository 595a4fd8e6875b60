#!/usr/bin/env bash
# Builds an uncompressed newc initramfs: static busybox + applet symlinks,
# /init (guest-tests/initramfs/init), /etc/fstab and the test scripts.
#   build-initramfs.sh -o OUT.cpio [-t TEST_DIR]...
# Without -t the guest starts an interactive shell on the console.
# Env: BUSYBOX (default /bin/busybox, Debian package busybox-static).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
busybox="${BUSYBOX:-/bin/busybox}"
out=""
test_dirs=()
while getopts "o:t:" opt; do
  case "$opt" in
    o) out="$OPTARG" ;;
    t) test_dirs+=("$OPTARG") ;;
    *) echo "usage: $0 -o OUT.cpio [-t TEST_DIR]..." >&2; exit 2 ;;
  esac
done
[[ -n "$out" ]] || { echo "usage: $0 -o OUT.cpio [-t TEST_DIR]..." >&2; exit 2; }
[[ -x "$busybox" ]] || { echo "build-initramfs: $busybox missing (apt-get install busybox-static)" >&2; exit 1; }
if ! file -L "$busybox" 2>/dev/null | grep -q 'statically linked'; then
  ldd "$busybox" >/dev/null 2>&1 && { echo "build-initramfs: $busybox is not static" >&2; exit 1; }
fi

applets="sh ash cat cp mv rm ln ls mkdir rmdir chmod stat touch dd sync blockdev dmesg grep sed awk
  cut tr sort uniq head tail wc find xargs od hexdump xxd printf echo test [ [[ true false env sleep date
  uname free ps kill top mount umount poweroff reboot halt setsid cttyhack lspci devmem vi less which
  basename dirname seq readlink realpath md5sum sha256sum cmp diff time timeout"
list="$(mktemp)"
trap 'rm -f "$list"' EXIT
{
  for d in /bin /sbin /usr /usr/bin /usr/sbin /dev /etc /proc /sys /tmp /root /tests; do
    echo "dir $d 0755"
  done
  echo "nod /dev/console 0600 c 5 1"
  echo "nod /dev/null 0666 c 1 3"
  echo "file /bin/busybox $busybox 0755"
  echo "file /init $here/init 0755"
  echo "file /etc/fstab $here/fstab 0644"
  # Symlinks only for common applets: busybox's shell runs any applet without
  # one (standalone shell), and every cpio entry costs unpack time in the
  # emulated guest kernel.
  "$busybox" --list-full | while read -r applet; do
    case " $applets " in *" ${applet##*/} "*) echo "slink /$applet /bin/busybox 0777" ;; esac
  done
  for d in "${test_dirs[@]+"${test_dirs[@]}"}"; do
    for t in "$d"/*.sh; do
      [[ -f "$t" ]] || continue
      echo "file /tests/$(basename "$t") $t 0755"
    done
  done
} > "$list"
python3 "$here/mkcpio.py" "$out.tmp" < "$list"
mv -f "$out.tmp" "$out"
echo "build-initramfs: $out ($(stat -c %s "$out") bytes, $(grep -c '^file /tests/' "$list") test scripts)"
