#!/usr/bin/env bash
# Guest benchmark: boots the default guest (default.cpio) to /init with --iommu=vtd and with
# --iommu=none, N times each, alternating (same kernel, same initramfs, same command line), then
# adds the `# bench: key=value unit` lines the guest suites printed into BUILD/guest-results/*.log
# (vtd: dma_map_benchmark; vtd-sva: sva_fault_roundtrip_us; ...). Prints one table.
#   scripts/bench-guest.sh [-n N] [-b BUILD] [-c CPUS] [-t TIMEOUT_S]
# Env: IONEST_CACHE. Boots one guest at a time (each eats a host core for minutes).
set -euo pipefail
n=2 build=build cpus=1 timeout=900
while getopts "n:b:c:t:" opt; do
  case "$opt" in
    n) n="$OPTARG" ;; b) build="$OPTARG" ;; c) cpus="$OPTARG" ;; t) timeout="$OPTARG" ;;
    *) echo "usage: $0 [-n N] [-b BUILD] [-c CPUS] [-t TIMEOUT_S]" >&2; exit 2 ;;
  esac
done
cache="${IONEST_CACHE:-$HOME/.cache/ionest}"
kernel="$cache/kernel/current/vmlinux"
initrd="$cache/initramfs/default.cpio"
vmm="$(cat "$build/ionest-path.txt" 2>/dev/null || true)"
die() { echo "bench-guest: ERROR: $*" >&2; exit 1; }
[[ -x "$vmm" ]] || die "no ionest binary ($build/ionest-path.txt; run make build)"
[[ -r "$kernel" ]] || die "$kernel missing (make kernel)"
[[ -r "$initrd" ]] || die "$initrd missing (make initramfs)"
work="$(mktemp -d)"
vmm_pid=""
cleanup() { [[ -n "$vmm_pid" ]] && kill "$vmm_pid" 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT

# boot IOMMU I: prints "<host seconds to /init> <guest uptime at /init>" or "fail fail".
boot() {
  local iommu="$1" log="$work/$1-$2.log" start now up
  local args=(--kernel "$kernel" --initrd "$initrd" --memory 256M --cpus "$cpus" --timeout "$timeout"
              --cmdline "console=ttyS0 rcupdate.rcu_cpu_stall_suppress=1")
  [[ "$iommu" == vtd ]] && args+=(--iommu=vtd)
  start=$(date +%s.%N)
  "$vmm" "${args[@]}" </dev/null >"$log" 2>&1 &
  vmm_pid=$!
  up=""
  while kill -0 "$vmm_pid" 2>/dev/null; do
    # /init prints "# ionest: /init reached at guest uptime <s>s".
    if up="$(sed -n 's/^# ionest: \/init reached at guest uptime \([0-9.]*\)s.*/\1/p' "$log" | head -1)" &&
       [[ -n "$up" ]]; then
      now=$(date +%s.%N)
      break
    fi
    sleep 1
  done
  kill "$vmm_pid" 2>/dev/null || true
  wait "$vmm_pid" 2>/dev/null || true
  vmm_pid=""
  if [[ -z "$up" ]]; then
    echo "bench-guest: $iommu boot $2 did not reach /init (log tail below)" >&2
    tail -5 "$log" >&2
    echo "fail fail"
    return
  fi
  awk -v s="$start" -v e="$now" -v u="$up" 'BEGIN { printf "%.1f %.1f\n", e - s, u }'
}

declare -A host_sum=() guest_sum=() ok=()
for ((i = 1; i <= n; i++)); do
  for iommu in vtd none; do
    read -r h g < <(boot "$iommu" "$i")
    echo "bench-guest: boot $i --iommu=$iommu: /init after ${h} s host, guest uptime ${g} s" >&2
    [[ "$h" == fail ]] && continue
    host_sum[$iommu]=$(awk -v a="${host_sum[$iommu]:-0}" -v b="$h" 'BEGIN { print a + b }')
    guest_sum[$iommu]=$(awk -v a="${guest_sum[$iommu]:-0}" -v b="$g" 'BEGIN { print a + b }')
    ok[$iommu]=$((${ok[$iommu]:-0} + 1))
  done
done

printf '%-40s %14s %14s %8s\n' "metric (mean of $n boots)" "iommu=vtd" "iommu=none" "vtd/none"
row() { # row NAME VTD NONE
  awk -v n="$1" -v a="$2" -v b="$3" 'BEGIN {
    r = (a != "-" && b != "-" && b + 0 > 0) ? sprintf("%.2f", a / b) : "-"
    printf "%-40s %14s %14s %8s\n", n, a, b, r }'
}
mean() { [[ -n "${ok[$2]:-}" ]] && awk -v s="$1" -v k="${ok[$2]}" 'BEGIN { printf "%.1f", s / k }' || echo -; }
row "boot_to_init_host_s" "$(mean "${host_sum[vtd]:-0}" vtd)" "$(mean "${host_sum[none]:-0}" none)"
row "boot_to_init_guest_uptime_s" "$(mean "${guest_sum[vtd]:-0}" vtd)" "$(mean "${guest_sum[none]:-0}" none)"

# Guest suite numbers (from the last `ctest -L guest` in BUILD).
shopt -s nullglob
logs=("$build"/guest-results/*.log)
if [[ ${#logs[@]} -eq 0 ]]; then
  echo "(no guest suite logs in $build/guest-results: run ctest -L guest first for the # bench: lines)"
else
  printf '%-40s %14s %-10s %s\n' "guest suite metric" "value" "unit" "suite"
  for f in "${logs[@]}"; do
    suite="$(basename "$f" .log)"
    sed -n 's/.*# bench: \([A-Za-z0-9_.-]*\)=\([^ ]*\) *\([^ ]*\).*/\1 \2 \3/p' "$f" | tr -d '\r' |
      while read -r k v u; do printf '%-40s %14s %-10s %s\n' "$k" "$v" "$u" "$suite"; done
  done
  # Strict vs lazy first-stage unmap (flush-queue benefit), when both were measured.
  s="$(cat "${logs[@]}" | sed -n 's/.*# bench: dma_map_strict_unmap_us=\([0-9.]*\).*/\1/p' | tail -1)"
  l="$(cat "${logs[@]}" | sed -n 's/.*# bench: dma_map_lazy_unmap_us=\([0-9.]*\).*/\1/p' | tail -1)"
  [[ -n "$s" && -n "$l" ]] && awk -v s="$s" -v l="$l" 'BEGIN { if (l > 0) printf "%-40s %14.2f\n", "dma_unmap strict/lazy ratio", s / l }'
fi
