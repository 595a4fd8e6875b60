# tools/testing/selftests/iommu/iommufd_fail_nth: every case (fault injection at each allocation site).
. /lib/ionest/ksft-run.sh
ksft_run iommufd_fail_nth /bin/iommufd_fail_nth
