# The kernel's pci_endpoint_test driver + tools/pci/pcitest against ionest's pci-epf-test function
# (--device pci-epf-test): BAR0-5 pattern tests, MSI and MSI-X raise tests (two vectors each) and
# read/write/copy DMA transfers of several sizes (the driver checks each with crc32_le), all DMA
# through the function's IOMMU domain and all interrupts through interrupt remapping (x86) or the
# SMMU-translated ITS doorbell (arm64, suites/smmuv3 runs this script too).
# One pcitest process per BAR; it runs its tests in the order BAR, IRQ type, MSI/MSI-X, W, R, C.
dev=/dev/pci-endpoint-test.0
# "pcitest args|expected result lines" per process (labels as pcitest prints them, lower-cased).
set -- \
	"-b 0 -i 1 -m 1 -w -r -c -s 1|bar0 set_irq_type_to_msi msi1 write_1 read_1 copy_1" \
	"-b 1 -m 2 -w -r -c -s 4097|bar1 msi2 write_4097 read_4097 copy_4097" \
	"-b 2 -w -r -c -s 131072|bar2 write_131072 read_131072 copy_131072" \
	"-b 3 -i 2 -x 1 -w -r -c -s 3|bar3 set_irq_type_to_msi-x msi-x1 write_3 read_3 copy_3" \
	"-b 4 -x 2 -w -r -c -s 65536|bar4 msi-x2 write_65536 read_65536 copy_65536" \
	"-b 5 -w -r -c -s 12289|bar5 write_12289 read_12289 copy_12289"
total=0
for run in "$@"; do
	for name in ${run#*|}; do total=$((total + 1)); done
done
ktap_sub_plan $((total + 3))

# The function (104c:b500) must sit behind a translating domain.
fn=""
for d in /sys/bus/pci/devices/*; do
	read -r v <$d/vendor
	read -r p <$d/device
	[ "$v:$p" = 0x104c:0xb500 ] && fn=$d
done
gtype=""
[ -n "$fn" ] && [ -r $fn/iommu_group/type ] && read -r gtype <$fn/iommu_group/type
if [ -n "$fn" ] && [ -c $dev ]; then
	case "$gtype" in
	DMA*) ktap_sub_ok epf_function_behind_dma_domain ;;
	*) ktap_sub_fail epf_function_behind_dma_domain "${fn##*/} group type '$gtype'" ;;
	esac
else
	ktap_sub_fail epf_function_behind_dma_domain "no 104c:b500 function (${fn:-none}) or no $dev (suite.conf VMM_ARGS --device pci-epf-test?)"
fi

: >/tmp/pcitest.out
k=0
for run in "$@"; do
	k=$((k + 1))
	echo "## ${run%%|*}" >>/tmp/pcitest.out
	pcitest -D $dev ${run%%|*} >>/tmp/pcitest.out 2>&1
	# After the MSI runs (before -i 2 frees the MSI vectors): were they remapped?
	[ $k = 3 ] && grep 'pci-endpoint-test' /proc/interrupts >/tmp/pcitest.msi
done
grep 'pci-endpoint-test' /proc/interrupts >/tmp/pcitest.msix
# Normalise all labels in one awk process (process starts cost seconds).
awk -F':' '/^##/ { next } /:/ {
	label = tolower($1); res = $0; sub(/^[^:]*:[ \t]*/, "", res)
	gsub(/[()]/, "", label); sub(/ bytes/, "", label); gsub(/ +/, "_", label)
	print label, res }' /tmp/pcitest.out >/tmp/pcitest.res
# One pass over the results (each `read` is a syscall per byte here): r_<label>=RESULT.
while read -r l r; do
	l=${l//-/_}
	case "$l" in "" | *[!a-z0-9_]*) continue ;; esac # e.g. "can't open ...: errno text"
	eval "r_$l=\$r"
done </tmp/pcitest.res
for run in "$@"; do
	for name in ${run#*|}; do
		eval "res=\${r_${name//-/_}:-}"
		case "$res" in
		OKAY) ktap_sub_ok "$name" ;;
		"") ktap_sub_fail "$name" "no result line from 'pcitest ${run%%|*}' (output in /tmp/pcitest.out)" ;;
		*) ktap_sub_fail "$name" "pcitest ${run%%|*}: $res" ;;
		esac
	done
done

# x86: interrupts went through interrupt remapping: the function's vectors live in the
# IR-PCI-MSI-<bdf> / IR-PCI-MSIX-<bdf> domains (drivers/iommu/intel/irq_remapping.c is their parent).
# arm64 (the smmuv3 suite): they live in the GICv3 ITS's ITS-PCI-MSI(X)-<bdf> domains and their writes
# were translated by the SMMU (the MSI address is an IOVA of the SW MSI window), so they arrived.
irq_prefix=IR-
what=remapped
[ "$(uname -m)" = aarch64 ] && irq_prefix=ITS- what=through_its
for kind in msi msix; do
	chip=${irq_prefix}PCI-MSI-
	[ $kind = msix ] && chip=${irq_prefix}PCI-MSIX-
	n=0 lines=""
	while read -r l; do
		lines="$lines [$l]"
		case "$l" in *"$chip"*) n=$((n + 1)) ;; esac
	done </tmp/pcitest.$kind
	[ $n -ge 2 ] && ktap_sub_ok ${kind}_vectors_$what ||
		ktap_sub_fail ${kind}_vectors_$what "$n $chip vectors for pci-endpoint-test:$lines"
done
# The whole pcitest output to the console when something failed.
[ $_sub_fail -eq 0 ] || sed 's/^/    # /' /tmp/pcitest.out
ktap_sub_done
