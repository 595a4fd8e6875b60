#!/usr/bin/env bash
# Fetches Debian's prebuilt generic 6.12 kernel (newest
# linux-image-6.12.*-amd64-unsigned known to apt) WITHOUT installing it:
# `apt-get download` + `dpkg-deb -x` into the cache, then
#   <cache>/debian/current/vmlinuz   (a bzImage; -> <package>_<version>/)
# The unit test that validates it reads IONEST_DEBIAN_BZIMAGE (CMake cache
# variable of the same name; the Makefile passes this path). It is loaded and
# validated only: booting it needed >35 min under the software KVM here.
# A second run with the same package version is a no-op.
set -euo pipefail
cache="${IONEST_CACHE:-$HOME/.cache/ionest}"
dir="$cache/debian"
log() { printf '[fetch-debian-kernel] %s\n' "$*"; }

pkg="$(apt-cache pkgnames linux-image-6.12 | grep -E '^linux-image-6\.12\.[0-9]+\+deb[0-9]+-amd64-unsigned$' |
  sort -V | tail -n1 || true)"
[[ -n "$pkg" ]] || { log "ERROR: no linux-image-6.12.*-amd64-unsigned known to apt (apt-get update?)"; exit 1; }
version="$(apt-cache policy "$pkg" | awk '/Candidate:/ {print $2}')"
[[ -n "$version" && "$version" != "(none)" ]] || { log "ERROR: $pkg has no candidate version"; exit 1; }
out="$dir/${pkg}_${version}"

if [[ ! -f "$out/.complete" ]]; then
  log "downloading $pkg $version"
  rm -rf "$out" "$out.tmp"
  mkdir -p "$out.tmp/deb"
  (cd "$out.tmp/deb" && apt-get download "$pkg=$version" 2>&1 >/dev/null | grep -v "unsandboxed" >&2 || true)
  deb="$(ls "$out.tmp"/deb/*.deb)"
  dpkg-deb -x "$deb" "$out.tmp/root"
  vmlinuz="$(ls "$out.tmp"/root/boot/vmlinuz-* | head -n1)"
  [[ -f "$vmlinuz" ]] || { log "ERROR: no /boot/vmlinuz-* in $deb"; exit 1; }
  cp "$vmlinuz" "$out.tmp/vmlinuz"
  cp "$out.tmp"/root/boot/config-* "$out.tmp/config" 2>/dev/null || true
  echo "$pkg $version" > "$out.tmp/package.txt"
  rm -rf "$out.tmp/root" "$out.tmp/deb"
  touch "$out.tmp/.complete"
  mv -T "$out.tmp" "$out"
else
  log "$pkg $version already extracted (no-op)"
fi
ln -sfn "$(basename "$out")" "$dir/.current.tmp" && mv -T "$dir/.current.tmp" "$dir/current"
log "IONEST_DEBIAN_BZIMAGE=$dir/current/vmlinuz ($(stat -c %s "$dir/current/vmlinuz") bytes)"
