#!/usr/bin/env bash
# Builds the arm64 kernel of docs/arm64.md (outer host under QEMU and nested ionest guest in one):
# Debian's linux-source-6.12, ARCH=arm64 tinyconfig + guest-tests/arm64/kernel.config + olddefconfig,
# cross-compiled with gcc-aarch64-linux-gnu (scripts/setup-arm64.sh), target Image
# (Documentation/arch/arm64/booting.rst).
#
# Cache OUTSIDE the repo, separate from the x86 kernel's: ${IONEST_CACHE:-~/.cache/ionest}/arm64/
#   kernel/<key>/{Image,.config,System.map,headers/,tree.env}   one finished build; kernel/current -> <key>
#     tree.env: KSRC/KOBJ/KEY of the object tree that out-of-tree modules build against
#     (ARCH=arm64 guest-tests/modules/build-modules.sh); valid while $obj holds this key's .config
#   headers -> kernel/<key>/headers            its uAPI headers (guest-tests/kselftests, ARCH=arm64)
#   src/<srckey>/, obj/<srckey>/              unpacked tree + objects
# <key> = sha256(fragment, source version): a second run with the same inputs is a no-op.
# Env: IONEST_CACHE, IONEST_KERNEL_TARBALL, JOBS (default 2), NICE (default 10).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cache="${IONEST_CACHE:-$HOME/.cache/ionest}/arm64"
tarball="${IONEST_KERNEL_TARBALL:-/usr/src/linux-source-6.12.tar.xz}"
fragment="$here/kernel.config"
jobs="${JOBS:-2}"
nice_level="${NICE:-10}"
start=$SECONDS
log() { printf '[build-kernel-arm64 %4ds] %s\n' "$((SECONDS - start))" "$*"; }
die() { log "ERROR: $*"; exit 1; }

[[ -r "$tarball" ]] || die "$tarball missing (scripts/setup-arm64.sh installs linux-source-6.12)"
command -v aarch64-linux-gnu-gcc >/dev/null || die "aarch64-linux-gnu-gcc missing (scripts/setup-arm64.sh)"
if pkg="$(dpkg -S "$tarball" 2>/dev/null | cut -d: -f1)" && [[ -n "$pkg" ]]; then
  src_version="$pkg $(dpkg-query -W -f='${Version}' "$pkg")"
else
  src_version="$(stat -c '%s %Y' "$tarball") $(basename "$tarball")"
fi
srckey="$({ echo "ionest-arm64-src-v1"; echo "$src_version"; } | sha256sum | cut -c1-16)"
key="$({ echo "ionest-arm64-kernel-v1"; echo "$src_version"; cat "$fragment"; } | sha256sum | cut -c1-16)"
out="$cache/kernel/$key"
src="$cache/src/$srckey"
obj="$cache/obj/$srckey"
mkdir -p "$cache/kernel" "$cache/src" "$cache/obj"

kmake() { nice -n "$nice_level" make -C "$src" O="$obj" ARCH=arm64 CROSS_COMPILE=aarch64-linux-gnu- "$@"; }

# Out-of-tree modules build against $obj: modules_prepare's outputs and a Module.symvers (no in-tree
# modules, so it is vmlinux.symvers). Called with the tree's lock held.
prepare_module_tree() {
  if [[ ! -f "$obj/vmlinux.symvers" ]] || ! cmp -s "$obj/.config" "$out/.config"; then
    log "module tree: $obj does not hold this build ($key); to build modules: rm $out/.complete and rerun"
    return 0
  fi
  if [[ ! -x "$obj/scripts/mod/modpost" || ! -f "$obj/Module.symvers" ||
        "$obj/vmlinux.symvers" -nt "$obj/Module.symvers" ]]; then
    log "module tree: modules_prepare + Module.symvers in $obj"
    kmake -s modules_prepare > "$obj/modules_prepare.log" 2>&1 ||
      { tail -n 20 "$obj/modules_prepare.log"; die "modules_prepare failed (log: $obj/modules_prepare.log)"; }
    cp "$obj/vmlinux.symvers" "$obj/Module.symvers.tmp" && mv "$obj/Module.symvers.tmp" "$obj/Module.symvers"
  fi
  printf 'KSRC=%s\nKOBJ=%s\nKEY=%s\n' "$src" "$obj" "$key" > "$out/tree.env.tmp"
  mv "$out/tree.env.tmp" "$out/tree.env"
}

