#!/usr/bin/env bash
# Copies the passthrough test bed (built by CMake in BUILD_DIR) and the shared libraries it needs
# into $IONEST_CACHE/guest-passthrough/, where guest-tests/suites/passthrough/payload.txt picks
# them up: bin/ionest_passthrough_testbed, lib/*.so*, ld-linux-x86-64.so.2.
# Idempotent. Usage: bundle-testbed.sh BUILD_DIR
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
build="${1:?usage: bundle-testbed.sh BUILD_DIR}"
cache="${IONEST_CACHE:-$HOME/.cache/ionest}"
"$here/../initramfs/bundle-dynamic.sh" "$build/guest-tests/ionest_passthrough_testbed" "$cache/guest-passthrough" \
  ionest_passthrough_testbed
