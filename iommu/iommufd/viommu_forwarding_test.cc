// virtio-iommu requests for a passthrough endpoint forwarded to the host IOMMU (issue 12 item 5):
// the virtio-iommu behind its virtio-pci transport, driven like Linux's driver (ViommuBench, no
// vCPU), the ViommuForwarder as the endpoint's host, the iommufd test double as the kernel and a
// recording stand-in for the VFIO function's ATTACH/DETACH_IOMMUFD_PT.
#include "iommu/iommufd/viommu_forwarding.h"

#include <cerrno>
#include <cstring>
#include <memory>
#include <string>
#include <tuple>
#include <vector>

#include "gtest/gtest.h"
#include "iommu/iommufd/iommufd_kernel.h"
#include "iommu/iommufd/testing/fake_host_device.h"
#include "iommu/iommufd/testing/fake_iommufd.h"
#include "iommu/virtio/testing/viommu_test_bench.h"

namespace ionest::iommufd {
namespace {

using V = VirtioIommu;
using iommufd_testing::FakeHostDevice;
using iommufd_testing::FakeIommufd;
using viommu_testing::ViommuBench;

constexpr uint32_t kPt = 0x10;    // the passthrough function (00:02.0)
constexpr uint32_t kEmu = 0x18;   // an emulated function (00:03.0) in the same virtio-iommu
constexpr uint32_t kRW = V::kMapFRead | V::kMapFWrite;
constexpr IovaRange kHostMsi{0x8000000, 0x80FFFFF};  // the host SMMU driver's software MSI window

class ViommuForwardingTest : public ::testing::Test {
 protected:
  void SetUp() override { Build(/*boot_bypass=*/false); }

  void Build(bool boot_bypass) {
    fwd.reset();
    V::Options o;
    o.boot_bypass = boot_bypass;
    auto b = ViommuBench::Create(o);
    ASSERT_TRUE(b.ok()) << b.status();
    bench = std::move(*b);
    const MemoryRegion& r = bench->mem->regions()[0];
    ram = {{r.gpa, r.host, r.size}};
    auto id = fake.AllocIoas();  // the VM's IOAS over guest RAM (IommufdBackend)
    ASSERT_TRUE(id.ok());
    identity = *id;
    ASSERT_TRUE(fake.MapFixed(identity, r.gpa, r.host, r.size, true).ok());
    fn.Attach(identity).IgnoreError();  // where Passthrough::Open leaves it
    // The host's reserved ranges: its MSI window, one around the device's own MSI region
    // (0xfee00000-0xfeefffff), and everything past 2^48 (beyond input_range).
    auto f = ViommuForwarder::Create(fake, *bench->iommu, ram, identity, {{kPt, &fn}},
                                     {kHostMsi, {0xFED00000, 0xFEFFFFFF}, {1ull << 48, ~0ull}});
    ASSERT_TRUE(f.ok()) << f.status();
    fwd = std::move(*f);
    ASSERT_TRUE(bench->Start());
  }
  void TearDown() override { fwd.reset(); }

  uint8_t* Host(uint64_t gpa) { return static_cast<uint8_t*>(ram[0].host) + gpa; }
  // Live mappings of IOAS `ioas`.
  std::vector<FakeIommufd::Mapping> In(uint32_t ioas) {
    std::vector<FakeIommufd::Mapping> out;
    for (const auto& m : fake.mappings())
      if (m.ioas_id == ioas) out.push_back(m);
    return out;
  }
  uint32_t DomainIoas(uint32_t domain) { return fwd->ioas_of(domain).value_or(0); }

