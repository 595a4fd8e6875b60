#!/usr/bin/env bash
# Builds an uncompressed newc initramfs: static busybox + applet symlinks,
# /init (guest-tests/initramfs/init), /etc/fstab and the test scripts.
#   build-initramfs.sh -o OUT.cpio [-t TEST_DIR]... [-d DEMO_DIR]
# Without -t the guest starts an interactive shell on the console; with -d it
# first runs DEMO_DIR/demo.sh (installed as /etc/ionest-demo.sh).
# TEST_DIR/payload.txt adds guest files, one `<guest-path> <host-path>` a line
# (# comments); the host path is relative to the repo root or starts with
# $IONEST_CACHE/; a host directory copies all its regular files (not
# recursively) into the guest directory. A missing host file is an error that
# names the script producing it.
# Env: BUSYBOX (default /bin/busybox, Debian package busybox-static; the arm64 suites pass the
#      busybox-static:arm64 that scripts/setup-arm64.sh unpacks), IONEST_CACHE.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
cache="${IONEST_CACHE:-$HOME/.cache/ionest}"
busybox="${BUSYBOX:-/bin/busybox}"
out=""
test_dirs=()
demo_dir=""
while getopts "o:t:d:" opt; do
  case "$opt" in
    o) out="$OPTARG" ;;
    t) test_dirs+=("$OPTARG") ;;
    d) demo_dir="$OPTARG" ;;
    *) echo "usage: $0 -o OUT.cpio [-t TEST_DIR]... [-d DEMO_DIR]" >&2; exit 2 ;;
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
# The script that makes a cache artifact (for the missing-file error).
producer() {
  case "$1" in
    guest-bin/pcitest* | guest-bin/dma_map_benchmark*) echo "guest-tests/pcitest/build-pcitest.sh" ;;
    guest-bin/*) echo "guest-tests/programs/build-programs.sh" ;;
    guest-modules/*) echo "guest-tests/modules/build-modules.sh" ;;
    guest-ksft/*) echo "guest-tests/kselftests/build-kselftests.sh" ;;
    arm64/guest-ksft/*) echo "ARCH=arm64 guest-tests/kselftests/build-kselftests.sh" ;;
    arm64/guest-bin/*) echo "ARCH=arm64 guest-tests/pcitest/build-pcitest.sh" ;;
    arm64/*) echo "make arm64-kernel" ;;
    guest-passthrough/*) echo "make build, then guest-tests/passthrough/bundle-testbed.sh build" ;;
    kernel/*) echo "guest-tests/build-kernel.sh" ;;
    *) echo "make guest-payload" ;;
  esac
}
# payload_entries PAYLOAD_TXT: cpio list lines (dirs first, once each).
declare -A made_dirs=([/bin]=1 [/sbin]=1 [/usr]=1 [/usr/bin]=1 [/usr/sbin]=1 [/dev]=1 [/etc]=1 [/proc]=1
  [/sys]=1 [/tmp]=1 [/root]=1 [/tests]=1 [/]=1)
guest_dir() { # guest_dir /a/b/c: emits missing dir entries for /a, /a/b, /a/b/c
  local d="" part
  local IFS=/
  for part in $1; do
    [[ -n "$part" ]] || continue
    d="$d/$part"
    [[ -n "${made_dirs[$d]:-}" ]] && continue
    made_dirs[$d]=1
    echo "dir $d 0755"
  done
}
payload_entries() {
  local txt="$1" guest host src rel lineno=0 f
  while read -r guest host rest || [[ -n "$guest" ]]; do
    lineno=$((lineno + 1))
    [[ -z "$guest" || "$guest" == \#* ]] && continue
    [[ -n "$host" && -z "${rest:-}" && "$guest" == /* ]] ||
      { echo "build-initramfs: $txt:$lineno: want '<guest-path> <host-path>'" >&2; return 1; }
    if [[ "$host" == '$IONEST_CACHE/'* ]]; then
      rel="${host#\$IONEST_CACHE/}"
      src="$cache/$rel"
    elif [[ "$host" == /* ]]; then
      echo "build-initramfs: $txt:$lineno: host path must be repo-relative or start with \$IONEST_CACHE/" >&2
      return 1
    else
      rel=""
      src="$repo/$host"
    fi
    if [[ -d "$src" ]]; then
      guest_dir "$guest"
      for f in "$src"/*; do
        [[ -f "$f" ]] || continue
        echo "file ${guest%/}/$(basename "$f") $f $( [[ -x "$f" ]] && echo 0755 || echo 0644)"
      done
    elif [[ -f "$src" ]]; then
      guest_dir "$(dirname "$guest")"
      echo "file $guest $src $( [[ -x "$src" ]] && echo 0755 || echo 0644)"
    else
      local fix="it should be in the repo"
      [[ -n "$rel" ]] && fix="run $(producer "$rel") (or 'make guest-payload')"
      echo "build-initramfs: $txt:$lineno: missing $src for guest $guest: $fix" >&2
      return 1
    fi
  done <"$txt"
}

# An arm64 busybox (BUSYBOX for the arm64 suites) is asked for its applets under qemu-user.
busybox_run=("$busybox")
if [[ "$(uname -m)" != aarch64 ]] && file -L "$busybox" | grep -q 'ARM aarch64'; then
  command -v qemu-aarch64 >/dev/null ||
    { echo "build-initramfs: $busybox is an arm64 binary: need qemu-aarch64 (scripts/setup-arm64.sh)" >&2; exit 1; }
  busybox_run=(qemu-aarch64 "$busybox")
fi
list="$(mktemp)"
payload="$(mktemp)"
trap 'rm -f "$list" "$payload"' EXIT
if [[ -n "$demo_dir" ]]; then
  [[ -f "$demo_dir/demo.sh" ]] || { echo "build-initramfs: $demo_dir/demo.sh missing" >&2; exit 1; }
fi
for d in "${test_dirs[@]+"${test_dirs[@]}"}" ${demo_dir:+"$demo_dir"}; do
  if [[ -f "$d/payload.txt" ]]; then
    payload_entries "$d/payload.txt" >>"$payload" || exit 1
  fi
done
{
  for d in /bin /sbin /usr /usr/bin /usr/sbin /dev /etc /proc /sys /tmp /root /tests; do
    echo "dir $d 0755"
  done
  echo "nod /dev/console 0600 c 5 1"
  echo "nod /dev/null 0666 c 1 3"
  echo "file /bin/busybox $busybox 0755"
  echo "file /init $here/init 0755"
  echo "file /etc/fstab $here/fstab 0644"
  [[ -z "$demo_dir" ]] || echo "file /etc/ionest-demo.sh $demo_dir/demo.sh 0755"
  # Symlinks only for common applets: busybox's shell runs any applet without
  # one (standalone shell), and every cpio entry costs unpack time in the
  # emulated guest kernel.
  "${busybox_run[@]}" --list-full | while read -r applet; do
    case " $applets " in *" ${applet##*/} "*) echo "slink /$applet /bin/busybox 0777" ;; esac
  done
  for d in "${test_dirs[@]+"${test_dirs[@]}"}"; do
    for t in "$d"/*.sh; do
      [[ -f "$t" ]] || continue
      echo "file /tests/$(basename "$t") $t 0755"
    done
  done
  cat "$payload"
} > "$list"
python3 "$here/mkcpio.py" "$out.tmp" < "$list"
mv -f "$out.tmp" "$out"
echo "build-initramfs: $out ($(stat -c %s "$out") bytes, $(grep -c '^file /tests/' "$list") test scripts, $(grep -c '^file' "$payload") payload files)"
