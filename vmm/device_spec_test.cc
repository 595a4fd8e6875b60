#include "vmm/device_spec.h"

#include "gtest/gtest.h"
#include "vmm/pci_functions.h"

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

TEST(DeviceSpecTest, Addr) {
  auto d = ParseTestDeviceSpec("pci-epf-test,addr=05.1");
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_EQ(d->devfn, (5 << 3) | 1);
  EXPECT_FALSE(ParseTestDeviceSpec("dmatest").value().devfn.has_value());
  EXPECT_EQ(ParseTestDeviceSpec("dmatest,addr=1f.7").value().devfn, 0xff);
  for (const char* bad : {"dmatest,addr=01.0", "dmatest,addr=00.0", "dmatest,addr=20.0", "dmatest,addr=05.8",
                          "dmatest,addr=05", "dmatest,addr=5.", "dmatest,addr=x5.0", "dmatest,addr=005.0"}) {
    EXPECT_FALSE(ParseTestDeviceSpec(bad).ok()) << bad;
  }
}

TEST(DeviceSpecTest, Vfio) {
  auto p = ParseTestDeviceSpec("vfio,path=/dev/vfio/devices/vfio3");
  ASSERT_TRUE(p.ok()) << p.status();
  EXPECT_EQ(p->kind, TestDeviceKind::kVfio);
  EXPECT_EQ(p->vfio_path, "/dev/vfio/devices/vfio3");
  EXPECT_TRUE(p->vfio_host.empty());
  auto h = ParseTestDeviceSpec("vfio,host=0000:00:02.0");
  ASSERT_TRUE(h.ok()) << h.status();
  EXPECT_EQ(h->vfio_host, "0000:00:02.0");
  EXPECT_STREQ(TestDeviceKindName(h->kind), "vfio");
  for (const char* bad : {"vfio", "vfio,path=/dev/vfio/devices/vfio0,host=0000:00:02.0", "vfio,path=vfio0",
                          "vfio,max-len=1M", "vfio,host="}) {
    auto r = ParseTestDeviceSpec(bad);
    EXPECT_FALSE(r.ok()) << bad;
  }
  EXPECT_NE(ParseTestDeviceSpec("vfio").status().message().find("path="), std::string::npos);
}

// The request list both machines (x86, arm64) open with AddPassthroughFunctions.
TEST(DeviceSpecTest, PlanPassthroughNamesVfioFunctionsBySlot) {
  std::vector<TestDeviceSpec> devices;
  for (const char* text : {"dmatest", "vfio,host=0000:00:05.0", "pci-epf-test", "vfio,path=/dev/vfio/devices/vfio2,addr=1f.3"}) {
    auto d = ParseTestDeviceSpec(text);
    ASSERT_TRUE(d.ok()) << text << ": " << d.status();
    devices.push_back(*d);
  }
  const PassthroughPlan plan = PlanPassthrough(devices);
  ASSERT_EQ(plan.requests.size(), 2u);
  ASSERT_EQ(plan.devfns.size(), 2u);
  EXPECT_EQ(plan.devfns[0], TestDeviceDevfn(1));  // 00:03.0: the second --device's slot
  EXPECT_EQ(plan.requests[0].name, "vfio@03.0");
  EXPECT_EQ(plan.requests[0].spec.host, "0000:00:05.0");
  EXPECT_TRUE(plan.requests[0].spec.path.empty());
  EXPECT_EQ(plan.devfns[1], (0x1f << 3) | 3);
  EXPECT_EQ(plan.requests[1].name, "vfio@1f.3");
  EXPECT_EQ(plan.requests[1].spec.path, "/dev/vfio/devices/vfio2");
  EXPECT_TRUE(PlanPassthrough({devices[0], devices[2]}).requests.empty());
}

}  // namespace
}  // namespace ionest
