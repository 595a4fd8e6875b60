// virtio-iommu device tests without a vCPU: the device behind the modern virtio-pci transport,
// driven as Linux's virtio-iommu driver drives it (ViommuBench), endpoint DMA through ForRequester.
#include "iommu/virtio/virtio_iommu.h"

#include <atomic>
#include <cstring>
#include <thread>
#include <vector>

#include "gtest/gtest.h"
#include "iommu/virtio/testing/viommu_test_bench.h"

namespace ionest {
namespace {

using V = VirtioIommu;
using viommu_testing::ViommuBench;
using Seg = testing::FakeDriverRing::Seg;

constexpr uint32_t kEp = 0x10;   // 00:02.0
constexpr uint32_t kEp2 = 0x18;  // 00:03.0
constexpr uint64_t kIova = 0x100000;
constexpr uint64_t kPhys = 0x400000;
constexpr uint32_t kRW = V::kMapFRead | V::kMapFWrite;

class ViommuTest : public ::testing::Test {
 protected:
  void SetUp() override { Build({}); }
  void Build(V::Options o, bool start = true) {
    b.reset();
    auto made = ViommuBench::Create(std::move(o));
    ASSERT_TRUE(made.ok()) << made.status();
    b = std::move(*made);
    if (start) {
      ASSERT_TRUE(b->Start());
    }
  }
  DmaSpace& Space(uint32_t ep = kEp) { return b->iommu->ForRequester(static_cast<uint16_t>(ep)); }
  // u64 DMA read through endpoint `ep`; nullopt on a fault (kept in fault).
  std::optional<uint64_t> Read(uint64_t iova, uint32_t ep = kEp) {
    uint64_t v = 0;
    fault = {};
    if (!Space(ep).Read(iova, &v, 8, {}, &fault).ok()) return std::nullopt;
    return v;
  }
  bool Write(uint64_t iova, uint64_t v, uint32_t ep = kEp) {
    fault = {};
    return Space(ep).Write(iova, &v, 8, {}, &fault).ok();
  }
  uint64_t Phys(uint64_t gpa) { return *b->mem->ReadObj<uint64_t>(gpa); }
  void SetPhys(uint64_t gpa, uint64_t v) { ASSERT_TRUE(b->mem->WriteObj(gpa, v).ok()); }

