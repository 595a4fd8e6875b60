# tools/testing/selftests/iommu/iommufd_fail_nth: every case, as nested KTAP (see /lib/ionest/ksft-run.sh).
. /lib/ionest/ksft-run.sh
ksft_run iommufd_fail_nth /bin/iommufd_fail_nth
