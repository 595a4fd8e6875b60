// MADT entries parsed back at ACPI 6.5 §5.2.12 offsets.
#include <vector>

#include "firmware/acpi_test_util.h"
#include "firmware/tables.h"
#include "gtest/gtest.h"

namespace ionest {
namespace {

using namespace ionest::testing;

struct Entry {
  uint8_t type;
  Bytes bytes;
};

std::vector<Entry> Entries(const Bytes& madt) {
  std::vector<Entry> out;
  size_t off = 44;
  while (off + 2 <= madt.size()) {
    const uint8_t len = madt[off + 1];
    EXPECT_GE(len, 2);
    if (len < 2 || off + len > madt.size()) {
      ADD_FAILURE() << "bad entry at " << off;
      break;
    }
    out.push_back({madt[off], Bytes(madt.begin() + off, madt.begin() + off + len)});
    off += len;
  }
  EXPECT_EQ(off, madt.size());
  return out;
}

class MadtCpus : public ::testing::TestWithParam<int> {};

TEST_P(MadtCpus, OneLocalApicPerCpuThenIoapicAndOverrides) {
  const int n = GetParam();
  AcpiConfig c = ConfigWithCpus(n);
  c.ioapic_id = 5;
  Bytes m = BuildMadt(c);
  ExpectValidTable(m, "APIC", 5);
  EXPECT_EQ(U32(m, 36), 0xFEE00000u);
  EXPECT_EQ(U32(m, 40), 0u);  // PCAT_COMPAT clear

  std::vector<Entry> e = Entries(m);
  ASSERT_EQ(e.size(), static_cast<size_t>(n) + 4);  // LAPICs, IOAPIC, 2 ISOs, LAPIC NMI
  for (int i = 0; i < n; ++i) {
    ASSERT_EQ(e[i].type, 0);
    ASSERT_EQ(e[i].bytes.size(), 8u);
    EXPECT_EQ(U8(e[i].bytes, 2), i);       // ACPI processor UID
    EXPECT_EQ(U8(e[i].bytes, 3), i);       // APIC ID
    EXPECT_EQ(U32(e[i].bytes, 4), 1u);     // enabled
  }
  const Bytes& ioapic = e[n].bytes;
  EXPECT_EQ(e[n].type, 1);
  ASSERT_EQ(ioapic.size(), 12u);
  EXPECT_EQ(U8(ioapic, 2), 5);
  EXPECT_EQ(U32(ioapic, 4), 0xFEC00000u);
  EXPECT_EQ(U32(ioapic, 8), 0u);  // GSI base

  const Bytes& pit = e[n + 1].bytes;
  EXPECT_EQ(e[n + 1].type, 2);
  EXPECT_EQ(U8(pit, 2), 0);       // ISA
  EXPECT_EQ(U8(pit, 3), 0);       // IRQ0
  EXPECT_EQ(U32(pit, 4), 2u);     // → GSI2
  EXPECT_EQ(U16(pit, 8), 0);      // conforms to bus

  const Bytes& sci = e[n + 2].bytes;
  EXPECT_EQ(e[n + 2].type, 2);
  EXPECT_EQ(U8(sci, 3), 9);
  EXPECT_EQ(U32(sci, 4), 9u);
  EXPECT_EQ(U16(sci, 8), 0x000D);  // active high (01), level (11 << 2)

  EXPECT_EQ(e[n + 3].type, 4);
  EXPECT_EQ(U8(e[n + 3].bytes, 2), 0xFF);  // all processors
  EXPECT_EQ(U8(e[n + 3].bytes, 5), 1);     // LINT1
}

INSTANTIATE_TEST_SUITE_P(OneToFour, MadtCpus, ::testing::Values(1, 2, 3, 4));

TEST(Madt, LargeApicIdsUseX2ApicEntries) {
  AcpiConfig c;
  c.apic_ids = {0, 254, 255, 0x12345};
  std::vector<Entry> e = Entries(BuildMadt(c));
  ASSERT_EQ(e.size(), 4u + 5u);  // + x2APIC NMI
  EXPECT_EQ(e[0].type, 0);
  EXPECT_EQ(e[1].type, 0);
  EXPECT_EQ(U8(e[1].bytes, 3), 254);
  for (int i : {2, 3}) {
    ASSERT_EQ(e[i].type, 9);
    ASSERT_EQ(e[i].bytes.size(), 16u);
    EXPECT_EQ(U32(e[i].bytes, 4), c.apic_ids[i]);
    EXPECT_EQ(U32(e[i].bytes, 8), 1u);
    EXPECT_EQ(U32(e[i].bytes, 12), static_cast<uint32_t>(i));  // UID
  }
  EXPECT_EQ(e.back().type, 10);
  EXPECT_EQ(U32(e.back().bytes, 4), 0xFFFFFFFFu);
  EXPECT_EQ(U8(e.back().bytes, 8), 1);
}

}  // namespace
}  // namespace ionest
