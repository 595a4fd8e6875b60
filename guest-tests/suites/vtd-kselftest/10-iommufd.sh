# tools/testing/selftests/iommu/iommufd, the measured subset in guest-tests/kselftests/README.md
# (every fixture, one variant each, without the four slowest tests), as nested KTAP
# (/lib/ionest/ksft-run.sh).
. /lib/ionest/ksft-run.sh
# MAP_HUGETLB cases need 2M pages (CONFIG_HUGETLBFS): up to 64 at once.
if [ -w /proc/sys/vm/nr_hugepages ]; then
	echo 72 >/proc/sys/vm/nr_hugepages
	read -r _hp </proc/sys/vm/nr_hugepages
	echo "# vm.nr_hugepages=$_hp"
else
	echo "# no /proc/sys/vm/nr_hugepages (CONFIG_HUGETLBFS off): MAP_HUGETLB cases cannot pass"
fi
ksft_run iommufd /bin/iommufd -T access_rw -T access_rw_unaligned -T fork_gone -T fork_present \
	-f iommufd -v mock_domain -v one_domain -v domain_dirty128k -v Ver1v2
