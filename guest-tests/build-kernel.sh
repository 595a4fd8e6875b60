#!/usr/bin/env bash
# Builds the ionest test-guest kernel (Linux 6.12 from Debian's linux-source-6.12).
#
#   tinyconfig + guest-tests/kernel/ionest-guest.config + olddefconfig,
#   patches from guest-tests/kernel/patches/*.patch, vmlinux + bzImage,
#   uAPI headers (headers_install).
#
# Everything lives in a cache OUTSIDE the repo: ${IONEST_CACHE:-~/.cache/ionest}
#   kernel/<key>/{vmlinux,bzImage,.config,System.map}  one finished build
#   kernel/current -> <key>                             last successful build
#   headers -> kernel/<key>/headers                     uAPI headers of it
#   src/<srckey>/ and obj/<srckey>/                     patched tree + objects
# <key> = sha256(fragment, patches, source version); a second run with the
# same inputs is a no-op. The object dir is keyed by source+patches only, so
# changing just the fragment rebuilds incrementally.
#
# Env: IONEST_CACHE, IONEST_KERNEL_TARBALL (default
# /usr/src/linux-source-6.12.tar.xz), IONEST_KCONFIG_STRICT=0 to only warn
# about fragment options that olddefconfig dropped, JOBS (default nproc).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cache="${IONEST_CACHE:-$HOME/.cache/ionest}"
tarball="${IONEST_KERNEL_TARBALL:-/usr/src/linux-source-6.12.tar.xz}"
fragment="$here/kernel/ionest-guest.config"
strict="${IONEST_KCONFIG_STRICT:-1}"
jobs="${JOBS:-$(nproc)}"
start=$SECONDS

log() { printf '[build-kernel %4ds] %s\n' "$((SECONDS - start))" "$*"; }
die() { log "ERROR: $*"; exit 1; }

