# tools/testing/selftests/iommu/iommufd, the subset in guest-tests/kselftests/README.md
# (every test of every fixture, one variant per fixture), as nested KTAP (/lib/ionest/ksft-run.sh).
. /lib/ionest/ksft-run.sh
# MAP_HUGETLB cases need 2M pages (CONFIG_HUGETLBFS): up to 64 at once.
if [ -w /proc/sys/vm/nr_hugepages ]; then
	echo 72 >/proc/sys/vm/nr_hugepages
	read -r _hp </proc/sys/vm/nr_hugepages
	echo "# vm.nr_hugepages=$_hp"
else
	echo "# no /proc/sys/vm/nr_hugepages (CONFIG_HUGETLBFS off): MAP_HUGETLB cases cannot pass"
fi
ksft_run iommufd /bin/iommufd -f iommufd -v mock_domain -v one_domain -v domain_dirty128k -v Ver1v2
