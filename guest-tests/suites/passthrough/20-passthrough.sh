# ionest's passthrough code against the real kernel: inner guest RAM in an IOAS, DMA through the
# outer VT-d into it, BARs, MSI-X, FLR, a second VM refused, everything released
# (guest-tests/passthrough/passthrough_testbed.cc prints its own nested KTAP).
export LD_LIBRARY_PATH=/lib/ionest-pt
/bin/ionest_passthrough_testbed --device vfio,host=0000:00:02.0 --ram 8M
rc=$?
dmesg | grep -E 'DMAR|vfio|iommufd|WARNING|BUG' | tail -n 20 | while read -r l; do echo "# $l"; done
exit $rc
