#include "firmware/acpi_test_util.h"
#include "firmware/tables.h"
#include "gtest/gtest.h"

namespace ionest {
namespace {

using namespace ionest::testing;

TEST(Mcfg, OneAllocation) {
  AcpiConfig c;
  c.ecam_base = 0xB0000000;
  c.bus_start = 0;
  c.bus_end = 63;
  Bytes m = BuildMcfg(c);
  ExpectValidTable(m, "MCFG", 1);
  ASSERT_EQ(m.size(), 44u + 16u);
  EXPECT_EQ(U64(m, 36), 0u);           // reserved
  EXPECT_EQ(U64(m, 44), 0xB0000000u);  // base (of bus 0)
  EXPECT_EQ(U16(m, 52), 0);            // segment
  EXPECT_EQ(U8(m, 54), 0);
  EXPECT_EQ(U8(m, 55), 63);
  EXPECT_EQ(U32(m, 56), 0u);
}

}  // namespace
}  // namespace ionest
