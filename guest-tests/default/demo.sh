# Run by /init of the default guest (`make run`) before the shell: shows the emulated VT-d at
# work. Every process costs ~3 s in this guest (kernel code is emulated), so this is a handful.
echo "=== ionest demo: Linux behind the emulated IOMMU ==="
dmesg | grep -E 'DMAR: Host address width|DMAR: Intel\(R\) Virtualization|Enabled IRQ remapping in|DMAR: \[|iommu: Default domain type'
if [ -r /sys/class/iommu/dmar0/intel-iommu/ecap ]; then
	read -r cap </sys/class/iommu/dmar0/intel-iommu/cap
	read -r ecap </sys/class/iommu/dmar0/intel-iommu/ecap
	echo "dmar0: cap=0x$cap ecap=0x$ecap (scalable mode: ECAP.SMTS bit 43 = $(((0x$ecap >> 43) & 1)))"
else
	echo "no /sys/class/iommu/dmar0: booted without --iommu=vtd (or intel_iommu=off)"
fi
for d in /sys/kernel/iommu_groups/*/devices/*; do
	[ -e "$d" ] || { echo "no IOMMU groups"; break; }
	g=${d%/devices/*}
	t=""
	[ -r "$g/type" ] && read -r t <"$g/type"
	read -r vendor <"$d/vendor"
	read -r device <"$d/device"
	echo "iommu group ${g##*/}: ${d##*/} [$vendor:$device] domain $t"
done
if [ -c /dev/pci-endpoint-test.0 ]; then
	echo "--- pcitest: pci_endpoint_test drives the pci-epf-test function (DMA through the IOMMU, MSI-X through IR)"
	pcitest -D /dev/pci-endpoint-test.0 -i 2 -x 1 -r -w -c -s 65536
fi
if [ -e /sys/bus/pci/devices/0000:00:03.0 ] && insmod /lib/ionest/ionest_dmatest.ko 2>/dev/null &&
	[ -c /dev/ionest-dmatest0 ]; then
	echo "--- sva_test: a process's own virtual addresses as DMA targets (PASID, page requests)"
	sva_test /dev/ionest-dmatest0 0 0
fi
echo "=== demo done: try 'cat /sys/kernel/debug/iommu/intel/dmar_translation_struct | head'; exit powers off ==="
