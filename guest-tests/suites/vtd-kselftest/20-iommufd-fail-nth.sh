# tools/testing/selftests/iommu/iommufd_fail_nth, the subset in guest-tests/kselftests/README.md
# (basic: every allocation failure point of ioas.c's map/unmap/copy paths), as nested KTAP.
. /lib/ionest/ksft-run.sh
ksft_run iommufd_fail_nth /bin/iommufd_fail_nth -t basic
