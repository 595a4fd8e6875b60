#include "iommu/second_stage.h"

#include <memory>

#include "gtest/gtest.h"
#include "iommu/testing/table_builder.h"

namespace ionest {
namespace {

using iommu_testing::PageAllocator;
using iommu_testing::SecondStageTableBuilder;

constexpr uint64_t kRam = 64ull << 20;

class SecondStageTest : public ::testing::Test {
 protected:
  void SetUp() override { Reset(4); }
  void Reset(int levels) {
    builder_.reset();
    alloc_.reset();
    mem_ = *GuestMemory::Create({{0, kRam}});
    alloc_ = std::make_unique<PageAllocator>(*mem_, 1ull << 20, 8ull << 20);
    builder_ = std::make_unique<SecondStageTableBuilder>(*SecondStageTableBuilder::Create(*mem_, *alloc_, levels));
    cfg_ = SecondStageConfig{};
    cfg_.root = builder_->root();
    cfg_.levels = levels;
    cfg_.aw_bits = 12 + 9 * levels;
    cfg_.superpage_mask = kSuperpage2M | kSuperpage1G;
  }
  WalkResult Walk(uint64_t addr, uint32_t access) { return WalkSecondStage(*mem_, cfg_, addr, access); }
  uint64_t Entry(uint64_t addr, int level) { return *builder_->ReadEntry(addr, level); }

