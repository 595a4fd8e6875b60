#!/usr/bin/env bash
# Builds every guest-tests/modules/<name>/ that has a Kbuild file as an out-of-tree module against
# the cached guest kernel (guest-tests/build-kernel.sh) into $IONEST_CACHE/guest-modules/<name>.ko.
# ARCH=arm64: against the arm64 kernel (guest-tests/arm64/build-kernel.sh, cross-compiled with
# aarch64-linux-gnu-) into $IONEST_CACHE/arm64/guest-modules/<name>.ko.
#
# Idempotent: a module is rebuilt only when a file in its directory, or the kernel tree it was
# built against, changed. The build happens in $IONEST_CACHE/guest-modules/.build/<name> (the
# repo stays clean). Env: IONEST_CACHE, JOBS, ARCH (x86_64, the default, or arm64).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cache="${IONEST_CACHE:-$HOME/.cache/ionest}"
arch="${ARCH:-x86_64}"
case "$arch" in
  x86_64 | x86) arch=x86_64 kernel_script=guest-tests/build-kernel.sh kmake_args=(ARCH=x86_64) ;;
  arm64 | aarch64)
    arch=arm64 kernel_script="guest-tests/arm64/build-kernel.sh (make arm64-kernel)"
    kmake_args=(ARCH=arm64 CROSS_COMPILE=aarch64-linux-gnu-)
    cache="$cache/arm64" ;;
  *) printf '[build-modules] ERROR: ARCH=%s: x86_64 or arm64\n' "$arch"; exit 1 ;;
esac
out="$cache/guest-modules"
tree_env="$cache/kernel/current/tree.env"
log() { printf '[build-modules] %s\n' "$*"; }
die() { log "ERROR: $*"; exit 1; }

[[ -r "$tree_env" ]] || die "$tree_env missing: run $kernel_script (it publishes the module tree)"
KSRC="" KOBJ="" KEY=""
# shellcheck disable=SC1090
source "$tree_env"
[[ -d "$KSRC" && -f "$KOBJ/Module.symvers" && -x "$KOBJ/scripts/mod/modpost" ]] ||
  die "kernel tree in $tree_env is not prepared (KOBJ=$KOBJ): rerun $kernel_script"
# The object dir is shared by all fragments of one source: it must hold the published kernel's config.
cmp -s "$KOBJ/.config" "$cache/kernel/current/.config" ||
  die "$KOBJ/.config differs from kernel/current/.config (another fragment was built in that object tree since): rm $cache/kernel/current/.complete and rerun $kernel_script (incremental rebuild)"

mkdir -p "$out/.build"
shopt -s nullglob
built=0 fresh=0
for kbuild in "$here"/*/Kbuild; do
  dir="$(dirname "$kbuild")"
  name="$(basename "$dir")"
  stamp="$( { echo "$KEY"; sha256sum "$KOBJ/Module.symvers" | cut -c1-16;
              for f in "$dir"/*; do [[ -f "$f" ]] && { echo "$(basename "$f")"; cat "$f"; }; done; } |
            sha256sum | cut -c1-16)"
  if [[ -f "$out/$name.ko" && "$(cat "$out/.build/$name.stamp" 2>/dev/null)" == "$stamp" ]]; then
    fresh=$((fresh + 1))
    continue
  fi
  work="$out/.build/$name"
  rm -rf "$work"
  mkdir -p "$work"
  cp -p "$dir"/* "$work"/
  log "building $name ($arch) against $KOBJ"
  # The object tree's lock (build-kernel.sh) keeps a kernel rebuild from changing it under us.
  if ! ( exec 9>"$cache/src/$(basename "$KOBJ").lock"; flock 9
         make -C "$KOBJ" "${kmake_args[@]}" M="$work" -j"${JOBS:-2}" modules ) > "$work/build.log" 2>&1; then
    grep -E 'error|Error|ERROR|undefined' "$work/build.log" | head -n 30 || tail -n 30 "$work/build.log"
    die "module $name failed to build (full log: $work/build.log)"
  fi
  [[ -f "$work/$name.ko" ]] || die "$name: Kbuild must produce $name.ko (log: $work/build.log)"
  cp "$work/$name.ko" "$out/$name.ko.tmp" && mv "$out/$name.ko.tmp" "$out/$name.ko"
  echo "$stamp" > "$out/.build/$name.stamp"
  built=$((built + 1))
done
log "$built built, $fresh up to date -> $out/"
