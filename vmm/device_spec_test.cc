#include "vmm/device_spec.h"

#include "gtest/gtest.h"

namespace ionest {
namespace {

TEST(DeviceSpecTest, PlainKinds) {
  auto d = ParseTestDeviceSpec("dmatest");
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_EQ(d->kind, TestDeviceKind::kDmaTest);
  EXPECT_EQ(d->max_len, 0u);
  EXPECT_EQ(d->pasid_bits, 20);
  auto e = ParseTestDeviceSpec("pci-epf-test");
  ASSERT_TRUE(e.ok()) << e.status();
  EXPECT_EQ(e->kind, TestDeviceKind::kPciEpfTest);
  EXPECT_STREQ(TestDeviceKindName(e->kind), "pci-epf-test");
}

TEST(DeviceSpecTest, Options) {
  auto d = ParseTestDeviceSpec("dmatest,max-len=1M,pasid-bits=16,pri-capacity=8");
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_EQ(d->max_len, 1u << 20);
  EXPECT_EQ(d->pasid_bits, 16);
  EXPECT_EQ(d->pri_capacity, 8u);
  auto e = ParseTestDeviceSpec("pci-epf-test,max-len=64K");
  ASSERT_TRUE(e.ok()) << e.status();
  EXPECT_EQ(e->max_len, 64u << 10);
}

TEST(DeviceSpecTest, RejectsBadSpecs) {
  for (const char* bad : {"", "dmatst", "dmatest,", "dmatest,max-len", "dmatest,max-len=", "dmatest,max-len=lots",
                          "dmatest,max-len=1", "dmatest,max-len=1G", "dmatest,pasid-bits=0", "dmatest,pasid-bits=21",
                          "dmatest,pri-capacity=0", "dmatest,pri-capacity=4096", "dmatest,frob=1",
                          "pci-epf-test,pasid-bits=8"}) {
    EXPECT_FALSE(ParseTestDeviceSpec(bad).ok()) << bad;
  }
}

}  // namespace
}  // namespace ionest