[[ -r "$tarball" ]] || die "$tarball missing (apt-get install linux-source-6.12, or run scripts/setup.sh)"
[[ -r "$fragment" ]] || die "$fragment missing"
shopt -s nullglob
patches=("$here"/kernel/patches/*.patch)
shopt -u nullglob

# Source version: Debian package version when the tarball is the packaged one,
# else the tarball's size+mtime (cheap; hashing 140 MB of xz costs seconds).
src_version=""
if pkg="$(dpkg -S "$tarball" 2>/dev/null | cut -d: -f1)" && [[ -n "$pkg" ]]; then
  src_version="$pkg $(dpkg-query -W -f='${Version}' "$pkg")"
else
  src_version="$(stat -c '%s %Y' "$tarball") $(basename "$tarball")"
fi

hash_inputs() {  # $1 = include fragment (1/0)
  {
    echo "ionest-kernel-cache-v1"
    echo "source: $src_version"
    for p in "${patches[@]}"; do echo "patch: $(basename "$p")"; cat "$p"; done
    if [[ "$1" == 1 ]]; then echo "fragment:"; cat "$fragment"; fi
  } | sha256sum | cut -c1-16
}
key="$(hash_inputs 1)"
srckey="$(hash_inputs 0)"
out="$cache/kernel/$key"
mkdir -p "$cache/kernel" "$cache/src" "$cache/obj"

src="$cache/src/$srckey"
obj="$cache/obj/$srckey"

# Out-of-tree modules (guest-tests/modules/build-modules.sh) build against $obj:
# it needs modules_prepare's outputs and a Module.symvers (no in-tree modules,
# so it is vmlinux.symvers). Only valid while $obj holds this key's .config.
prepare_module_tree() {
  if [[ ! -f "$src/.ionest-ready" || ! -f "$obj/vmlinux.symvers" ]]; then
    log "module tree: $obj has no built kernel; external modules cannot be built"
    return 0
  fi
  if ! cmp -s "$obj/.config" "$out/.config"; then
    log "module tree: $obj is configured for another fragment; to build modules: rm $out/.complete and rerun"
    return 0
  fi
  if [[ ! -x "$obj/scripts/mod/modpost" || ! -f "$obj/Module.symvers" ||
        "$obj/vmlinux.symvers" -nt "$obj/Module.symvers" ]]; then
    log "module tree: modules_prepare + Module.symvers in $obj"
    make -C "$src" O="$obj" ARCH=x86_64 -s modules_prepare > "$obj/modules_prepare.log" 2>&1 ||
      { tail -n 20 "$obj/modules_prepare.log"; die "modules_prepare failed (log: $obj/modules_prepare.log)"; }
    cp "$obj/vmlinux.symvers" "$obj/Module.symvers.tmp" && mv "$obj/Module.symvers.tmp" "$obj/Module.symvers"
  fi
  printf 'KSRC=%s\nKOBJ=%s\nKEY=%s\n' "$src" "$obj" "$key" > "$out/tree.env.tmp"
  mv "$out/tree.env.tmp" "$out/tree.env"
  log "module tree: $out/tree.env (KSRC=$src KOBJ=$obj)"
}

publish() {
  ln -sfn "$key" "$cache/kernel/.current.tmp" && mv -T "$cache/kernel/.current.tmp" "$cache/kernel/current"
  ln -sfn "kernel/$key/headers" "$cache/.headers.tmp" && mv -T "$cache/.headers.tmp" "$cache/headers"
  log "kernel:  $cache/kernel/current/vmlinux ($cache/kernel/current/bzImage)"
  log "headers: $cache/headers/include"
  prepare_module_tree
}

if [[ -f "$out/.complete" ]]; then
  log "cached build $key is up to date (no-op)"
  exec 9>"$cache/src/$srckey.lock"
  flock 9
  publish
  exit 0
fi

# One builder per source tree at a time.
exec 9>"$cache/src/$srckey.lock"
flock 9

if [[ ! -f "$src/.ionest-ready" ]]; then
  log "extracting $tarball ($src_version) -> $src"
  rm -rf "$src" "$obj"
  mkdir -p "$src"
  tar -xJf "$tarball" -C "$src" --strip-components=1
  for p in "${patches[@]}"; do
    log "applying $(basename "$p")"
    patch -d "$src" -p1 --forward --quiet < "$p" || die "patch $(basename "$p") does not apply"
  done
  touch "$src/.ionest-ready"
else
  log "reusing patched tree $src"
fi
mkdir -p "$obj"

kmake() { make -C "$src" O="$obj" ARCH=x86_64 "$@"; }

log "configuring: tinyconfig + $(basename "$fragment") + olddefconfig"
kmake -s tinyconfig >/dev/null
"$src/scripts/kconfig/merge_config.sh" -m -O "$obj" "$obj/.config" "$fragment" >/dev/null
kmake -s olddefconfig >/dev/null

# Every fragment line must have survived olddefconfig (unmet dependencies
# make Kconfig silently drop options).
dropped=0
while IFS= read -r line; do
  if [[ "$line" =~ ^(CONFIG_[A-Za-z0-9_]+)=(.*)$ ]]; then
    if ! grep -qxF "$line" "$obj/.config"; then
      got="$(grep -E "^(# )?${BASH_REMATCH[1]}[= ]" "$obj/.config" || echo "absent")"
      log "DROPPED: wanted '$line', got '$got'"; dropped=$((dropped + 1))
    fi
  elif [[ "$line" =~ ^#\ (CONFIG_[A-Za-z0-9_]+)\ is\ not\ set$ ]]; then
    if grep -qE "^${BASH_REMATCH[1]}=" "$obj/.config"; then
      log "DROPPED: wanted '$line', got '$(grep -E "^${BASH_REMATCH[1]}=" "$obj/.config")'"
      dropped=$((dropped + 1))
    fi
  fi
done < "$fragment"
if ((dropped > 0)); then
  [[ "$strict" == 1 ]] && die "$dropped fragment option(s) did not stick (IONEST_KCONFIG_STRICT=0 to only warn)"
  log "WARNING: $dropped fragment option(s) did not stick"
else
  log "all fragment options present in .config"
fi

log "building vmlinux + bzImage with -j$jobs (log: $obj/build.log)"
kmake -j"$jobs" vmlinux bzImage > "$obj/build.log" 2>&1 &
make_pid=$!
while kill -0 "$make_pid" 2>/dev/null; do
  sleep 20
  kill -0 "$make_pid" 2>/dev/null || break
  log "  ... $(grep -c '^  CC' "$obj/build.log" || true) objects compiled; last: $(tail -n1 "$obj/build.log" | cut -c1-70)"
done
if ! wait "$make_pid"; then
  tail -n 40 "$obj/build.log"
  die "kernel build failed (full log: $obj/build.log)"
fi

log "installing uAPI headers"
rm -rf "$out.tmp"
mkdir -p "$out.tmp"
kmake -s headers_install INSTALL_HDR_PATH="$out.tmp/headers" >/dev/null

cp "$obj/vmlinux" "$obj/System.map" "$obj/.config" "$out.tmp/"
cp "$obj/arch/x86/boot/bzImage" "$out.tmp/bzImage"
cp "$fragment" "$out.tmp/ionest-guest.config"
{ echo "source: $src_version"; for p in "${patches[@]}"; do echo "patch: $(basename "$p")"; done; } > "$out.tmp/inputs.txt"
touch "$out.tmp/.complete"
rm -rf "$out"
mv -T "$out.tmp" "$out"
log "built $key: vmlinux $(stat -c %s "$out/vmlinux") bytes, bzImage $(stat -c %s "$out/bzImage") bytes"
publish
