# SVA end to end with stalls: /bin/sva_test -s (guest-tests/programs/sva_test.c) runs every case in
# one process on /dev/ionest-dmatest0 and prints its own nested KTAP: DMA to the process's own
# buffers, untouched pages resolved through stall + RESUME (the device's stall count), refused
# accesses ending the job with a translation error (the process carries on), 1024 untouched pages
# in one job with many stalls in flight, and process exit with DMA outstanding.
[ -c /dev/ionest-dmatest0 ] || { echo "# /dev/ionest-dmatest0 missing (10-stall-master.sh)"; exit 1; }
/bin/sva_test -n -s /dev/ionest-dmatest0 1024 0