publish() {
  ln -sfn "$key" "$cache/kernel/.current.tmp" && mv -T "$cache/kernel/.current.tmp" "$cache/kernel/current"
  ln -sfn "kernel/$key/headers" "$cache/.headers.tmp" && mv -T "$cache/.headers.tmp" "$cache/headers"
  log "kernel: $cache/kernel/current/Image"
  prepare_module_tree
}

exec 9>"$cache/src/$srckey.lock"
flock 9
if [[ -f "$out/.complete" && -f "$out/headers/include/linux/iommufd.h" ]]; then
  log "cached build $key is up to date (no-op)"
  publish
  exit 0
fi

if [[ ! -f "$src/.ionest-ready" ]]; then
  log "extracting $tarball ($src_version) -> $src"
  rm -rf "$src" "$obj"
  mkdir -p "$src"
  tar -xJf "$tarball" -C "$src" --strip-components=1
  touch "$src/.ionest-ready"
fi
mkdir -p "$obj"

if [[ -f "$out/.complete" ]]; then
  log "cached build $key has no uAPI headers: installing them"
  kmake -s headers_install INSTALL_HDR_PATH="$out/headers" >/dev/null
  publish
  exit 0
fi

log "configuring: tinyconfig + $(basename "$fragment") + olddefconfig"
kmake -s tinyconfig >/dev/null
"$src/scripts/kconfig/merge_config.sh" -m -O "$obj" "$obj/.config" "$fragment" >/dev/null
kmake -s olddefconfig >/dev/null
dropped=0
while IFS= read -r line; do
  if [[ "$line" =~ ^(CONFIG_[A-Za-z0-9_]+)=(.*)$ ]]; then
    grep -qxF "$line" "$obj/.config" ||
      { log "DROPPED: wanted '$line', got '$(grep -E "^(# )?${BASH_REMATCH[1]}[= ]" "$obj/.config" || echo absent)'"; dropped=$((dropped + 1)); }
  elif [[ "$line" =~ ^#\ (CONFIG_[A-Za-z0-9_]+)\ is\ not\ set$ ]]; then
    ! grep -qE "^${BASH_REMATCH[1]}=" "$obj/.config" ||
      { log "DROPPED: wanted '$line'"; dropped=$((dropped + 1)); }
  fi
done < "$fragment"
((dropped == 0)) || die "$dropped fragment option(s) did not survive olddefconfig"

log "building Image with -j$jobs under nice -n $nice_level (log: $obj/build.log)"
build_start=$SECONDS
kmake -j"$jobs" Image > "$obj/build.log" 2>&1 &
make_pid=$!
while kill -0 "$make_pid" 2>/dev/null; do
  sleep 30
  kill -0 "$make_pid" 2>/dev/null || break
  log "  ... $(grep -c '^  CC' "$obj/build.log" || true) objects compiled"
done
wait "$make_pid" || { tail -n 40 "$obj/build.log"; die "kernel build failed (log: $obj/build.log)"; }
log "Image built in $((SECONDS - build_start)) s"

rm -rf "$out.tmp"
mkdir -p "$out.tmp"
cp "$obj/arch/arm64/boot/Image" "$obj/System.map" "$obj/.config" "$out.tmp/"
cp "$fragment" "$out.tmp/kernel.config"
log "installing uAPI headers (for the arm64 kselftests)"
kmake -s headers_install INSTALL_HDR_PATH="$out.tmp/headers" >/dev/null
echo "source: $src_version; Image build $((SECONDS - build_start)) s with -j$jobs" > "$out.tmp/inputs.txt"
touch "$out.tmp/.complete"
rm -rf "$out"
mv -T "$out.tmp" "$out"
log "built $key: Image $(stat -c %s "$out/Image") bytes"
publish
