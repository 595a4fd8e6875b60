#include "vmm/kvm_msi_sink.h"

#include "gtest/gtest.h"

namespace ionest {
namespace {

TEST(KvmMsiSinkTest, OnlyTheInterruptAddressRangeReachesKvm) {
  EXPECT_TRUE(IsCpuInterruptAddress(0xFEE00000));
  EXPECT_TRUE(IsCpuInterruptAddress(0xFEE01000));  // destination ID 1
  EXPECT_TRUE(IsCpuInterruptAddress(0xFEEFFFFC));
  EXPECT_FALSE(IsCpuInterruptAddress(0xFED00000));
  EXPECT_FALSE(IsCpuInterruptAddress(0xFEF00000));
  EXPECT_FALSE(IsCpuInterruptAddress(0x1FEE00000ull));  // above 4 GiB
  EXPECT_FALSE(IsCpuInterruptAddress(0));
}

}  // namespace
}  // namespace ionest
