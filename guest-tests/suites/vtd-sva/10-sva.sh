# SVA end to end: ionest_dmatest.ko (guest-tests/modules/ionest_dmatest) binds to both test
# devices with IOPF + SVA enabled; /bin/sva_test (guest-tests/programs/sva_test.c) runs every
# case in one process against /dev/ionest-dmatest0 and prints its own nested KTAP.
insmod /lib/ionest/ionest_dmatest.ko || { echo "# insmod ionest_dmatest.ko failed"; exit 1; }
dmesg >/tmp/dmesg-sva.txt
grep -E 'ionest_dmatest|ionest-dmatest|IOPF|SVA' /tmp/dmesg-sva.txt | while read -r l; do echo "# $l"; done
[ -c /dev/ionest-dmatest0 ] && [ -c /dev/ionest-dmatest1 ] || { echo "# /dev/ionest-dmatest0/1 missing"; exit 1; }
# 256 faulting pages in one job; 2100 per device at once for the PRQ overflow (2 x 2048-request groups).
/bin/sva_test -n /dev/ionest-dmatest0 256 2100
