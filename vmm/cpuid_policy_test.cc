#include "vmm/cpuid_policy.h"

#include "gtest/gtest.h"

namespace ionest {
namespace {

kvm_cpuid_entry2 Leaf(uint32_t fn, uint32_t idx, uint32_t eax, uint32_t ebx, uint32_t ecx, uint32_t edx,
                      bool indexed = false) {
  kvm_cpuid_entry2 e{};
  e.function = fn;
  e.index = idx;
  e.flags = indexed ? KVM_CPUID_FLAG_SIGNIFCANT_INDEX : 0;
  e.eax = eax;
  e.ebx = ebx;
  e.ecx = ecx;
  e.edx = edx;
  return e;
}

// A host like this one: POPCNT, XSAVE, SSE4.2 in leaf 1; SMAP, BMI2, FSGSBASE in leaf 7; RDTSCP.
std::vector<kvm_cpuid_entry2> ModernHost() {
  uint32_t l1_ecx = (1u << 23) | (1u << 26) | (1u << 20) | (1u << 13);
  uint32_t l7_ebx = (1u << 20) | (1u << 8) | (1u << 0);
  return {Leaf(0, 0, 0xd, 0, 0, 0), Leaf(1, 0, 0x806c1, 0x00000800, l1_ecx, 0),
          Leaf(7, 0, 0, l7_ebx, 0, 0, true), Leaf(7, 1, 0, 0xffffffff, 0, 0, true),
          Leaf(0x80000001, 0, 0, 0, 0, 1u << 27)};
}

TEST(CpuidPolicyTest, ClearsOnlyVisibleUnemulatableFeatures) {
  CpuidPolicy p = ComputeCpuidPolicy(ModernHost(), {});
  EXPECT_TRUE(p.noxsave);
  std::vector<std::string> want = {"popcnt", "smap", "fsgsbase", "cx16", "bmi2", "rdtscp"};
  EXPECT_EQ(p.clear_features, want);
  EXPECT_EQ(p.CmdlineAdditions(), "noxsave clearcpuid=popcnt,smap,fsgsbase,cx16,bmi2,rdtscp");
}

TEST(CpuidPolicyTest, SimdCryptoOnRequest) {
  CpuidPolicy p = ComputeCpuidPolicy(ModernHost(), {.clear_simd_crypto = true});
  EXPECT_NE(std::find(p.clear_features.begin(), p.clear_features.end(), "sse4_2"), p.clear_features.end());
  CpuidPolicy q = ComputeCpuidPolicy(ModernHost(), {});
  EXPECT_EQ(std::find(q.clear_features.begin(), q.clear_features.end(), "sse4_2"), q.clear_features.end());
}

TEST(CpuidPolicyTest, OldCpuNeedsNothing) {
  std::vector<kvm_cpuid_entry2> old = {Leaf(1, 0, 0x6f6, 0, 0, 0)};
  CpuidPolicy p = ComputeCpuidPolicy(old, {});
  EXPECT_FALSE(p.noxsave);
  EXPECT_TRUE(p.clear_features.empty());
  EXPECT_EQ(p.CmdlineAdditions(), "");
}

TEST(CpuidPolicyTest, GuestTableHasApicIdAndClearedBits) {
  auto host = ModernHost();
  CpuidPolicy p = ComputeCpuidPolicy(host, {});
  auto t = GuestCpuidTable(host, p, 3);
  for (const auto& e : t) {
    if (e.function == 1) {
      EXPECT_EQ(e.ebx >> 24, 3u);
      EXPECT_EQ((e.ebx >> 8) & 0xff, 8u);  // CLFLUSH size kept
      EXPECT_FALSE(e.ecx & (1u << 23));     // popcnt
      EXPECT_FALSE(e.ecx & (1u << 26));     // xsave
      EXPECT_TRUE(e.ecx & (1u << 20));      // sse4.2 kept
      EXPECT_TRUE(e.ecx & (1u << 31));      // hypervisor
    }
    if (e.function == 7 && e.index == 0) EXPECT_EQ(e.ebx, 0u);
    if (e.function == 7 && e.index == 1) EXPECT_EQ(e.ebx, 0xffffffffu);  // other subleaf untouched
    if (e.function == 0x80000001) EXPECT_EQ(e.edx, 0u);
  }
}

TEST(CpuidPolicyTest, HostCpuidHasLeafOne) {
  auto t = HostCpuid();
  ASSERT_FALSE(t.empty());
  EXPECT_EQ(t[0].function, 1u);
}

}  // namespace
}  // namespace ionest
