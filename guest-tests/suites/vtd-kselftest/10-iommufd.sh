# tools/testing/selftests/iommu/iommufd: every case, as nested KTAP (see /lib/ionest/ksft-run.sh).
. /lib/ionest/ksft-run.sh
# MAP_HUGETLB cases (…_hugepage, …_huge, access_domain_destory, huge_map) need 2M pages: up to 64 at once.
if [ -w /proc/sys/vm/nr_hugepages ]; then
	echo 72 >/proc/sys/vm/nr_hugepages
	read -r _hp </proc/sys/vm/nr_hugepages
	echo "# vm.nr_hugepages=$_hp"
else
	echo "# no /proc/sys/vm/nr_hugepages (CONFIG_HUGETLBFS off): MAP_HUGETLB cases cannot pass"
fi
ksft_run iommufd /bin/iommufd
