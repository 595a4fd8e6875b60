// Machine-level tests of the SMMUv3 model without a vCPU: a Linux-like driver (testing/) programs
// it through its register window and in-memory tables, devices DMA through ForRequester(sid).
#include "iommu/smmuv3/smmuv3_iommu.h"

#include <atomic>
#include <memory>
#include <random>
#include <thread>

#include "gtest/gtest.h"
#include "iommu/smmuv3/testing/smmuv3_driver.h"
#include "iommu/testing/vmsa_builder.h"

namespace ionest::smmuv3 {
namespace {

using iommu_testing::OffsetPhysMemory;
using iommu_testing::PageAllocator;
using iommu_testing::RecordingDmaClient;
using iommu_testing::RecordingMsiSink;
using iommu_testing::VmsaTableBuilder;
using testing::CdStage1;
using testing::Command;
using testing::EventRecord;
using testing::Smmuv3Driver;

constexpr uint64_t kRam = 256ull << 20;
constexpr uint64_t kData = 16ull << 20;      // DMA targets
constexpr uint64_t kTables = 64ull << 20;    // driver and page-table pages
constexpr uint64_t kIpaOffset = 128ull << 20;  // nested: IPA x lives at PA x + 128 MiB
constexpr uint32_t kRW = kDmaRead | kDmaWrite;
constexpr uint16_t kSid = 0x0108;  // bus 1, device 1, function 0

uint8_t Type(const EventRecord& e) { return static_cast<uint8_t>(e[0] & 0xFF); }
uint32_t Sid(const EventRecord& e) { return static_cast<uint32_t>(e[0] >> 32); }

class Smmuv3Test : public ::testing::Test {
 protected:
  void SetUp() override { Build(Smmuv3Profile{}); }
  void Build(const Smmuv3Profile& profile, Smmuv3Driver::Options options = {}) {
    driver_.reset();
    smmu_.reset();
    mem_ = *GuestMemory::Create({{0, kRam}});
    alloc_ = std::make_unique<PageAllocator>(*mem_, kTables, 48ull << 20);
    ASSERT_TRUE(Smmuv3Iommu::Validate(profile).ok());
    smmu_ = std::make_unique<Smmuv3Iommu>(*mem_, msi_, profile);
    driver_ = std::make_unique<Smmuv3Driver>(*smmu_, *mem_, *alloc_);
    ASSERT_TRUE(driver_->Probe().ok());
    ASSERT_TRUE(driver_->Init(options).ok());
    msi_.Take();
  }
  // A stage-1 domain for `sid`: one CD (ASID `asid`) with a 48-bit table.
  VmsaTableBuilder Stage1Domain(uint32_t sid, uint16_t asid, bool hardware_af = false) {
    VmsaTableBuilder t = *VmsaTableBuilder::CreateStage1(*mem_, *alloc_, 48);
    const uint64_t cd_table = *driver_->AllocCdTable(0);
    EXPECT_TRUE(driver_->WriteCd(cd_table, 0, kS1FmtLinear, 0, CdStage1(t.root(), asid, 48, hardware_af)).ok());
    EXPECT_TRUE(driver_->WriteSte(sid, testing::SteStage1(cd_table)).ok());
    return t;
  }
  DmaSpace& Space(uint16_t sid = kSid) { return smmu_->ForRequester(sid); }
  absl::Status Write(uint64_t iova, uint32_t value, const DmaAttrs& attrs = {}, uint16_t sid = kSid) {
    return Space(sid).Write(iova, &value, sizeof(value), attrs);
  }
  absl::StatusOr<uint32_t> Read(uint64_t iova, const DmaAttrs& attrs = {}, uint16_t sid = kSid) {
    uint32_t v = 0;
    absl::Status s = Space(sid).Read(iova, &v, sizeof(v), attrs);
    if (!s.ok()) return s;
    return v;
  }
  uint32_t Phys(uint64_t pa) { return *mem_->ReadObj<uint32_t>(pa); }
  // The fault kind of a 4-byte read (it must fault).
  DmaFaultKind ReadFaultKind(uint64_t iova) {
    DmaFault fault;
    uint32_t v = 0;
    EXPECT_FALSE(Space().Read(iova, &v, sizeof(v), {}, &fault).ok());
    return fault.kind;
  }

