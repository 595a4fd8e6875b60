# kernel/dma/map_benchmark.c (CONFIG_DMA_MAP_BENCHMARK) bound to ionest's dmatest function
# (1de5:1110, --device dmatest) through driver_override, and the in-tree selftest
# tools/testing/selftests/dma/dma_map_benchmark.c driving it: dma_map_single/unmap latency through
# the IOMMU in a strict (DMA) and then a lazy (DMA-FQ, flush queue) first-stage domain, and with
# ionest_dma_identity=1 on the kernel command line (suites/smmuv3) also in an identity domain.
n=4
[ "${ionest_dma_identity:-}" = 1 ] && n=5
ktap_sub_plan $n
fn=""
for d in /sys/bus/pci/devices/*; do
	read -r v <$d/vendor
	read -r p <$d/device
	[ "$v:$p" = 0x1de5:0x1110 ] && fn=$d
done
[ -n "$fn" ] || { ktap_sub_fail bind_dma_map_benchmark "no 1de5:1110 function (suite.conf VMM_ARGS --device dmatest?)"; ktap_sub_done; }
bdf=${fn##*/}
err=""
# Strict first: the type can change only while no driver is bound (DMA -> DMA-FQ also while bound).
[ -e $fn/driver ] && { echo $bdf >$fn/driver/unbind || err="unbind of $(readlink $fn/driver) failed"; }
# x86 (ACPI) puts a function in its group when it is found; arm64 (device tree) at its first driver
# bind (of_dma_configure), in the default domain type, strict there: then it is already DMA.
if [ -e $fn/iommu_group ]; then
	echo DMA >$fn/iommu_group/type || err="$err; writing DMA to the group type failed"
fi
echo dma_map_benchmark >$fn/driver_override
echo $bdf >/sys/bus/pci/drivers/dma_map_benchmark/bind || err="$err; bind failed"
[ -e /sys/kernel/debug/dma_map_benchmark ] || err="$err; no /sys/kernel/debug/dma_map_benchmark"
[ -z "$err" ] && ktap_sub_ok bind_dma_map_benchmark || { ktap_sub_fail bind_dma_map_benchmark "$err"; ktap_sub_done; }

# run_bench MODE WANT_TYPE: one 1-second single-thread run, results as "# bench:" lines.
run_bench() {
	local got="" map="" unmap="" line rc
	read -r got <$fn/iommu_group/type
	[ "$got" = "$2" ] || { ktap_sub_fail "dma_map_$1" "group type '$got', want $2"; return; }
	dma_map_benchmark -t 1 -s 1 -g 1 >/tmp/bench-$1.txt 2>&1
	rc=$?
	while read -r line; do
		case "$line" in
		"average map latency(us):"*) line=${line#*:}; map=${line%% *} ;;
		"average unmap latency(us):"*) line=${line#*:}; unmap=${line%% *} ;;
		esac
	done </tmp/bench-$1.txt
	# A run that mapped nothing reports 0.0; the kernel's own errors exit non-zero.
	if [ $rc = 0 ] && [ -n "$map" ] && [ -n "$unmap" ] && [ "$map" != 0.0 ] && [ "$unmap" != 0.0 ]; then
		echo "# bench: dma_map_$1_map_us=$map us"
		echo "# bench: dma_map_$1_unmap_us=$unmap us"
		ktap_sub_ok "dma_map_$1"
	else
		read -r line </tmp/bench-$1.txt
		ktap_sub_fail "dma_map_$1" "exit $rc, map '$map' unmap '$unmap': $line"
	fi
}
run_bench strict DMA
echo DMA-FQ >$fn/iommu_group/type
run_bench lazy DMA-FQ
if [ $n = 5 ]; then
	# identity: the type changes only while no driver is bound.
	echo $bdf >$fn/driver/unbind
	echo identity >$fn/iommu_group/type
	echo $bdf >/sys/bus/pci/drivers/dma_map_benchmark/bind
	run_bench identity identity
fi
dmesg >/tmp/dmesg-bench.txt
faults='DMAR: DRHD: handling fault|DMAR: \[DMA|arm-smmu-v3.*event 0x|dma_map_benchmark.*(fail|error)'
if grep -q -E "$faults" /tmp/dmesg-bench.txt; then
	ktap_sub_fail no_iommu_faults "$(grep -m3 -E "$faults" /tmp/dmesg-bench.txt)"
else
	ktap_sub_ok no_iommu_faults
fi
ktap_sub_done
