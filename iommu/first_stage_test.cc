#include "iommu/first_stage.h"

#include <memory>

#include "gtest/gtest.h"
#include "iommu/testing/table_builder.h"

namespace ionest {
namespace {

using iommu_testing::FirstStageTableBuilder;
using iommu_testing::PageAllocator;

constexpr uint64_t kRam = 64ull << 20;
constexpr uint64_t kTablesBase = 1ull << 20;

class FirstStageTest : public ::testing::Test {
 protected:
  void SetUp() override { Reset(4); }
  void Reset(int levels) {
    builder_.reset();
    alloc_.reset();
    mem_ = *GuestMemory::Create({{0, kRam}});
    alloc_ = std::make_unique<PageAllocator>(*mem_, kTablesBase, 8ull << 20);
    builder_ = std::make_unique<FirstStageTableBuilder>(*FirstStageTableBuilder::Create(*mem_, *alloc_, levels));
    cfg_ = FirstStageConfig{};
    cfg_.root = builder_->root();
    cfg_.levels = levels;
  }
  WalkResult Walk(uint64_t iova, uint32_t access) { return WalkFirstStage(*mem_, cfg_, iova, access); }
  uint64_t Entry(uint64_t iova, int level) { return *builder_->ReadEntry(iova, level); }

  std::unique_ptr<GuestMemory> mem_;
  std::unique_ptr<PageAllocator> alloc_;
  std::unique_ptr<FirstStageTableBuilder> builder_;
  FirstStageConfig cfg_;
};

TEST_F(FirstStageTest, Translates4KPage) {
  ASSERT_TRUE(builder_->Map(0x12345000, 0x20000000, kPage4K, kDmaRead | kDmaWrite).ok());
  WalkResult r = Walk(0x12345678, kDmaRead);
  ASSERT_TRUE(r.ok) << WalkFaultToString(r.fault);
  EXPECT_EQ(r.output, 0x20000678u);
  EXPECT_EQ(r.page_size, kPage4K);
  EXPECT_EQ(r.page_output(), 0x20000000u);
  // Neighbouring page is not mapped.
  WalkResult n = Walk(0x12346000, kDmaRead);
  ASSERT_FALSE(n.ok);
  EXPECT_EQ(n.fault.kind, WalkFaultKind::kNotPresent);
  EXPECT_EQ(n.fault.stage, WalkStage::kFirst);
  EXPECT_EQ(n.fault.level, 1);
  EXPECT_EQ(n.fault.addr, 0x12346000u);
}

TEST_F(FirstStageTest, NotPresentReportsLevel) {
  EXPECT_EQ(Walk(0x1000, kDmaRead).fault.level, 4);
  ASSERT_TRUE(builder_->Map(0x40000000, 0x1000, kPage4K, kDmaRead).ok());
  EXPECT_EQ(Walk(0x80000000, kDmaRead).fault.level, 3);   // other PDPTE
  EXPECT_EQ(Walk(0x40200000, kDmaRead).fault.level, 2);   // other PDE
  EXPECT_EQ(Walk(0x40001000, kDmaRead).fault.level, 1);
  WalkResult r = Walk(0x40001000, kDmaRead);
  EXPECT_EQ(r.fault.entry_addr, *builder_->EntryAddress(0x40001000, 1));
}

// Every leaf-permission combination x SRE/WPE/ERE x request type, against the rules of VT-d §3.6.2
// (SDM vol.3 §4.6 with CR0.WP = WPE, NXE = ERE, no SMAP/SMEP).
TEST_F(FirstStageTest, PermissionMatrix) {
  struct Leaf {
    bool w, x, u;
  };
  int checked = 0;
  for (int leaf_bits = 0; leaf_bits < 8; ++leaf_bits) {
    const Leaf leaf{(leaf_bits & 1) != 0, (leaf_bits & 2) != 0, (leaf_bits & 4) != 0};
    const uint64_t iova = 0x100000ull * (leaf_bits + 1);
    const uint32_t perms = (leaf.w ? kDmaWrite : 0u) | (leaf.x ? kDmaExec : 0u) | (leaf.u ? 0u : kDmaPriv);
    // A|D preset so the cached rights equal the architectural ones.
    ASSERT_TRUE(builder_->Map(iova, 0x3000000, kPage4K, perms, kPage4K, fs::kA | fs::kD).ok());
    for (int cfg_bits = 0; cfg_bits < 8; ++cfg_bits) {
      cfg_.sre = cfg_bits & 1;
      cfg_.wpe = cfg_bits & 2;
      cfg_.ere = cfg_bits & 4;
      for (uint32_t priv : {0u, uint32_t{kDmaPriv}}) {
        for (uint32_t kind : {uint32_t{kDmaRead}, uint32_t{kDmaWrite}, uint32_t{kDmaRead | kDmaExec}}) {
          const uint32_t access = kind | priv;
          WalkResult r = Walk(iova, access);
          SCOPED_TRACE(::testing::Message() << "leaf w/x/u=" << leaf.w << leaf.x << leaf.u << " sre/wpe/ere="
                                          << cfg_.sre << cfg_.wpe << cfg_.ere << " access=" << access);
          ++checked;
          if (priv && !cfg_.sre) {
            ASSERT_FALSE(r.ok);
            EXPECT_EQ(r.fault.kind, WalkFaultKind::kRequestNotAllowed);
            continue;
          }
          if ((kind & kDmaExec) && !cfg_.ere) {
            ASSERT_FALSE(r.ok);
            EXPECT_EQ(r.fault.kind, WalkFaultKind::kRequestNotAllowed);
            continue;
          }
          bool allowed;
          if (!priv) {
            allowed = leaf.u && (kind == kDmaRead || (kind == kDmaWrite && leaf.w) ||
                                 (kind == (kDmaRead | kDmaExec) && leaf.x));
          } else {
            allowed = kind == kDmaRead || (kind == kDmaWrite && (leaf.w || !cfg_.wpe)) ||
                      (kind == (kDmaRead | kDmaExec) && leaf.x);
          }
          ASSERT_EQ(r.ok, allowed) << WalkFaultToString(r.fault);
          if (!allowed) {
            EXPECT_EQ(r.fault.kind, WalkFaultKind::kPermission);
            EXPECT_EQ(r.fault.level, 1);
            continue;
          }
          // Reported rights agree with the rules for both privilege levels.
          EXPECT_EQ(r.user_perms, leaf.u ? (kDmaRead | (leaf.w ? kDmaWrite : 0u) |
                                            (leaf.x && cfg_.ere ? kDmaExec : 0u))
                                         : 0u);
          EXPECT_EQ(r.supervisor_perms, cfg_.sre ? (kDmaRead | (leaf.w || !cfg_.wpe ? kDmaWrite : 0u) |
                                                    (leaf.x && cfg_.ere ? kDmaExec : 0u))
                                                 : 0u);
          EXPECT_EQ(r.perms, priv ? r.supervisor_perms : r.user_perms);
        }
      }
    }
  }
  EXPECT_EQ(checked, 8 * 8 * 2 * 3);
}

TEST_F(FirstStageTest, UpperLevelRestrictionsApply) {
  cfg_.ere = true;
  cfg_.sre = true;
  cfg_.wpe = true;
  ASSERT_TRUE(builder_->Map(0x200000, 0x5000000, kPage4K, kDmaRead | kDmaWrite | kDmaExec, kPage4K,
                            fs::kA | fs::kD).ok());
  ASSERT_TRUE(Walk(0x200000, kDmaWrite).ok);
  // R/W clear in the PDPTE: user and (WPE) supervisor writes fault; reads still fine.
  ASSERT_TRUE(builder_->SetEntryBits(0x200000, 3, 0, fs::kRW).ok());
  EXPECT_EQ(Walk(0x200000, kDmaWrite).fault.kind, WalkFaultKind::kPermission);
  EXPECT_EQ(Walk(0x200000, kDmaWrite | kDmaPriv).fault.kind, WalkFaultKind::kPermission);
  EXPECT_TRUE(Walk(0x200000, kDmaRead).ok);
  cfg_.wpe = false;
  EXPECT_TRUE(Walk(0x200000, kDmaWrite | kDmaPriv).ok);
  ASSERT_TRUE(builder_->SetEntryBits(0x200000, 3, fs::kRW).ok());
  // U/S clear in the PML4E: user requests fault, supervisor requests pass.
  ASSERT_TRUE(builder_->SetEntryBits(0x200000, 4, 0, fs::kUS).ok());
  EXPECT_EQ(Walk(0x200000, kDmaRead).fault.kind, WalkFaultKind::kPermission);
  EXPECT_TRUE(Walk(0x200000, kDmaRead | kDmaPriv).ok);
  ASSERT_TRUE(builder_->SetEntryBits(0x200000, 4, fs::kUS).ok());
  // XD in the PDE: execute faults, read passes.
  ASSERT_TRUE(builder_->SetEntryBits(0x200000, 2, fs::kXD).ok());
  EXPECT_EQ(Walk(0x200000, kDmaRead | kDmaExec).fault.kind, WalkFaultKind::kPermission);
  EXPECT_TRUE(Walk(0x200000, kDmaRead).ok);
  EXPECT_EQ(Walk(0x200000, kDmaRead).user_perms & kDmaExec, 0u);
}

TEST_F(FirstStageTest, Superpages) {
  ASSERT_TRUE(builder_->Map(0x40000000, 0x80000000, kPage2M, kDmaRead | kDmaWrite, kPage2M).ok());
  ASSERT_TRUE(builder_->Map(0x80000000, 0x1C0000000, kPage1G, kDmaRead, kPage1G).ok());
  WalkResult r2 = Walk(0x401ABCDE, kDmaRead);
  ASSERT_TRUE(r2.ok);
  EXPECT_EQ(r2.page_size, kPage2M);
  EXPECT_EQ(r2.output, 0x801ABCDEu);
  WalkResult r1 = Walk(0xBFFFFFFF, kDmaRead);
  ASSERT_TRUE(r1.ok);
  EXPECT_EQ(r1.page_size, kPage1G);
  EXPECT_EQ(r1.output, 0x1FFFFFFFFu);
  // Without FL1GP the 1 GiB PS bit is reserved.
  cfg_.allow_1g = false;
  WalkResult f = Walk(0x80000000, kDmaRead);
  EXPECT_EQ(f.fault.kind, WalkFaultKind::kReservedBit);
  EXPECT_EQ(f.fault.level, 3);
  EXPECT_TRUE(Walk(0x40000000, kDmaRead).ok);
}

TEST_F(FirstStageTest, FiveLevelAndCanonical) {
  // 2^50 needs 5 levels: non-canonical for 4-level, fine for 5-level.
  const uint64_t high = 1ull << 50;
  EXPECT_EQ(Walk(high, kDmaRead).fault.kind, WalkFaultKind::kNonCanonical);
  EXPECT_EQ(Walk(0x0000800000000000ull, kDmaRead).fault.kind, WalkFaultKind::kNonCanonical);
  EXPECT_EQ(Walk(0xFFFF7FFFFFFFF000ull, kDmaRead).fault.kind, WalkFaultKind::kNonCanonical);
  // Upper-half canonical addresses are walked (and are simply not mapped).
  EXPECT_EQ(Walk(0xFFFF800000000000ull, kDmaRead).fault.kind, WalkFaultKind::kNotPresent);

  Reset(5);
  ASSERT_TRUE(builder_->Map(high, 0x7000, kPage4K, kDmaRead).ok());
  ASSERT_TRUE(builder_->Map(0xFF00000000001000ull, 0x9000, kPage4K, kDmaRead).ok());
  WalkResult r = Walk(high + 0x10, kDmaRead);
  ASSERT_TRUE(r.ok) << WalkFaultToString(r.fault);
  EXPECT_EQ(r.output, 0x7010u);
  WalkResult u = Walk(0xFF00000000001008ull, kDmaRead);
  ASSERT_TRUE(u.ok) << WalkFaultToString(u.fault);
  EXPECT_EQ(u.output, 0x9008u);
  EXPECT_EQ(Walk(0x0100000000000000ull, kDmaRead).fault.kind, WalkFaultKind::kNonCanonical);
  EXPECT_EQ(Walk(0x1000, kDmaRead).fault.level, 5);
  // Same tables walked as 4-level: the root is now read as a PML4, so 2^50 is non-canonical.
  cfg_.levels = 4;
  EXPECT_EQ(Walk(high, kDmaRead).fault.kind, WalkFaultKind::kNonCanonical);
}

// Reserved bits at every level (SDM vol.3 table 4-20).
TEST_F(FirstStageTest, ReservedBitsAtEachLevel) {
  Reset(5);
  cfg_.haw_bits = 40;
  ASSERT_TRUE(builder_->Map(0x1000, 0x2000, kPage4K, kDmaRead).ok());
  ASSERT_TRUE(builder_->Map(0x40000000, 0x40000000, kPage2M, kDmaRead, kPage2M).ok());
  ASSERT_TRUE(builder_->Map(0x80000000, 0x80000000, kPage1G, kDmaRead, kPage1G).ok());
  ASSERT_TRUE(Walk(0x1000, kDmaRead).ok);
  struct Case {
    uint64_t iova;
    int level;
    uint64_t bit;
  };
  const Case cases[] = {
      {0x1000, 5, 1ull << 40}, {0x1000, 5, fs::kPS},  {0x1000, 4, 1ull << 51}, {0x1000, 4, fs::kPS},
      {0x1000, 3, 1ull << 45}, {0x1000, 2, 1ull << 40}, {0x1000, 1, 1ull << 44},
      {0x40000000, 2, 1ull << 13}, {0x40000000, 2, 1ull << 20},  // 2 MiB leaf: bits 20:13
      {0x80000000, 3, 1ull << 13}, {0x80000000, 3, 1ull << 29},  // 1 GiB leaf: bits 29:13
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(::testing::Message() << "level " << c.level << " bit " << std::hex << c.bit);
    const uint64_t old = Entry(c.iova, c.level);
    ASSERT_TRUE(builder_->WriteEntry(c.iova, c.level, old | c.bit).ok());
    WalkResult r = Walk(c.iova, kDmaRead);
    ASSERT_FALSE(r.ok);
    EXPECT_EQ(r.fault.kind, WalkFaultKind::kReservedBit);
    EXPECT_EQ(r.fault.level, c.level);
    EXPECT_EQ(r.fault.entry & c.bit, c.bit);
    ASSERT_TRUE(builder_->WriteEntry(c.iova, c.level, old).ok());
    EXPECT_TRUE(Walk(c.iova, kDmaRead).ok);
  }
  // Bits that are not reserved: PAT (bit 7) in a PTE, ignored bits 62:52, XD.
  ASSERT_TRUE(builder_->SetEntryBits(0x1000, 1, fs::kPS | (1ull << 52) | (1ull << 62) | fs::kXD).ok());
  EXPECT_TRUE(Walk(0x1000, kDmaRead).ok);
}

TEST_F(FirstStageTest, AccessedAndDirtyUpdates) {
  ASSERT_TRUE(builder_->Map(0x5000, 0x9000, kPage4K, kDmaRead | kDmaWrite).ok());
  for (int l = 1; l <= 4; ++l) EXPECT_EQ(Entry(0x5000, l) & (fs::kA | fs::kD), 0u);
  WalkResult r = Walk(0x5000, kDmaRead);
  ASSERT_TRUE(r.ok);
  for (int l = 1; l <= 4; ++l) EXPECT_EQ(Entry(0x5000, l) & fs::kA, fs::kA) << "level " << l;
  EXPECT_EQ(Entry(0x5000, 1) & fs::kD, 0u);
  EXPECT_EQ(Entry(0x5000, 2) & (fs::kD | fs::kEA), 0u);
  // Writable but not dirty: a cache must not hold W.
  EXPECT_EQ(r.user_perms, uint32_t{kDmaRead});
  WalkResult w = Walk(0x5000, kDmaWrite);
  ASSERT_TRUE(w.ok);
  EXPECT_EQ(Entry(0x5000, 1) & fs::kD, fs::kD);
  EXPECT_EQ(w.user_perms, kDmaRead | kDmaWrite);
  EXPECT_EQ(Walk(0x5000, kDmaRead).user_perms, kDmaRead | kDmaWrite);  // now dirty
}

TEST_F(FirstStageTest, NoDirtyOnFaultingWriteAndNoUpdatesWhenDisabled) {
  ASSERT_TRUE(builder_->Map(0x5000, 0x9000, kPage4K, kDmaRead).ok());
  EXPECT_EQ(Walk(0x5000, kDmaWrite).fault.kind, WalkFaultKind::kPermission);
  EXPECT_EQ(Entry(0x5000, 1) & (fs::kA | fs::kD), 0u);  // leaf untouched
  EXPECT_EQ(Entry(0x5000, 2) & fs::kA, fs::kA);          // traversed tables are accessed

  ASSERT_TRUE(builder_->Map(0x6000, 0xA000, kPage4K, kDmaRead | kDmaWrite).ok());
  const uint64_t before = Entry(0x6000, 1);
  cfg_.update_ad = false;
  WalkResult r = Walk(0x6000, kDmaWrite);
  ASSERT_TRUE(r.ok);
  EXPECT_EQ(Entry(0x6000, 1), before);
  EXPECT_EQ(r.user_perms, kDmaRead | kDmaWrite);
}

TEST_F(FirstStageTest, ExtendedAccessedFlag) {
  cfg_.eafe = true;
  ASSERT_TRUE(builder_->Map(0x5000, 0x9000, kPage4K, kDmaRead).ok());
  ASSERT_TRUE(Walk(0x5000, kDmaRead).ok);
  for (int l = 1; l <= 4; ++l) EXPECT_EQ(Entry(0x5000, l) & (fs::kA | fs::kEA), fs::kA | fs::kEA) << l;
}

TEST_F(FirstStageTest, TablePointerOutsideRam) {
  ASSERT_TRUE(builder_->Map(0x5000, 0x9000, kPage4K, kDmaRead).ok());
  // PDE points beyond guest RAM.
  ASSERT_TRUE(builder_->WriteEntry(0x5000, 2, (kRam + 0x100000) | fs::kP | fs::kRW | fs::kUS).ok());
  WalkResult r = Walk(0x5000, kDmaRead);
  ASSERT_FALSE(r.ok);
  EXPECT_EQ(r.fault.kind, WalkFaultKind::kTableAccess);
  EXPECT_EQ(r.fault.level, 1);
  EXPECT_EQ(r.fault.entry_addr, kRam + 0x100000 + 5 * 8);
  // Root outside RAM.
  cfg_.root = 1ull << 40;
  EXPECT_EQ(Walk(0x5000, kDmaRead).fault.kind, WalkFaultKind::kTableAccess);
}

TEST_F(FirstStageTest, InvalidConfig) {
  cfg_.levels = 3;
  EXPECT_EQ(Walk(0, kDmaRead).fault.kind, WalkFaultKind::kInvalidConfig);
  cfg_.levels = 6;
  EXPECT_EQ(Walk(0, kDmaRead).fault.kind, WalkFaultKind::kInvalidConfig);
}

// Memory where another agent rewrites an entry right after the walker has read it (bumping a
// counter in ignored bits 58:52), `races` times: the walker's A/D update must notice (atomic
// compare-exchange), re-validate, and never lose the other agent's write.
class RacyMemory final : public PhysMemory {
 public:
  RacyMemory(GuestMemory& base, uint64_t watched, int races) : base_(base), watched_(watched), races_(races) {}
  absl::Status Read(uint64_t gpa, void* dst, size_t len) const override {
    absl::Status s = base_.Read(gpa, dst, len);
    if (s.ok() && gpa == watched_ && races_ > 0) {
      --races_;
      ++reads_raced;
      uint64_t v = *base_.ReadObj<uint64_t>(gpa);
      (void)base_.WriteObj(gpa, v + (1ull << 52));
    }
    return s;
  }
  absl::Status Write(uint64_t gpa, const void* src, size_t len) override { return base_.Write(gpa, src, len); }
  absl::StatusOr<bool> CompareExchange64(uint64_t gpa, uint64_t* expected, uint64_t desired) override {
    return base_.CompareExchange64(gpa, expected, desired);
  }
  mutable int reads_raced = 0;