  RecordingMsiSink msi_;
  std::unique_ptr<GuestMemory> mem_;
  std::unique_ptr<PageAllocator> alloc_;
  std::unique_ptr<Smmuv3Iommu> smmu_;
  std::unique_ptr<Smmuv3Driver> driver_;
};

TEST_F(Smmuv3Test, ProbeReportsTheProfile) {
  const uint32_t idr0 = driver_->idr0();
  EXPECT_TRUE(idr0 & kIdr0S1p);
  EXPECT_TRUE(idr0 & kIdr0S2p);
  EXPECT_EQ(Field(idr0, 3, 2), 2u);  // AArch64 tables
  EXPECT_EQ(Field(idr0, 28, 27), 1u);  // 2-level stream table
  EXPECT_TRUE(idr0 & kIdr0Cd2l);
  EXPECT_TRUE(idr0 & kIdr0Msi);
  EXPECT_EQ(Field(idr0, 25, 24), 0u);  // STALL_MODEL 00: stall supported, not forced (§6.3.1)
  EXPECT_EQ(Field(driver_->idr5(), 31, 16), 64u);  // STALL_MAX
  EXPECT_EQ(Field(driver_->idr1(), 5, 0), 16u);
  EXPECT_EQ(Field(driver_->idr1(), 10, 6), 20u);
  EXPECT_EQ(Field(driver_->idr5(), 2, 0), 5u);  // 48-bit OAS
  EXPECT_EQ(driver_->Read32(kAidr), 2u);
  EXPECT_EQ(driver_->Read32(kCr0Ack), kCr0SmmuEn | kCr0CmdqEn | kCr0EvtqEn);
  Smmuv3Profile p;
  p.stage2 = false;
  p.two_level_stream_table = false;
  p.oas_bits = 40;
  Build(p, {.two_level_stream_table = false});
  EXPECT_FALSE(driver_->idr0() & kIdr0S2p);
  EXPECT_FALSE(driver_->idr0() & kIdr0Vmid16);
  EXPECT_EQ(Field(driver_->idr0(), 28, 27), 0u);
  EXPECT_EQ(Field(driver_->idr5(), 2, 0), 2u);
  EXPECT_FALSE(Smmuv3Iommu::Create(*mem_, msi_, {.oas_bits = 41}).ok());
  EXPECT_TRUE(Smmuv3Iommu::Create(*mem_, msi_, {}).ok());
  EXPECT_FALSE(Smmuv3Iommu::Validate({.stage1 = false, .stage2 = false}).ok());
}

TEST_F(Smmuv3Test, DisabledSmmuFollowsGbpa) {
  smmu_->Reset();
  EXPECT_EQ(driver_->Read32(kCr0), 0u);
  ASSERT_TRUE(Write(kData, 0x1234).ok());  // GBPA.ABORT = 0: bypass
  EXPECT_EQ(Phys(kData), 0x1234u);
  driver_->Write32(kGbpa, kGbpaAbort);  // without Update: ignored
  EXPECT_TRUE(Write(kData, 1).ok());
  driver_->Write32(kGbpa, kGbpaAbort | kGbpaUpdate);
  EXPECT_EQ(driver_->Read32(kGbpa), kGbpaAbort);  // Update completed
  EXPECT_FALSE(Write(kData, 2).ok());
  EXPECT_EQ(Phys(kData), 1u);
}

TEST_F(Smmuv3Test, BypassAndAbortStes) {
  ASSERT_TRUE(driver_->WriteSte(kSid, testing::SteBypass()).ok());
  ASSERT_TRUE(Write(kData + 8, 0xabcd).ok());
  EXPECT_EQ(Phys(kData + 8), 0xabcdu);
  ASSERT_TRUE(driver_->WriteSte(kSid, testing::SteAbort()).ok());
  DmaFault fault;
  uint32_t v = 0;
  EXPECT_FALSE(Space().Read(kData + 8, &v, 4, {}, &fault).ok());
  EXPECT_EQ(fault.kind, DmaFaultKind::kBlocked);
  EXPECT_FALSE(fault.recorded);
  EXPECT_TRUE(driver_->DrainEvents().empty());  // abort STEs terminate silently
}

TEST_F(Smmuv3Test, Stage1TranslatesAndReportsFaults) {
  VmsaTableBuilder t = Stage1Domain(kSid, 5);
  ASSERT_TRUE(t.Map(0x4000'0000, kData, 2 * kPage4K, VmsaTableBuilder::Stage1Attrs(kRW)).ok());
  ASSERT_TRUE(t.Map(0x5000'0000, kData + 0x10000, kPage4K, VmsaTableBuilder::Stage1Attrs(kDmaRead)).ok());
  // Across a page boundary.
  const uint64_t value = 0x1122'3344'5566'7788ull;
  ASSERT_TRUE(Space().Write(0x4000'0ffc, &value, 8).ok());
  EXPECT_EQ(*mem_->ReadObj<uint64_t>(kData + 0xffc), value);
  EXPECT_EQ(*Read(0x4000'0ffc), 0x5566'7788u);

  DmaFault fault;
  uint32_t v = 1;
  EXPECT_FALSE(Space().Write(0x4000'2000, &v, 4, {}, &fault).ok());  // unmapped
  EXPECT_TRUE(fault.recorded);
  EXPECT_EQ(fault.reason, kEvtTranslation);
  EXPECT_FALSE(Space().Write(0x5000'0000, &v, 4, {}, &fault).ok());  // read-only
  EXPECT_EQ(fault.kind, DmaFaultKind::kPermission);
  std::vector<EventRecord> ev = driver_->DrainEvents();
  ASSERT_EQ(ev.size(), 2u);
  EXPECT_EQ(Type(ev[0]), kEvtTranslation);
  EXPECT_EQ(Sid(ev[0]), kSid);
  EXPECT_EQ(ev[0][2], 0x4000'2000u);
  EXPECT_FALSE(ev[0][1] & kEvt1RnW);  // a write
  EXPECT_FALSE(ev[0][1] & kEvt1S2);
  EXPECT_EQ(Type(ev[1]), kEvtPermission);
  // The event queue interrupt went to the ITS-like doorbell.
  std::vector<MsiMessage> msis = msi_.Take();
  ASSERT_EQ(msis.size(), 2u);
  EXPECT_EQ(msis[0].address, driver_->options().evtq_msi);
  EXPECT_EQ(msis[0].data, driver_->options().evtq_msi_data);
}

TEST_F(Smmuv3Test, AccessFlagFaultOrHardwareUpdate) {
  VmsaTableBuilder t = Stage1Domain(kSid, 1);
  ASSERT_TRUE(t.Map(0x1000, kData, kPage4K, VmsaTableBuilder::Stage1Attrs(kRW) & ~vmsa::kAf).ok());
  EXPECT_FALSE(Read(0x1000).ok());
  std::vector<EventRecord> ev = driver_->DrainEvents();
  ASSERT_EQ(ev.size(), 1u);
  EXPECT_EQ(Type(ev[0]), kEvtAccess);
  EXPECT_TRUE(ev[0][1] & kEvt1RnW);
  // Same tables with CD.HA: the SMMU sets AF.
  const uint64_t cd_table = *driver_->AllocCdTable(0);
  ASSERT_TRUE(driver_->WriteCd(cd_table, 0, kS1FmtLinear, 0, CdStage1(t.root(), 1, 48, true)).ok());
  ASSERT_TRUE(driver_->WriteSte(kSid, testing::SteStage1(cd_table)).ok());
  EXPECT_TRUE(Read(0x1000).ok());
  EXPECT_TRUE(*t.ReadEntry(0x1000, 3) & vmsa::kAf);
}

TEST_F(Smmuv3Test, IotlbCachesUntilTlbi) {
  VmsaTableBuilder t = Stage1Domain(kSid, 9);
  ASSERT_TRUE(t.Map(0x10'0000, kData, 64 * kPage4K, VmsaTableBuilder::Stage1Attrs(kRW)).ok());
  for (int i = 0; i < 64; ++i) ASSERT_TRUE(Write(0x10'0000 + i * kPage4K, i).ok());
  // Remap every page one page further: cached translations still point at the old pages.
  ASSERT_TRUE(t.Map(0x10'0000, kData + kPage4K, 64 * kPage4K, VmsaTableBuilder::Stage1Attrs(kRW)).ok());
  EXPECT_EQ(*Read(0x10'0000), 0u);
  // TLBI_NH_VA of one page.
  ASSERT_TRUE(driver_->Submit({testing::CmdTlbiNhVa(0, 9, 0x10'0000)}).ok());
  EXPECT_EQ(*Read(0x10'0000), 1u);
  EXPECT_EQ(*Read(0x10'1000), 1u);  // still cached (old page 1)
  // Range TLBI: TG 4 KiB, NUM 15, SCALE 1: (15 + 1) * 2^1 = 32 pages from 0x10'0000.
  ASSERT_TRUE(driver_->Submit({testing::CmdTlbiNhVa(0, 9, 0x10'0000, 1, 15, 1)}).ok());
  EXPECT_EQ(*Read(0x10'1000), 2u);
  EXPECT_EQ(*Read(0x10'0000 + 31 * kPage4K), 32u);
  EXPECT_EQ(*Read(0x10'0000 + 32 * kPage4K), 32u);  // page 32 still cached
  // Another ASID's invalidation leaves it; TLBI_NH_ASID of ours drops it.
  ASSERT_TRUE(driver_->Submit({testing::CmdTlbiNhAsid(0, 10)}).ok());
  EXPECT_EQ(*Read(0x10'0000 + 32 * kPage4K), 32u);
  ASSERT_TRUE(driver_->Submit({testing::CmdTlbiNhAsid(0, 9)}).ok());
  EXPECT_EQ(*Read(0x10'0000 + 32 * kPage4K), 33u);
  // An unaligned range (NUM 4, SCALE 0: pages 40-44) after remapping back.
  for (int i = 0; i < 64; ++i) ASSERT_TRUE(Read(0x10'0000 + i * kPage4K).ok());
  ASSERT_TRUE(t.Map(0x10'0000, kData, 64 * kPage4K, VmsaTableBuilder::Stage1Attrs(kRW)).ok());
  ASSERT_TRUE(driver_->Submit({testing::CmdTlbiNhVa(0, 9, 0x10'0000 + 40 * kPage4K, 1, 4, 0)}).ok());
  EXPECT_EQ(*Read(0x10'0000 + 39 * kPage4K), 40u);
  EXPECT_EQ(*Read(0x10'0000 + 40 * kPage4K), 40u);
  EXPECT_EQ(*Read(0x10'0000 + 44 * kPage4K), 44u);
  EXPECT_EQ(*Read(0x10'0000 + 45 * kPage4K), 46u);
  EXPECT_GT(smmu_->stats().iotlb.hits, 0u);
}

TEST_F(Smmuv3Test, ConfigCacheUntilCfgi) {
  ASSERT_TRUE(driver_->WriteSte(kSid, testing::SteBypass()).ok());
  ASSERT_TRUE(Write(kData, 1).ok());
  ASSERT_TRUE(driver_->WriteSte(kSid, testing::SteAbort(), /*invalidate=*/false).ok());
  EXPECT_TRUE(Write(kData, 2).ok());  // the cached STE still says bypass
  ASSERT_TRUE(driver_->Submit({testing::CmdCfgiSte(kSid)}).ok());
  EXPECT_FALSE(Write(kData, 3).ok());
  EXPECT_EQ(Phys(kData), 2u);
  // CFGI_STE_RANGE and CFGI_ALL.
  ASSERT_TRUE(driver_->WriteSte(kSid, testing::SteBypass(), false).ok());
  ASSERT_TRUE(driver_->Submit({testing::CmdCfgiAll()}).ok());
  EXPECT_TRUE(Write(kData, 4).ok());
}

TEST_F(Smmuv3Test, SubstreamsThroughTwoLevelCdTable) {
  VmsaTableBuilder t0 = *VmsaTableBuilder::CreateStage1(*mem_, *alloc_, 48);
  VmsaTableBuilder t1 = *VmsaTableBuilder::CreateStage1(*mem_, *alloc_, 48);
  ASSERT_TRUE(t0.Map(0x1000, kData, kPage4K, VmsaTableBuilder::Stage1Attrs(kRW)).ok());
  ASSERT_TRUE(t1.Map(0x1000, kData + kPage4K, kPage4K, VmsaTableBuilder::Stage1Attrs(kRW)).ok());
  const uint32_t cd_max = 16;
  const uint64_t cds = *driver_->AllocCdTable(cd_max, kS1Fmt64KL2);
  ASSERT_TRUE(driver_->WriteCd(cds, cd_max, kS1Fmt64KL2, 0, CdStage1(t0.root(), 1)).ok());
  ASSERT_TRUE(driver_->WriteCd(cds, cd_max, kS1Fmt64KL2, 5000, CdStage1(t1.root(), 2)).ok());
  ASSERT_TRUE(driver_->WriteSte(kSid, testing::SteStage1(cds, cd_max, kS1Fmt64KL2, kS1DssSsid0)).ok());
  ASSERT_TRUE(Write(0x1000, 0xaa).ok());  // no PASID: CD 0
  ASSERT_TRUE(Write(0x1000, 0xbb, {.pasid = 5000}).ok());
  EXPECT_EQ(Phys(kData), 0xaau);
  EXPECT_EQ(Phys(kData + kPage4K), 0xbbu);
  EXPECT_FALSE(Write(0x1000, 1, {.pasid = 0}).ok());        // S1DSS=SSID0: SSID 0 is illegal
  EXPECT_FALSE(Write(0x1000, 1, {.pasid = 1u << 16}).ok());  // beyond S1CDMax
  EXPECT_FALSE(Write(0x1000, 1, {.pasid = 2000}).ok());      // level-1 descriptor not valid
  EXPECT_FALSE(Write(0x1000, 1, {.pasid = 5001}).ok());      // CD.V = 0
  std::vector<EventRecord> ev = driver_->DrainEvents();
  ASSERT_EQ(ev.size(), 4u);
  EXPECT_EQ(Type(ev[0]), kEvtBadSubstreamId);
  EXPECT_EQ(Type(ev[1]), kEvtBadSubstreamId);
  EXPECT_EQ(Type(ev[2]), kEvtBadSubstreamId);
  EXPECT_EQ(Type(ev[3]), kEvtBadCd);
  EXPECT_TRUE(ev[3][0] & kEvt0Ssv);
  EXPECT_EQ(Field(ev[3][0], 31, 12), 5001u);
  // S1DSS: terminate non-substream traffic, or bypass stage 1 for it.
  ASSERT_TRUE(driver_->WriteSte(kSid, testing::SteStage1(cds, cd_max, kS1Fmt64KL2, kS1DssTerminate)).ok());
  EXPECT_FALSE(Write(0x1000, 1).ok());
  ev = driver_->DrainEvents();
  ASSERT_EQ(ev.size(), 1u);
  EXPECT_EQ(Type(ev[0]), kEvtStreamDisabled);
  ASSERT_TRUE(driver_->WriteSte(kSid, testing::SteStage1(cds, cd_max, kS1Fmt64KL2, kS1DssBypass)).ok());
  ASSERT_TRUE(Write(kData + 0x40, 0xcc).ok());  // untranslated
  EXPECT_EQ(Phys(kData + 0x40), 0xccu);
  EXPECT_FALSE(Write(kData + 0x40, 1, {.pasid = 0xFFFF'FFFFu}).ok());  // not the cached no-SSID context
  ASSERT_TRUE(Write(0x1000, 0xdd, {.pasid = 5000}).ok());  // substreams still translate
  EXPECT_EQ(Phys(kData + kPage4K), 0xddu);
  // A stage-2-only STE rejects SubstreamIDs.
  ASSERT_TRUE(driver_->WriteSte(kSid, testing::SteBypass()).ok());
  EXPECT_FALSE(Write(0x1000, 1, {.pasid = 3}).ok());
  EXPECT_EQ(Type(driver_->DrainEvents().at(0)), kEvtBadSubstreamId);
}

TEST_F(Smmuv3Test, Stage2AndTlbiS2Ipa) {
  VmsaTableBuilder s2 = *VmsaTableBuilder::Create(*mem_, *alloc_, 40, 1);
  ASSERT_TRUE(s2.Map(0x8000'0000, kData, kPage2M, VmsaTableBuilder::Stage2Attrs(kRW), kPage2M).ok());
  ASSERT_TRUE(driver_->WriteSte(kSid, testing::SteStage2(s2.root(), 3)).ok());
  ASSERT_TRUE(Write(0x8000'0100, 0x77).ok());
  EXPECT_EQ(Phys(kData + 0x100), 0x77u);
  EXPECT_FALSE(Write(0x9000'0000, 1).ok());
  std::vector<EventRecord> ev = driver_->DrainEvents();
  ASSERT_EQ(ev.size(), 1u);
  EXPECT_EQ(Type(ev[0]), kEvtTranslation);
  EXPECT_TRUE(ev[0][1] & kEvt1S2);
  EXPECT_EQ(ev[0][3], 0x9000'0000u);  // IPA
  // Make the block read-only: cached until TLBI_S2_IPA.
  ASSERT_TRUE(s2.SetEntryBits(0x8000'0000, 2, 0, vmsa::kS2apWrite).ok());
  EXPECT_TRUE(Write(0x8000'0100, 0x78).ok());
  ASSERT_TRUE(driver_->Submit({testing::CmdTlbiS2Ipa(3, 0x8000'0000)}).ok());
  EXPECT_FALSE(Write(0x8000'0100, 0x79).ok());
  EXPECT_EQ(Type(driver_->DrainEvents().at(0)), kEvtPermission);
  EXPECT_EQ(*Read(0x8000'0100), 0x78u);
}

TEST_F(Smmuv3Test, NestedTranslation) {
  // Stage 2 maps IPA [0, 64 MiB) to PA [128 MiB, 192 MiB); CD table and stage-1 tables in IPA space.
  VmsaTableBuilder s2 = *VmsaTableBuilder::Create(*mem_, *alloc_, 40, 1);
  ASSERT_TRUE(s2.Map(0, kIpaOffset, 64ull << 20, VmsaTableBuilder::Stage2Attrs(kRW), kPage2M).ok());
  OffsetPhysMemory ipa(*mem_, kIpaOffset);
  PageAllocator ipa_alloc(ipa, 32ull << 20, 16ull << 20);
  VmsaTableBuilder s1 = *VmsaTableBuilder::CreateStage1(ipa, ipa_alloc, 48);
  ASSERT_TRUE(s1.Map(0x7000'0000, 0x10'0000, kPage4K, VmsaTableBuilder::Stage1Attrs(kRW)).ok());
  ASSERT_TRUE(s1.Map(0x7000'1000, 0x800'0000, kPage4K, VmsaTableBuilder::Stage1Attrs(kRW)).ok());  // IPA unmapped
  const uint64_t cd_ipa = *ipa_alloc.AllocPage();
  const testing::CdWords cd = CdStage1(s1.root(), 4);
  ASSERT_TRUE(ipa.Write(cd_ipa, cd.w, sizeof(cd.w)).ok());
  ASSERT_TRUE(driver_->WriteSte(kSid, testing::SteNested(cd_ipa, s2.root(), 6)).ok());
  ASSERT_TRUE(Write(0x7000'0010, 0x99).ok());
  EXPECT_EQ(Phys(kIpaOffset + 0x10'0010), 0x99u);
  EXPECT_FALSE(Write(0x7000'1000, 1).ok());
  std::vector<EventRecord> ev = driver_->DrainEvents();
  ASSERT_EQ(ev.size(), 1u);
  EXPECT_TRUE(ev[0][1] & kEvt1S2);
  EXPECT_EQ(Field(ev[0][1], 41, 40), kEvtClassIn);
  EXPECT_EQ(ev[0][3], 0x800'0000u);
  // A stage-1 table outside the stage-2 map: stage-2 fault with CLASS=TT.
  const uint64_t l0 = *s1.EntryAddress(0x80'0000'0000ull, 0);
  ASSERT_TRUE(ipa.WriteObj<uint64_t>(l0, 0x900'0000 | 3).ok());
  EXPECT_FALSE(Read(0x80'0000'0000ull).ok());
  ev = driver_->DrainEvents();
  ASSERT_EQ(ev.size(), 1u);
  EXPECT_EQ(Type(ev[0]), kEvtTranslation);
  EXPECT_EQ(Field(ev[0][1], 41, 40), kEvtClassTt);
  EXPECT_EQ(ev[0][3], 0x900'0000u);
  // The CD itself outside the stage-2 map: CLASS=CD.
  ASSERT_TRUE(driver_->WriteSte(kSid, testing::SteNested(0x3000'0000, s2.root(), 6)).ok());
  EXPECT_FALSE(Read(0x7000'0010).ok());
  ev = driver_->DrainEvents();
  ASSERT_EQ(ev.size(), 1u);
  EXPECT_EQ(Type(ev[0]), kEvtTranslation);
  EXPECT_EQ(Field(ev[0][1], 41, 40), kEvtClassCd);
  EXPECT_EQ(ev[0][3], 0x3000'0000u);
}

TEST_F(Smmuv3Test, ConfigurationFaults) {
  // No level-2 table for this bus (Span 0): C_BAD_STREAMID.
  EXPECT_FALSE(Write(0x1000, 1, {}, 0x0200).ok());
  // STE with V = 0.
  ASSERT_TRUE(driver_->WriteSte(kSid, testing::SteWords{}).ok());
  EXPECT_FALSE(Write(0x1000, 1).ok());
  // S1CDMax beyond SSIDSIZE: ILLEGAL (§5.2).
  ASSERT_TRUE(driver_->WriteSte(kSid, testing::SteStage1(0x1000'0000, 21)).ok());
  EXPECT_FALSE(Write(0x1000, 1).ok());
  // CD table outside RAM.
  ASSERT_TRUE(driver_->WriteSte(kSid, testing::SteStage1(0x4000'0000)).ok());
  EXPECT_FALSE(Write(0x1000, 1).ok());
  // Level-2 stream table outside RAM.
  const uint64_t l1 = driver_->Read64(kStrtabBase) & kStrtabBaseAddr;
  ASSERT_TRUE(mem_->WriteObj<uint64_t>(l1 + 3 * 8, 0x5000'0000 | 9).ok());
  EXPECT_FALSE(Write(0x1000, 1, {}, 0x0300).ok());
  // Stage-1 table outside RAM: external abort on the walk.
  const uint64_t cd_table = *driver_->AllocCdTable(0);
  ASSERT_TRUE(driver_->WriteCd(cd_table, 0, kS1FmtLinear, 0, CdStage1(0x6000'0000, 1)).ok());
  ASSERT_TRUE(driver_->WriteSte(kSid, testing::SteStage1(cd_table)).ok());
  EXPECT_FALSE(Write(0x1000, 1).ok());
  std::vector<EventRecord> ev = driver_->DrainEvents();
  ASSERT_EQ(ev.size(), 6u);
  EXPECT_EQ(Type(ev[0]), kEvtBadStreamId);
  EXPECT_EQ(Sid(ev[0]), 0x200u);
  EXPECT_EQ(Type(ev[1]), kEvtBadSte);
  EXPECT_EQ(Type(ev[2]), kEvtBadSte);
  EXPECT_EQ(Type(ev[3]), kEvtCdFetch);
  EXPECT_EQ(ev[3][3], 0x4000'0000u);
  EXPECT_EQ(Type(ev[4]), kEvtSteFetch);
  EXPECT_EQ(ev[4][3], 0x5000'0000u);
  EXPECT_EQ(Type(ev[5]), kEvtWalkEabt);
}

// Reserved encodings the spec gives a behaviour to are not ILLEGAL (found by the hostile guest
// module guest-tests/modules/ionest_smmu_hostile): §5.2 STE.Config 0b0xx "behaves as 0b000" (abort,
// no event), S1Fmt 0b11 as 0b00 (linear CD table), S1DSS 0b11 as 0b00 (terminate, F_STREAM_DISABLED);
// §5.4 CD.IPS 0b111 as 0b110 (SMMUv3.1-3.3: 52 bits, capped by the OAS).
TEST_F(Smmuv3Test, ReservedEncodingsBehaveAsSpecified) {
  for (uint64_t config : {1u, 2u, 3u}) {
    testing::SteWords reserved;
    reserved.w[0] = kSte0V | config << 1;
    ASSERT_TRUE(driver_->WriteSte(kSid, reserved).ok());
    DmaFault fault;
    uint32_t v = 0;
    EXPECT_FALSE(Space().Read(kData, &v, sizeof(v), {}, &fault).ok()) << config;
    EXPECT_FALSE(fault.recorded) << config;
  }
  EXPECT_TRUE(driver_->DrainEvents().empty());
  VmsaTableBuilder t = *VmsaTableBuilder::CreateStage1(*mem_, *alloc_, 48);
  ASSERT_TRUE(t.Map(0x1000, kData, kPage4K, VmsaTableBuilder::Stage1Attrs(kRW)).ok());
  const uint64_t cds = *driver_->AllocCdTable(1);
  testing::CdWords cd = CdStage1(t.root(), 1);
  cd.w[0] |= uint64_t{7} << 32;  // IPS 0b111
  ASSERT_TRUE(driver_->WriteCd(cds, 1, kS1FmtLinear, 0, cd).ok());
  ASSERT_TRUE(driver_->WriteCd(cds, 1, kS1FmtLinear, 1, cd).ok());
  ASSERT_TRUE(driver_->WriteSte(kSid, testing::SteStage1(cds, 1, 3, 3)).ok());  // S1Fmt 0b11, S1DSS 0b11
  ASSERT_TRUE(Write(0x1000, 0xab, {.pasid = 1}).ok());
  EXPECT_EQ(Phys(kData), 0xabu);
  EXPECT_FALSE(Write(0x1000, 1).ok());  // no SubstreamID: terminated
  std::vector<EventRecord> ev = driver_->DrainEvents();
  ASSERT_EQ(ev.size(), 1u);
  EXPECT_EQ(Type(ev[0]), kEvtStreamDisabled);
}

TEST_F(Smmuv3Test, LinearStreamTableBounds) {
  Smmuv3Profile p;
  Build(p, {.two_level_stream_table = false, .strtab_log2 = 8});
  ASSERT_TRUE(driver_->WriteSte(0xff, testing::SteBypass()).ok());
  EXPECT_TRUE(Write(kData, 1, {}, 0xff).ok());
  EXPECT_FALSE(Write(kData, 1, {}, 0x100).ok());
  EXPECT_EQ(Type(driver_->DrainEvents().at(0)), kEvtBadStreamId);
}

TEST_F(Smmuv3Test, EventQueueOverflow) {
  Build(Smmuv3Profile{}, {.evtq_log2 = 2});  // 4 entries
  for (int i = 0; i < 6; ++i) EXPECT_FALSE(Write(0x1000, 1, {}, 0x0200).ok());
  EXPECT_TRUE(driver_->EventQueueOverflowed());
  EXPECT_EQ(driver_->DrainEvents().size(), 4u);  // acknowledges the overflow too
  EXPECT_FALSE(driver_->EventQueueOverflowed());
  EXPECT_EQ(smmu_->stats().events_lost, 2u);
  EXPECT_FALSE(Write(0x1000, 1, {}, 0x0200).ok());
  EXPECT_EQ(driver_->DrainEvents().size(), 1u);
}

TEST_F(Smmuv3Test, CommandErrorsStopTheQueueUntilAcknowledged) {
  ASSERT_TRUE(driver_->WriteSte(kSid, testing::SteBypass()).ok());
  ASSERT_TRUE(Write(kData, 1).ok());
  ASSERT_TRUE(driver_->WriteSte(kSid, testing::SteAbort(), false).ok());
  // An unknown opcode before the CFGI: CERROR_ILL, the CFGI is not executed.
  const absl::Status s = driver_->Submit({Command{0x7f, 0}, testing::CmdCfgiSte(kSid)});
  EXPECT_FALSE(s.ok());
  EXPECT_EQ(Field(driver_->Read32(kCmdqCons), 30, 24), kCerrorIll);
  EXPECT_TRUE((driver_->Read32(kGerror) ^ driver_->Read32(kGerrorn)) & kGerrorCmdqErr);
  std::vector<MsiMessage> msis = msi_.Take();
  ASSERT_EQ(msis.size(), 1u);
  EXPECT_EQ(msis[0].data, driver_->options().gerror_msi_data);
  EXPECT_TRUE(Write(kData, 2).ok());  // still the cached bypass STE
  driver_->Write32(kCmdqProd, driver_->Read32(kCmdqProd));  // doorbells do nothing while stopped
  EXPECT_TRUE(Write(kData, 3).ok());
  // Linux's recovery: replace the bad command with a CMD_SYNC and acknowledge.
  ASSERT_TRUE(driver_->SkipFailedCommand().ok());
  EXPECT_FALSE(Write(kData, 4).ok());
  EXPECT_EQ(Phys(kData), 3u);
  // Reserved bits in a known command are illegal too.
  Command bad = testing::CmdCfgiSte(kSid);
  bad[1] |= 2;
  EXPECT_FALSE(driver_->Submit({bad}).ok());
  ASSERT_TRUE(driver_->SkipFailedCommand().ok());
  EXPECT_TRUE(driver_->Submit({testing::CmdTlbiNsnhAll()}).ok());
  // Commands the profile does not implement: TLBI_EL2_ALL (no HYP); a RESUME with the reserved
  // Action 0b11 (§4.7.2).
  EXPECT_FALSE(driver_->Submit({Command{kCmdTlbiEl2All, 0}}).ok());
  ASSERT_TRUE(driver_->SkipFailedCommand().ok());
  EXPECT_FALSE(driver_->Submit({Command{kCmdResume | uint64_t{3} << 12, 0}}).ok());
  ASSERT_TRUE(driver_->SkipFailedCommand().ok());
  EXPECT_TRUE(driver_->Submit({}).ok());
  EXPECT_EQ(smmu_->stats().command_errors, 4u);
}

TEST_F(Smmuv3Test, CommandFetchAbort) {
  driver_->Write32(kCr0, kCr0SmmuEn | kCr0EvtqEn);  // CMDQ off to move it
  driver_->Write64(kCmdqBase, 0x7000'0000 | 4);
  driver_->Write32(kCmdqProd, 0);
  driver_->Write32(kCmdqCons, 0);
  driver_->Write32(kCr0, kCr0SmmuEn | kCr0EvtqEn | kCr0CmdqEn);
  driver_->Write32(kCmdqProd, 1);
  EXPECT_EQ(Field(driver_->Read32(kCmdqCons), 30, 24), kCerrorAbt);
  EXPECT_EQ(driver_->Read32(kCmdqCons) & 0x1f, 0u);
}

TEST_F(Smmuv3Test, SyncSignalsThroughMemoryOrMsiSink) {
  ASSERT_TRUE(driver_->Submit({}).ok());  // Linux style: MSI data 0 written over the SYNC entry
  EXPECT_GE(smmu_->stats().msi_writes, 1u);
  EXPECT_TRUE(msi_.Take().empty());
  ASSERT_TRUE(driver_->Submit({testing::CmdSync(kSyncCsIrq, 0x2004'0040, 0x55)}, false).ok());
  std::vector<MsiMessage> msis = msi_.Take();
  ASSERT_EQ(msis.size(), 1u);
  EXPECT_EQ(msis[0].address, 0x2004'0040u);
  EXPECT_EQ(msis[0].data, 0x55u);
  ASSERT_TRUE(driver_->Submit({testing::CmdSync(kSyncCsSev, 0, 0)}, false).ok());
  EXPECT_TRUE(msi_.Take().empty());
}

TEST_F(Smmuv3Test, RegisterWindow) {
  // 64-bit registers through 32-bit halves; page-1 aliases; bases read-only while enabled.
  const uint64_t strtab = driver_->Read64(kStrtabBase);
  EXPECT_EQ(driver_->Read32(kStrtabBase), static_cast<uint32_t>(strtab));
  EXPECT_EQ(driver_->Read32(kStrtabBase + 4), static_cast<uint32_t>(strtab >> 32));
  driver_->Write64(kStrtabBase, 0x1234'0000);
  EXPECT_EQ(driver_->Read64(kStrtabBase), strtab);
  EXPECT_EQ(driver_->Read32(kPageSize + kEvtqProd), driver_->Read32(kEvtqProd));
  EXPECT_EQ(driver_->Read32(kPageSize + kCr0), 0u);  // not aliased
  driver_->Write32(kEvtqIrqCfg0 + 4, 0x1);
  EXPECT_EQ(driver_->Read64(kEvtqIrqCfg0), (uint64_t{1} << 32) | driver_->options().evtq_msi);
  EXPECT_EQ(smmu_->MmioRead(kIdr0 + 1, 4), 0u);  // unaligned
  EXPECT_EQ(smmu_->MmioRead(kWindowSize, 4), 0u);
  smmu_->MmioWrite(kIdr0, 0, 4);  // read-only
  EXPECT_EQ(driver_->Read32(kIdr0), driver_->idr0());
  smmu_->Reset();
  EXPECT_EQ(driver_->Read32(kCr0), 0u);
  EXPECT_EQ(driver_->Read64(kStrtabBase), 0u);
  EXPECT_EQ(driver_->Read32(kIrqCtrl), 0u);
}

TEST_F(Smmuv3Test, PageRequestsAndResponses) {
  Smmuv3Profile p;
  p.pri = true;
  p.ats = true;
  Build(p, {.priq_log2 = 1});  // 2 entries
  RecordingDmaClient client;
  Space().SetClient(&client);
  PageRequest req{0, 7, 0x4000'1000, kDmaWrite, true, 3};
  ASSERT_TRUE(Space().SendPageRequest(req).ok());
  std::vector<Command> prs = driver_->DrainPageRequests();
  ASSERT_EQ(prs.size(), 1u);
  EXPECT_EQ(prs[0][0] & 0xFFFF'FFFF, kSid);
  EXPECT_TRUE(prs[0][0] & kPriq0SsidV);
  EXPECT_EQ(Field(prs[0][0], 51, 32), 7u);
  EXPECT_TRUE(prs[0][0] & kPriq0Write);
  EXPECT_TRUE(prs[0][0] & kPriq0Last);
  EXPECT_EQ(prs[0][1], 0x4000'1000u | 3);
  EXPECT_EQ(msi_.Take().size(), 1u);  // PRIQ interrupt
  ASSERT_TRUE(driver_->Submit({testing::CmdPriResp(kSid, 7, 3, kPriRespSucc)}).ok());
  ASSERT_EQ(client.responses().size(), 1u);
  EXPECT_EQ(client.responses()[0].code, PageResponseCode::kSuccess);
  EXPECT_EQ(client.responses()[0].group_index, 3);
  EXPECT_EQ(client.responses()[0].pasid, 7u);
  // Overflow: the third request while two are queued is answered automatically.
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(Space().SendPageRequest(req).ok());
  EXPECT_EQ(client.responses().size(), 2u);
  EXPECT_EQ(smmu_->stats().page_request_overflows, 1u);
  EXPECT_EQ(driver_->DrainPageRequests().size(), 2u);
  // ATC invalidation reaches the device before the SYNC completes.
  ASSERT_TRUE(driver_->Submit({testing::CmdAtcInv(kSid, std::nullopt, 0x12345000, 2)}).ok());
  ASSERT_EQ(client.invalidations().size(), 1u);
  EXPECT_EQ(client.invalidations()[0].addr, 0x12344000u);
  EXPECT_EQ(client.invalidations()[0].size, 0x4000u);
  EXPECT_FALSE(client.invalidations()[0].pasid);
  Space().SetClient(nullptr);
  // Without PRI in the profile, page requests are refused.
  Build(Smmuv3Profile{});
  EXPECT_FALSE(Space().SendPageRequest(req).ok());
}

// Stall model (§3.12.2): a stage-1 fault with CD.S is held, reported with Stall=1 and a STAG, and
// ends with CMD_RESUME (retry or abort) or CMD_STALL_TERM, answered through the DmaClient.
TEST_F(Smmuv3Test, StalledFaultsWaitForResume) {
  Smmuv3Profile p;
  p.stall = true;
  p.max_stalls = 2;
  Build(p);
  EXPECT_EQ(Field(driver_->idr0(), 25, 24), 0u);
  EXPECT_EQ(Field(driver_->Read32(kIdr5), 31, 16), 2u);
  RecordingDmaClient client;
  Space().SetClient(&client);
  VmsaTableBuilder t = *VmsaTableBuilder::CreateStage1(*mem_, *alloc_, 48);
  const uint64_t cd_table = *driver_->AllocCdTable(0);
  testing::CdWords cd = CdStage1(t.root(), 3);
  cd.w[0] |= kCd0S;
  ASSERT_TRUE(driver_->WriteCd(cd_table, 0, kS1FmtLinear, 0, cd).ok());
  ASSERT_TRUE(driver_->WriteSte(kSid, testing::SteStage1(cd_table)).ok());

  DmaFault fault;
  uint32_t v = 0x42;
  EXPECT_FALSE(Space().Write(0x3000, &v, 4, {}, &fault).ok());
  EXPECT_EQ(fault.kind, DmaFaultKind::kStalled);
  const uint16_t stag = static_cast<uint16_t>(fault.reason);
  std::vector<EventRecord> ev = driver_->DrainEvents();
  ASSERT_EQ(ev.size(), 1u);
  EXPECT_EQ(Type(ev[0]), kEvtTranslation);
  EXPECT_TRUE(ev[0][1] & kEvt1Stall);
  EXPECT_EQ(ev[0][1] & 0xFFFF, stag);
  // The OS maps the page and resumes with retry: the device hears Success and retries.
  ASSERT_TRUE(t.Map(0x3000, kData, kPage4K, VmsaTableBuilder::Stage1Attrs(kRW)).ok());
  const Command resume{kCmdResume | uint64_t{kResumeRetry} << 12 | uint64_t{kSid} << 32, stag};
  ASSERT_TRUE(driver_->Submit({resume}).ok());
  ASSERT_EQ(client.responses().size(), 1u);
  EXPECT_EQ(client.responses()[0].group_index, stag);
  EXPECT_EQ(client.responses()[0].code, PageResponseCode::kSuccess);
  EXPECT_TRUE(Space().Write(0x3000, &v, 4).ok());
  EXPECT_EQ(Phys(kData), 0x42u);
  // A RESUME for no stalled transaction is ignored.
  ASSERT_TRUE(driver_->Submit({resume}).ok());
  EXPECT_EQ(client.responses().size(), 1u);
  // Two stalls fill STALL_MAX; the third fault terminates (no Stall bit); STALL_TERM ends both.
  EXPECT_EQ(ReadFaultKind(0x10000), DmaFaultKind::kStalled);
  EXPECT_EQ(ReadFaultKind(0x11000), DmaFaultKind::kStalled);
  EXPECT_EQ(ReadFaultKind(0x12000), DmaFaultKind::kNotPresent);
  ev = driver_->DrainEvents();
  ASSERT_EQ(ev.size(), 3u);
  EXPECT_FALSE(ev[2][1] & kEvt1Stall);
  ASSERT_TRUE(driver_->Submit({Command{kCmdStallTerm | uint64_t{kSid} << 32, 0}}).ok());
  ASSERT_EQ(client.responses().size(), 3u);
  EXPECT_EQ(client.responses()[2].code, PageResponseCode::kResponseFailure);
  // STE.S1STALLD overrides CD.S; disabling the SMMU terminates held transactions.
  testing::SteWords ste = testing::SteStage1(cd_table);
  ste.w[1] |= kSte1S1StallD;
  ASSERT_TRUE(driver_->WriteSte(kSid, ste).ok());
  EXPECT_EQ(ReadFaultKind(0x13000), DmaFaultKind::kNotPresent);
  ASSERT_TRUE(driver_->WriteSte(kSid, testing::SteStage1(cd_table)).ok());
  EXPECT_EQ(ReadFaultKind(0x14000), DmaFaultKind::kStalled);
  driver_->Write32(kCr0, driver_->Read32(kCr0) & ~kCr0SmmuEn);
  EXPECT_EQ(client.responses().size(), 4u);
  Space().SetClient(nullptr);
}

// CD.R = 0 (§5.4): terminated stage-1 faults are not recorded; with CD.S they are stalled and
// recorded regardless. Linux's SVA CD for an exited mm is EPD0 with S = R = 0.
TEST_F(Smmuv3Test, CdRecordBitOnlySilencesTerminatedFaults) {
  VmsaTableBuilder t = *VmsaTableBuilder::CreateStage1(*mem_, *alloc_, 48);
  const uint64_t cd_table = *driver_->AllocCdTable(0);
  testing::CdWords cd = CdStage1(t.root(), 3);
  cd.w[0] &= ~kCd0R;
  ASSERT_TRUE(driver_->WriteCd(cd_table, 0, kS1FmtLinear, 0, cd).ok());
  ASSERT_TRUE(driver_->WriteSte(kSid, testing::SteStage1(cd_table)).ok());
  DmaFault fault;
  uint32_t v = 0;
  EXPECT_FALSE(Space().Read(0x5000, &v, 4, {}, &fault).ok());
  EXPECT_EQ(fault.kind, DmaFaultKind::kNotPresent);
  EXPECT_FALSE(fault.recorded);
  EXPECT_TRUE(driver_->DrainEvents().empty());
  cd.w[0] |= kCd0S;
  ASSERT_TRUE(driver_->WriteCd(cd_table, 0, kS1FmtLinear, 0, cd).ok());
  ASSERT_TRUE(driver_->Submit({testing::CmdCfgiSte(kSid)}).ok());
  EXPECT_EQ(ReadFaultKind(0x5000), DmaFaultKind::kStalled);
  std::vector<EventRecord> ev = driver_->DrainEvents();
  ASSERT_EQ(ev.size(), 1u);
  EXPECT_TRUE(ev[0][1] & kEvt1Stall);
  ASSERT_TRUE(driver_->Submit({Command{kCmdStallTerm | uint64_t{kSid} << 32, 0}}).ok());
}

// Devices translating on several threads while the driver remaps, invalidates and rewrites the
// STE: every access sees the old or the new page, nothing else, and nothing deadlocks.
TEST_F(Smmuv3Test, ConcurrentTranslationAndInvalidation) {
  VmsaTableBuilder t = Stage1Domain(kSid, 7);
  constexpr int kPagesMapped = 16;
  for (int i = 0; i < 2 * kPagesMapped; ++i) ASSERT_TRUE(mem_->WriteObj<uint32_t>(kData + i * kPage4K, i).ok());
  ASSERT_TRUE(t.Map(0x100000, kData, kPagesMapped * kPage4K, VmsaTableBuilder::Stage1Attrs(kRW)).ok());
  std::atomic<bool> stop{false};
  std::atomic<int> bad{0};
  std::vector<std::thread> devices;
  for (int d = 0; d < 3; ++d) {
    devices.emplace_back([&, d] {
      for (uint64_t i = d; !stop.load(); ++i) {
        const int page = static_cast<int>(i % kPagesMapped);
        uint32_t v = 0;
        if (!Space().Read(0x100000 + page * kPage4K, &v, 4).ok()) continue;
        if (v != static_cast<uint32_t>(page) && v != static_cast<uint32_t>(page + kPagesMapped)) ++bad;
      }
    });
  }
  for (int round = 0; round < 200; ++round) {
    const uint64_t pa = kData + (round % 2 ? kPagesMapped * kPage4K : 0);
    ASSERT_TRUE(t.Map(0x100000, pa, kPagesMapped * kPage4K, VmsaTableBuilder::Stage1Attrs(kRW)).ok());
    std::vector<Command> cmds = {testing::CmdTlbiNhVa(0, 7, 0x100000, 1, kPagesMapped - 1, 0)};
    if (round % 10 == 0) cmds.push_back(testing::CmdCfgiSte(kSid));
    ASSERT_TRUE(driver_->Submit(cmds).ok());
  }
  stop = true;
  for (std::thread& th : devices) th.join();
  EXPECT_EQ(bad.load(), 0);
  EXPECT_TRUE(driver_->DrainEvents().empty());
}

// ATS (§3.9): translation requests for EATS=1 streams, R=W=0 on a fault, F_BAD_ATS_TREQ without
// EATS; translated transactions checked only with CR0.ATSCHK.
TEST_F(Smmuv3Test, AtsTranslationRequests) {
  Smmuv3Profile p;
  p.ats = true;
  Build(p);
  VmsaTableBuilder t = *VmsaTableBuilder::CreateStage1(*mem_, *alloc_, 48);
  ASSERT_TRUE(t.Map(0x20'0000, kData, kPage2M, VmsaTableBuilder::Stage1Attrs(kDmaRead), kPage2M).ok());
  const uint64_t cd_table = *driver_->AllocCdTable(0);
  ASSERT_TRUE(driver_->WriteCd(cd_table, 0, kS1FmtLinear, 0, CdStage1(t.root(), 1)).ok());
  testing::SteWords ste = testing::SteStage1(cd_table);
  ste.w[1] |= uint64_t{1} << 28;  // EATS = 1
  ASSERT_TRUE(driver_->WriteSte(kSid, ste).ok());
  AtsTranslation a = Space().AtsTranslate(0x20'1234, kDmaRead, {});
  EXPECT_TRUE(a.success);
  EXPECT_EQ(a.iova, 0x20'0000u);
  EXPECT_EQ(a.gpa, kData);
  EXPECT_EQ(a.size, kPage2M);
  EXPECT_EQ(a.perms & kDmaRwx, kDmaRead);
  a = Space().AtsTranslate(0x80'0000, kDmaRead, {});  // unmapped: R=W=0, no event
  EXPECT_TRUE(a.success);
  EXPECT_EQ(a.perms, 0u);
  EXPECT_TRUE(driver_->DrainEvents().empty());
  EXPECT_TRUE(Space().AllowTranslatedRequest());  // ATSCHK = 0
  driver_->Write32(kCr0, driver_->Read32(kCr0) | kCr0AtsChk);
  EXPECT_TRUE(Space().AllowTranslatedRequest());
  ASSERT_TRUE(driver_->WriteSte(kSid, testing::SteStage1(cd_table)).ok());  // EATS = 0
  EXPECT_FALSE(Space().AllowTranslatedRequest());
  EXPECT_FALSE(Space().AtsTranslate(0x20'1234, kDmaRead, {}).success);
  std::vector<EventRecord> ev = driver_->DrainEvents();
  ASSERT_EQ(ev.size(), 1u);
  EXPECT_EQ(Type(ev[0]), kEvtBadAtsTreq);
  Build(Smmuv3Profile{});  // no ATS in the profile: unsupported
  EXPECT_FALSE(Space().AtsTranslate(0x20'1234, kDmaRead, {}).success);
  EXPECT_FALSE(Space().AllowTranslatedRequest());
}

// Event queue base outside RAM: the record is lost and GERROR.EVTQ_ABT_ERR raised (§7.2).
TEST_F(Smmuv3Test, EventQueueWriteAbort) {
  driver_->Write32(kCr0, kCr0SmmuEn | kCr0CmdqEn);
  driver_->Write64(kEvtqBase, 0x7000'0000 | 4);
  driver_->Write32(kCr0, kCr0SmmuEn | kCr0CmdqEn | kCr0EvtqEn);
  EXPECT_FALSE(Write(0x1000, 1, {}, 0x0200).ok());
  EXPECT_TRUE((driver_->Read32(kGerror) ^ driver_->Read32(kGerrorn)) & kGerrorEvtqAbtErr);
  EXPECT_EQ(msi_.Take().size(), 1u);  // the GERROR interrupt
  EXPECT_EQ(smmu_->stats().events_lost, 1u);
}

// What a guest makes the model remember is bounded: STE/CD/context caches by config_cache_entries.
TEST_F(Smmuv3Test, ConfigCachesAreBounded) {
  Smmuv3Profile p;
  p.config_cache_entries = 8;
  Build(p);
  const uint64_t cds = *driver_->AllocCdTable(8);
  VmsaTableBuilder t = *VmsaTableBuilder::CreateStage1(*mem_, *alloc_, 48);
  ASSERT_TRUE(t.Map(0x1000, kData, kPage4K, VmsaTableBuilder::Stage1Attrs(kRW)).ok());
  for (uint32_t ssid = 0; ssid < 256; ++ssid)
    ASSERT_TRUE(driver_->WriteCd(cds, 8, kS1FmtLinear, ssid, CdStage1(t.root(), static_cast<uint16_t>(ssid))).ok());
  for (uint16_t sid = 0x100; sid < 0x140; ++sid) {
    ASSERT_TRUE(driver_->WriteSte(sid, testing::SteStage1(cds, 8), false).ok());
    for (uint32_t ssid = 1; ssid < 256; ssid += 17) ASSERT_TRUE(Write(0x1000, ssid, {.pasid = ssid}, sid).ok());
    const Smmuv3Stats st = smmu_->stats();
    ASSERT_LE(st.ste_cache, 8u);
    ASSERT_LE(st.cd_cache, 8u);
    ASSERT_LE(st.context_cache, 8u);
  }
  EXPECT_EQ(Phys(kData), 1u + 17 * 14);
}

// Hostile guest: random STE/CD/table words, queue pointers and commands never crash or hang, and
// the work per doorbell is bounded.
TEST_F(Smmuv3Test, HostileInputsAreContained) {
  std::mt19937_64 rng(42);
  const uint64_t cd_table = *driver_->AllocCdTable(4);
  for (int round = 0; round < 300; ++round) {
    testing::SteWords ste;
    for (uint64_t& w : ste.w) w = rng();
    if (round % 3 == 0) ste.w[0] = (ste.w[0] & ~Bits(51, 6)) | cd_table;
    ASSERT_TRUE(driver_->WriteSte(kSid, ste, false).ok());
    testing::CdWords cd;
    for (uint64_t& w : cd.w) w = rng();
    cd.w[1] &= 0xFFF'FFFF;
    ASSERT_TRUE(driver_->WriteCd(cd_table, 4, kS1FmtLinear, round % 16, cd).ok());
    driver_->Write32(kGerrorn, driver_->Read32(kGerror));
    driver_->Write32(kCmdqProd, static_cast<uint32_t>(rng()));
    (void)driver_->SubmitRaw({Command{rng(), rng()}, testing::CmdCfgiAll()});
    uint8_t buf[64];
    DmaAttrs attrs;
    if (rng() & 1) attrs.pasid = static_cast<uint32_t>(rng() & 0xFFFFF);
    (void)Space().Read(rng(), buf, sizeof(buf), attrs);
    (void)Space().Write(rng() & 0xFFFF'FFFF, buf, sizeof(buf), attrs);
    driver_->DrainEvents();
  }
}

// A doorbell far ahead runs at most max_commands_per_kick commands; reading CMDQ_CONS (what a
// polling driver does) continues.
TEST_F(Smmuv3Test, DoorbellWorkIsBounded) {
  Smmuv3Profile p;
  p.max_commands_per_kick = 100;
  Build(p);
  driver_->Write32(kCr0, kCr0SmmuEn | kCr0EvtqEn);
  driver_->Write64(kCmdqBase, kData | 10);
  driver_->Write32(kCmdqProd, 0);
  driver_->Write32(kCmdqCons, 0);
  driver_->Write32(kCr0, kCr0SmmuEn | kCr0EvtqEn | kCr0CmdqEn);
  std::vector<uint8_t> prefetch(1024 * kCmdSize, 0);
  for (size_t i = 0; i < 1024; ++i) prefetch[i * kCmdSize] = kCmdPrefetchConfig;
  ASSERT_TRUE(mem_->Write(kData, prefetch.data(), prefetch.size()).ok());
  const uint64_t before = smmu_->stats().commands;
  smmu_->MmioWrite(kCmdqProd, 1023, 4);
  EXPECT_EQ(smmu_->stats().commands - before, 100u);
  int reads = 0;
  while ((smmu_->MmioRead(kCmdqCons, 4) & 0x7FF) != 1023 && reads < 20) ++reads;
  EXPECT_EQ(smmu_->stats().commands - before, 1023u);
  EXPECT_EQ(reads, 9);  // 100 per access: the doorbell, then 9 reads that still see it unfinished
}

}  // namespace
}  // namespace ionest::smmuv3
