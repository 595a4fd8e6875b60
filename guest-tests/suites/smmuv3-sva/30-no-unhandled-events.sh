# Every stall the device caused was handled by the IOPF path: arm-smmu-v3 logs an event record
# only when arm_smmu_handle_evt() could not report it ("event 0x.. received"), and a stalled
# transaction nobody resumed would have ended the job with a timeout in 20-sva.sh.
ktap_sub_plan 1
dmesg >/tmp/dmesg-events.txt
n=$(grep -c -E 'arm-smmu-v3 .*event 0x[0-9a-f]+ received' /tmp/dmesg-events.txt)
grep -E 'arm-smmu-v3 .*(event|0x[0-9a-f]{16})' /tmp/dmesg-events.txt | head -20 | while read -r l; do echo "# $l"; done
if [ "$n" = 0 ]; then
	ktap_sub_ok no_unhandled_smmu_events
else
	ktap_sub_fail no_unhandled_smmu_events "$n event record(s) logged as unhandled"
fi
ktap_sub_done
