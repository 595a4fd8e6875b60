# tools/testing/selftests/iommu/iommufd: every fixture, variant and test, as nested KTAP.
. /lib/ionest/ksft-run.sh
ksft_hugepages 72
ksft_run iommufd /bin/iommufd