  FakeIommufd fake;
  FakeHostDevice fn{fake, kPt};
  std::unique_ptr<ViommuBench> bench;
  std::vector<RamRange> ram;
  uint32_t identity = 0;
  std::unique_ptr<ViommuForwarder> fwd;
};

TEST_F(ViommuForwardingTest, UnattachedFollowsBypassConfig) {
  // boot_bypass off: blocked (detached) from registration on (§5.13.4.2, §5.13.6).
  EXPECT_EQ(fn.attached, 0u);
  bench->WriteDevCfg(V::kCfgBypass, 1, 1);  // §5.13.4.1: BYPASS_CONFIG negotiated
  EXPECT_EQ(fn.attached, identity);
  bench->WriteDevCfg(V::kCfgBypass, 0, 1);
  EXPECT_EQ(fn.attached, 0u);
  EXPECT_EQ(fake.live_objects(), 1u);  // only the identity IOAS
}

TEST_F(ViommuForwardingTest, AttachMapUnmapDetach) {
  ASSERT_EQ(bench->Attach(1, kPt), V::kSOk);
  const uint32_t ioas = DomainIoas(1);
  ASSERT_NE(ioas, 0u);
  EXPECT_NE(ioas, identity);
  EXPECT_EQ(fn.attached, ioas);
  EXPECT_TRUE(In(ioas).empty());

  // MAP -> IOMMU_IOAS_MAP at IOVA virt_start of the RAM behind phys_start, rights per flags.
  ASSERT_EQ(bench->Map(1, 0x100000, 0x10FFFF, 0x200000, kRW), V::kSOk);
  ASSERT_EQ(bench->Map(1, 0x120000, 0x120FFF, 0x300000, V::kMapFRead), V::kSOk);
  ASSERT_EQ(bench->Map(1, 0x130000, 0x131FFF, 0x400000, V::kMapFWrite), V::kSOk);  // DMA_FROM_DEVICE
  std::vector<FakeIommufd::Mapping> want = {
      {ioas, 0x100000, 0x10000, Host(0x200000), true, true},
      {ioas, 0x120000, 0x1000, Host(0x300000), false, true},
      {ioas, 0x130000, 0x2000, Host(0x400000), true, false},
  };
  EXPECT_EQ(In(ioas), want);
  EXPECT_EQ(fwd->stats().maps, 3u);

  // DETACH: blocked (bypass 0), the domain and its IOAS are gone (§5.13.6.4).
  ASSERT_EQ(bench->Detach(1, kPt), V::kSOk);
  EXPECT_EQ(fn.attached, 0u);
  EXPECT_FALSE(fake.ioas_exists(ioas));
  EXPECT_FALSE(fwd->ioas_of(1).has_value());
  EXPECT_EQ(fake.live_objects(), 1u);
}

TEST_F(ViommuForwardingTest, UnmapFollowsTheDevicesSplitRules) {
  ASSERT_EQ(bench->Attach(1, kPt), V::kSOk);
  const uint32_t ioas = DomainIoas(1);
  ASSERT_EQ(bench->Map(1, 0x100000, 0x101FFF, 0x200000, kRW), V::kSOk);
  ASSERT_EQ(bench->Map(1, 0x104000, 0x104FFF, 0x204000, kRW), V::kSOk);
  ASSERT_EQ(bench->Map(1, 0x106000, 0x107FFF, 0x206000, kRW), V::kSOk);
  ASSERT_EQ(bench->Map(1, 0x200000, 0x200FFF, 0x300000, kRW), V::kSOk);
  // §5.13.6.6: a range that would split a mapping is RANGE and removes nothing, on the host too.
  EXPECT_EQ(bench->Unmap(1, 0x100000, 0x100FFF), V::kSRange);
  EXPECT_EQ(bench->Unmap(1, 0x104000, 0x106FFF), V::kSRange);
  EXPECT_EQ(In(ioas).size(), 4u);
  EXPECT_EQ(fake.calls(FakeIommufd::Op::kUnmap), 0);
  // Nothing mapped in the range: OK, no host call.
  EXPECT_EQ(bench->Unmap(1, 0x180000, 0x18FFFF), V::kSOk);
  EXPECT_EQ(fake.calls(FakeIommufd::Op::kUnmap), 0);
  // A range covering three mappings (and the holes between) removes them all, on the host in
  // one IOMMU_IOAS_UNMAP; the fourth stays.
  EXPECT_EQ(bench->Unmap(1, 0xF0000, 0x1FFFFF), V::kSOk);
  EXPECT_EQ(fake.calls(FakeIommufd::Op::kUnmap), 1);
  std::vector<FakeIommufd::Mapping> want = {{ioas, 0x200000, 0x1000, Host(0x300000), true, true}};
  EXPECT_EQ(In(ioas), want);
  EXPECT_EQ(bench->iommu->stats().mappings, 1u);
  // Whole-range UNMAP (Linux's domain teardown).
  EXPECT_EQ(bench->Unmap(1, 0, (1ull << 48) - 1), V::kSOk);
  EXPECT_TRUE(In(ioas).empty());
  EXPECT_EQ(fwd->stats().unmaps, 2u);
}

TEST_F(ViommuForwardingTest, OnlyGuestRamIsMapped) {
  ASSERT_EQ(bench->Attach(1, kPt), V::kSOk);
  const uint32_t ioas = DomainIoas(1);
  // Beyond guest RAM (16 MiB), straddling its end, MMIO, no right: refused, nothing recorded.
  EXPECT_EQ(bench->Map(1, 0x100000, 0x100FFF, ViommuBench::kRam, kRW), V::kSRange);
  EXPECT_EQ(bench->Map(1, 0x100000, 0x101FFF, ViommuBench::kRam - 0x1000, kRW), V::kSRange);
  EXPECT_EQ(bench->Map(1, 0x100000, 0x100FFF, 0x8000000000, kRW | V::kMapFMmio), V::kSInval);
  EXPECT_EQ(bench->Map(1, 0x100000, 0x100FFF, 0x200000, 0), V::kSInval);
  // Over the host's reserved IOVA range (its MSI window): S_RANGE, the kernel never asked.
  EXPECT_EQ(bench->Map(1, 0x80FF000, 0x8100FFF, 0x200000, kRW), V::kSRange);
  EXPECT_TRUE(In(ioas).empty());
  EXPECT_EQ(bench->iommu->stats().mappings, 0u);
  EXPECT_EQ(fwd->stats().refused, 5u);
  EXPECT_EQ(fake.calls(FakeIommufd::Op::kMapFixed), 1);  // the identity IOAS's RAM only
  // The same IOVA maps fine afterwards (the device recorded none of the refused ones).
  EXPECT_EQ(bench->Map(1, 0x100000, 0x100FFF, 0x200000, kRW), V::kSOk);
}

TEST_F(ViommuForwardingTest, BypassDomainIsTheIdentityIoas) {
  ASSERT_EQ(bench->Attach(7, kPt, V::kAttachFBypass), V::kSOk);  // §5.13.6.3 ATTACH_F_BYPASS
  EXPECT_EQ(fn.attached, identity);
  EXPECT_EQ(fake.live_objects(), 1u);
  // Moving to a paging domain and back: the paging IOAS is released when the endpoint leaves.
  ASSERT_EQ(bench->Attach(2, kPt), V::kSOk);
  const uint32_t ioas = DomainIoas(2);
  EXPECT_EQ(fn.attached, ioas);
  ASSERT_EQ(bench->Attach(7, kPt, V::kAttachFBypass), V::kSOk);
  EXPECT_EQ(fn.attached, identity);
  EXPECT_FALSE(fake.ioas_exists(ioas));
  // DETACH from the bypass domain with config.bypass = 1: identity stays.
  bench->WriteDevCfg(V::kCfgBypass, 1, 1);
  ASSERT_EQ(bench->Detach(7, kPt), V::kSOk);
  EXPECT_EQ(fn.attached, identity);
}

TEST_F(ViommuForwardingTest, SharedDomainReplaysAndReleases) {
  // An emulated endpoint's domain with mappings; the passthrough endpoint joins: its IOAS is built
  // from the domain's mappings before the function moves to it.
  ASSERT_EQ(bench->Attach(3, kEmu), V::kSOk);
  ASSERT_EQ(bench->Map(3, 0x10000, 0x10FFF, 0x500000, kRW), V::kSOk);
  ASSERT_EQ(bench->Map(3, 0x20000, 0x23FFF, 0x600000, V::kMapFRead), V::kSOk);
  EXPECT_EQ(fake.calls(FakeIommufd::Op::kMapFixed), 1);  // only the identity IOAS so far
  ASSERT_EQ(bench->Attach(3, kPt), V::kSOk);
  const uint32_t ioas = DomainIoas(3);
  std::vector<FakeIommufd::Mapping> want = {{ioas, 0x10000, 0x1000, Host(0x500000), true, true},
                                            {ioas, 0x20000, 0x4000, Host(0x600000), false, true}};
  EXPECT_EQ(In(ioas), want);
  EXPECT_EQ(fn.attached, ioas);
  // The passthrough endpoint leaves: its IOAS goes, the domain stays for the emulated endpoint,
  // and its MAPs are no longer forwarded.
  ASSERT_EQ(bench->Detach(3, kPt), V::kSOk);
  EXPECT_FALSE(fake.ioas_exists(ioas));
  ASSERT_EQ(bench->Map(3, 0x30000, 0x30FFF, 0x700000, kRW), V::kSOk);
  EXPECT_EQ(bench->iommu->stats().mappings, 3u);
  EXPECT_EQ(fake.live_objects(), 1u);
}

TEST_F(ViommuForwardingTest, HostFailuresBecomeStatusesWithNothingLeaked) {
  ASSERT_EQ(bench->Attach(1, kPt), V::kSOk);
  const uint32_t ioas = DomainIoas(1);
  const size_t objects = fake.live_objects();
  // MAP: ENOMEM (pinning over RLIMIT_MEMLOCK) -> S_NOMEM; EFAULT -> S_DEVERR; nothing recorded.
  fake.FailNext(FakeIommufd::Op::kMapFixed, IommufdErrno(ENOMEM, "IOMMU_IOAS_MAP"));
  EXPECT_EQ(bench->Map(1, 0x100000, 0x100FFF, 0x200000, kRW), V::kSNoMem);
  fake.FailNext(FakeIommufd::Op::kMapFixed, IommufdErrno(EFAULT, "IOMMU_IOAS_MAP"));
  EXPECT_EQ(bench->Map(1, 0x100000, 0x100FFF, 0x200000, kRW), V::kSDevErr);
  EXPECT_EQ(bench->iommu->stats().mappings, 0u);
  EXPECT_TRUE(In(ioas).empty());
  ASSERT_EQ(bench->Map(1, 0x100000, 0x100FFF, 0x200000, kRW), V::kSOk);  // then it works
  // UNMAP refused by the host: S_DEVERR, the device keeps the mapping (host holds no more than it).
  fake.FailNext(FakeIommufd::Op::kUnmap, IommufdErrno(EBUSY, "IOMMU_IOAS_UNMAP"));
  EXPECT_EQ(bench->Unmap(1, 0x100000, 0x100FFF), V::kSDevErr);
  EXPECT_EQ(bench->iommu->stats().mappings, 1u);
  EXPECT_EQ(In(ioas).size(), 1u);
  EXPECT_EQ(bench->Unmap(1, 0x100000, 0x100FFF), V::kSOk);

  // ATTACH to a new domain: IOMMU_IOAS_ALLOC ENOMEM -> S_NOMEM, the endpoint stays in domain 1.
  fake.FailNext(FakeIommufd::Op::kAllocIoas, IommufdErrno(ENOMEM, "IOMMU_IOAS_ALLOC"));
  EXPECT_EQ(bench->Attach(2, kPt), V::kSNoMem);
  EXPECT_EQ(fn.attached, ioas);
  EXPECT_EQ(fake.live_objects(), objects);
  // The function refuses the new IOAS: S_DEVERR, the fresh IOAS destroyed, still in domain 1.
  fn.fail_attach = true;
  EXPECT_EQ(bench->Attach(2, kPt), V::kSDevErr);
  fn.fail_attach = false;
  EXPECT_EQ(fn.attached, ioas);
  EXPECT_EQ(fake.live_objects(), objects);
  EXPECT_EQ(bench->iommu->stats().domains, 1u);
  // A replay failing half-way (second MAP): nothing left behind either.
  ASSERT_EQ(bench->Attach(4, kEmu), V::kSOk);
  ASSERT_EQ(bench->Map(4, 0x10000, 0x10FFF, 0x500000, kRW), V::kSOk);
  ASSERT_EQ(bench->Map(4, 0x20000, 0x20FFF, 0x600000, kRW), V::kSOk);
  fake.FailNext(FakeIommufd::Op::kMapFixed, IommufdErrno(ENOMEM, "IOMMU_IOAS_MAP"), /*skip=*/1);
  EXPECT_EQ(bench->Attach(4, kPt), V::kSNoMem);
  EXPECT_EQ(fn.attached, ioas);
  EXPECT_EQ(fake.live_objects(), objects);
  EXPECT_EQ(bench->iommu->stats().host_failures, 6u);
  // Still usable: the endpoint joins domain 4 now.
  ASSERT_EQ(bench->Attach(4, kPt), V::kSOk);
  EXPECT_EQ(In(DomainIoas(4)).size(), 2u);
  EXPECT_FALSE(fake.ioas_exists(ioas));  // domain 1 lost its only endpoint
}

TEST_F(ViommuForwardingTest, DeviceResetReleasesEverything) {
  ASSERT_EQ(bench->Attach(1, kPt), V::kSOk);
  ASSERT_EQ(bench->Map(1, 0x100000, 0x100FFF, 0x200000, kRW), V::kSOk);
  ASSERT_EQ(bench->Attach(5, kEmu), V::kSOk);
  EXPECT_EQ(fake.live_objects(), 2u);
  ASSERT_TRUE(bench->Start());  // the driver resets the device (§5.13.5) and starts again
  EXPECT_EQ(fn.attached, 0u);   // unattached, bypass 0: blocked
  EXPECT_EQ(fake.live_objects(), 1u);
  EXPECT_EQ(fake.mappings().size(), 1u);  // the identity IOAS's RAM
  // System reset with boot_bypass on: unattached means identity.
  Build(/*boot_bypass=*/true);
  EXPECT_EQ(fn.attached, identity);
  ASSERT_EQ(bench->Attach(1, kPt), V::kSOk);
  EXPECT_NE(fn.attached, identity);
  bench->iommu->SystemReset();
  EXPECT_EQ(fn.attached, identity);
  EXPECT_EQ(fake.mappings().size(), 2u);  // the two identity IOASes' RAM (one per Build)
  EXPECT_EQ(fake.live_objects(), 2u);
}

TEST_F(ViommuForwardingTest, ProbeReportsTheHostsReservedRanges) {
  // §5.13.6.8.1: RESV_MEM properties; the host's ranges as RESERVED, clipped to input_range and
  // around the device's own MSI region; an emulated endpoint sees only the device's own.
  using T = std::tuple<uint8_t, uint64_t, uint64_t>;
  auto regions = [&](uint32_t ep) {
    std::vector<T> out;
    std::vector<uint8_t> props;
    EXPECT_EQ(bench->Probe(ep, &props).status, V::kSOk);
    for (size_t off = 0; off + V::kResvMemPropertySize <= props.size(); off += V::kResvMemPropertySize) {
      uint16_t type;
      uint64_t start, end;
      std::memcpy(&type, props.data() + off, 2);
      if (type != V::kProbeTResvMem) break;
      std::memcpy(&start, props.data() + off + 8, 8);
      std::memcpy(&end, props.data() + off + 16, 8);
      out.emplace_back(props[off + 4], start, end);
    }
    return out;
  };
  EXPECT_EQ(regions(kPt), (std::vector<T>{{V::kResvMemTMsi, 0xFEE00000, 0xFEEFFFFF},
                                           {V::kResvMemTReserved, 0x8000000, 0x80FFFFF},
                                           {V::kResvMemTReserved, 0xFED00000, 0xFEDFFFFF},
                                           {V::kResvMemTReserved, 0xFEF00000, 0xFEFFFFFF}}));
  EXPECT_EQ(regions(kEmu), (std::vector<T>{{V::kResvMemTMsi, 0xFEE00000, 0xFEEFFFFF}}));
}

TEST_F(ViommuForwardingTest, DestructionReturnsTheFunctionAndUnregisters) {
  ASSERT_EQ(bench->Attach(1, kPt), V::kSOk);
  ASSERT_EQ(bench->Map(1, 0x100000, 0x100FFF, 0x200000, kRW), V::kSOk);
  const uint32_t ioas = DomainIoas(1);
  fwd.reset();  // VMM exit: Passthrough releases the forwarder first
  EXPECT_EQ(fn.attached, identity);
  EXPECT_FALSE(fake.ioas_exists(ioas));
  EXPECT_EQ(fake.live_objects(), 1u);
  // The device carries on alone: nothing is forwarded any more.
  const int maps = fake.calls(FakeIommufd::Op::kMapFixed);
  EXPECT_EQ(bench->Map(1, 0x200000, 0x200FFF, 0x200000, kRW), V::kSOk);
  EXPECT_EQ(fake.calls(FakeIommufd::Op::kMapFixed), maps);
}

}  // namespace
}  // namespace ionest::iommufd
