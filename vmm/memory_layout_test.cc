#include "vmm/memory_layout.h"

#include "gtest/gtest.h"

namespace ionest {
namespace {

TEST(MemoryLayoutTest, SmallGuestIsAllLowRam) {
  auto l = ComputeMemoryLayout(512ull << 20);
  ASSERT_TRUE(l.ok()) << l.status();
  EXPECT_EQ(l->low_ram_end, 512ull << 20);
  EXPECT_EQ(l->high_ram_size, 0u);
  ASSERT_EQ(l->ram.size(), 1u);
  EXPECT_EQ(l->ram[0].gpa, 0u);
  EXPECT_EQ(l->ram[0].size, 512ull << 20);
  std::vector<E820Entry> want = {
      {0, 0x9FC00, E820Type::kRam},
      {0x9FC00, 0x100000 - 0x9FC00, E820Type::kReserved},
      {0x100000, (512ull << 20) - 0x100000, E820Type::kRam},
      {kEcamBase, kEcamSize, E820Type::kReserved},
      {kLayoutIoapicBase, kLayoutIoapicSize, E820Type::kReserved},
      {kVtdBase, kVtdSize, E820Type::kReserved},
      {kLapicBase, kLapicSize, E820Type::kReserved},
  };
  EXPECT_EQ(l->e820, want);
}

TEST(MemoryLayoutTest, LargeGuestSplitsAroundPciHole) {
  auto l = ComputeMemoryLayout(4ull << 30);
  ASSERT_TRUE(l.ok()) << l.status();
  EXPECT_EQ(l->low_ram_end, kPciHoleStart);
  EXPECT_EQ(l->high_ram_size, (4ull << 30) - kPciHoleStart);
  ASSERT_EQ(l->ram.size(), 2u);
  EXPECT_EQ(l->ram[1].gpa, kHighRamStart);
  EXPECT_EQ(l->e820.back(), (E820Entry{kHighRamStart, l->high_ram_size, E820Type::kRam}));
  // Nothing the guest sees as RAM overlaps the hole.
  for (const auto& e : l->e820) {
    if (e.type == E820Type::kRam) EXPECT_TRUE(e.addr + e.size <= kPciHoleStart || e.addr >= kHighRamStart);
  }
}

TEST(MemoryLayoutTest, RejectsBadSizes) {
  EXPECT_FALSE(ComputeMemoryLayout(16ull << 20).ok());
  EXPECT_FALSE(ComputeMemoryLayout((64ull << 20) + 4096).ok());
  EXPECT_FALSE(ComputeMemoryLayout(2ull << 40).ok());
}

TEST(MemoryLayoutTest, ParsesSizes) {
  EXPECT_EQ(*ParseMemorySize("512M"), 512ull << 20);
  EXPECT_EQ(*ParseMemorySize("2g"), 2ull << 30);
  EXPECT_EQ(*ParseMemorySize("64K"), 64ull << 10);
  EXPECT_EQ(*ParseMemorySize("1048576"), 1048576u);
  EXPECT_FALSE(ParseMemorySize("").ok());
  EXPECT_FALSE(ParseMemorySize("M").ok());
  EXPECT_FALSE(ParseMemorySize("12X").ok());
  EXPECT_FALSE(ParseMemorySize("-5M").ok());
  EXPECT_FALSE(ParseMemorySize("99999999999999T").ok());
}

}  // namespace
}  // namespace ionest
