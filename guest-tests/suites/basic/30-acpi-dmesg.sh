# The kernel logged no ACPI errors while parsing the VMM's ACPI tables.
dmesg >/tmp/dmesg.txt
grep -q 'ACPI: RSDP' /tmp/dmesg.txt || skip_test "no ACPI RSDP found by the kernel (VMM provides no ACPI tables)"
if grep -E 'ACPI( BIOS)? (Error|Exception)' /tmp/dmesg.txt >/tmp/acpi-errors.txt; then
	while read -r l; do echo "# $l"; done </tmp/acpi-errors.txt
	exit 1
fi
exit 0
