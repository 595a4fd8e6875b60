# The guest sees exactly the vCPUs given with --cpus (harness passes
# ionest_cpus=N on the kernel command line; the kernel puts it in init's env).
[ -n "${ionest_cpus:-}" ] || skip_test "ionest_cpus= not on the kernel command line"
got=$(grep -c '^processor' /proc/cpuinfo)
if [ "$got" != "$ionest_cpus" ]; then
	echo "# /proc/cpuinfo lists $got CPUs, --cpus was $ionest_cpus"
	exit 1
fi
