#include "iommu/iommufd/shadow_domain.h"

#include <cerrno>
#include <cstdint>
#include <map>
#include <memory>
#include <ostream>
#include <random>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_format.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "iommu/iommufd/iommufd_kernel.h"
#include "iommu/iommufd/testing/fake_iommufd.h"
#include "iommu/testing/table_builder.h"

namespace ionest::iommufd_testing {
// Readable failures for mapping lists.
void PrintTo(const FakeIommufd::Mapping& m, std::ostream* os) {
  *os << absl::StrFormat("{ioas %d iova %#x len %#x va %p %s}", m.ioas_id, m.iova, m.len, m.va,
                         m.writeable ? "rw" : "ro");
}
}  // namespace ionest::iommufd_testing

namespace ionest::iommufd {
namespace {

using ::testing::Contains;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using iommu_testing::PageAllocator;
using iommu_testing::SecondStageTableBuilder;
using iommufd_testing::FakeIommufd;
using Op = FakeIommufd::Op;
using Mapping = FakeIommufd::Mapping;

constexpr uint64_t kMiB = 1ull << 20;
constexpr uint64_t kGiB = 1ull << 30;
constexpr uint64_t kGuestRam = 64 * kMiB;  // real guest memory at GPA 0 (tables and small pages)
// Guest RAM only described to the shadow (the fake never dereferences host addresses): room for
// 2 MiB / 1 GiB leaves without allocating gigabytes.
constexpr uint64_t kHighGpa = 4 * kGiB;
constexpr uint64_t kHighSize = 2 * kGiB;
constexpr uintptr_t kHighHost = 0x7f0000000000;
constexpr uint64_t kData = 32 * kMiB;  // data pages in real guest memory, clear of the tables
constexpr IovaRange kMsi{0xfee00000, 0xfeefffff};
constexpr uint32_t kRW = kDmaRead | kDmaWrite;

std::string Msg(const absl::Status& s) { return std::string(s.message()); }

class ShadowDomainTest : public ::testing::Test {
 protected:
  void SetUp() override { Reset(4); }
  void Reset(int levels) {
    builder_.reset();
    alloc_.reset();
    mem_ = *GuestMemory::Create({{0, kGuestRam}});
    alloc_ = std::make_unique<PageAllocator>(*mem_, 1 * kMiB, 8 * kMiB);
    builder_ = std::make_unique<SecondStageTableBuilder>(*SecondStageTableBuilder::Create(*mem_, *alloc_, levels));
    cfg_ = SecondStageConfig{};
    cfg_.root = builder_->root();
    cfg_.levels = levels;
    cfg_.aw_bits = std::min(12 + 9 * levels, 57);
    cfg_.superpage_mask = kSuperpage2M | kSuperpage1G;
    cfg_.haw_bits = 48;
  }
  std::vector<RamRange> Ram() const {
    return {{0, mem_->regions()[0].host, kGuestRam}, {kHighGpa, reinterpret_cast<void*>(kHighHost), kHighSize}};
  }
  // Host address the shadow must map guest-physical `gpa` to.
  void* Host(uint64_t gpa) const {
    if (gpa >= kHighGpa) return reinterpret_cast<void*>(kHighHost + (gpa - kHighGpa));
    return mem_->regions()[0].host + gpa;
  }
  std::unique_ptr<ShadowDomain> Make(ShadowLimits limits = {}) {
    absl::StatusOr<std::unique_ptr<ShadowDomain>> d = ShadowDomain::Create(fake_, *mem_, Ram(), cfg_, limits);
    EXPECT_TRUE(d.ok()) << d.status();
    return d.ok() ? std::move(*d) : nullptr;
  }
  void Map(uint64_t iova, uint64_t gpa, uint64_t size, uint32_t perms, uint64_t page = kPage4K) {
    absl::Status s = builder_->Map(iova, gpa, size, perms, page);
    ASSERT_TRUE(s.ok()) << s;
  }
  void WriteEntry(uint64_t iova, int level, uint64_t value) {
    absl::Status s = builder_->WriteEntry(iova, level, value);
    ASSERT_TRUE(s.ok()) << s;
  }
  Mapping M(uint32_t ioas, uint64_t iova, uint64_t len, uint64_t gpa, bool writeable) const {
    return {ioas, iova, len, Host(gpa), writeable};
  }