  std::unique_ptr<ViommuBench> b;
  DmaFault fault;
};

// ---------------------------------------------------------------------------------------------
// Identity, features, configuration (§5.13.1-5.13.4)

TEST_F(ViommuTest, PciIdentityFeaturesAndConfig) {
  Build({}, false);
  EXPECT_EQ(b->ReadCfg32(pci::kVendorId), (0x1040u + 23) << 16 | 0x1AF4u);
  const uint64_t f = b->DeviceFeatures();
  for (uint64_t bit : {V::kFInputRange, V::kFDomainRange, V::kFMapUnmap, V::kFProbe, V::kFMmio, V::kFBypassConfig})
    EXPECT_TRUE(f & bit) << bit;
  EXPECT_FALSE(f & V::kFBypass);  // deprecated (§5.13.3.2)
  EXPECT_EQ(b->DevCfg(V::kCfgPageSizeMask, 8), (1ull << 12) | (1ull << 21) | (1ull << 30));
  EXPECT_EQ(b->DevCfg(V::kCfgInputStart, 8), 0u);
  EXPECT_EQ(b->DevCfg(V::kCfgInputEnd, 8), (1ull << 48) - 1);
  EXPECT_EQ(b->DevCfg(V::kCfgDomainStart, 4), 0u);
  EXPECT_EQ(b->DevCfg(V::kCfgDomainEnd, 4), 0xFFFFu);
  EXPECT_EQ(b->DevCfg(V::kCfgProbeSize, 4), 512u);
  EXPECT_EQ(b->DevCfg(V::kCfgBypass, 4), 0u);  // bypass 0 + reserved
  EXPECT_EQ(b->pci->msix()->vectors(), 3u);
  ASSERT_TRUE(b->Start());
  EXPECT_EQ(b->pci->driver_features() & ~ViommuBench::kLinuxFeatures, 0u);
}

TEST_F(ViommuTest, OptionsValidated) {
  auto mem = GuestMemory::Create({{0, 1 << 20}});
  ASSERT_TRUE(mem.ok());
  auto bad = [&](auto mutate) {
    V::Options o;
    mutate(o);
    return !V::Create(**mem, o).ok();
  };
  EXPECT_TRUE(bad([](V::Options& o) { o.page_size_mask = 0; }));
  EXPECT_TRUE(bad([](V::Options& o) { o.page_size_mask = 0x200; }));  // granule < 4 KiB
  EXPECT_TRUE(bad([](V::Options& o) { o.input_start = 2, o.input_end = 1; }));
  EXPECT_TRUE(bad([](V::Options& o) { o.max_domains = 70000; }));
  EXPECT_TRUE(bad([](V::Options& o) { o.probe_size = 8; }));  // cannot hold the MSI property
  EXPECT_TRUE(bad([](V::Options& o) { o.reserved.push_back({0xFEE80000, 0xFEF00000, V::kResvMemTReserved}); }));
  EXPECT_TRUE(bad([](V::Options& o) { o.reserved.push_back({0x1000, 0x1FFF, V::kResvMemTMsi}); }));
  EXPECT_FALSE(bad([](V::Options&) {}));
}

// ---------------------------------------------------------------------------------------------
// The Linux flow: PROBE, ATTACH, MAP, DMA, UNMAP, DETACH

TEST_F(ViommuTest, ProbeReportsMsiWindowAsResvMem) {
  std::vector<uint8_t> props;
  ViommuBench::Result r = b->Probe(kEp, &props);
  EXPECT_EQ(r.status, V::kSOk);
  EXPECT_EQ(r.used_len, 512u + 4);
  ASSERT_EQ(props.size(), 512u);
  uint16_t type, length;
  uint64_t start, end;
  std::memcpy(&type, &props[0], 2);
  std::memcpy(&length, &props[2], 2);
  std::memcpy(&start, &props[8], 8);
  std::memcpy(&end, &props[16], 8);
  EXPECT_EQ(type, V::kProbeTResvMem);
  EXPECT_EQ(length, 20u);  // without the 4-byte header (§5.13.6.7.2)
  EXPECT_EQ(props[4], V::kResvMemTMsi);
  EXPECT_EQ(start, 0xFEE00000u);
  EXPECT_EQ(end, 0xFEEFFFFFu);
  // The next property is empty and every remaining byte zero.
  for (size_t i = 24; i < props.size(); ++i) ASSERT_EQ(props[i], 0) << i;
}

TEST_F(ViommuTest, MapTranslatesAndCopiesWhereTheMappingSays) {
  ASSERT_EQ(b->Attach(1, kEp), V::kSOk);
  ASSERT_EQ(b->Map(1, kIova, kIova + 0x1FFF, kPhys, kRW), V::kSOk);
  // DMA write through the endpoint's space lands at PA = VA - virt_start + phys_start (§5.13.6.5).
  ASSERT_TRUE(Write(kIova + 0x1010, 0x1122334455667788));
  EXPECT_EQ(Phys(kPhys + 0x1010), 0x1122334455667788u);
  EXPECT_EQ(Phys(kIova + 0x1010), 0u);  // not identity
  SetPhys(kPhys + 0x18, 0xCAFE);
  EXPECT_EQ(Read(kIova + 0x18), 0xCAFEu);
  // A page-crossing 64-byte read spans both pages of the mapping.
  std::vector<uint8_t> buf(64);
  for (int i = 0; i < 64; ++i) ASSERT_TRUE(b->mem->WriteObj<uint8_t>(kPhys + 0xFE0 + i, static_cast<uint8_t>(i)).ok());
  ASSERT_TRUE(Space().Read(kIova + 0xFE0, buf.data(), 64).ok());
  for (int i = 0; i < 64; ++i) EXPECT_EQ(buf[i], i);
  // Beyond the mapping: MAPPING fault, reported on the eventq.
  EXPECT_FALSE(Read(kIova + 0x2000).has_value());
  EXPECT_EQ(fault.kind, DmaFaultKind::kNotPresent);
  EXPECT_EQ(fault.reason, V::kFaultRMapping);
  EXPECT_TRUE(fault.recorded);
  auto ev = b->TakeEvents();
  ASSERT_EQ(ev.size(), 1u);
  EXPECT_EQ(ev[0], (V::Fault{V::kFaultRMapping, V::kFaultFRead | V::kFaultFAddress, kEp, kIova + 0x2000}));
  EXPECT_EQ(b->iommu->stats().faults_reported, 1u);
  // The eventq interrupt went out (vector 2).
  bool evt_irq = false;
  for (const MsiMessage& m : b->msi.sent()) evt_irq |= m.data == 0x42;
  EXPECT_TRUE(evt_irq);
}

TEST_F(ViommuTest, PermissionsAreEnforcedAndReported) {
  ASSERT_EQ(b->Attach(1, kEp), V::kSOk);
  ASSERT_EQ(b->Map(1, 0x10000, 0x10FFF, kPhys, V::kMapFRead), V::kSOk);
  ASSERT_EQ(b->Map(1, 0x20000, 0x20FFF, kPhys + 0x1000, V::kMapFWrite), V::kSOk);
  ASSERT_EQ(b->Map(1, 0x30000, 0x30FFF, kPhys + 0x2000, 0), V::kSOk);
  SetPhys(kPhys, 7);
  EXPECT_EQ(Read(0x10000), 7u);
  EXPECT_FALSE(Write(0x10000, 9));  // MUST NOT allow writes without WRITE (§5.13.6.5.2)
  EXPECT_EQ(fault.kind, DmaFaultKind::kPermission);
  EXPECT_EQ(Phys(kPhys), 7u);
  EXPECT_TRUE(Write(0x20000, 9));  // write-only mapping
  EXPECT_EQ(Phys(kPhys + 0x1000), 9u);
  EXPECT_FALSE(Read(0x20000).has_value());  // and it is not readable
  EXPECT_FALSE(Read(0x30000).has_value());
  EXPECT_FALSE(Write(0x30000, 1));
  auto ev = b->TakeEvents();
  ASSERT_EQ(ev.size(), 4u);
  EXPECT_EQ(ev[0], (V::Fault{V::kFaultRMapping, V::kFaultFWrite | V::kFaultFAddress, kEp, 0x10000}));
  EXPECT_EQ(ev[1], (V::Fault{V::kFaultRMapping, V::kFaultFRead | V::kFaultFAddress, kEp, 0x20000}));
  EXPECT_EQ(ev[3].flags, V::kFaultFWrite | V::kFaultFAddress);
  // Cached translations keep the rights: a warm read does not open writes.
  EXPECT_EQ(Read(0x10000), 7u);
  EXPECT_FALSE(Write(0x10000, 9));
}

TEST_F(ViommuTest, LargeMappingsUseLargeIotlbPagesAndSpanManyMappings) {
  ASSERT_EQ(b->Attach(1, kEp), V::kSOk);
  ASSERT_EQ(b->Map(1, 0x40000000, 0x40000000 + (4ull << 20) - 1, 0x800000, kRW), V::kSOk);  // 2 x 2 MiB
  SetPhys(0x800000 + 0x201000, 0xAB);
  EXPECT_EQ(Read(0x40201000), 0xABu);
  const auto misses = b->iommu->stats().iotlb.misses;
  EXPECT_EQ(Read(0x40200000 + 0x1F0000), 0u);  // same 2 MiB page: an IOTLB hit
  EXPECT_EQ(b->iommu->stats().iotlb.misses, misses);
  // Three adjacent mappings with scattered physical pages: one 12 KiB read crosses all.
  ASSERT_EQ(b->Map(1, 0x7000, 0x7FFF, 0x903000, kRW), V::kSOk);
  ASSERT_EQ(b->Map(1, 0x8000, 0x8FFF, 0x901000, kRW), V::kSOk);
  ASSERT_EQ(b->Map(1, 0x9000, 0x9FFF, 0x902000, kRW), V::kSOk);
  std::vector<uint8_t> src(0x3000);
  for (size_t i = 0; i < src.size(); ++i) src[i] = static_cast<uint8_t>(i * 7 + i / 4096);
  ASSERT_TRUE(Space().Write(0x7000, src.data(), src.size()).ok());
  std::vector<uint8_t> page(0x1000);
  const uint64_t phys[3] = {0x903000, 0x901000, 0x902000};
  for (int p = 0; p < 3; ++p) {
    ASSERT_TRUE(b->mem->Read(phys[p], page.data(), page.size()).ok());
    EXPECT_EQ(0, std::memcmp(page.data(), src.data() + 0x1000 * p, 0x1000)) << p;
  }
}

TEST_F(ViommuTest, TwoEndpointsShareADomainAndAreIsolatedFromOthers) {
  ASSERT_EQ(b->Attach(1, kEp), V::kSOk);
  ASSERT_EQ(b->Attach(1, kEp2), V::kSOk);  // another endpoint may join (§5.13.6.3.2)
  ASSERT_EQ(b->Map(1, kIova, kIova + 0xFFF, kPhys, kRW), V::kSOk);
  SetPhys(kPhys, 0x55);
  EXPECT_EQ(Read(kIova, kEp2), 0x55u);
  ASSERT_EQ(b->Attach(2, kEp2), V::kSOk);  // moved: DETACH + ATTACH
  EXPECT_FALSE(Read(kIova, kEp2).has_value());
  EXPECT_EQ(Read(kIova, kEp), 0x55u);
  EXPECT_EQ(b->iommu->stats().domains, 2u);
}

// ---------------------------------------------------------------------------------------------
// UNMAP split/partial rules (§5.13.6.6, examples (1)-(7) in pages)

TEST_F(ViommuTest, UnmapSpecExamples) {
  ASSERT_EQ(b->Attach(1, kEp), V::kSOk);
  constexpr uint64_t P = 0x1000;
  auto map = [&](uint64_t s, uint64_t e) { return b->Map(1, s * P, (e + 1) * P - 1, kPhys + s * P, kRW); };
  auto unmap = [&](uint64_t s, uint64_t e) { return b->Unmap(1, s * P, (e + 1) * P - 1); };
  auto mapped = [&](uint64_t page) { return Read(page * P).has_value(); };
  auto clear = [&] { ASSERT_EQ(b->Unmap(1, 0, (1ull << 48) - 1), V::kSOk); };
  EXPECT_EQ(unmap(0, 4), V::kSOk);  // (1) nothing mapped
  ASSERT_EQ(map(0, 9), V::kSOk);  // (2)
  EXPECT_EQ(unmap(0, 9), V::kSOk);
  EXPECT_FALSE(mapped(0));
  ASSERT_EQ(map(0, 4), V::kSOk);  // (3)
  ASSERT_EQ(map(5, 9), V::kSOk);
  EXPECT_EQ(unmap(0, 9), V::kSOk);
  EXPECT_FALSE(mapped(0));
  EXPECT_FALSE(mapped(9));
  ASSERT_EQ(map(0, 9), V::kSOk);  // (4) would split: RANGE, nothing removed
  EXPECT_EQ(unmap(0, 4), V::kSRange);
  EXPECT_TRUE(mapped(0));
  EXPECT_TRUE(mapped(9));
  EXPECT_EQ(unmap(5, 9), V::kSRange);   // tail split
  EXPECT_EQ(unmap(3, 12), V::kSRange);  // head split, spilling over
  EXPECT_TRUE(mapped(5));
  clear();
  ASSERT_EQ(map(0, 4), V::kSOk);  // (5)
  ASSERT_EQ(map(5, 9), V::kSOk);
  EXPECT_EQ(unmap(0, 4), V::kSOk);
  EXPECT_FALSE(mapped(4));
  EXPECT_TRUE(mapped(5));
  clear();
  ASSERT_EQ(map(0, 4), V::kSOk);  // (6)
  EXPECT_EQ(unmap(0, 9), V::kSOk);
  EXPECT_FALSE(mapped(0));
  ASSERT_EQ(map(0, 4), V::kSOk);  // (7)
  ASSERT_EQ(map(10, 14), V::kSOk);
  EXPECT_EQ(unmap(0, 14), V::kSOk);
  EXPECT_FALSE(mapped(10));
  EXPECT_EQ(b->iommu->stats().mappings, 0u);
  // A range across three mappings where the middle one is split: nothing is removed.
  ASSERT_EQ(map(0, 1), V::kSOk);
  ASSERT_EQ(map(2, 5), V::kSOk);
  EXPECT_EQ(unmap(0, 3), V::kSRange);
  EXPECT_EQ(b->iommu->stats().mappings, 2u);
}

TEST_F(ViommuTest, UnmapInvalidatesCachedTranslations) {
  ASSERT_EQ(b->Attach(1, kEp), V::kSOk);
  ASSERT_EQ(b->Map(1, 0x200000, 0x3FFFFF, kPhys, kRW), V::kSOk);  // one 2 MiB IOTLB page
  ASSERT_EQ(b->Map(1, kIova, kIova + 0xFFF, kPhys, kRW), V::kSOk);
  ASSERT_TRUE(Read(0x200000).has_value());
  ASSERT_TRUE(Read(0x3FF000).has_value());
  ASSERT_TRUE(Read(kIova).has_value());
  ASSERT_EQ(b->Unmap(1, 0x200000, 0x3FFFFF), V::kSOk);
  EXPECT_FALSE(Read(0x3FF000).has_value());
  EXPECT_EQ(Read(kIova), Phys(kPhys));
  ASSERT_EQ(b->Map(1, 0x200000, 0x200FFF, kPhys + 0x1000, V::kMapFRead), V::kSOk);  // remap elsewhere
  SetPhys(kPhys + 0x1000, 0x77);
  EXPECT_EQ(Read(0x200000), 0x77u);
  EXPECT_FALSE(Read(0x201000).has_value());
}

// ---------------------------------------------------------------------------------------------
// MAP validation (§5.13.6.5.2, §5.13.6.8.1.2, §5.13.6)

TEST_F(ViommuTest, MapValidation) {
  ASSERT_EQ(b->Attach(1, kEp), V::kSOk);
  ASSERT_EQ(b->Map(1, kIova, kIova + 0x3FFF, kPhys, kRW), V::kSOk);
  // Overlapping an existing mapping: INVAL (head, tail, inside, around).
  EXPECT_EQ(b->Map(1, kIova - 0x1000, kIova + 0xFFF, kPhys, kRW), V::kSInval);
  EXPECT_EQ(b->Map(1, kIova + 0x3000, kIova + 0x4FFF, kPhys, kRW), V::kSInval);
  EXPECT_EQ(b->Map(1, kIova + 0x1000, kIova + 0x1FFF, kPhys, kRW), V::kSInval);
  EXPECT_EQ(b->Map(1, kIova - 0x1000, kIova + 0x4FFF, kPhys, kRW), V::kSInval);
  EXPECT_EQ(b->Map(1, kIova + 0x4000, kIova + 0x4FFF, kPhys, kRW), V::kSOk);  // adjacent is fine
  // Alignment on the 4 KiB granule: RANGE.
  EXPECT_EQ(b->Map(1, 0x800800, 0x800FFF, kPhys, kRW), V::kSRange);
  EXPECT_EQ(b->Map(1, 0x800000, 0x800FFE, kPhys, kRW), V::kSRange);
  EXPECT_EQ(b->Map(1, 0x800000, 0x800FFF, kPhys + 4, kRW), V::kSRange);
  EXPECT_EQ(b->Map(1, 0x800000, 0x800000, kPhys, kRW), V::kSRange);  // one byte
  EXPECT_EQ(b->Map(1, 0x801000, 0x800FFF, kPhys, kRW), V::kSInval);   // virt_end < virt_start
  // Outside input_range [0, 2^48): RANGE; phys_end past 2^64: RANGE.
  EXPECT_EQ(b->Map(1, 1ull << 48, (1ull << 48) + 0xFFF, kPhys, kRW), V::kSRange);
  EXPECT_EQ(b->Map(1, 0xFFFFFFFFFFFFF000, ~0ull, kPhys, kRW), V::kSRange);
  EXPECT_EQ(b->Map(1, 0x800000, 0x801FFF, 0xFFFFFFFFFFFFF000, kRW), V::kSRange);
  // Over the MSI RESV_MEM region: refused.
  EXPECT_EQ(b->Map(1, 0xFEE00000, 0xFEE00FFF, 0xFEE00000, V::kMapFWrite), V::kSRange);
  EXPECT_EQ(b->Map(1, 0xFE000000, 0xFFFFFFFF, kPhys, kRW), V::kSRange);
  // Unknown flags (MUST INVAL), domain errors.
  EXPECT_EQ(b->Map(1, 0x800000, 0x800FFF, kPhys, 8), V::kSInval);
  EXPECT_EQ(b->Map(1, 0x800000, 0x800FFF, kPhys, 0x80000000), V::kSInval);
  EXPECT_EQ(b->Map(2, 0x800000, 0x800FFF, kPhys, kRW), V::kSNoEnt);
  EXPECT_EQ(b->Map(0x10000, 0x800000, 0x800FFF, kPhys, kRW), V::kSRange);  // outside domain_range
  // MMIO is a known flag with F_MMIO negotiated.
  EXPECT_EQ(b->Map(1, 0x800000, 0x800FFF, 0xC0000000, V::kMapFWrite | V::kMapFMmio), V::kSOk);
  EXPECT_EQ(b->iommu->stats().mappings, 3u);
}

TEST_F(ViommuTest, FeatureGatedFlagsAndRequests) {
  // Without F_MMIO the MMIO flag is unknown; without MAP_UNMAP, MAP/UNMAP are unsupported;
  // without BYPASS_CONFIG the ATTACH bypass flag is unknown and `bypass` is read-only.
  ASSERT_TRUE(b->Start(kVirtioFVersion1 | kVirtioFAccessPlatform | V::kFProbe));
  EXPECT_EQ(b->Attach(1, kEp, V::kAttachFBypass), V::kSInval);
  ASSERT_EQ(b->Attach(1, kEp), V::kSOk);
  EXPECT_EQ(b->Map(1, kIova, kIova + 0xFFF, kPhys, kRW), V::kSUnsupp);
  EXPECT_EQ(b->Unmap(1, kIova, kIova + 0xFFF), V::kSUnsupp);
  b->WriteDevCfg(V::kCfgBypass, 1, 1);
  EXPECT_EQ(b->DevCfg(V::kCfgBypass, 1), 0u);
  ASSERT_TRUE(b->Start(kVirtioFVersion1 | kVirtioFAccessPlatform | V::kFMapUnmap));
  ASSERT_EQ(b->Attach(1, kEp), V::kSOk);
  EXPECT_EQ(b->Map(1, kIova, kIova + 0xFFF, kPhys, kRW | V::kMapFMmio), V::kSInval);
  EXPECT_EQ(b->Probe(kEp).status, V::kSUnsupp);  // PROBE offered but not negotiated
}

// ---------------------------------------------------------------------------------------------
// ATTACH / DETACH (§5.13.6.3-4)

TEST_F(ViommuTest, AttachValidation) {
  EXPECT_EQ(b->Send(ViommuBench::AttachReq(1, kEp, 0, 1)).status, V::kSInval);          // reserved
  EXPECT_EQ(b->Send(ViommuBench::AttachReq(1, kEp, 0, 0x80000000)).status, V::kSInval);  // reserved
  EXPECT_EQ(b->Attach(1, kEp, 2), V::kSInval);                                           // unknown flag
  EXPECT_EQ(b->Attach(1, 0x10000), V::kSNoEnt);  // endpoints are 16-bit requester ids
  EXPECT_EQ(b->Attach(0x10000, kEp), V::kSRange);
  EXPECT_EQ(b->iommu->stats().domains, 0u);
  // Reserved bytes of the head are ignored (§5.13.6.2).
  std::vector<uint8_t> req = ViommuBench::AttachReq(1, kEp);
  req[1] = req[2] = req[3] = 0xFF;
  EXPECT_EQ(b->Send(req).status, V::kSOk);
  EXPECT_EQ(b->Attach(1, kEp), V::kSOk);  // again: already attached
  EXPECT_EQ(b->Attach(1, kEp2, V::kAttachFBypass), V::kSInval);  // inconsistent with domain 1
  ASSERT_EQ(b->Attach(2, kEp2, V::kAttachFBypass), V::kSOk);
  EXPECT_EQ(b->Attach(2, kEp), V::kSInval);  // flag missing for a bypass domain
  EXPECT_EQ(b->iommu->stats().domains, 2u);
  // The tail's reserved bytes come back zero.
  b->Send(ViommuBench::AttachReq(1, kEp));
  EXPECT_EQ(*b->mem->ReadObj<uint32_t>(ViommuBench::kReqTail), 0u);
}

TEST_F(ViommuTest, DetachRulesAndDomainLifetime) {
  ASSERT_EQ(b->Attach(1, kEp), V::kSOk);
  ASSERT_EQ(b->Map(1, kIova, kIova + 0xFFF, kPhys, kRW), V::kSOk);
  ASSERT_TRUE(Read(kIova).has_value());
  EXPECT_EQ(b->Detach(1, 0x20000), V::kSNoEnt);
  EXPECT_EQ(b->Detach(2, kEp), V::kSInval);   // not attached to domain 2
  EXPECT_EQ(b->Detach(1, kEp2), V::kSInval);  // kEp2 not attached
  EXPECT_EQ(b->Send(ViommuBench::DetachReq(1, kEp, ~0ull)).status, V::kSOk);  // reserved ignored
  // After DETACH no mapping of the domain is reachable (§5.13.6.4.2): blocked, DOMAIN fault.
  EXPECT_FALSE(Read(kIova).has_value());
  EXPECT_EQ(fault.kind, DmaFaultKind::kBlocked);
  EXPECT_EQ(fault.reason, V::kFaultRDomain);
  // The domain ceased to exist with its last endpoint, mappings included.
  EXPECT_EQ(b->Map(1, kIova, kIova + 0xFFF, kPhys, kRW), V::kSNoEnt);
  EXPECT_EQ(b->iommu->stats().mappings, 0u);
  ASSERT_EQ(b->Attach(1, kEp), V::kSOk);  // ID reused: empty domain
  EXPECT_FALSE(Read(kIova).has_value());
  auto ev = b->TakeEvents();
  ASSERT_EQ(ev.size(), 2u);
  EXPECT_EQ(ev[0], (V::Fault{V::kFaultRDomain, V::kFaultFRead | V::kFaultFAddress, kEp, kIova}));
  EXPECT_EQ(ev[1].reason, V::kFaultRMapping);
}

TEST_F(ViommuTest, DeviceResetDetachesEverything) {
  ASSERT_EQ(b->Attach(1, kEp), V::kSOk);
  ASSERT_EQ(b->Map(1, kIova, kIova + 0xFFF, kPhys, kRW), V::kSOk);
  ASSERT_TRUE(Read(kIova).has_value());
  b->Wr(ViommuBench::kBar4 + 0x14, 0, 1);  // §5.13.5: endpoints not attached after reset
  EXPECT_EQ(b->iommu->stats().domains, 0u);
  EXPECT_FALSE(Read(kIova).has_value());
  EXPECT_EQ(fault.reason, V::kFaultRDomain);
}

// ---------------------------------------------------------------------------------------------
// Bypass (§5.13.4, §5.13.6, §5.13.6.3)

TEST_F(ViommuTest, BypassConfigFieldResetValueAndDriverWrites) {
  // boot_bypass off: unattached endpoints are blocked even before a driver exists.
  Build({}, false);
  SetPhys(kIova, 0x1234);
  EXPECT_FALSE(Read(kIova).has_value());
  EXPECT_EQ(fault.kind, DmaFaultKind::kBlocked);
  ASSERT_TRUE(b->Start());
  b->WriteDevCfg(V::kCfgBypass, 1, 1);
  EXPECT_EQ(b->DevCfg(V::kCfgBypass, 1), 1u);
  EXPECT_EQ(Read(kIova), 0x1234u);  // identity
  b->WriteDevCfg(V::kCfgBypass, 2, 1);  // only 0 or 1 (§5.13.4.1): ignored
  EXPECT_EQ(b->DevCfg(V::kCfgBypass, 1), 1u);
  b->WriteDevCfg(V::kCfgInputEnd, 0, 8);  // other fields are read-only
  EXPECT_EQ(b->DevCfg(V::kCfgInputEnd, 8), (1ull << 48) - 1);
  // Attached endpoints are translated whatever `bypass` says.
  ASSERT_EQ(b->Attach(1, kEp), V::kSOk);
  EXPECT_FALSE(Read(kIova).has_value());
  EXPECT_EQ(Read(kIova, kEp2), 0x1234u);
  // Kept on device reset, restored on system reset (§5.13.4.2).
  b->Wr(ViommuBench::kBar4 + 0x14, 0, 1);
  EXPECT_EQ(b->DevCfg(V::kCfgBypass, 1), 1u);
  EXPECT_EQ(Read(kIova), 0x1234u);
  b->iommu->SystemReset();
  EXPECT_EQ(b->DevCfg(V::kCfgBypass, 1), 0u);
  EXPECT_FALSE(Read(kIova).has_value());
  // boot_bypass on: identity before any driver, and after a system reset; the driver may block.
  Build(V::Options{.boot_bypass = true}, false);
  SetPhys(kIova, 0x1234);
  EXPECT_EQ(b->DevCfg(V::kCfgBypass, 1), 1u);
  EXPECT_EQ(Read(kIova), 0x1234u);
  ASSERT_TRUE(b->Start());
  b->WriteDevCfg(V::kCfgBypass, 0, 1);
  EXPECT_FALSE(Read(kIova).has_value());
  b->iommu->SystemReset();
  EXPECT_EQ(Read(kIova), 0x1234u);
}

TEST_F(ViommuTest, AttachBypassDomain) {
  SetPhys(kIova, 0x4321);
  ASSERT_EQ(b->Attach(7, kEp, V::kAttachFBypass), V::kSOk);
  EXPECT_EQ(Read(kIova), 0x4321u);  // identity, bypass field 0
  EXPECT_TRUE(Write(0x3000, 5));
  EXPECT_EQ(Phys(0x3000), 5u);
  EXPECT_EQ(b->Map(7, kIova, kIova + 0xFFF, kPhys, kRW), V::kSInval);  // §5.13.6.5.2
  EXPECT_EQ(b->Unmap(7, kIova, kIova + 0xFFF), V::kSInval);            // §5.13.6.6.2
  ASSERT_EQ(b->Attach(8, kEp), V::kSOk);                                // leave the bypass domain
  EXPECT_FALSE(Read(kIova).has_value());
  EXPECT_EQ(b->iommu->stats().domains, 1u);
}

// ---------------------------------------------------------------------------------------------
// PROBE (§5.13.6.7)

TEST_F(ViommuTest, ProbeValidation) {
  EXPECT_EQ(b->Probe(0x10000).status, V::kSNoEnt);
  std::vector<uint8_t> props;
  ViommuBench::Result r = b->Probe(kEp, &props, -8);  // properties area 8 bytes short
  EXPECT_EQ(r.status, V::kSInval);
  for (size_t i = 0; i < 504; ++i) ASSERT_EQ(props[i], 0xAA) << i;  // no property written
  // A larger writable part: the tail still follows probe_size bytes of properties.
  r = b->Probe(kEp, &props, 16);
  EXPECT_EQ(r.used_len, 512u + 4);
  EXPECT_EQ(*b->mem->ReadObj<uint8_t>(ViommuBench::kReqTail + 512), V::kSOk);
  // Reserved bytes of the request are ignored.
  std::vector<uint8_t> req = ViommuBench::ProbeReq(kEp);
  std::memset(req.data() + 8, 0xFF, 64);
  EXPECT_EQ(b->Send(req, 516).status, V::kSOk);
  // probe_size 0: PROBE not offered; a PROBE is returned unwritten with used length 0.
  Build(V::Options{.probe_size = 0});
  EXPECT_FALSE(b->DeviceFeatures() & V::kFProbe);
  r = b->Send(ViommuBench::ProbeReq(kEp), 516);
  EXPECT_TRUE(r.used);
  EXPECT_EQ(r.used_len, 0u);
  EXPECT_EQ(r.status, 0xEE);
  EXPECT_EQ(*b->mem->ReadObj<uint8_t>(ViommuBench::kReqTail), 0xAA);
}

// ---------------------------------------------------------------------------------------------
// Hostile requests and chains

TEST_F(ViommuTest, UnknownTypesAndUnparseableChainsAreReturnedUnwritten) {
  for (uint8_t type : {0, 6, 0x7F, 0xFF}) {
    ViommuBench::Result r = b->Send(ViommuBench::Head(type, 36));
    EXPECT_TRUE(r.used) << int{type};
    EXPECT_EQ(r.used_len, 0u) << int{type};  // §5.13.6.2: not written, used length 0
    EXPECT_EQ(r.status, 0xEE) << int{type};
  }
  const uint64_t buf = ViommuBench::kReqBuf, tail = ViommuBench::kReqTail;
  ASSERT_TRUE(b->mem->Write(buf, ViommuBench::AttachReq(1, kEp).data(), 20).ok());
  // No writable part: no tail to write.
  ViommuBench::Result r = b->SendChain({{buf, 20, false}}, tail);
  EXPECT_EQ(r.used_len, 0u);
  EXPECT_EQ(r.status, 0xEE);
  // Writable part shorter than a tail.
  r = b->SendChain({{buf, 20, false}, {tail, 3, true}}, tail);
  EXPECT_EQ(r.used_len, 0u);
  // Wrong direction: everything device-writable (no request to read).
  r = b->SendChain({{buf, 24, true}}, tail);
  EXPECT_EQ(r.used_len, 0u);
  // Readable part too short for the type, tail present: INVAL.
  r = b->SendChain({{buf, 12, false}, {tail, 4, true}}, tail);
  EXPECT_EQ(r.status, V::kSInval);
  EXPECT_EQ(r.used_len, 4u);
  EXPECT_EQ(b->iommu->stats().domains, 0u);
  // Split over several descriptors, with the tail in the first writable byte of two buffers.
  ASSERT_EQ(b->Attach(1, kEp), V::kSOk);
  ASSERT_TRUE(b->mem->Write(buf, ViommuBench::MapReq(1, 0, 0xFFF, 0, kRW).data(), 36).ok());
  r = b->SendChain({{buf, 5, false}, {buf + 5, 31, false}, {tail, 2, true}, {tail + 2, 30, true}}, tail);
  EXPECT_EQ(r.status, V::kSOk);
  EXPECT_EQ(r.used_len, 4u);
  EXPECT_EQ(b->iommu->stats().mappings, 1u);
  // A request buffer outside guest RAM: the tail says IOERR.
  r = b->SendChain({{buf, 1, false}, {0x7000000000, 35, false}, {tail, 4, true}}, tail);
  EXPECT_EQ(r.status, V::kSIoErr);
  EXPECT_EQ(b->Status() & VirtioPciDevice::kStatusNeedsReset, 0);
  const V::Stats s = b->iommu->stats();
  EXPECT_GE(s.unparsed, 7u);
  EXPECT_GE(s.status_counts[V::kSInval], 1u);
}

TEST_F(ViommuTest, MalformedRingNeedsReset) {
  // Readable descriptor after a writable one (§2.7.4.2): ring-level error, DEVICE_NEEDS_RESET.
  const uint64_t buf = ViommuBench::kReqBuf, tail = ViommuBench::kReqTail;
  ViommuBench::Result r = b->SendChain({{tail, 4, true}, {buf, 20, false}}, tail);
  EXPECT_FALSE(r.used);
  EXPECT_TRUE(b->Status() & VirtioPciDevice::kStatusNeedsReset);
  // Reinitialisation recovers; then a huge avail index.
  ASSERT_TRUE(b->Start());
  ASSERT_EQ(b->Attach(1, kEp), V::kSOk);
  b->req->SetAvailIdx(0x8000);
  b->NotifyQueue(0);
  EXPECT_TRUE(b->Status() & VirtioPciDevice::kStatusNeedsReset);
  ASSERT_TRUE(b->Start());
  EXPECT_EQ(b->iommu->stats().domains, 0u);
}

TEST_F(ViommuTest, HugeRangesAndIds) {
  ASSERT_EQ(b->Attach(0xFFFF, kEp), V::kSOk);  // top of domain_range
  const uint64_t top = (1ull << 48) - 1;
  // The whole input range except the MSI window, in two mappings.
  ASSERT_EQ(b->Map(0xFFFF, 0, 0xFEDFFFFF, 0, kRW), V::kSOk);
  ASSERT_EQ(b->Map(0xFFFF, 0xFEF00000, top, 0xFEF00000, kRW), V::kSOk);
  SetPhys(0x5000, 0x99);
  EXPECT_EQ(Read(0x5000), 0x99u);
  EXPECT_FALSE(Read(top - 7).has_value());  // identity-mapped but not RAM: bad address
  EXPECT_EQ(fault.kind, DmaFaultKind::kBadAddress);
  EXPECT_FALSE(Read(1ull << 48).has_value());  // outside every mapping
  EXPECT_EQ(fault.reason, V::kFaultRMapping);
  EXPECT_EQ(b->Unmap(0xFFFF, 0, ~0ull), V::kSRange);  // outside input_range
  EXPECT_EQ(b->Unmap(0xFFFF, 5, 4), V::kSInval);
  EXPECT_EQ(b->Unmap(0xFFFF, 0, top), V::kSOk);
  EXPECT_EQ(b->iommu->stats().mappings, 0u);
  EXPECT_FALSE(Read(0x5000).has_value());
  EXPECT_EQ(b->Unmap(0x10000, 0, 0xFFF), V::kSRange);
  EXPECT_EQ(b->Unmap(5, 0, 0xFFF), V::kSNoEnt);
  EXPECT_EQ(b->Send(ViommuBench::UnmapReq(0xFFFF, 0, 0xFFF, 1)).status, V::kSInval);  // reserved
}

// ---------------------------------------------------------------------------------------------
// Caps (S_NOMEM)

TEST_F(ViommuTest, DomainAndMappingCaps) {
  Build(V::Options{.max_domains = 3, .max_mappings = 4});
  ASSERT_EQ(b->Attach(1, 0x10), V::kSOk);
  ASSERT_EQ(b->Attach(2, 0x11), V::kSOk);
  ASSERT_EQ(b->Attach(3, 0x12), V::kSOk);
  EXPECT_EQ(b->Attach(4, 0x13), V::kSNoMem);
  EXPECT_EQ(b->Attach(3, 0x13), V::kSOk);  // joining an existing domain needs no slot
  // Moving the only endpoint of domain 1 into a new one frees the slot on the way.
  EXPECT_EQ(b->Attach(4, 0x10), V::kSOk);
  ASSERT_EQ(b->Map(2, 0, 0xFFF, kPhys, kRW), V::kSOk);
  EXPECT_EQ(b->Attach(5, 0x12), V::kSNoMem);  // domain 3 keeps 0x13, so no slot frees
  // Failure has no side effect: 0x12 is still attached to domain 3 (a MAPPING, not DOMAIN, fault).
  EXPECT_FALSE(Read(0, 0x12).has_value());
  EXPECT_EQ(fault.reason, V::kFaultRMapping);
  EXPECT_EQ(Read(0, 0x11), Phys(kPhys));
  EXPECT_EQ(b->iommu->stats().domains, 3u);
  for (uint64_t i = 1; i < 4; ++i) ASSERT_EQ(b->Map(2, i << 12, (i << 12) + 0xFFF, kPhys, kRW), V::kSOk);
  EXPECT_EQ(b->Map(4, 0, 0xFFF, kPhys, kRW), V::kSNoMem);  // per device, not per domain
  ASSERT_EQ(b->Unmap(2, 0x1000, 0x1FFF), V::kSOk);
  EXPECT_EQ(b->Map(4, 0, 0xFFF, kPhys, kRW), V::kSOk);
  EXPECT_EQ(b->Map(4, 0x1000, 0x1FFF, kPhys, kRW), V::kSNoMem);
  ASSERT_EQ(b->Detach(2, 0x11), V::kSOk);  // destroying domain 2 returns its 3 mappings
  EXPECT_EQ(b->iommu->stats().mappings, 1u);
  EXPECT_EQ(b->Map(4, 0x1000, 0x1FFF, kPhys, kRW), V::kSOk);
  EXPECT_EQ(b->iommu->stats().status_counts[V::kSNoMem], 4u);
}

// ---------------------------------------------------------------------------------------------
// Fault events (§5.13.6.9)

TEST_F(ViommuTest, FaultsWaitForBuffersAndAreBounded) {
  Build(V::Options{.max_pending_faults = 3}, false);
  ASSERT_TRUE(b->Start(std::nullopt, /*fill_events=*/false));
  for (uint64_t i = 0; i < 5; ++i) EXPECT_FALSE(Read(0x1000 * i).has_value());
  V::Stats s = b->iommu->stats();
  EXPECT_EQ(s.faults_pending, 3u);
  EXPECT_EQ(s.faults_dropped, 2u);
  EXPECT_TRUE(b->TakeEvents().empty());
  // A too-small buffer is returned unwritten; the fault waits for the next one.
  b->PostEventBuffer(true, 16);
  std::vector<uint32_t> lens;
  EXPECT_TRUE(b->TakeEvents(&lens, /*repost=*/false).empty());
  ASSERT_EQ(lens, std::vector<uint32_t>{0});
  b->PostEventBuffer(true);
  b->PostEventBuffer(true);
  auto ev = b->TakeEvents(nullptr, false);
  ASSERT_EQ(ev.size(), 2u);
  EXPECT_EQ(ev[0], (V::Fault{V::kFaultRDomain, V::kFaultFRead | V::kFaultFAddress, kEp, 0}));
  EXPECT_EQ(ev[1].address, 0x1000u);
  b->PostEventBuffer(true);
  ev = b->TakeEvents(nullptr, false);
  ASSERT_EQ(ev.size(), 1u);
  EXPECT_EQ(ev[0].address, 0x2000u);
  s = b->iommu->stats();
  EXPECT_EQ(s.faults_pending, 0u);
  EXPECT_EQ(s.faults_reported, 3u);
  // With buffers waiting, a fault is delivered at once (device-initiated Kick), reserved zero.
  b->PostEventBuffer(false);
  EXPECT_FALSE(Write(0x9000, 1));
  uint8_t raw[24];
  ASSERT_TRUE(b->mem->Read(ViommuBench::kEvtBuf + 32 * 4, raw, 24).ok());  // 5th buffer
  ev = b->TakeEvents(nullptr, false);
  ASSERT_EQ(ev.size(), 1u);
  EXPECT_EQ(ev[0], (V::Fault{V::kFaultRDomain, V::kFaultFWrite | V::kFaultFAddress, kEp, 0x9000}));
  EXPECT_EQ(raw[1] | raw[2] | raw[3] | raw[12] | raw[13] | raw[14] | raw[15], 0);
}

TEST_F(ViommuTest, FaultBeforeTheDriverIsReportedOnceItRuns) {
  // boot-bypass off: a DMA before the driver loaded is blocked and waits; Linux fills the eventq
  // without a kick, so the first request (PROBE) lets the device deliver it.
  Build({}, false);
  EXPECT_FALSE(Write(0x2000, 1, kEp2));
  EXPECT_EQ(b->iommu->stats().faults_pending, 1u);
  ASSERT_TRUE(b->Start());  // device reset keeps pending faults
  EXPECT_TRUE(b->TakeEvents().empty());
  EXPECT_EQ(b->Probe(kEp).status, V::kSOk);
  auto ev = b->TakeEvents();
  ASSERT_EQ(ev.size(), 1u);
  EXPECT_EQ(ev[0], (V::Fault{V::kFaultRDomain, V::kFaultFWrite | V::kFaultFAddress, kEp2, 0x2000}));
  b->iommu->SystemReset();
  EXPECT_EQ(b->iommu->stats().faults_pending, 0u);
}

TEST_F(ViommuTest, UnmanagedRequestersAndPasidsAreBlocked) {
  Build(V::Options{.boot_bypass = true, .endpoints = {{0x10, 0x1F}}});
  SetPhys(kIova, 3);
  EXPECT_EQ(Read(kIova, 0x10), 3u);
  EXPECT_FALSE(Read(kIova, 0x30).has_value());  // not behind this IOMMU: never translated
  EXPECT_EQ(fault.kind, DmaFaultKind::kBlocked);
  EXPECT_FALSE(fault.recorded);
  EXPECT_EQ(b->iommu->stats().faults_unreportable, 1u);
  EXPECT_EQ(b->Attach(1, 0x30), V::kSNoEnt);
  EXPECT_EQ(b->Probe(0x30).status, V::kSNoEnt);
  EXPECT_EQ(b->Detach(1, 0x30), V::kSNoEnt);
  // A PASID-tagged request: no PASID support, blocked and reported as UNKNOWN.
  uint64_t v;
  EXPECT_FALSE(Space(0x10).Read(kIova, &v, 8, DmaAttrs{5}, &fault).ok());
  EXPECT_EQ(fault.kind, DmaFaultKind::kBlocked);
  auto ev = b->TakeEvents();
  ASSERT_EQ(ev.size(), 1u);
  EXPECT_EQ(ev[0].reason, V::kFaultRUnknown);
}

// ---------------------------------------------------------------------------------------------
// Concurrency: endpoint DMA on other threads while the driver maps and unmaps.

TEST_F(ViommuTest, ConcurrentTranslationDuringMapUnmap) {
  ASSERT_EQ(b->Attach(1, kEp), V::kSOk);
  ASSERT_EQ(b->Map(1, 0, 0xFFFF, kPhys, kRW), V::kSOk);  // stable mapping
  for (uint64_t p = 0; p < 16; ++p) SetPhys(kPhys + p * 0x1000, p);
  for (uint64_t p = 0; p < 16; ++p) SetPhys(0x800000 + p * 0x1000, 100 + p);
  std::atomic<bool> stop{false};
  std::atomic<uint64_t> bad{0}, ok{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 2; ++t)
    threads.emplace_back([&, t] {
      for (uint64_t i = 0; !stop; ++i) {
        const uint64_t p = (i + t) % 16;
        uint64_t v = ~0ull;
        if (!Space().Read(p * 0x1000, &v, 8).ok() || v != p) ++bad;
        // The flapping mapping: either a fault or the right value, never another page's.
        if (Space().Read(0x100000 + p * 0x1000, &v, 8).ok()) {
          if (v != 100 + p) ++bad;
          ++ok;
        }
      }
    });
  for (int round = 0; round < 300; ++round) {
    ASSERT_EQ(b->Map(1, 0x100000, 0x10FFFF, 0x800000, kRW), V::kSOk);
    ASSERT_EQ(b->Unmap(1, 0x100000, 0x10FFFF), V::kSOk);
  }
  stop = true;
  for (auto& t : threads) t.join();
  EXPECT_EQ(bad.load(), 0u);
  // Faults kept arriving while the driver refilled buffers: nothing broke the transport.
  b->TakeEvents();
  EXPECT_EQ(b->Status() & VirtioPciDevice::kStatusNeedsReset, 0);
}

}  // namespace
}  // namespace ionest
