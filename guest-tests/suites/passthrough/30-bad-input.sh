# Every bad `--device vfio` input gives one clear error (cause and fix), exit status 1, and leaves
# nothing attached: the last case opens the device successfully afterwards.
export LD_LIBRARY_PATH=/lib/ionest-pt
tb=/bin/ionest_passthrough_testbed
ktap_sub_plan 7
expect_error() { # expect_error NAME PATTERN ARGS...: exit status 1 and stderr matching PATTERN
	name=$1 pattern=$2
	shift 2
	out=$($tb --open-only "$@" 2>&1 >/dev/null)
	rc=$?
	echo "    # $name: exit $rc: $out"
	if [ $rc -eq 1 ] && echo "$out" | grep -qiE "$pattern"; then ktap_sub_ok "$name"; else ktap_sub_fail "$name" "want exit 1 and /$pattern/"; fi
}
expect_error path_missing "does not exist.*vfio-pci" --device vfio,path=/dev/vfio/devices/vfio99
expect_error not_bound_to_any_driver "not bound.*vfio-pci" --device vfio,host=0000:00:03.0
expect_error bound_to_other_driver "pci-endpoint-test.*vfio-pci" --device vfio,host=0000:00:04.0
expect_error group_not_viable "not viable.*0000:00:05.1" --device vfio,host=0000:00:05.0
expect_error no_permission "permission" --device vfio,host=0000:00:02.0 --as-user 65534
mv /dev/iommu /dev/iommu.hidden
expect_error no_iommufd "/dev/iommu.*IOMMUFD" --device vfio,host=0000:00:02.0
mv /dev/iommu.hidden /dev/iommu
out=$($tb --open-only --device vfio,host=0000:00:02.0 2>&1)
rc=$?
echo "    # opens_after_errors: exit $rc: $(echo "$out" | head -n 3)"
[ $rc -eq 0 ] && ktap_sub_ok opens_after_errors || ktap_sub_fail opens_after_errors "exit $rc"
ktap_sub_done
