#!/usr/bin/env bash
# Builds Linux's tools/testing/selftests/iommu (iommufd, iommufd_fail_nth) from the
# guest kernel's own source tree, static (gcc -static), with the selftests Makefile
# and KHDR_INCLUDES = the cached uAPI headers of that kernel. Output (outside the repo):
#   $IONEST_CACHE/guest-ksft/{iommufd,iommufd_fail_nth}
# The sources are copied to $IONEST_CACHE/guest-ksft-build/ and patches/*.patch are
# applied there (see each patch's header); the kernel source tree is never modified.
# Idempotent: a no-op when sources, patches, headers, compiler and this script are unchanged.
# Env: IONEST_CACHE (default ~/.cache/ionest), KSRC (kernel source; default from
#      $IONEST_CACHE/kernel/current/tree.env, else the only tree in $IONEST_CACHE/src/),
#      ARCH=arm64: cross-built with aarch64-linux-gnu-gcc for the arm64 guests, against the arm64
#      kernel's tree and headers (guest-tests/arm64/build-kernel.sh), into $IONEST_CACHE/arm64/guest-ksft/.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cache="${IONEST_CACHE:-$HOME/.cache/ionest}"
arch="${ARCH:-x86}"
case "$arch" in
  x86 | x86_64) kcache="$cache" cc=gcc strip=strip libc_a=/usr/lib/x86_64-linux-gnu/libc.a ;;
  arm64) kcache="$cache/arm64" cc=aarch64-linux-gnu-gcc strip=aarch64-linux-gnu-strip
    libc_a=/usr/aarch64-linux-gnu/lib/libc.a ;;
  *) echo "build-kselftests: ARCH must be x86 or arm64, not '$arch'" >&2; exit 2 ;;
esac
out="$kcache/guest-ksft"
work="$kcache/guest-ksft-build"
hdr="$kcache/headers/include"
progs=(iommufd iommufd_fail_nth)
die() { echo "build-kselftests: $*" >&2; exit 1; }
kernel_script=guest-tests/build-kernel.sh
[[ "$arch" == arm64 ]] && kernel_script=guest-tests/arm64/build-kernel.sh

ksrc="${KSRC:-}"
if [[ -z "$ksrc" && -f "$kcache/kernel/current/tree.env" ]]; then
  ksrc="$(sed -n 's/^KSRC=//p' "$kcache/kernel/current/tree.env" | tr -d '"')"
fi
if [[ -z "$ksrc" ]]; then
  trees=()
  for d in "$kcache"/src/*/; do [[ -f "$d/Makefile" ]] && trees+=("${d%/}"); done
  ((${#trees[@]} == 1)) ||
    die "expected one kernel source tree in $kcache/src/, found ${#trees[@]}: run $kernel_script (or set KSRC=)"
  ksrc="${trees[0]}"
fi
sel="$ksrc/tools/testing/selftests"
[[ -f "$sel/iommu/iommufd.c" && -f "$ksrc/drivers/iommu/iommufd/iommufd_test.h" ]] ||
  die "no iommu selftests in $ksrc: run $kernel_script (or set KSRC= to a Linux source tree)"
[[ -f "$hdr/linux/iommufd.h" ]] || die "no uAPI headers in $hdr: run $kernel_script"
command -v "$cc" >/dev/null && command -v make >/dev/null && command -v patch >/dev/null ||
  die "need $cc, make, patch (scripts/setup.sh; arm64: scripts/setup-arm64.sh)"
[[ -f "$libc_a" ]] || die "need glibc's static $libc_a (apt-get install libc6-dev, arm64: libc6-dev-arm64-cross)"

# Everything the result depends on.
inputs=("$sel/lib.mk" "$sel/kselftest.h" "$sel/kselftest_harness.h" "$sel/iommu/Makefile" "$sel/iommu/"*.[ch]
  "$ksrc/drivers/iommu/iommufd/iommufd_test.h" "$hdr/linux/iommufd.h" "$hdr/linux/vfio.h"
  "$here/build-kselftests.sh" "$here/patches/"*.patch)
stamp="$( { sha256sum "${inputs[@]}" | sed "s#  $ksrc/#  KSRC/#"; "$cc" --version | head -1; } | sha256sum | cut -c1-16)"
uptodate=1
for p in "${progs[@]}"; do [[ -x "$out/$p" ]] || uptodate=0; done
if ((uptodate)) && [[ "$(cat "$out/.stamp" 2>/dev/null)" == "$stamp" ]]; then
  echo "build-kselftests: up to date ($out)"
  exit 0
fi

echo "build-kselftests: building ${progs[*]} from $sel"
rm -rf "$work"
mkdir -p "$work/src/tools/testing/selftests/iommu" "$work/src/drivers/iommu/iommufd" "$work/out" "$out"
cp "$sel/lib.mk" "$sel/kselftest.h" "$sel/kselftest_harness.h" "$work/src/tools/testing/selftests/"
cp "$sel/iommu/"* "$work/src/tools/testing/selftests/iommu/"
cp "$ksrc/drivers/iommu/iommufd/iommufd_test.h" "$work/src/drivers/iommu/iommufd/"
for p in "$here/patches/"*.patch; do
  [[ -f "$p" ]] || continue
  patch -d "$work/src" -p1 --quiet --forward <"$p" ||
    die "patch $p does not apply to $sel (kernel source changed?): refresh the patch"
done
log="$work/build.log"
if ! nice -n 5 make -C "$work/src/tools/testing/selftests/iommu" OUTPUT="$work/out" CC="$cc" \
  KHDR_INCLUDES="-isystem $hdr" LDFLAGS=-static -j2 >"$log" 2>&1; then
  grep -E 'error|Error' "$log" | head -20 >&2
  die "build failed (full log: $log). Headers must match the source: re-run $kernel_script"
fi
for p in "${progs[@]}"; do
  file -L "$work/out/$p" | grep -q 'statically linked' || die "$work/out/$p is not static"
  # Stripped: every initramfs byte costs unpack time in the emulated guest kernel.
  "$strip" -o "$out/$p.tmp" "$work/out/$p"
  mv -f "$out/$p.tmp" "$out/$p"
done
echo "$stamp" >"$out/.stamp"
echo "build-kselftests: $(cd "$out" && ls -l "${progs[@]}" | awk '{printf "%s (%s bytes) ", $9, $5}')in $out"
