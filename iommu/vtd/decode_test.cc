// Root / context / PASID entry decoding (§9.1-9.6) straight from memory, including every
// malformed-entry fault reason.
#include "gtest/gtest.h"
#include "iommu/vtd/pasid.h"
#include "iommu/vtd/root_context.h"
#include "iommu/vtd/testing/vtd_builders.h"

namespace ionest::vtd {
namespace {

using namespace testing;  // NOLINT

class DecodeTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto mem = GuestMemory::Create({{0, 16 << 20}});
    ASSERT_TRUE(mem.ok());
    memory_ = std::move(*mem);
    alloc_ = std::make_unique<PageAllocator>(*memory_, 1 << 20, 15 << 20);
    profile_ = *ParseVtdProfile("");
  }
  VtdTableBuilder Tables(bool scalable) {
    VtdTableBuilder t(*memory_, *alloc_, scalable);
    EXPECT_TRUE(t.Init().ok());
    return t;
  }
  uint8_t Fault(uint64_t rtaddr, uint16_t rid) {
    Decoded<ContextEntry> d = ReadContextEntry(*memory_, profile_, rtaddr, rid);
    EXPECT_FALSE(d.ok());
    return d.fault.reason;
  }
  std::unique_ptr<GuestMemory> memory_;
  std::unique_ptr<PageAllocator> alloc_;
  VtdProfile profile_;
};

TEST_F(DecodeTest, LegacyContextFields) {
  VtdTableBuilder t = Tables(false);
  ASSERT_TRUE(t.SetLegacyContext(0x0102, {.tt = 1, .aw = 2, .did = 0x1234, .slptptr = 0xabc000, .fpd = true}).ok());
  Decoded<ContextEntry> d = ReadContextEntry(*memory_, profile_, t.rtaddr(), 0x0102);
  ASSERT_TRUE(d.ok());
  EXPECT_FALSE(d.entry->scalable);
  EXPECT_EQ(d.entry->tt, 1);
  EXPECT_EQ(d.entry->did, 0x1234);
  EXPECT_EQ(d.entry->slptptr, 0xabc000u);
  EXPECT_TRUE(d.entry->fpd);
  EXPECT_TRUE(d.entry->device_tlb());
}

TEST_F(DecodeTest, LegacyFaults) {
  VtdTableBuilder t = Tables(false);
  EXPECT_EQ(Fault(t.rtaddr(), 0x0500), kFrRootNotPresent);
  ASSERT_TRUE(t.SetLegacyContext(0x0501, {}).ok());
  EXPECT_EQ(Fault(t.rtaddr(), 0x0500), kFrContextNotPresent);
  ASSERT_TRUE(t.SetLegacyContext(0x0502, {.tt = 3}).ok());
  EXPECT_EQ(Fault(t.rtaddr(), 0x0502), kFrContextInvalid);
  ASSERT_TRUE(t.SetLegacyContext(0x0503, {.aw = 1}).ok());  // 3-level not in SAGAW (aw=48 profile)
  EXPECT_EQ(Fault(t.rtaddr(), 0x0503), kFrContextInvalid);
  absl::StatusOr<uint64_t> ce = t.ContextEntryAddress(0x0504);
  ASSERT_TRUE(ce.ok());
  ASSERT_TRUE(memory_->WriteObj(*ce, std::array<uint64_t, 2>{1, 2 | (1ull << 40)}).ok());
  EXPECT_EQ(Fault(t.rtaddr(), 0x0504), kFrContextReserved);
  // Root entry with reserved bits; root table outside RAM.
  ASSERT_TRUE(memory_->WriteObj<uint64_t>(t.rtaddr() + 6 * 16 + 8, 1).ok());
  ASSERT_TRUE(memory_->WriteObj<uint64_t>(t.rtaddr() + 6 * 16, 0x200001).ok());
  EXPECT_EQ(Fault(t.rtaddr(), 0x0600), kFrRootReserved);
  EXPECT_EQ(Fault(1ull << 40, 0x0600), kFrRootAccess);
  ASSERT_TRUE(memory_->WriteObj(t.rtaddr() + 7 * 16, std::array<uint64_t, 2>{(1ull << 40) | 1, 0}).ok());
  EXPECT_EQ(Fault(t.rtaddr(), 0x0700), kFrContextAccess);
}