 private:
  GuestMemory& base_;
  uint64_t watched_;
  mutable int races_;
};

TEST_F(FirstStageTest, AdUpdateRacesAreRetriedWithoutLosingWrites) {
  ASSERT_TRUE(builder_->Map(0x5000, 0x9000, kPage4K, kDmaRead | kDmaWrite).ok());
  const uint64_t leaf = *builder_->EntryAddress(0x5000, 1);
  RacyMemory few(*mem_, leaf, 3);
  WalkResult r = WalkFirstStage(few, cfg_, 0x5000, kDmaWrite);
  ASSERT_TRUE(r.ok) << WalkFaultToString(r.fault);
  EXPECT_EQ(few.reads_raced, 3);
  EXPECT_EQ((Entry(0x5000, 1) >> 52) & 0x7F, 3u);  // all three foreign writes survived
  EXPECT_EQ(Entry(0x5000, 1) & (fs::kA | fs::kD), fs::kA | fs::kD);

  // An entry that changes on every read: bounded attempts, then a fault.
  ASSERT_TRUE(builder_->Map(0x7000, 0xB000, kPage4K, kDmaRead).ok());
  RacyMemory always(*mem_, *builder_->EntryAddress(0x7000, 1), 1 << 30);
  WalkResult f = WalkFirstStage(always, cfg_, 0x7000, kDmaRead);
  ASSERT_FALSE(f.ok);
  EXPECT_EQ(f.fault.kind, WalkFaultKind::kTableAccess);
  EXPECT_EQ(always.reads_raced, kMaxWalkAttempts);
  EXPECT_EQ((Entry(0x7000, 1) >> 52) & 0x7F, uint64_t{kMaxWalkAttempts});
}

}  // namespace
}  // namespace ionest
