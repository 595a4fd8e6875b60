#include "devices/testdev/dma_test_device_atc.h"

#include "gtest/gtest.h"

namespace ionest::dmatest {
namespace {

AtcEntry Entry(std::optional<uint32_t> pasid, uint64_t iova, uint64_t size, uint64_t gpa) {
  return AtcEntry{pasid, false, iova, size, gpa, kDmaRead | kDmaWrite};
}

TEST(DeviceAtcTest, LookupMatchesTagAndRange) {
  DeviceAtc atc(8);
  ASSERT_TRUE(atc.Insert(Entry(std::nullopt, 0x200000, 0x200000, 0x800000), atc.generation()));
  ASSERT_TRUE(atc.Insert(Entry(5, 0x200000, 0x1000, 0x9000), atc.generation()));
  EXPECT_EQ(atc.Lookup(std::nullopt, false, 0x3ff123)->gpa, 0x800000u);
  EXPECT_FALSE(atc.Lookup(std::nullopt, false, 0x400000).has_value());
  EXPECT_EQ(atc.Lookup(5, false, 0x200fff)->gpa, 0x9000u);
  EXPECT_FALSE(atc.Lookup(5, false, 0x201000).has_value());
  EXPECT_FALSE(atc.Lookup(6, false, 0x200000).has_value());
  EXPECT_FALSE(atc.Lookup(5, true, 0x200000).has_value()) << "privileged requests use separate entries";
}

TEST(DeviceAtcTest, InvalidateOnlyMatchingPasidAndOverlap) {
  DeviceAtc atc(8);
  ASSERT_TRUE(atc.Insert(Entry(std::nullopt, 0x1000, 0x1000, 0x10000), atc.generation()));
  ASSERT_TRUE(atc.Insert(Entry(std::nullopt, 0x2000, 0x1000, 0x11000), atc.generation()));
  ASSERT_TRUE(atc.Insert(Entry(3, 0x1000, 0x1000, 0x12000), atc.generation()));
  EXPECT_EQ(atc.Invalidate(std::nullopt, 0x1800, 1), 1u);
  EXPECT_FALSE(atc.Lookup(std::nullopt, false, 0x1000).has_value());
  EXPECT_TRUE(atc.Lookup(std::nullopt, false, 0x2000).has_value());
  EXPECT_TRUE(atc.Lookup(3, false, 0x1000).has_value()) << "untagged invalidation must not hit PASID entries";
  EXPECT_EQ(atc.Invalidate(3, 0, 0), 1u) << "size 0 = whole space";
  EXPECT_EQ(atc.size(), 1u);
}

TEST(DeviceAtcTest, RangeReachingPast64BitsIsSaturated) {
  DeviceAtc atc(8);
  ASSERT_TRUE(atc.Insert(Entry(std::nullopt, 0xfffffffffffff000ull, 0x1000, 0x1000), atc.generation()));
  EXPECT_TRUE(atc.Lookup(std::nullopt, false, 0xffffffffffffffffull).has_value());
  EXPECT_EQ(atc.Invalidate(std::nullopt, 0xffffffffffff0000ull, 0x100000), 1u);
}

TEST(DeviceAtcTest, EvictsOldestWhenFull) {
  DeviceAtc atc(2);
  ASSERT_TRUE(atc.Insert(Entry(std::nullopt, 0x1000, 0x1000, 0xa000), atc.generation()));
  ASSERT_TRUE(atc.Insert(Entry(std::nullopt, 0x2000, 0x1000, 0xb000), atc.generation()));
  ASSERT_TRUE(atc.Insert(Entry(std::nullopt, 0x3000, 0x1000, 0xc000), atc.generation()));
  EXPECT_FALSE(atc.Lookup(std::nullopt, false, 0x1000).has_value());
  EXPECT_TRUE(atc.Lookup(std::nullopt, false, 0x3000).has_value());
  EXPECT_EQ(atc.size(), 2u);
}

TEST(DeviceAtcTest, InsertReplacesOverlappingEntryOfSameTag) {
  DeviceAtc atc(8);
  ASSERT_TRUE(atc.Insert(Entry(std::nullopt, 0x1000, 0x1000, 0xa000), atc.generation()));
  ASSERT_TRUE(atc.Insert(Entry(std::nullopt, 0x0, 0x200000, 0x400000), atc.generation()));
  EXPECT_EQ(atc.size(), 1u);
  EXPECT_EQ(atc.Lookup(std::nullopt, false, 0x1000)->gpa, 0x400000u);
}

TEST(DeviceAtcTest, CompletionRacingWithInvalidationIsDropped) {
  DeviceAtc atc(8);
  const uint64_t gen = atc.generation();
  atc.Invalidate(std::nullopt, 0x1000, 0x1000);  // arrives while the translation is in flight
  EXPECT_FALSE(atc.Insert(Entry(std::nullopt, 0x1000, 0x1000, 0xa000), gen));
  EXPECT_EQ(atc.size(), 0u);
  atc.Clear();
  EXPECT_TRUE(atc.Insert(Entry(std::nullopt, 0x1000, 0x1000, 0xa000), atc.generation()));
}

}  // namespace
}  // namespace ionest::dmatest
