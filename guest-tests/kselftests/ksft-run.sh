# Sourced by guest-tests/suites/vtd-kselftest/*.sh (busybox ash, in the guest as /lib/ionest/ksft-run.sh).
# ksft_run LABEL BINARY [ARGS...]: runs one kselftest binary (kselftest_harness TAP on stdout+stderr)
# and prints its TAP indented 4 spaces, i.e. as the nested subtest block of the calling /tests script,
# so the host KTAP parser counts every case (SKIP reasons kept). One extra process (awk) streams it.
# Ends with `# kselftest LABEL: N pass, N fail, N skip` taken from the harness's own
# "# Totals:" line (plus a count of the result lines as a cross-check) and
# `# bench: ksft_LABEL_seconds=S s` (guest uptime). Returns 0 only if the binary exited 0,
# printed Totals with fail=0 error=0, and Totals agree with the result lines.
ksft_run() {
	_label=$1
	shift
	[ -x "$1" ] || { echo "# $1 missing (guest-tests/kselftests/build-kselftests.sh)"; return 1; }
	read -r _t0 _ </proc/uptime
	# The binary's exit status survives the pipe through a file (ash has no pipefail).
	{ "$@" 2>&1; echo "$?" >/tmp/.ksft-rc; } | awk -v label="$_label" -v t0="$_t0" -v slow="${KSFT_SLOW:-20}" '
		function uptime(  u) { getline u <"/proc/uptime"; close("/proc/uptime"); split(u, a, " "); return a[1] }
		{ print "    " $0; fflush() }
		/^ok [0-9]+ / { if ($0 ~ /# SKIP/) s++; else if ($0 ~ /# XFAIL/) xf++; else p++; res() }
		/^not ok [0-9]+ / { f++; res() }
		/^# Totals: / { totals = $0 }
		function res(  now) {  # slow cases, for tuning the suite
			now = uptime(); if (now - last >= slow) printf "    # took %ds\n", now - last; last = now
		}
		BEGIN { last = t0 }
		END {
			el = uptime() - t0
			if (totals == "") {
				printf "# kselftest %s: %d pass, %d fail, %d skip (counted: no Totals line, binary crashed?)\n", label, p, f, s
				printf "# bench: ksft_%s_seconds=%d s\n", label, el
				exit 1
			}
			n = split(totals, kv, /[: ]+/)
			for (i = 2; i < n; i++) v[kv[i]] = kv[i + 1]
			printf "# kselftest %s: %d pass, %d fail, %d skip\n", label, v["pass"], v["fail"], v["skip"]
			if (v["xfail"] + v["xpass"] + v["error"] > 0)
				printf "# kselftest %s: also %d xfail, %d xpass, %d error\n", label, v["xfail"], v["xpass"], v["error"]
			printf "# bench: ksft_%s_seconds=%d s\n", label, el
			bad = v["fail"] + v["error"] + v["xpass"] > 0
			if (v["pass"] != p || v["fail"] != f || v["skip"] != s) {
				printf "# kselftest %s: Totals disagree with result lines (%d pass, %d fail, %d skip)\n", label, p, f, s
				bad = 1
			}
			exit bad
		}'
	_awk=$?
	read -r _rc </tmp/.ksft-rc
	[ "$_rc" -eq 0 ] || echo "# $_label: binary exit status $_rc"
	[ "$_awk" -eq 0 ] && [ "$_rc" -eq 0 ]
}

# ksft_hugepages N: reserve N 2 MiB huge pages for the MAP_HUGETLB cases (CONFIG_HUGETLBFS).
ksft_hugepages() {
	if [ -w /proc/sys/vm/nr_hugepages ]; then
		echo "$1" >/proc/sys/vm/nr_hugepages
		read -r _hp </proc/sys/vm/nr_hugepages
		echo "# vm.nr_hugepages=$_hp"
	else
		echo "# no /proc/sys/vm/nr_hugepages (CONFIG_HUGETLBFS off): MAP_HUGETLB cases cannot pass"
	fi
}
