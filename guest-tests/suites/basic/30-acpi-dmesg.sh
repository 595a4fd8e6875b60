# The kernel logged no ACPI errors while parsing the VMM's ACPI tables.
dmesg >/tmp/dmesg.txt
# One grep for both questions (each process start costs seconds here).
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
