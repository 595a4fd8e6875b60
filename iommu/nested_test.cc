#include "iommu/nested.h"

#include <memory>

#include "gtest/gtest.h"
#include "iommu/testing/table_builder.h"

namespace ionest {
namespace {

using iommu_testing::FirstStageTableBuilder;
using iommu_testing::OffsetPhysMemory;
using iommu_testing::PageAllocator;
using iommu_testing::SecondStageTableBuilder;

// Host RAM [0, 64 MiB). Second stage maps GPA [0, 8 MiB) to HPA + 16 MiB in 4 KiB pages, and GPA
// [8 MiB, 10 MiB) with one 2 MiB page to HPA 32 MiB. First-stage tables live at GPA [1, 4) MiB.
constexpr uint64_t kRam = 64ull << 20;
constexpr uint64_t kGpaOffset = 16ull << 20;
constexpr uint64_t kGpaMapped = 8ull << 20;

class NestedTest : public ::testing::Test {
 protected:
  void SetUp() override {
    mem_ = *GuestMemory::Create({{0, kRam}});
    ss_alloc_ = std::make_unique<PageAllocator>(*mem_, 1ull << 20, 4ull << 20);
    ss_ = std::make_unique<SecondStageTableBuilder>(*SecondStageTableBuilder::Create(*mem_, *ss_alloc_, 4));
    ASSERT_TRUE(ss_->Map(0, kGpaOffset, kGpaMapped, kDmaRead | kDmaWrite).ok());
    ASSERT_TRUE(ss_->Map(kGpaMapped, 32ull << 20, kPage2M, kDmaRead | kDmaWrite, kPage2M).ok());
    gpa_view_ = std::make_unique<OffsetPhysMemory>(*mem_, kGpaOffset);
    fs_alloc_ = std::make_unique<PageAllocator>(*gpa_view_, 1ull << 20, 3ull << 20);
    fs_ = std::make_unique<FirstStageTableBuilder>(*FirstStageTableBuilder::Create(*gpa_view_, *fs_alloc_, 4));
    first_.root = fs_->root();
    first_.sre = true;
    second_.root = ss_->root();
    second_.levels = 4;
    second_.aw_bits = 48;
    second_.superpage_mask = kSuperpage2M | kSuperpage1G;
  }
  WalkResult Walk(uint64_t iova, uint32_t access) { return WalkNested(*mem_, first_, second_, iova, access); }
  // GPA of the first-stage entry at `level` for iova.
  uint64_t FsEntryGpa(uint64_t iova, int level) { return *fs_->EntryAddress(iova, level); }