TEST_F(DecodeTest, ScalableContextAndPasid) {
  VtdTableBuilder t = Tables(true);
  ASSERT_TRUE(t.SetScalableContext(0x0185, {.dte = true, .pasid_enable = true, .pre = true, .pdts = 1, .rid_pasid = 3}).ok());
  Decoded<ContextEntry> c = ReadContextEntry(*memory_, profile_, t.rtaddr(), 0x0185);
  ASSERT_TRUE(c.ok());
  EXPECT_TRUE(c.entry->scalable && c.entry->dte && c.entry->pasid_enable && c.entry->pre);
  EXPECT_EQ(c.entry->rid_pasid, 3u);
  EXPECT_EQ(c.entry->pasid_limit(), 1u << 14);  // 2^(1+7) directory entries × 64
  ASSERT_TRUE(t.SetPasidEntry(0x0185, 0x1041,
                              {.pgtt = kPgttNested, .did = 9, .flptptr = 0x5000, .slptptr = 0x6000, .flpm = 0,
                               .sre = true, .wpe = true, .ssade = true})
                  .ok());
  Decoded<PasidEntry> p = ReadPasidEntry(*memory_, profile_, *c.entry, 0x1041);
  ASSERT_TRUE(p.ok());
  EXPECT_EQ(p.entry->pgtt, kPgttNested);
  EXPECT_EQ(p.entry->did, 9);
  EXPECT_EQ(p.entry->flptptr, 0x5000u);
  EXPECT_EQ(p.entry->slptptr, 0x6000u);
  EXPECT_TRUE(p.entry->sre && p.entry->wpe && p.entry->ssade);
  // Beyond the directory (PDTS=1).
  EXPECT_EQ(ReadPasidEntry(*memory_, profile_, *c.entry, 1u << 14).fault.reason, kSmPasidTooLarge);
  // Directory entry not present / reserved.
  Decoded<PasidEntry> np = ReadPasidEntry(*memory_, profile_, *c.entry, 0x80);
  EXPECT_EQ(np.fault.reason, kSmPasidDirNotPresent);
  EXPECT_TRUE(np.fault.qualified);
  absl::StatusOr<uint64_t> dir = t.PasidDirectory(0x0185);
  ASSERT_TRUE(dir.ok());
  ASSERT_TRUE(memory_->WriteObj<uint64_t>(*dir + 8 * 3, 0x300000 | 1 | 0x10).ok());
  EXPECT_EQ(ReadPasidEntry(*memory_, profile_, *c.entry, 3 * 64).fault.reason, kSmPasidDirReserved);
  // FLPM 5-level without FL5LP.
  ASSERT_TRUE(t.SetPasidEntry(0x0185, 7, {.pgtt = kPgttFirstStage, .flpm = 1}).ok());
  EXPECT_EQ(ReadPasidEntry(*memory_, profile_, *c.entry, 7).fault.reason, kSmPasidEntryInvalid);
  VtdProfile p57 = *ParseVtdProfile("aw=57");
  EXPECT_TRUE(ReadPasidEntry(*memory_, p57, *c.entry, 7).ok());
}

TEST_F(DecodeTest, ScalableFaults) {
  VtdTableBuilder t = Tables(true);
  EXPECT_EQ(Fault(t.rtaddr(), 0x0300), kSmRootNotPresent);
  ASSERT_TRUE(t.SetScalableContext(0x0301, {}).ok());  // lower half present only
  EXPECT_EQ(Fault(t.rtaddr(), 0x0381), kSmRootNotPresent);
  EXPECT_EQ(Fault(t.rtaddr(), 0x0302), kSmContextNotPresent);
  absl::StatusOr<uint64_t> ce = t.ContextEntryAddress(0x0303);
  ASSERT_TRUE(ce.ok());
  ASSERT_TRUE(memory_->WriteObj(*ce, std::array<uint64_t, 4>{1, 0, 0, 5}).ok());
  EXPECT_EQ(Fault(t.rtaddr(), 0x0303), kSmContextReserved);
  ASSERT_TRUE(memory_->WriteObj(*ce, std::array<uint64_t, 4>{1, 1u << 19, 0, 0}).ok());  // RID_PASID beyond PDTS 0
  EXPECT_EQ(Fault(t.rtaddr(), 0x0303), kSmRidPasidError);
  // TTM reserved; scalable root on a legacy-only profile.
  EXPECT_EQ(Fault(t.rtaddr() | (3u << 10), 0x0301), kSmInvalidRootTable);
  VtdProfile legacy = *ParseVtdProfile("sm=off");
  Decoded<ContextEntry> d = ReadContextEntry(*memory_, legacy, t.rtaddr(), 0x0301);
  EXPECT_EQ(d.fault.reason, kSmInvalidRootTable);
  // PRE without PRS support.
  VtdProfile no_prs = *ParseVtdProfile("prs=off");
  ASSERT_TRUE(t.SetScalableContext(0x0304, {.pre = true}).ok());
  EXPECT_EQ(ReadContextEntry(*memory_, no_prs, t.rtaddr(), 0x0304).fault.reason, kSmContextInvalid);
}

}  // namespace
}  // namespace ionest::vtd
