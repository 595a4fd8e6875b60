# The kernel took the VMM's firmware description without complaint: ACPI tables on x86 (no ACPI
# errors), the device tree on arm64 (ionest's root node, PSCI, the GICv3 ITS and the generic PCIe
# host bound, no OF errors).
dmesg >/tmp/dmesg.txt
case "$(uname -m)" in
aarch64)
	model=$(tr -d '\0' </proc/device-tree/model 2>/dev/null)
	[ "$model" = "ionest arm64" ] || { echo "# /proc/device-tree/model is '$model'"; exit 1; }
	# One grep for every question (each process start costs time in the nested guest).
	grep -o -E 'psci: PSCIv[0-9.]+|ITS@0x[0-9a-f]+|pci-host-generic [0-9a-f]+\.pcie|OF: .*(error|Error|failed|bad).*' \
		/tmp/dmesg.txt >/tmp/fw-hits.txt
	psci=0 its=0 pcie=0 errors=0
	while read -r h; do
		case "$h" in
		psci:*) psci=1 ;;
		ITS@*) its=1 ;;
		pci-host-generic*) pcie=1 ;;
		*) errors=$((errors + 1)); echo "# $h" ;;
		esac
	done </tmp/fw-hits.txt
	[ $psci = 1 ] || echo "# no 'psci: PSCIv' line: the PSCI node was not used"
	[ $its = 1 ] || echo "# no 'ITS@' line: the GICv3 ITS node was not probed"
	[ $pcie = 1 ] || echo "# no 'pci-host-generic' line: the PCIe host node was not bound"
	[ $psci = 1 ] && [ $its = 1 ] && [ $pcie = 1 ] && [ $errors = 0 ]
	;;
*)
	grep -o -E 'ACPI: RSDP|ACPI( BIOS)? (Error|Exception).*' /tmp/dmesg.txt >/tmp/acpi-hits.txt
	rsdp=0 errors=0
	while read -r h; do
		case "$h" in
		"ACPI: RSDP") rsdp=1 ;;
		*) errors=$((errors + 1)); echo "# $h" ;;
		esac
	done </tmp/acpi-hits.txt
	[ $rsdp = 1 ] || skip_test "no ACPI RSDP found by the kernel (VMM provides no ACPI tables, or acpi=off)"
	[ $errors = 0 ]
	;;
esac
