# The SMMU advertises stage 2 only (IDR0.S1P = 0): Linux's probe line shows the features without
# ARM_SMMU_FEAT_TRANS_S1 (bit 9) and with ARM_SMMU_FEAT_TRANS_S2 (bit 10).
line=$(dmesg | grep -m1 -o 'arm-smmu-v3 .*features 0x[0-9a-f]*')
echo "# $line"
f=${line##*features }
[ -n "$f" ] || exit 1
[ $((f & (1 << 9))) = 0 ] && [ $((f & (1 << 10))) != 0 ]
