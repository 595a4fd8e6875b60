#include "iommu/testing/table_builder.h"

#include "gtest/gtest.h"

namespace ionest::iommu_testing {
namespace {

TEST(TableBuilderTest, FirstStageEntriesHaveExpectedFormat) {
  auto mem = *GuestMemory::Create({{0, 4 << 20}});
  PageAllocator alloc(*mem, 0x100000, 0x100000);
  auto b = *FirstStageTableBuilder::Create(*mem, alloc, 4);
  EXPECT_EQ(b.root(), 0x100000u);
  ASSERT_TRUE(b.Map(0x403000, 0x7000, kPage4K, kDmaRead | kDmaWrite).ok());
  EXPECT_EQ(alloc.next(), 0x104000u);  // root + PDPT + PD + PT
  EXPECT_EQ(*b.ReadEntry(0x403000, 1), 0x7000 | fs::kP | fs::kRW | fs::kUS | fs::kXD);
  EXPECT_EQ(*b.ReadEntry(0x403000, 2), 0x103000 | fs::kP | fs::kRW | fs::kUS);
  EXPECT_EQ(*b.EntryAddress(0x403000, 1), 0x103000u + 3 * 8);
  EXPECT_EQ(*b.EntryAddress(0x403000, 2), 0x102000u + 2 * 8);
  ASSERT_TRUE(b.Map(0x600000, 0x800000, kPage2M, kDmaRead | kDmaExec | kDmaPriv, kPage2M).ok());
  EXPECT_EQ(*b.ReadEntry(0x600000, 2), 0x800000 | fs::kP | fs::kPS);
  // Mapping below an existing superpage is refused; bad alignment too.
  EXPECT_FALSE(b.Map(0x601000, 0x1000, kPage4K, kDmaRead).ok());
  EXPECT_FALSE(b.Map(0x1000, 0x1800, kPage4K, kDmaRead).ok());
  EXPECT_FALSE(b.EntryAddress(0x601000, 1).ok());
  EXPECT_FALSE(b.Map(0x1000, 0x1000, kPage4K, kDmaRead, 8192).ok());
}

TEST(TableBuilderTest, SecondStageAndMultiPageRanges) {
  auto mem = *GuestMemory::Create({{0, 4 << 20}});
  PageAllocator alloc(*mem, 0x100000, 0x100000);
  auto b = *SecondStageTableBuilder::Create(*mem, alloc, 3);
  ASSERT_TRUE(b.Map(0x10000, 0x20000, 4 * kPage4K, kDmaRead | kDmaWrite).ok());
  for (int i = 0; i < 4; ++i) EXPECT_EQ(*b.ReadEntry(0x10000 + i * kPage4K, 1), (0x20000 + i * kPage4K) | 3u);
  EXPECT_EQ(*b.ReadEntry(0x10000, 3), 0x101000 | ss::kR | ss::kW | ss::kX);
  EXPECT_FALSE(SecondStageTableBuilder::Create(*mem, alloc, 6).ok());
}

TEST(TableBuilderTest, AllocatorExhaustsAndOffsetViewShifts) {
  auto mem = *GuestMemory::Create({{0, 1 << 20}});
  PageAllocator alloc(*mem, 0x10000, 2 * kPage4K);
  EXPECT_TRUE(alloc.AllocPage().ok());
  EXPECT_TRUE(alloc.AllocPage().ok());
  EXPECT_EQ(alloc.AllocPage().status().code(), absl::StatusCode::kResourceExhausted);
  OffsetPhysMemory view(*mem, 0x8000);
  ASSERT_TRUE(view.WriteObj<uint64_t>(0x10, 0xABCD).ok());
  EXPECT_EQ(*mem->ReadObj<uint64_t>(0x8010), 0xABCDu);
  uint64_t expected = 0xABCD;
  EXPECT_TRUE(*view.CompareExchange64(0x10, &expected, 1));
  EXPECT_EQ(*mem->ReadObj<uint64_t>(0x8010), 1u);
}

}  // namespace
}  // namespace ionest::iommu_testing
