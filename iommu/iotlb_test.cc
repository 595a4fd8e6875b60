#include "iommu/iotlb.h"

#include "gtest/gtest.h"

namespace ionest {
namespace {

WalkResult Ok(uint64_t output, uint64_t page_size, uint32_t user, uint32_t super = 0) {
  WalkResult r;
  r.ok = true;
  r.output = output;
  r.page_size = page_size;
  r.user_perms = r.perms = user;
  r.supervisor_perms = super;
  return r;
}

constexpr uint32_t kRW = kDmaRead | kDmaWrite;

TEST(IotlbTest, HitMissAndOffsets) {
  Iotlb tlb;
  EXPECT_FALSE(tlb.Lookup(1, kNoPasid, 0x5000, kDmaRead));
  tlb.Insert(1, kNoPasid, 0x5123, Ok(0x9123, kPage4K, kRW), IotlbType::kSecondStage, tlb.generation());
  auto hit = tlb.Lookup(1, kNoPasid, 0x5FF8, kDmaWrite);
  ASSERT_TRUE(hit);
  EXPECT_EQ(hit->output, 0x9FF8u);
  EXPECT_EQ(hit->page_size, kPage4K);
  EXPECT_EQ(hit->type, IotlbType::kSecondStage);
  // Tags: other domain, other PASID, neighbour page miss.
  EXPECT_FALSE(tlb.Lookup(2, kNoPasid, 0x5000, kDmaRead));
  EXPECT_FALSE(tlb.Lookup(1, 0, 0x5000, kDmaRead));
  EXPECT_FALSE(tlb.Lookup(1, kNoPasid, 0x6000, kDmaRead));
  EXPECT_FALSE(tlb.Lookup(1, kNoPasid, 0x4FFF, kDmaRead));
  IotlbStats s = tlb.stats();
  EXPECT_EQ(s.hits, 1u);
  EXPECT_EQ(s.misses, 5u);
}

TEST(IotlbTest, RightsAndPrivilege) {
  Iotlb tlb;
  tlb.Insert(1, 7, 0x5000, Ok(0x9000, kPage4K, kDmaRead, kRW), IotlbType::kFirstStage, tlb.generation());
  EXPECT_TRUE(tlb.Lookup(1, 7, 0x5000, kDmaRead));
  EXPECT_FALSE(tlb.Lookup(1, 7, 0x5000, kDmaWrite));             // user: read only (e.g. not dirty)
  EXPECT_TRUE(tlb.Lookup(1, 7, 0x5000, kDmaWrite | kDmaPriv));   // supervisor may write
  EXPECT_FALSE(tlb.Lookup(1, 7, 0x5000, kDmaRead | kDmaExec));
  auto hit = tlb.Lookup(1, 7, 0x5000, kDmaRead | kDmaPriv);
  ASSERT_TRUE(hit);
  EXPECT_EQ(hit->perms, kRW);
}

TEST(IotlbTest, SuperpagesHitAnywhereInside) {
  Iotlb tlb;
  tlb.Insert(1, kNoPasid, 0x40123456, Ok(0x80123456, kPage2M, kRW), IotlbType::kSecondStage, tlb.generation());
  tlb.Insert(1, kNoPasid, 0x80000000, Ok(0x1C0000000, kPage1G, kDmaRead), IotlbType::kSecondStage,
             tlb.generation());
  for (uint64_t a : {0x40000000ull, 0x401FFFFFull, 0x40100008ull}) {
    auto hit = tlb.Lookup(1, kNoPasid, a, kDmaRead);
    ASSERT_TRUE(hit) << std::hex << a;
    EXPECT_EQ(hit->output, a + 0x40000000);
    EXPECT_EQ(hit->page_size, kPage2M);
  }
  EXPECT_FALSE(tlb.Lookup(1, kNoPasid, 0x40200000, kDmaRead));
  auto g = tlb.Lookup(1, kNoPasid, 0xBFFFFFFF, kDmaRead);
  ASSERT_TRUE(g);
  EXPECT_EQ(g->output, 0x1FFFFFFFFu);
  EXPECT_EQ(g->page_size, kPage1G);
}

TEST(IotlbTest, NeverCachesFaultsOrOddSizes) {
  Iotlb tlb;
  WalkResult fault;
  fault.ok = false;
  fault.page_size = kPage4K;
  tlb.Insert(1, kNoPasid, 0x5000, fault, IotlbType::kSecondStage, tlb.generation());
  tlb.Insert(1, kNoPasid, 0x6000, Ok(0x6000, 8192, kRW), IotlbType::kSecondStage, tlb.generation());
  EXPECT_EQ(tlb.size(), 0u);
  EXPECT_FALSE(tlb.Lookup(1, kNoPasid, 0x5000, kDmaRead));
}

TEST(IotlbTest, StaleInsertDropped) {
  Iotlb tlb;
  const uint64_t gen = tlb.generation();  // walk starts
  tlb.InvalidatePages(1, std::nullopt, 0x5000, 0, false);  // invalidation races the walk
  tlb.Insert(1, kNoPasid, 0x5000, Ok(0x9000, kPage4K, kRW), IotlbType::kSecondStage, gen);
  EXPECT_FALSE(tlb.Lookup(1, kNoPasid, 0x5000, kDmaRead));
  EXPECT_EQ(tlb.stats().stale_inserts_dropped, 1u);
  tlb.Insert(1, kNoPasid, 0x5000, Ok(0x9000, kPage4K, kRW), IotlbType::kSecondStage, tlb.generation());
  EXPECT_TRUE(tlb.Lookup(1, kNoPasid, 0x5000, kDmaRead));
}

TEST(IotlbTest, ReinsertReplaces) {
  Iotlb tlb;
  tlb.Insert(1, kNoPasid, 0x5000, Ok(0x9000, kPage4K, kDmaRead), IotlbType::kSecondStage, tlb.generation());
  tlb.Insert(1, kNoPasid, 0x5000, Ok(0xA000, kPage4K, kRW), IotlbType::kSecondStage, tlb.generation());
  EXPECT_EQ(tlb.size(), 1u);
  EXPECT_EQ(tlb.Lookup(1, kNoPasid, 0x5000, kDmaWrite)->output, 0xA000u);
}

class IotlbInvalidationTest : public ::testing::Test {
 protected:
  // Domain 1 and 2; PASIDs none, 5, 6; 4 KiB pages at 0..15 pages, a 2 MiB page at 2 MiB, 1 GiB at 1 GiB.
  void SetUp() override {
    for (uint16_t did : {1, 2}) {
      for (uint32_t pasid : {kNoPasid, 5u, 6u}) {
        const IotlbType type = pasid == kNoPasid ? IotlbType::kSecondStage : IotlbType::kFirstStage;
        for (uint64_t p = 0; p < 16; ++p) Put(did, pasid, p * kPage4K, kPage4K, type);
        Put(did, pasid, kPage2M, kPage2M, type);
        Put(did, pasid, kPage1G, kPage1G, type);
      }
    }
    ASSERT_EQ(tlb_.size(), 2u * 3 * 18);
  }
  void Put(uint16_t did, uint32_t pasid, uint64_t iova, uint64_t size, IotlbType type) {
    tlb_.Insert(did, pasid, iova, Ok(iova + 0x1000'0000'0000, size, kRW), type, tlb_.generation());
  }
  bool Has(uint16_t did, uint32_t pasid, uint64_t iova) { return tlb_.Lookup(did, pasid, iova, kDmaRead).has_value(); }

