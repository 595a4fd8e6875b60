#!/usr/bin/env bash
# Fetches Debian's prebuilt generic arm64 6.12 kernel (newest linux-image-6.12.*-arm64-unsigned known to
# apt) WITHOUT installing it: `apt-get download` + `dpkg-deb -x` into the cache:
#   ${IONEST_CACHE:-~/.cache/ionest}/arm64/debian/current/{Image,config}   (Image: gunzipped vmlinuz)
# The alternative to guest-tests/arm64/build-kernel.sh when there is no time to build one
# (docs/arm64.md: `make arm64-run ARM64_KERNEL=debian`). A second run with the same version is a no-op.
set -euo pipefail
dir="${IONEST_CACHE:-$HOME/.cache/ionest}/arm64/debian"
log() { printf '[fetch-debian-kernel-arm64] %s\n' "$*"; }

pkg="$(apt-cache pkgnames linux-image-6.12 | grep -E '^linux-image-6\.12\.[0-9]+\+deb[0-9]+-arm64-unsigned$' |
  sort -V | tail -n1 || true)"
[[ -n "$pkg" ]] || { log "ERROR: no linux-image-6.12.*-arm64-unsigned known to apt (scripts/setup-arm64.sh adds arm64)"; exit 1; }
version="$(apt-cache policy "$pkg:arm64" | awk '/Candidate:/ {print $2}')"
[[ -n "$version" && "$version" != "(none)" ]] || { log "ERROR: $pkg has no candidate version"; exit 1; }
out="$dir/${pkg}_${version}"
if [[ ! -f "$out/.complete" ]]; then
  log "downloading $pkg:arm64 $version"
  rm -rf "$out" "$out.tmp"
  mkdir -p "$out.tmp/deb"
  (cd "$out.tmp/deb" && apt-get download "$pkg:arm64=$version" 2>&1 >/dev/null | grep -v "unsandboxed" >&2 || true)
  dpkg-deb -x "$(ls "$out.tmp"/deb/*.deb)" "$out.tmp/root"
  vmlinuz="$(ls "$out.tmp"/root/boot/vmlinuz-* | head -n1)"
  [[ -f "$vmlinuz" ]] || { log "ERROR: no /boot/vmlinuz-* in the package"; exit 1; }
  # Debian 12's arm64 vmlinuz is the raw Image (older ones were gzip-compressed): keep it raw.
  if gzip -t "$vmlinuz" 2>/dev/null; then gzip -dc < "$vmlinuz" > "$out.tmp/Image"; else cp "$vmlinuz" "$out.tmp/Image"; fi
  cp "$out.tmp"/root/boot/config-* "$out.tmp/config" 2>/dev/null || true
  echo "$pkg $version" > "$out.tmp/package.txt"
  rm -rf "$out.tmp/root" "$out.tmp/deb"
  touch "$out.tmp/.complete"
  mv -T "$out.tmp" "$out"
else
  log "$pkg $version already extracted (no-op)"
fi
ln -sfn "$(basename "$out")" "$dir/.current.tmp" && mv -T "$dir/.current.tmp" "$dir/current"
log "kernel: $dir/current/Image"
