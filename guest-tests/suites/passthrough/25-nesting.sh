# The VT-d nesting cases (issue 9): the inner machine of ionest_passthrough_testbed gets ionest's
# emulated VT-d in scalable mode; the nesting backend binds its first-stage tables to this kernel's
# iommufd as nested HWPTs on a nest parent over inner RAM, shadows its second-stage and legacy
# tables, forwards invalidations, and carries the device's page faults through the iommufd fault
# queue into the inner page request queue and the answers back (prints its own nested KTAP).
# At the same time this guest's Linux programs nested PASID entries into the outer emulated VT-d.
export LD_LIBRARY_PATH=/lib/ionest-pt
/bin/ionest_passthrough_testbed --nesting --device vfio,host=0000:00:02.0 --ram 8M
rc=$?
dmesg | grep -E 'DMAR|vfio|iommufd|WARNING|BUG' | tail -n 20 | while read -r l; do echo "# $l"; done
if dmesg | grep -qE 'WARNING:|BUG:'; then
	echo "# the host kernel logged a WARNING or BUG"
	rc=1
fi
exit $rc