  Iotlb tlb_{4096};
};

TEST_F(IotlbInvalidationTest, Global) {
  tlb_.InvalidateAll();
  EXPECT_EQ(tlb_.size(), 0u);
  EXPECT_FALSE(Has(1, kNoPasid, 0));
}

TEST_F(IotlbInvalidationTest, DomainSelective) {
  tlb_.InvalidateDomain(1);
  EXPECT_EQ(tlb_.size(), 3u * 18);
  EXPECT_FALSE(Has(1, 5, 0));
  EXPECT_FALSE(Has(1, kNoPasid, kPage1G));
  EXPECT_TRUE(Has(2, 5, 0));
  EXPECT_TRUE(Has(2, kNoPasid, kPage1G));
}

TEST_F(IotlbInvalidationTest, DomainSelectiveByType) {
  tlb_.InvalidateDomain(1, IotlbTypeBit(IotlbType::kSecondStage));
  EXPECT_FALSE(Has(1, kNoPasid, 0));
  EXPECT_TRUE(Has(1, 5, 0));
}

TEST_F(IotlbInvalidationTest, PasidSelective) {
  tlb_.InvalidatePasid(1, 5);
  EXPECT_EQ(tlb_.size(), 6u * 18 - 18);
  EXPECT_FALSE(Has(1, 5, 0x3000));
  EXPECT_FALSE(Has(1, 5, kPage2M));
  EXPECT_TRUE(Has(1, 6, 0x3000));
  EXPECT_TRUE(Has(2, 5, 0x3000));
  EXPECT_TRUE(Has(1, kNoPasid, 0x3000));
}

TEST_F(IotlbInvalidationTest, PageSelectiveSinglePageAllPasids) {
  tlb_.InvalidatePages(1, std::nullopt, 0x3000, 0, false);
  for (uint32_t pasid : {kNoPasid, 5u, 6u}) {
    EXPECT_FALSE(Has(1, pasid, 0x3000));
    EXPECT_TRUE(Has(1, pasid, 0x2000));
    EXPECT_TRUE(Has(1, pasid, 0x4000));
    EXPECT_TRUE(Has(2, pasid, 0x3000));
  }
  EXPECT_EQ(tlb_.size(), 6u * 18 - 3);
}

TEST_F(IotlbInvalidationTest, PageSelectiveWithAddressMask) {
  // AM=2: 4 pages, the address is rounded down to 16 KiB: pages 4..7.
  tlb_.InvalidatePages(1, 5, 0x6000, 2, false);
  for (uint64_t p = 0; p < 16; ++p) EXPECT_EQ(Has(1, 5, p * kPage4K), p < 4 || p > 7) << p;
  EXPECT_TRUE(Has(1, 6, 0x5000));
  EXPECT_TRUE(Has(1, kNoPasid, 0x5000));
}

TEST_F(IotlbInvalidationTest, PageSelectiveHitsOverlappingSuperpages) {
  // One 4 KiB page inside the 2 MiB entry removes it; the 1 GiB entry survives.
  tlb_.InvalidatePages(1, 5, kPage2M + 0x5000, 0, false);
  EXPECT_FALSE(Has(1, 5, kPage2M));
  EXPECT_TRUE(Has(1, 5, kPage1G));
  // AM=18 (1 GiB range) at 1 GiB removes the 1 GiB entry only.
  tlb_.InvalidatePages(1, 6, kPage1G + 0x1234000, 18, false);
  EXPECT_FALSE(Has(1, 6, kPage1G + 0x3000'0000));
  EXPECT_TRUE(Has(1, 6, kPage2M));
  EXPECT_TRUE(Has(1, 6, 0));
  // A range covering everything (AM=63) in domain 2 for all PASIDs.
  tlb_.InvalidatePages(2, std::nullopt, 0, 63, false);
  EXPECT_FALSE(Has(2, kNoPasid, 0));
  EXPECT_FALSE(Has(2, 5, kPage1G));
  EXPECT_TRUE(Has(1, kNoPasid, 0));
}

TEST_F(IotlbInvalidationTest, InvalidationHintStillRemovesLeaves) {
  tlb_.InvalidatePages(1, kNoPasid, 0x3000, 0, /*ih=*/true);
  EXPECT_FALSE(Has(1, kNoPasid, 0x3000));
  tlb_.InvalidatePages(1, 5, 0, 4, /*ih=*/true);  // 16 pages, probed by key
  for (uint64_t p = 0; p < 16; ++p) EXPECT_FALSE(Has(1, 5, p * kPage4K));
}

TEST_F(IotlbInvalidationTest, PageSelectiveByType) {
  tlb_.InvalidatePages(1, std::nullopt, 0x3000, 0, false, IotlbTypeBit(IotlbType::kFirstStage));
  EXPECT_TRUE(Has(1, kNoPasid, 0x3000));  // second-stage entry kept
  EXPECT_FALSE(Has(1, 5, 0x3000));
}

TEST_F(IotlbInvalidationTest, EveryInvalidationBumpsGeneration) {
  uint64_t g = tlb_.generation();
  tlb_.InvalidatePages(9, std::nullopt, 0, 0, false);  // even with nothing to remove
  EXPECT_GT(tlb_.generation(), g);
  g = tlb_.generation();
  tlb_.InvalidatePasid(9, 1);
  EXPECT_GT(tlb_.generation(), g);
  g = tlb_.generation();
  tlb_.InvalidateDomain(9);
  EXPECT_GT(tlb_.generation(), g);
  g = tlb_.generation();
  tlb_.InvalidateAll();
  EXPECT_GT(tlb_.generation(), g);
}

TEST(IotlbTest, OverlappingSizesBothInvalidated) {
  Iotlb tlb;
  tlb.Insert(1, 2, 0x200000, Ok(0x800000, kPage2M, kRW), IotlbType::kNested, tlb.generation());
  tlb.Insert(1, 2, 0x201000, Ok(0x901000, kPage4K, kRW), IotlbType::kNested, tlb.generation());
  EXPECT_EQ(tlb.Lookup(1, 2, 0x201008, kDmaRead)->output, 0x901008u);  // smallest page wins
  EXPECT_EQ(tlb.Lookup(1, 2, 0x202008, kDmaRead)->output, 0x802008u);
  tlb.InvalidatePages(1, 2, 0x201000, 0, false);
  EXPECT_EQ(tlb.size(), 0u);
}

TEST(IotlbTest, CapacityOne) {
  Iotlb tlb(1);
  tlb.Insert(1, kNoPasid, 0x1000, Ok(0x5000, kPage4K, kRW), IotlbType::kSecondStage, tlb.generation());
  tlb.Insert(1, kNoPasid, 0x2000, Ok(0x6000, kPage4K, kRW), IotlbType::kSecondStage, tlb.generation());
  EXPECT_EQ(tlb.size(), 1u);
  EXPECT_FALSE(tlb.Lookup(1, kNoPasid, 0x1000, kDmaRead));
  EXPECT_EQ(tlb.Lookup(1, kNoPasid, 0x2000, kDmaRead)->output, 0x6000u);
  // Referenced, but the only candidate: still evicted (bounded CLOCK sweep).
  tlb.Insert(1, kNoPasid, 0x3000, Ok(0x7000, kPage4K, kRW), IotlbType::kSecondStage, tlb.generation());
  EXPECT_EQ(tlb.Lookup(1, kNoPasid, 0x3000, kDmaRead)->output, 0x7000u);
  EXPECT_EQ(tlb.stats().evictions, 2u);
}

TEST(IotlbTest, EvictionKeepsCapacityAndCorrectness) {
  Iotlb tlb(64);
  for (uint64_t p = 0; p < 1000; ++p)
    tlb.Insert(1, kNoPasid, p * kPage4K, Ok(p * kPage4K + 0x100000000, kPage4K, kRW), IotlbType::kSecondStage,
               tlb.generation());
  EXPECT_EQ(tlb.size(), 64u);
  EXPECT_EQ(tlb.stats().evictions, 1000u - 64);
  // Whatever hits is correct; the most recent 64 are the ones kept (LRU).
  for (uint64_t p = 0; p < 1000; ++p) {
    auto hit = tlb.Lookup(1, kNoPasid, p * kPage4K, kDmaRead);
    EXPECT_EQ(hit.has_value(), p >= 1000 - 64) << p;
    if (hit) {
      EXPECT_EQ(hit->output, p * kPage4K + 0x100000000);
    }
  }
}

TEST(IotlbTest, ClockKeepsRecentlyUsed) {
  Iotlb tlb(4);
  for (uint64_t p = 0; p < 4; ++p)
    tlb.Insert(1, kNoPasid, p * kPage4K, Ok(p * kPage4K, kPage4K, kRW), IotlbType::kSecondStage, tlb.generation());
  ASSERT_TRUE(tlb.Lookup(1, kNoPasid, 0, kDmaRead));  // page 0 becomes most recent
  tlb.Insert(1, kNoPasid, 4 * kPage4K, Ok(0, kPage4K, kRW), IotlbType::kSecondStage, tlb.generation());
  EXPECT_TRUE(tlb.Lookup(1, kNoPasid, 0, kDmaRead));
  EXPECT_FALSE(tlb.Lookup(1, kNoPasid, kPage4K, kDmaRead));  // not referenced since insertion: evicted first
  EXPECT_TRUE(tlb.Lookup(1, kNoPasid, 4 * kPage4K, kDmaRead));
}

}  // namespace
}  // namespace ionest