  FakeIommufd fake_;  // declared first: outlives every shadow a test creates
  std::unique_ptr<GuestMemory> mem_;
  std::unique_ptr<PageAllocator> alloc_;
  std::unique_ptr<SecondStageTableBuilder> builder_;
  SecondStageConfig cfg_;
};

// --- creation ---

TEST_F(ShadowDomainTest, CreateAllocatesAnEmptyIoas) {
  auto d = Make();
  ASSERT_NE(d, nullptr);
  EXPECT_TRUE(fake_.ioas_exists(d->ioas_id()));
  EXPECT_EQ(fake_.calls(Op::kAllocIoas), 1);
  EXPECT_THAT(fake_.mappings(), IsEmpty());
}

TEST_F(ShadowDomainTest, CreateRefusesBadConfigsAndRam) {
  SecondStageConfig bad = cfg_;
  bad.levels = 6;
  EXPECT_EQ(ShadowDomain::Create(fake_, *mem_, Ram(), bad).status().code(), absl::StatusCode::kInvalidArgument);
  bad = cfg_;
  bad.aw_bits = 49;  // > 12 + 9 * 4
  EXPECT_EQ(ShadowDomain::Create(fake_, *mem_, Ram(), bad).status().code(), absl::StatusCode::kInvalidArgument);
  bad = cfg_;
  bad.ad_enabled = true;
  absl::Status ad = ShadowDomain::Create(fake_, *mem_, Ram(), bad).status();
  EXPECT_EQ(ad.code(), absl::StatusCode::kUnimplemented);
  EXPECT_THAT(Msg(ad), HasSubstr("SSADE"));
  std::vector<RamRange> overlapping = Ram();
  overlapping.push_back({kHighGpa + kMiB, reinterpret_cast<void*>(0x7e0000000000), kMiB});
  EXPECT_EQ(ShadowDomain::Create(fake_, *mem_, overlapping, cfg_).status().code(),
            absl::StatusCode::kInvalidArgument);
  std::vector<RamRange> unaligned = {{0x800, mem_->regions()[0].host, kMiB}};
  EXPECT_EQ(ShadowDomain::Create(fake_, *mem_, unaligned, cfg_).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(fake_.calls(Op::kAllocIoas), 0);  // nothing allocated for a refused request

  fake_.FailNext(Op::kAllocIoas, IommufdErrno(ENOMEM, "IOMMU_IOAS_ALLOC"));
  absl::Status alloc = ShadowDomain::Create(fake_, *mem_, Ram(), cfg_).status();
  EXPECT_EQ(alloc.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(Msg(alloc), HasSubstr("shadow IOAS"));
  EXPECT_THAT(Msg(alloc), HasSubstr("errno 12"));
}

// --- leaves ---

TEST_F(ShadowDomainTest, MapsLeavesOfEachSizeAtTheirHostAddress) {
  Map(0x10000, kData, kPage4K, kRW);
  Map(0x40000000, kHighGpa + 2 * kMiB, kPage2M, kDmaRead, kPage2M);
  Map(0x80000000, kHighGpa + kGiB, kPage1G, kRW, kPage1G);
  auto d = Make();
  ASSERT_TRUE(d->SyncAll().ok());
  const uint32_t id = d->ioas_id();
  EXPECT_THAT(fake_.mappings(), ElementsAre(M(id, 0x10000, kPage4K, kData, true),
                                            M(id, 0x40000000, kPage2M, kHighGpa + 2 * kMiB, false),
                                            M(id, 0x80000000, kPage1G, kHighGpa + kGiB, true)));
  EXPECT_EQ(d->stats().mappings, 3u);
  EXPECT_EQ(d->stats().map_calls, 3u);
  EXPECT_EQ(d->stats().skipped_leaves, 0u);
}

TEST_F(ShadowDomainTest, MergesContiguousLeaves) {
  Map(0x100000, kData, 4 * kPage4K, kRW);                 // 4 pages, host-contiguous: one area
  Map(0x104000, kData + 4 * kPage4K, kPage4K, kDmaRead);  // contiguous but read-only: its own area
  Map(0x105000, kData + 16 * kPage4K, kPage4K, kDmaRead); // IOVA-contiguous, host not
  // A 2 MiB leaf followed by 4 KiB leaves continuing it in IOVA and host memory: one area.
  Map(0x200000, kHighGpa, kPage2M, kRW, kPage2M);
  Map(0x400000, kHighGpa + kPage2M, 2 * kPage4K, kRW);
  auto d = Make();
  ASSERT_TRUE(d->SyncAll().ok());
  const uint32_t id = d->ioas_id();
  EXPECT_THAT(fake_.mappings(),
              ElementsAre(M(id, 0x100000, 4 * kPage4K, kData, true), M(id, 0x104000, kPage4K, kData + 0x4000, false),
                          M(id, 0x105000, kPage4K, kData + 0x10000, false),
                          M(id, 0x200000, kPage2M + 2 * kPage4K, kHighGpa, true)));
  EXPECT_EQ(d->stats().map_calls, 4u);
}

TEST_F(ShadowDomainTest, RightsAreIntersectedAndLeavesWithoutReadSkipped) {
  Map(0x1000, kData, kPage4K, kDmaWrite);                        // write-only: iommufd maps are readable
  Map(0x3000, kData + 0x1000, kPage4K, kDmaExec);                // exec-only
  Map(0x5000, kData + 0x2000, kPage4K, kDmaRead | kDmaExec);     // read-only mapping
  Map(0x40000000, kData + 0x3000, kPage4K, kRW);                 // W taken away one level up
  ASSERT_TRUE(builder_->SetEntryBits(0x40000000, 2, 0, ss::kW).ok());
  Map(0x80000000, kData + 0x4000, kPage4K, kRW);                 // R taken away one level up: subtree skipped
  ASSERT_TRUE(builder_->SetEntryBits(0x80000000, 3, 0, ss::kR).ok());
  auto d = Make();
  ASSERT_TRUE(d->SyncAll().ok());
  const uint32_t id = d->ioas_id();
  EXPECT_THAT(fake_.mappings(),
              ElementsAre(M(id, 0x5000, kPage4K, kData + 0x2000, false),
                          M(id, 0x40000000, kPage4K, kData + 0x3000, false)));
  EXPECT_EQ(d->stats().skipped_leaves, 2u);
  EXPECT_EQ(d->stats().skipped_tables, 1u);
}

TEST_F(ShadowDomainTest, FiveLevelTableAndInputWidth) {
  Reset(5);
  Map(1ull << 52, kData, kPage4K, kRW);
  auto d = Make();
  ASSERT_TRUE(d->SyncAll().ok());
  EXPECT_THAT(fake_.mappings(), ElementsAre(M(d->ioas_id(), 1ull << 52, kPage4K, kData, true)));
  const int maps = fake_.calls(Op::kMapFixed), unmaps = fake_.calls(Op::kUnmap);
  EXPECT_TRUE(d->Sync(1ull << 57, kPage4K).ok());  // beyond 2^aw_bits: nothing to do
  EXPECT_EQ(fake_.calls(Op::kMapFixed), maps);
  EXPECT_EQ(fake_.calls(Op::kUnmap), unmaps);
}

TEST_F(ShadowDomainTest, EntriesBeyondTheAddressWidthAreNotMapped) {
  cfg_.aw_bits = 39;  // a 4-level table used with a 39-bit input width
  Map(0x1000, kData, kPage4K, kRW);
  Map(1ull << 40, kData + 0x1000, kPage4K, kRW);  // unreachable: inputs are < 2^39
  auto d = Make();
  ASSERT_TRUE(d->SyncAll().ok());
  EXPECT_THAT(fake_.mappings(), ElementsAre(M(d->ioas_id(), 0x1000, kPage4K, kData, true)));
}

// --- replay of invalidations ---

TEST_F(ShadowDomainTest, ClearedPteIsUnmappedOnlyAfterTheInvalidation) {
  Map(0x10000, kData, 3 * kPage4K, kRW);
  auto d = Make();
  ASSERT_TRUE(d->SyncAll().ok());
  const uint32_t id = d->ioas_id();
  ASSERT_THAT(fake_.mappings(), ElementsAre(M(id, 0x10000, 3 * kPage4K, kData, true)));
  WriteEntry(0x11000, 1, 0);  // the guest clears the middle PTE
  EXPECT_THAT(fake_.mappings(), ElementsAre(M(id, 0x10000, 3 * kPage4K, kData, true)));  // not yet invalidated
  ASSERT_TRUE(d->Sync(0x11000, kPage4K).ok());
  EXPECT_THAT(fake_.mappings(),
              ElementsAre(M(id, 0x10000, kPage4K, kData, true), M(id, 0x12000, kPage4K, kData + 0x2000, true)));
}

TEST_F(ShadowDomainTest, InvalidationCuttingAMergedAreaRewalksTheUnion) {
  Map(0x10000, kData, 4 * kPage4K, kRW);
  auto d = Make();
  ASSERT_TRUE(d->SyncAll().ok());
  const uint32_t id = d->ioas_id();
  // The guest re-points the first page (inside the area but outside the invalidated range) and
  // the third page, then invalidates only the third.
  WriteEntry(0x10000, 1, (kData + 0x100000) | ss::kR);
  WriteEntry(0x12000, 1, (kData + 0x200000) | ss::kR | ss::kW);
  ASSERT_TRUE(d->Sync(0x12000, kPage4K).ok());
  // The whole area went (IOMMU_IOAS_UNMAP cannot split it) and the union was re-walked.
  EXPECT_THAT(fake_.mappings(),
              ElementsAre(M(id, 0x10000, kPage4K, kData + 0x100000, false),
                          M(id, 0x11000, kPage4K, kData + 0x1000, true),
                          M(id, 0x12000, kPage4K, kData + 0x200000, true),
                          M(id, 0x13000, kPage4K, kData + 0x3000, true)));
  EXPECT_EQ(d->stats().mappings, 4u);
}

TEST_F(ShadowDomainTest, UnchangedAreasStayMappedAcrossSyncs) {
  Map(0x10000, kData, 4 * kPage4K, kRW);
  Map(0x40000000, kHighGpa, kPage2M, kRW, kPage2M);
  auto d = Make();
  ASSERT_TRUE(d->SyncAll().ok());
  const std::vector<Mapping> before = fake_.mappings();
  const int maps = fake_.calls(Op::kMapFixed), unmaps = fake_.calls(Op::kUnmap);
  // A global invalidation and one cutting through an area, with nothing changed: no DMA window.
  ASSERT_TRUE(d->SyncAll().ok());
  ASSERT_TRUE(d->Sync(0x11000, kPage4K).ok());
  ASSERT_TRUE(d->Sync(0x40100000, kPage4K).ok());
  EXPECT_EQ(fake_.mappings(), before);
  EXPECT_EQ(fake_.calls(Op::kMapFixed), maps);
  EXPECT_EQ(fake_.calls(Op::kUnmap), unmaps);
  // A new page next to an area (caching mode: not-present -> present is invalidated too, VT-d
  // §6.1) is mapped without touching the area.
  Map(0x14000, kData + 0x4000, kPage4K, kRW);
  ASSERT_TRUE(d->Sync(0x14000, kPage4K).ok());
  EXPECT_EQ(fake_.calls(Op::kUnmap), unmaps);
  EXPECT_THAT(fake_.mappings(), Contains(M(d->ioas_id(), 0x14000, kPage4K, kData + 0x4000, true)));
  EXPECT_EQ(fake_.mappings().size(), before.size() + 1);
}

TEST_F(ShadowDomainTest, RepointedPageIsRemapped) {
  Map(0x10000, kData, kPage4K, kRW);
  auto d = Make();
  ASSERT_TRUE(d->SyncAll().ok());
  WriteEntry(0x10000, 1, (kData + 0x7000) | ss::kR | ss::kW);  // same rights, other page
  ASSERT_TRUE(d->Sync(0x10000, kPage4K).ok());
  EXPECT_THAT(fake_.mappings(), ElementsAre(M(d->ioas_id(), 0x10000, kPage4K, kData + 0x7000, true)));
}

TEST_F(ShadowDomainTest, PermissionChangeReplacesTheArea) {
  Map(0x10000, kData, 2 * kPage4K, kRW);
  auto d = Make();
  ASSERT_TRUE(d->SyncAll().ok());
  ASSERT_TRUE(builder_->SetEntryBits(0x10000, 1, 0, ss::kW).ok());
  ASSERT_TRUE(builder_->SetEntryBits(0x11000, 1, 0, ss::kW).ok());
  ASSERT_TRUE(d->Sync(0x10000, 2 * kPage4K).ok());
  EXPECT_THAT(fake_.mappings(), ElementsAre(M(d->ioas_id(), 0x10000, 2 * kPage4K, kData, false)));
}

TEST_F(ShadowDomainTest, RangeEdgeCases) {
  Map(0x10000, kData, kPage4K, kRW);
  Map(0x7000'0000'0000, kData + 0x1000, kPage4K, kRW);
  auto d = Make();
  // An unaligned range covers the pages it touches.
  ASSERT_TRUE(d->Sync(0x10800, 0x10).ok());
  EXPECT_THAT(fake_.mappings(), ElementsAre(M(d->ioas_id(), 0x10000, kPage4K, kData, true)));
  // A range that wraps means everything.
  ASSERT_TRUE(d->Sync(UINT64_MAX - 0xfff, 0x10000).ok());
  EXPECT_EQ(fake_.mappings().size(), 2u);
  WriteEntry(0x10000, 1, 0);
  WriteEntry(0x7000'0000'0000, 1, 0);
  ASSERT_TRUE(d->Sync(0, 0).ok());  // size 0: everything
  EXPECT_THAT(fake_.mappings(), IsEmpty());
}

TEST_F(ShadowDomainTest, SetConfigSwitchesTables) {
  Map(0x10000, kData, kPage4K, kRW);
  auto d = Make();
  ASSERT_TRUE(d->SyncAll().ok());
  SecondStageTableBuilder other = *SecondStageTableBuilder::Create(*mem_, *alloc_, 4);
  ASSERT_TRUE(other.Map(0x20000, kData + 0x5000, kPage4K, kDmaRead).ok());
  SecondStageConfig next = cfg_;
  next.root = other.root();
  ASSERT_TRUE(d->SetConfig(next).ok());
  EXPECT_THAT(fake_.mappings(), ElementsAre(M(d->ioas_id(), 0x20000, kPage4K, kData + 0x5000, false)));
  SecondStageConfig bad = next;
  bad.levels = 2;
  EXPECT_EQ(d->SetConfig(bad).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(d->config().root, other.root());
}

// --- hostile tables ---

TEST_F(ShadowDomainTest, LeafOutsideRamIsSkipped) {
  Map(0x1000, 0x10000000, kPage4K, kRW);  // 256 MiB: between the RAM ranges
  Map(0x2000, kData, kPage4K, kRW);
  // A 2 MiB leaf straddling the end of a RAM range is skipped whole.
  Map(0x200000, kGuestRam - kPage2M, kPage2M, kRW, kPage2M);  // last 2 MiB of the low range: fine
  Map(0x400000, kHighGpa + kHighSize - kPage2M, kPage2M, kRW, kPage2M);  // fine
  Map(0x600000, kHighGpa + kHighSize, kPage2M, kRW, kPage2M);            // just beyond: skipped
  auto d = Make();
  ASSERT_TRUE(d->SyncAll().ok());
  const uint32_t id = d->ioas_id();
  EXPECT_THAT(fake_.mappings(),
              ElementsAre(M(id, 0x2000, kPage4K, kData, true), M(id, 0x200000, kPage2M, kGuestRam - kPage2M, true),
                          M(id, 0x400000, kPage2M, kHighGpa + kHighSize - kPage2M, true)));
  EXPECT_EQ(d->stats().skipped_leaves, 2u);
}

TEST_F(ShadowDomainTest, TablePointerOutsideGuestMemorySkipsTheSubtree) {
  Map(0x1000, kData, kPage4K, kRW);
  WriteEntry(0x40000000, 3, 0x20000000 | ss::kR | ss::kW | ss::kX);  // L2 table at 512 MiB: no memory
  WriteEntry(0x80000000, 3, (kHighGpa + kMiB) | ss::kR | ss::kW);    // RAM the shadow maps, but not
                                                                     // guest memory it can read
  auto d = Make();
  ASSERT_TRUE(d->SyncAll().ok());
  EXPECT_THAT(fake_.mappings(), ElementsAre(M(d->ioas_id(), 0x1000, kPage4K, kData, true)));
  EXPECT_EQ(d->stats().skipped_tables, 2u);
}

TEST_F(ShadowDomainTest, ReservedBitsSkipTheEntry) {
  Map(0x1000, kData, kPage4K, kRW);
  WriteEntry(0x2000, 1, kData | (1ull << 50) | ss::kR);  // address bit beyond HAW 48
  Map(0x200000, kHighGpa, kPage2M, kRW, kPage2M);
  ASSERT_TRUE(builder_->SetEntryBits(0x200000, 2, 1ull << 12).ok());  // 2 MiB leaf: bits 20:12 reserved
  Map(0x40000000, kHighGpa, kPage1G, kRW, kPage1G);
  ASSERT_TRUE(builder_->SetEntryBits(0x40000000, 3, 1ull << 21).ok());  // 1 GiB leaf: bits 29:12 reserved
  Map(1ull << 39, kData + 0x1000, kPage4K, kRW);
  ASSERT_TRUE(builder_->SetEntryBits(1ull << 39, 4, ss::kPS).ok());  // PS in a PML4-level entry
  auto d = Make();
  ASSERT_TRUE(d->SyncAll().ok());
  EXPECT_THAT(fake_.mappings(), ElementsAre(M(d->ioas_id(), 0x1000, kPage4K, kData, true)));
  EXPECT_EQ(d->stats().skipped_leaves, 3u);
  EXPECT_EQ(d->stats().skipped_tables, 1u);
}

TEST_F(ShadowDomainTest, SuperpagesOnlyWhereSupported) {
  cfg_.superpage_mask = kSuperpage2M;  // no 1 GiB (CAP.SLLPS)
  Map(0x200000, kHighGpa, kPage2M, kRW, kPage2M);
  Map(0x40000000, kHighGpa + kGiB, kPage1G, kRW, kPage1G);
  auto d = Make();
  ASSERT_TRUE(d->SyncAll().ok());
  EXPECT_THAT(fake_.mappings(), ElementsAre(M(d->ioas_id(), 0x200000, kPage2M, kHighGpa, true)));
  EXPECT_EQ(d->stats().skipped_leaves, 1u);
  d.reset();
  cfg_.superpage_mask = 0;
  auto none = Make();
  ASSERT_TRUE(none->SyncAll().ok());
  EXPECT_THAT(fake_.mappings(), IsEmpty());
  EXPECT_EQ(none->stats().skipped_leaves, 2u);
}

TEST_F(ShadowDomainTest, ReadBudgetExhaustionLeavesTheRangeEmpty) {
  // A whole-space walk reads 512 entries per table: root, one L3, one L2, one L1 = 2048.
  Map(0x0, kData, 4 * kPage4K, kRW);
  auto d = Make({.max_table_reads_per_sync = 2048});
  ASSERT_TRUE(d->SyncAll().ok());
  ASSERT_EQ(fake_.mappings().size(), 1u);
  Map(0x200000, kData + 0x10000, kPage4K, kRW);  // a second L1 table: 2560 reads
  absl::Status s = d->SyncAll();
  EXPECT_EQ(s.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(Msg(s), HasSubstr("2048 entry reads"));
  EXPECT_THAT(fake_.mappings(), IsEmpty());  // the stale area went too: nothing half-mapped
  EXPECT_EQ(d->stats().mappings, 0u);
  // A narrow invalidation needs 4 reads per page.
  ASSERT_TRUE(d->Sync(0x1000, kPage4K).ok());
  EXPECT_THAT(fake_.mappings(), ElementsAre(M(d->ioas_id(), 0x1000, kPage4K, kData + 0x1000, true)));
}

TEST_F(ShadowDomainTest, SelfReferencingTablesStayBounded) {
  // The guest points a PDPT entry back at the root: below 0x40000000 the root is read as a page
  // directory, its entry 0 (the PDPT's address) as a page table, whose entries then are leaves
  // pointing at table pages. Bounded by the levels, and mapped exactly as the hardware would.
  Map(0x1000, kData, kPage4K, kRW);
  const uint64_t pd = *builder_->ReadEntry(0, 3) & ss::kAddrMask;
  WriteEntry(0x40000000, 3, cfg_.root | ss::kR | ss::kW);
  // Reads: root, PDPT, PD, PT of the real walk (4 x 512) + root as PD + PDPT as PT (2 x 512).
  auto tight = Make({.max_table_reads_per_sync = 6 * 512 - 1});
  EXPECT_EQ(tight->SyncAll().code(), absl::StatusCode::kResourceExhausted);
  tight.reset();
  auto d = Make({.max_table_reads_per_sync = 6 * 512});
  ASSERT_TRUE(d->SyncAll().ok());
  const uint32_t id = d->ioas_id();
  EXPECT_THAT(fake_.mappings(), ElementsAre(M(id, 0x1000, kPage4K, kData, true), M(id, 0x40000000, kPage4K, pd, true),
                                            M(id, 0x40001000, kPage4K, cfg_.root, true)));
  for (uint64_t iova : {0x40000000ull, 0x40001000ull}) {
    WalkResult w = WalkSecondStage(*mem_, cfg_, iova, kDmaWrite);
    ASSERT_TRUE(w.ok);
    EXPECT_EQ(w.output, iova == 0x40000000 ? pd : cfg_.root);
  }
}

TEST_F(ShadowDomainTest, MaxMappingsIsEnforcedPerRange) {
  Map(0x0, kData, 2 * kPage4K, kRW);  // merged: one area
  Map(0x5000, kData + 0x10000, kPage4K, kRW);
  auto d = Make({.max_mappings = 2});
  ASSERT_TRUE(d->SyncAll().ok());
  ASSERT_EQ(fake_.mappings().size(), 2u);
  Map(0x9000, kData + 0x20000, kPage4K, kRW);
  absl::Status s = d->Sync(0x9000, kPage4K);
  EXPECT_EQ(s.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(Msg(s), HasSubstr("limit of 2"));
  EXPECT_EQ(fake_.mappings().size(), 2u);  // the areas outside the failed range stay
  EXPECT_EQ(d->SyncAll().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(fake_.mappings(), IsEmpty());
}

// --- the host side ---

TEST_F(ShadowDomainTest, HostReservedRangeIsSkippedAndTheRestMapped) {
  Map(0x1000, kData, kPage4K, kRW);
  // One run crossing the MSI window: a 4 KiB page right below it, host-contiguous with a 2 MiB
  // leaf starting at the window.
  Map(0xfedff000, kHighGpa + kPage2M - kPage4K, kPage4K, kRW);
  Map(0xfee00000, kHighGpa + kPage2M, kPage2M, kRW, kPage2M);
  Map(0x100000000, kData + 0x1000, kPage4K, kRW);
  auto d = Make();
  fake_.AddReserved(d->ioas_id(), kMsi);  // the device was attached
  ASSERT_TRUE(d->SyncAll().ok());
  const uint32_t id = d->ioas_id();
  const std::vector<Mapping> want = {M(id, 0x1000, kPage4K, kData, true),
                                     M(id, 0xfedff000, kPage4K, kHighGpa + kPage2M - kPage4K, true),
                                     M(id, 0xfef00000, kMiB, kHighGpa + kPage2M + kMiB, true),
                                     M(id, 0x100000000, kPage4K, kData + 0x1000, true)};
  EXPECT_EQ(fake_.mappings(), want);
  EXPECT_EQ(d->stats().skipped_reserved, 1u);
  EXPECT_EQ(fake_.calls(Op::kAllowedIovaRanges), 1);
  // Replays keep the pieces.
  ASSERT_TRUE(d->Sync(0xfee00000, kPage2M).ok());
  EXPECT_EQ(fake_.mappings(), want);
}

TEST_F(ShadowDomainTest, InvalidArgumentOutsideReservedRangesIsAnError) {
  Map(0x1000, kData, kPage4K, kRW);
  auto d = Make();
  fake_.FailNext(Op::kMapFixed, IommufdErrno(EINVAL, "IOMMU_IOAS_MAP injected"));
  fake_.FailNext(Op::kMapFixed, IommufdErrno(EINVAL, "IOMMU_IOAS_MAP injected"));
  absl::Status s = d->SyncAll();
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(fake_.mappings(), IsEmpty());
}

TEST_F(ShadowDomainTest, HostMapFailureLeavesNothingMapped) {
  Map(0x1000, kData, kPage4K, kRW);
  Map(0x5000, kData + 0x10000, kPage4K, kRW);
  Map(0x9000, kData + 0x20000, kPage4K, kRW);
  auto d = Make();
  fake_.FailNext(Op::kMapFixed, IommufdErrno(ENOMEM, "IOMMU_IOAS_MAP injected"), /*skip=*/1);
  absl::Status s = d->SyncAll();
  EXPECT_EQ(s.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(Msg(s), HasSubstr(absl::StrFormat("shadow IOAS %d: syncing", d->ioas_id())));
  EXPECT_THAT(Msg(s), HasSubstr("mapping IOVA [0x5000, +0x1000)"));
  EXPECT_THAT(Msg(s), HasSubstr("errno 12"));
  EXPECT_THAT(fake_.mappings(), IsEmpty());  // the first page, mapped before the failure, went again
  EXPECT_EQ(d->stats().mappings, 0u);
  ASSERT_TRUE(d->SyncAll().ok());  // a later replay recovers
  EXPECT_EQ(fake_.mappings().size(), 3u);
}

TEST_F(ShadowDomainTest, HostUnmapFailureIsReportedAndRetried) {
  Map(0x10000, kData, 3 * kPage4K, kRW);
  auto d = Make();
  ASSERT_TRUE(d->SyncAll().ok());
  WriteEntry(0x11000, 1, 0);
  fake_.FailNext(Op::kUnmap, IommufdErrno(EBUSY, "IOMMU_IOAS_UNMAP injected"));
  absl::Status s = d->Sync(0x11000, kPage4K);
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition);  // EBUSY
  EXPECT_THAT(Msg(s), HasSubstr("unmapping"));
  EXPECT_THAT(fake_.mappings(), IsEmpty());  // the failure path's retry removed the stale area
  EXPECT_EQ(d->stats().mappings, 0u);
}

TEST_F(ShadowDomainTest, DestructorUnmapsAndDestroys) {
  Map(0x1000, kData, kPage4K, kRW);
  Map(0x200000, kHighGpa, kPage2M, kRW, kPage2M);
  auto d = Make();
  ASSERT_TRUE(d->SyncAll().ok());
  ASSERT_EQ(fake_.mappings().size(), 2u);
  const uint32_t id = d->ioas_id();
  d.reset();
  EXPECT_THAT(fake_.mappings(), IsEmpty());
  EXPECT_FALSE(fake_.ioas_exists(id));
  EXPECT_THAT(fake_.destroyed(), ElementsAre(id));
  EXPECT_EQ(fake_.calls(Op::kUnmap), 1);  // one unmap-all
}

TEST_F(ShadowDomainTest, DestructorSurvivesHostErrors) {
  Map(0x1000, kData, kPage4K, kRW);
  auto d = Make();
  ASSERT_TRUE(d->SyncAll().ok());
  const uint32_t id = d->ioas_id();
  fake_.FailNext(Op::kUnmap, IommufdErrno(EIO, "IOMMU_IOAS_UNMAP injected"));
  d.reset();  // logged, not fatal; the IOAS is still destroyed (and its mappings with it)
  EXPECT_FALSE(fake_.ioas_exists(id));
  EXPECT_THAT(fake_.mappings(), IsEmpty());
}

// --- cross-check against the per-address walker ---

// Random leaf rewrites, each followed by an invalidation covering it (page-selective, an aligned
// block as with an address mask, or global): after every replay the IOAS must hold exactly what
// WalkSecondStage translates for reads, at the right host address and writeability.
TEST_F(ShadowDomainTest, MatchesWalkSecondStageUnderRandomUpdates) {
  constexpr uint64_t kPages = 1024;  // [0, 4 MiB) of 4 KiB leaves
  Map(0, kData, kPages * kPage4K, kRW);
  Map(4 * kMiB, kHighGpa, kPage2M, kDmaRead, kPage2M);
  Map(6 * kMiB, kHighGpa + kPage2M, kPage2M, kRW, kPage2M);
  auto d = Make();
  const uint32_t id = d->ioas_id();
  std::mt19937_64 rng(1234);
  const std::vector<RamRange> ram = Ram();

  auto check = [&](int round) {
    std::map<uint64_t, Mapping> by_iova;
    uint64_t mapped = 0;
    for (const Mapping& m : fake_.mappings()) {
      ASSERT_EQ(m.ioas_id, id);
      by_iova[m.iova] = m;
      mapped += m.len;
    }
    uint64_t expected = 0;
    for (uint64_t iova = 0; iova < 8 * kMiB; iova += kPage4K) {
      SCOPED_TRACE(absl::StrFormat("round %d iova %#x", round, iova));
      WalkResult w = WalkSecondStage(*mem_, cfg_, iova, kDmaRead);
      void* want = nullptr;
      if (w.ok) {
        for (const RamRange& r : ram)
          if (w.page_output() >= r.gpa && w.page_output() + w.page_size <= r.gpa + r.size)
            want = static_cast<uint8_t*>(r.host) + (w.output - r.gpa);
      }
      auto it = by_iova.upper_bound(iova);
      const Mapping* got = nullptr;
      if (it != by_iova.begin() && std::prev(it)->second.iova + std::prev(it)->second.len > iova)
        got = &std::prev(it)->second;
      if (want == nullptr) {
        ASSERT_EQ(got, nullptr);
        continue;
      }
      ++expected;
      ASSERT_NE(got, nullptr);
      EXPECT_EQ(static_cast<uint8_t*>(got->va) + (iova - got->iova), want);
      EXPECT_EQ(got->writeable, (w.perms & kDmaWrite) != 0);
    }
    EXPECT_EQ(mapped, expected * kPage4K);
    EXPECT_EQ(d->stats().mappings, by_iova.size());
  };

  ASSERT_TRUE(d->SyncAll().ok());
  check(-1);
  for (int round = 0; round < 300 && !HasFatalFailure(); ++round) {
    const uint64_t page = rng() % 2 ? rng() % 16 : rng() % kPages;  // half the rewrites hit a hot spot
    // Mostly readable (mappable) rights; W and X at random.
    uint32_t perms = (rng() % 4 ? uint32_t{kDmaRead} : 0u) | (rng() % 2 ? uint32_t{kDmaWrite} : 0u) |
                     (rng() % 2 ? uint32_t{kDmaExec} : 0u);
    if (perms == 0) perms = kDmaWrite;
    uint64_t value = 0;
    switch (rng() % 8) {
      case 0: value = 0; break;
      case 1: value = (kData + page * kPage4K) | SecondStageTableBuilder::LeafFlags(perms); break;  // restore
      case 2:
      case 3:
      case 4: value = (kData + (rng() % 2048) * kPage4K) | SecondStageTableBuilder::LeafFlags(perms); break;
      case 5: value = (0x10000000 + page * kPage4K) | ss::kR; break;                              // not RAM
      case 6: value = (kData + page * kPage4K) | ss::kR | (1ull << (48 + rng() % 4)); break;       // reserved
      default: value = rng(); break;                                                              // garbage
    }
    WriteEntry(page * kPage4K, 1, value);
    uint64_t iova = page * kPage4K, size = kPage4K;
    switch (rng() % 4) {
      case 0: break;
      case 1:
      case 2: {
        const int am = rng() % 7;  // address mask: an aligned block of 2^am pages
        size = kPage4K << am;
        iova &= ~(size - 1);
        break;
      }
      default: iova = 0; size = 0; break;
    }
    ASSERT_TRUE(d->Sync(iova, size).ok());
    check(round);
  }
  EXPECT_GT(d->stats().skipped_leaves, 0u);
}

}  // namespace
}  // namespace ionest::iommufd
