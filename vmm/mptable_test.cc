#include "vmm/mptable.h"

#include <cstring>

#include "gtest/gtest.h"

namespace ionest {
namespace {

uint8_t Sum(const uint8_t* p, size_t n) {
  uint8_t s = 0;
  for (size_t i = 0; i < n; ++i) s += p[i];
  return s;
}

TEST(MpTableTest, StructureAndChecksums) {
  constexpr uint64_t kBase = 0xF0000;
  auto t = BuildMpTable(2, kBase, 0xFEC00000);
  ASSERT_TRUE(t.ok()) << t.status();
  const uint8_t* p = t->data();
  EXPECT_EQ(std::memcmp(p, "_MP_", 4), 0);
  EXPECT_EQ(Sum(p, 16), 0);
  uint32_t physptr;
  std::memcpy(&physptr, p + 4, 4);
  EXPECT_EQ(physptr, kBase + 16);
  const uint8_t* c = p + 16;
  EXPECT_EQ(std::memcmp(c, "PCMP", 4), 0);
  uint16_t len, count;
  std::memcpy(&len, c + 4, 2);
  std::memcpy(&count, c + 34, 2);
  EXPECT_EQ(len + 16u, t->size());
  EXPECT_EQ(Sum(c, len), 0);
  // 2 CPUs + bus + IOAPIC + 15 ISA IRQs + 2 LINTs.
  EXPECT_EQ(count, 2 + 1 + 1 + 15 + 2);
  const uint8_t* e = c + 44;
  EXPECT_EQ(e[0], 0);
  EXPECT_EQ(e[1], 0);
  EXPECT_EQ(e[3], 3);  // enabled + BSP
  EXPECT_EQ(e[20 + 1], 1);
  EXPECT_EQ(e[20 + 3], 1);  // AP: enabled only
  const uint8_t* io = e + 40 + 8;
  EXPECT_EQ(io[0], 2);
  EXPECT_EQ(io[1], 2);  // IOAPIC ID after the CPUs
  uint32_t addr;
  std::memcpy(&addr, io + 4, 4);
  EXPECT_EQ(addr, 0xFEC00000u);
  const uint8_t* irq0 = io + 8;
  EXPECT_EQ(irq0[0], 3);
  EXPECT_EQ(irq0[5], 0);  // ISA IRQ 0
  EXPECT_EQ(irq0[7], 2);  // -> pin 2
}

TEST(MpTableTest, RejectsBadCounts) {
  EXPECT_FALSE(BuildMpTable(0, 0xF0000, 0xFEC00000).ok());
  EXPECT_FALSE(BuildMpTable(kMaxMpCpus + 1, 0xF0000, 0xFEC00000).ok());
  EXPECT_FALSE(BuildMpTable(1, 0xFFFFF000, 0xFEC00000).ok());
}

}  // namespace
}  // namespace ionest