  std::unique_ptr<GuestMemory> mem_;
  std::unique_ptr<PageAllocator> alloc_;
  std::unique_ptr<SecondStageTableBuilder> builder_;
  SecondStageConfig cfg_;
};

TEST_F(SecondStageTest, Translates4KPage) {
  ASSERT_TRUE(builder_->Map(0xABC000, 0x3000000, kPage4K, kDmaRead | kDmaWrite).ok());
  WalkResult r = Walk(0xABCDEF, kDmaWrite);
  ASSERT_TRUE(r.ok) << WalkFaultToString(r.fault);
  EXPECT_EQ(r.output, 0x3000DEFu);
  EXPECT_EQ(r.page_size, kPage4K);
  EXPECT_EQ(r.perms, kDmaRead | kDmaWrite);
  EXPECT_EQ(r.user_perms, r.perms);
  EXPECT_EQ(r.supervisor_perms, r.perms);
  WalkResult n = Walk(0xABD000, kDmaRead);
  EXPECT_EQ(n.fault.kind, WalkFaultKind::kNotPresent);
  EXPECT_EQ(n.fault.stage, WalkStage::kSecond);
  EXPECT_EQ(n.fault.level, 1);
}

// Every R/W/X leaf combination x every request type; rights are the intersection over levels.
TEST_F(SecondStageTest, PermissionMatrix) {
  for (uint32_t leaf = 1; leaf < 8; ++leaf) {
    const uint64_t addr = 0x10000ull * leaf;
    ASSERT_TRUE(builder_->Map(addr, 0x4000000, kPage4K, leaf).ok());
    for (uint32_t access = 1; access < 8; ++access) {
      for (uint32_t priv : {0u, uint32_t{kDmaPriv}}) {
        WalkResult r = Walk(addr, access | priv);
        SCOPED_TRACE(::testing::Message() << "leaf " << leaf << " access " << access);
        const bool allowed = (access & ~leaf) == 0;
        ASSERT_EQ(r.ok, allowed);
        if (allowed) EXPECT_EQ(r.perms, leaf);
        else EXPECT_EQ(r.fault.kind, WalkFaultKind::kPermission);
      }
    }
  }
  // Rights removed at an upper level restrict the leaf.
  ASSERT_TRUE(builder_->SetEntryBits(0x70000, 3, 0, ss::kW).ok());
  EXPECT_EQ(Walk(0x70000, kDmaWrite).fault.kind, WalkFaultKind::kPermission);
  EXPECT_EQ(Walk(0x70000, kDmaRead).perms, kDmaRead | kDmaExec);
  ASSERT_TRUE(builder_->SetEntryBits(0x70000, 4, 0, ss::kX).ok());
  EXPECT_EQ(Walk(0x70000, kDmaRead).perms, uint32_t{kDmaRead});
  // An entry with R=W=X=0 is not present, at any level.
  ASSERT_TRUE(builder_->SetEntryBits(0x70000, 2, 0, ss::kR | ss::kW | ss::kX).ok());
  WalkResult np = Walk(0x70000, kDmaRead);
  EXPECT_EQ(np.fault.kind, WalkFaultKind::kNotPresent);
  EXPECT_EQ(np.fault.level, 2);
}

TEST_F(SecondStageTest, SuperpagesAndSllps) {
  ASSERT_TRUE(builder_->Map(0x200000, 0x600000, kPage2M, kDmaRead, kPage2M).ok());
  ASSERT_TRUE(builder_->Map(0x40000000, 0x100000000, kPage1G, kDmaRead | kDmaWrite, kPage1G).ok());
  WalkResult r = Walk(0x3FFFFF, kDmaRead);
  ASSERT_TRUE(r.ok);
  EXPECT_EQ(r.output, 0x7FFFFFu);
  EXPECT_EQ(r.page_size, kPage2M);
  WalkResult g = Walk(0x40000000 + 0x12345678, kDmaWrite);
  ASSERT_TRUE(g.ok);
  EXPECT_EQ(g.output, 0x112345678u);
  EXPECT_EQ(g.page_size, kPage1G);
  // Sizes not in SLLPS: PS is reserved.
  cfg_.superpage_mask = kSuperpage2M;
  EXPECT_EQ(Walk(0x40000000, kDmaRead).fault.kind, WalkFaultKind::kReservedBit);
  EXPECT_TRUE(Walk(0x200000, kDmaRead).ok);
  cfg_.superpage_mask = 0;
  WalkResult f = Walk(0x200000, kDmaRead);
  EXPECT_EQ(f.fault.kind, WalkFaultKind::kReservedBit);
  EXPECT_EQ(f.fault.level, 2);
}

TEST_F(SecondStageTest, LevelsAndAddressWidth) {
  for (int levels : {3, 4, 5}) {
    SCOPED_TRACE(levels);
    Reset(levels);
    const uint64_t top = (1ull << cfg_.aw_bits) - kPage4K;
    ASSERT_TRUE(builder_->Map(top, 0x5000, kPage4K, kDmaRead).ok());
    WalkResult r = Walk(top + 8, kDmaRead);
    ASSERT_TRUE(r.ok) << WalkFaultToString(r.fault);
    EXPECT_EQ(r.output, 0x5008u);
    WalkResult w = Walk(1ull << cfg_.aw_bits, kDmaRead);
    EXPECT_EQ(w.fault.kind, WalkFaultKind::kAddressWidth);
    EXPECT_EQ(w.fault.level, 0);
    EXPECT_EQ(Walk(0, kDmaRead).fault.level, levels);
  }
  // Narrower AW than the level count covers (e.g. MGAW 39 with 4 levels).
  Reset(4);
  cfg_.aw_bits = 39;
  EXPECT_EQ(Walk(1ull << 39, kDmaRead).fault.kind, WalkFaultKind::kAddressWidth);
  // Unwalkable configs.
  cfg_.aw_bits = 58;
  EXPECT_EQ(Walk(0, kDmaRead).fault.kind, WalkFaultKind::kInvalidConfig);
  cfg_.aw_bits = 48;
  cfg_.levels = 2;
  EXPECT_EQ(Walk(0, kDmaRead).fault.kind, WalkFaultKind::kInvalidConfig);
  cfg_.levels = 6;
  EXPECT_EQ(Walk(0, kDmaRead).fault.kind, WalkFaultKind::kInvalidConfig);
}

TEST_F(SecondStageTest, ReservedBitsAtEachLevel) {
  Reset(5);
  cfg_.haw_bits = 39;
  ASSERT_TRUE(builder_->Map(0x1000, 0x2000, kPage4K, kDmaRead).ok());
  ASSERT_TRUE(builder_->Map(0x40000000, 0x40000000, kPage2M, kDmaRead, kPage2M).ok());
  ASSERT_TRUE(builder_->Map(0x80000000, 0x0, kPage1G, kDmaRead, kPage1G).ok());
  struct Case {
    uint64_t addr;
    int level;
    uint64_t bit;
  };
  const Case cases[] = {
      {0x1000, 5, 1ull << 39}, {0x1000, 5, ss::kPS}, {0x1000, 4, 1ull << 51}, {0x1000, 4, ss::kPS},
      {0x1000, 3, 1ull << 42}, {0x1000, 2, 1ull << 40}, {0x1000, 1, 1ull << 45},
      {0x40000000, 2, 1ull << 12}, {0x40000000, 2, 1ull << 20}, {0x80000000, 3, 1ull << 12},
      {0x80000000, 3, 1ull << 29},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(::testing::Message() << "level " << c.level << " bit " << std::hex << c.bit);
    const uint64_t old = Entry(c.addr, c.level);
    ASSERT_TRUE(builder_->WriteEntry(c.addr, c.level, old | c.bit).ok());
    WalkResult r = Walk(c.addr, kDmaRead);
    ASSERT_FALSE(r.ok);
    EXPECT_EQ(r.fault.kind, WalkFaultKind::kReservedBit);
    EXPECT_EQ(r.fault.level, c.level);
    ASSERT_TRUE(builder_->WriteEntry(c.addr, c.level, old).ok());
    EXPECT_TRUE(Walk(c.addr, kDmaRead).ok);
  }
}

TEST_F(SecondStageTest, AccessedDirtyWithSsade) {
  ASSERT_TRUE(builder_->Map(0x5000, 0x9000, kPage4K, kDmaRead | kDmaWrite).ok());
  // Without SSADE nothing is written and W is cacheable.
  WalkResult plain = Walk(0x5000, kDmaRead);
  ASSERT_TRUE(plain.ok);
  EXPECT_EQ(plain.perms, kDmaRead | kDmaWrite);
  for (int l = 1; l <= 4; ++l) EXPECT_EQ(Entry(0x5000, l) & (ss::kA | ss::kD), 0u);

  cfg_.ad_enabled = true;
  WalkResult r = Walk(0x5000, kDmaRead);
  ASSERT_TRUE(r.ok);
  EXPECT_EQ(r.perms, uint32_t{kDmaRead});  // not dirty yet
  for (int l = 1; l <= 4; ++l) EXPECT_EQ(Entry(0x5000, l) & ss::kA, ss::kA) << l;
  EXPECT_EQ(Entry(0x5000, 1) & ss::kD, 0u);
  WalkResult w = Walk(0x5000, kDmaWrite);
  ASSERT_TRUE(w.ok);
  EXPECT_EQ(Entry(0x5000, 1) & ss::kD, ss::kD);
  EXPECT_EQ(w.perms, kDmaRead | kDmaWrite);
  // A faulting write sets no D.
  ASSERT_TRUE(builder_->Map(0x6000, 0xA000, kPage4K, kDmaRead).ok());
  EXPECT_FALSE(Walk(0x6000, kDmaWrite).ok);
  EXPECT_EQ(Entry(0x6000, 1) & (ss::kA | ss::kD), 0u);
}

TEST_F(SecondStageTest, TablePointerOutsideRam) {
  ASSERT_TRUE(builder_->Map(0x5000, 0x9000, kPage4K, kDmaRead).ok());
  ASSERT_TRUE(builder_->WriteEntry(0x5000, 3, 0xFFFFF000 | ss::kR).ok());
  WalkResult r = Walk(0x5000, kDmaRead);
  EXPECT_EQ(r.fault.kind, WalkFaultKind::kTableAccess);
  EXPECT_EQ(r.fault.level, 2);
  EXPECT_EQ(r.fault.entry_addr, 0xFFFFF000u);
}

}  // namespace
}  // namespace ionest
