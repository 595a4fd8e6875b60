# tools/testing/selftests/iommu/iommufd, the measured subset in guest-tests/kselftests/README.md
# (every fixture, one variant each, without the four slowest tests), as nested KTAP
# (/lib/ionest/ksft-run.sh).
. /lib/ionest/ksft-run.sh
# MAP_HUGETLB cases need 2M pages (CONFIG_HUGETLBFS): up to 64 at once.
ksft_hugepages 72
ksft_run iommufd /bin/iommufd -T access_rw -T access_rw_unaligned -T fork_gone -T fork_present \
	-f iommufd -v mock_domain -v one_domain -v domain_dirty128k -v Ver1v2