  std::unique_ptr<GuestMemory> mem_;
  std::unique_ptr<PageAllocator> ss_alloc_, fs_alloc_;
  std::unique_ptr<SecondStageTableBuilder> ss_;
  std::unique_ptr<OffsetPhysMemory> gpa_view_;
  std::unique_ptr<FirstStageTableBuilder> fs_;
  FirstStageConfig first_;
  SecondStageConfig second_;
};

TEST_F(NestedTest, TranslatesThroughBothStages) {
  ASSERT_TRUE(fs_->Map(0x7000'0000, 0x50'0000, kPage4K, kDmaRead | kDmaWrite).ok());
  WalkResult r = Walk(0x7000'0123, kDmaWrite);
  ASSERT_TRUE(r.ok) << WalkFaultToString(r.fault);
  EXPECT_EQ(r.output, kGpaOffset + 0x50'0123);
  EXPECT_EQ(r.page_size, kPage4K);
  EXPECT_EQ(r.perms, kDmaRead | kDmaWrite);
  // First-stage A/D landed in the tables (through the GPA view), the leaf is dirty.
  EXPECT_EQ(*fs_->ReadEntry(0x7000'0000, 1) & (fs::kA | fs::kD), fs::kA | fs::kD);
  EXPECT_EQ(*fs_->ReadEntry(0x7000'0000, 4) & fs::kA, fs::kA);
}

TEST_F(NestedTest, PermissionsIntersect) {
  ASSERT_TRUE(fs_->Map(0x1000, 0x50'0000, kPage4K, kDmaRead | kDmaWrite, kPage4K, fs::kA | fs::kD).ok());
  ASSERT_TRUE(fs_->Map(0x2000, 0x50'1000, kPage4K, kDmaRead, kPage4K, fs::kA).ok());
  // Second stage: GPA 0x500000 read-only.
  ASSERT_TRUE(ss_->SetEntryBits(0x50'0000, 1, 0, ss::kW).ok());
  WalkResult r = Walk(0x1000, kDmaRead);
  ASSERT_TRUE(r.ok);
  EXPECT_EQ(r.perms, uint32_t{kDmaRead});
  EXPECT_EQ(r.user_perms, uint32_t{kDmaRead});
  EXPECT_EQ(r.supervisor_perms, uint32_t{kDmaRead});
  WalkResult w = Walk(0x1000, kDmaWrite);
  ASSERT_FALSE(w.ok);
  EXPECT_EQ(w.fault.kind, WalkFaultKind::kPermission);
  EXPECT_EQ(w.fault.stage, WalkStage::kSecond);
  EXPECT_EQ(w.fault.addr, 0x50'0000u);
  // First stage read-only, second stage writable: first-stage permission fault.
  WalkResult w2 = Walk(0x2000, kDmaWrite);
  ASSERT_FALSE(w2.ok);
  EXPECT_EQ(w2.fault.kind, WalkFaultKind::kPermission);
  EXPECT_EQ(w2.fault.stage, WalkStage::kFirst);
  EXPECT_EQ(w2.fault.addr, 0x2000u);
  // Execute: first stage allows (ERE, no XD) but second stage lacks X.
  first_.ere = true;
  ASSERT_TRUE(fs_->Map(0x3000, 0x50'2000, kPage4K, kDmaRead | kDmaExec, kPage4K, fs::kA).ok());
  WalkResult x = Walk(0x3000, kDmaRead | kDmaExec);
  EXPECT_EQ(x.fault.stage, WalkStage::kSecond);
  EXPECT_EQ(x.fault.kind, WalkFaultKind::kPermission);
  ASSERT_TRUE(ss_->SetEntryBits(0x50'2000, 1, ss::kX).ok());
  EXPECT_TRUE(Walk(0x3000, kDmaRead | kDmaExec).ok);
}

TEST_F(NestedTest, PageSizeIsTheSmaller) {
  ASSERT_TRUE(fs_->Map(0x4000'0000, 0x60'0000, kPage2M, kDmaRead, kPage2M).ok());       // FS 2M, SS 4K
  ASSERT_TRUE(fs_->Map(0x5000'0000, kGpaMapped + 0x3000, kPage4K, kDmaRead).ok());     // FS 4K, SS 2M
  ASSERT_TRUE(fs_->Map(0x6000'0000, kGpaMapped, kPage2M, kDmaRead, kPage2M).ok());      // both 2M
  WalkResult a = Walk(0x4000'5678, kDmaRead);
  ASSERT_TRUE(a.ok);
  EXPECT_EQ(a.page_size, kPage4K);
  EXPECT_EQ(a.output, kGpaOffset + 0x60'5678);
  WalkResult b = Walk(0x5000'0010, kDmaRead);
  ASSERT_TRUE(b.ok);
  EXPECT_EQ(b.page_size, kPage4K);
  EXPECT_EQ(b.output, (32ull << 20) + 0x3010);
  WalkResult c = Walk(0x6012'3456, kDmaRead);
  ASSERT_TRUE(c.ok);
  EXPECT_EQ(c.page_size, kPage2M);
  EXPECT_EQ(c.output, (32ull << 20) + 0x12'3456);
}

TEST_F(NestedTest, SecondStageFaultWhileWalkingFirstStageTables) {
  ASSERT_TRUE(fs_->Map(0x7000, 0x50'0000, kPage4K, kDmaRead).ok());
  const uint64_t pte_gpa = FsEntryGpa(0x7000, 1);
  ASSERT_TRUE(Walk(0x7000, kDmaRead).ok);
  // Unmap (in the second stage) the page holding the first-stage page table.
  const uint64_t ss_old = *ss_->ReadEntry(pte_gpa, 1);
  ASSERT_TRUE(ss_->WriteEntry(pte_gpa, 1, 0).ok());
  WalkResult r = Walk(0x7000, kDmaRead);
  ASSERT_FALSE(r.ok);
  EXPECT_EQ(r.fault.stage, WalkStage::kSecondForFirstTable);
  EXPECT_EQ(r.fault.kind, WalkFaultKind::kNotPresent);
  EXPECT_EQ(r.fault.addr, pte_gpa);
  EXPECT_EQ(r.fault.level, 1);  // second-stage level
  // Read-only in the second stage: reading works, but the A update is a write (VT-d §3.8).
  ASSERT_TRUE(ss_->WriteEntry(pte_gpa, 1, ss_old & ~ss::kW).ok());
  ASSERT_TRUE(fs_->Map(0x8000, 0x50'1000, kPage4K, kDmaRead).ok());  // leaf A clear
  WalkResult ro = Walk(0x8000, kDmaRead);
  ASSERT_FALSE(ro.ok);
  EXPECT_EQ(ro.fault.stage, WalkStage::kSecondForFirstTable);
  EXPECT_EQ(ro.fault.kind, WalkFaultKind::kPermission);
  EXPECT_EQ(ro.fault.addr, FsEntryGpa(0x8000, 1));
  first_.update_ad = false;
  EXPECT_TRUE(Walk(0x8000, kDmaRead).ok);
}

TEST_F(NestedTest, FirstStageRootOutsideSecondStage) {
  first_.root = kGpaMapped + (4ull << 20);  // GPA not mapped by the second stage
  WalkResult r = Walk(0x1000, kDmaRead);
  EXPECT_EQ(r.fault.stage, WalkStage::kSecondForFirstTable);
  EXPECT_EQ(r.fault.kind, WalkFaultKind::kNotPresent);
  EXPECT_EQ(r.fault.addr, first_.root);
  first_.root = 1ull << 50;  // beyond the second-stage input width
  WalkResult w = Walk(0x1000, kDmaRead);
  EXPECT_EQ(w.fault.stage, WalkStage::kSecondForFirstTable);
  EXPECT_EQ(w.fault.kind, WalkFaultKind::kAddressWidth);
}

TEST_F(NestedTest, SecondStageMapsTableOutsideRam) {
  ASSERT_TRUE(fs_->Map(0x7000, 0x50'0000, kPage4K, kDmaRead).ok());
  const uint64_t pte_gpa = FsEntryGpa(0x7000, 1);
  ASSERT_TRUE(ss_->WriteEntry(pte_gpa, 1, (1ull << 40) | ss::kR | ss::kW).ok());
  WalkResult r = Walk(0x7000, kDmaRead);
  EXPECT_EQ(r.fault.stage, WalkStage::kSecondForFirstTable);
  EXPECT_EQ(r.fault.kind, WalkFaultKind::kTableAccess);
}

TEST_F(NestedTest, FinalAddressNotMappedInSecondStage) {
  ASSERT_TRUE(fs_->Map(0x7000, 0x300'0000, kPage4K, kDmaRead).ok());  // GPA 48 MiB: not mapped
  WalkResult r = Walk(0x7000, kDmaRead);
  EXPECT_EQ(r.fault.stage, WalkStage::kSecond);
  EXPECT_EQ(r.fault.kind, WalkFaultKind::kNotPresent);
  EXPECT_EQ(r.fault.addr, 0x300'0000u);
}

TEST_F(NestedTest, SecondStageAdOnFirstStageTablePages) {
  second_.ad_enabled = true;
  ASSERT_TRUE(fs_->Map(0x7000, 0x50'0000, kPage4K, kDmaRead).ok());
  const uint64_t pte_gpa = FsEntryGpa(0x7000, 1);
  ASSERT_TRUE(Walk(0x7000, kDmaRead).ok);
  // The first-stage A update wrote the table page: second-stage D set on it.
  EXPECT_EQ(*ss_->ReadEntry(pte_gpa, 1) & (ss::kA | ss::kD), ss::kA | ss::kD);
  // The data page was only read.
  EXPECT_EQ(*ss_->ReadEntry(0x50'0000, 1) & (ss::kA | ss::kD), ss::kA);
}

// 5-level first stage over a 3-level (39-bit) second stage: every table of the deeper walk goes
// through the shallower one.
TEST(NestedLevelsTest, FiveLevelFirstStageOverThreeLevelSecondStage) {
  auto mem = *GuestMemory::Create({{0, 64ull << 20}});
  PageAllocator ss_alloc(*mem, 1ull << 20, 2ull << 20);
  auto ss = *SecondStageTableBuilder::Create(*mem, ss_alloc, 3);
  ASSERT_TRUE(ss.Map(0, kGpaOffset, 4ull << 20, kDmaRead | kDmaWrite, kPage2M).ok());
  OffsetPhysMemory view(*mem, kGpaOffset);
  PageAllocator fs_alloc(view, 1ull << 20, 1ull << 20);
  auto fs = *FirstStageTableBuilder::Create(view, fs_alloc, 5);
  const uint64_t iova = 0x00AB'CDEF'0000'0000ull;  // canonical only with 57 bits
  ASSERT_TRUE(fs.Map(iova, 0x30'0000, kPage4K, kDmaRead).ok());
  FirstStageConfig first;
  first.root = fs.root();
  first.levels = 5;
  SecondStageConfig second;
  second.root = ss.root();
  second.levels = 3;
  second.aw_bits = 39;
  second.superpage_mask = kSuperpage2M;
  WalkResult r = WalkNested(*mem, first, second, iova + 0x44, kDmaRead);
  ASSERT_TRUE(r.ok) << WalkFaultToString(r.fault);
  EXPECT_EQ(r.output, kGpaOffset + 0x30'0044);
  EXPECT_EQ(r.page_size, kPage4K);
  // A first-stage output beyond the second stage's 39-bit input width.
  ASSERT_TRUE(fs.Map(iova + kPage4K, 1ull << 39, kPage4K, kDmaRead).ok());
  WalkResult w = WalkNested(*mem, first, second, iova + kPage4K, kDmaRead);
  EXPECT_EQ(w.fault.stage, WalkStage::kSecond);
  EXPECT_EQ(w.fault.kind, WalkFaultKind::kAddressWidth);
  EXPECT_EQ(w.fault.addr, 1ull << 39);
}

TEST_F(NestedTest, FirstStageFaultsStillReportedAsFirst) {
  WalkResult r = Walk(0x1000, kDmaRead);
  EXPECT_EQ(r.fault.stage, WalkStage::kFirst);
  EXPECT_EQ(r.fault.kind, WalkFaultKind::kNotPresent);
  EXPECT_EQ(r.fault.level, 4);
  EXPECT_EQ(Walk(1ull << 47, kDmaRead).fault.kind, WalkFaultKind::kNonCanonical);
  second_.levels = 7;
  EXPECT_EQ(Walk(0x1000, kDmaRead).fault.kind, WalkFaultKind::kInvalidConfig);
}

}  // namespace
}  // namespace ionest
