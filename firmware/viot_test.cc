// VIOT layout (ACPI 6.5 §5.2.32) as Linux's drivers/acpi/viot.c reads it.
#include "firmware/acpi_tables.h"
#include "firmware/acpi_test_util.h"
#include "firmware/tables.h"
#include "gtest/gtest.h"

namespace ionest {
namespace {

using namespace ionest::testing;

AcpiConfig ViotConfig() {
  AcpiConfig c;
  c.viot = ViotAcpiConfig{};
  c.viot->iommu_bdf = 0x0008;  // 00:01.0
  c.viot->ranges = {{0x0010, 0x00ff}};
  return c;
}

TEST(Viot, IommuNodeThenRangesPointingAtIt) {
  AcpiConfig c = ViotConfig();
  c.viot->ranges.push_back({0x0100, 0x01ff});
  Bytes d = BuildViot(c);
  ExpectValidTable(d, "VIOT", 0);
  EXPECT_EQ(U16(d, 36), 3);   // node count
  EXPECT_EQ(U16(d, 38), 48);  // node offset
  for (int i = 40; i < 48; ++i) EXPECT_EQ(d[i], 0) << i;
  EXPECT_EQ(U8(d, 48), 3);    // virtio-pci IOMMU
  EXPECT_EQ(U16(d, 50), 16);
  EXPECT_EQ(U16(d, 52), 0);   // segment
  EXPECT_EQ(U16(d, 54), 0x0008);
  for (size_t n = 0; n < 2; ++n) {
    const size_t r = 64 + 24 * n;
    EXPECT_EQ(U8(d, r), 1);  // PCI range
    EXPECT_EQ(U16(d, r + 2), 24);
    EXPECT_EQ(U32(d, r + 4), c.viot->ranges[n].bdf_start);  // endpoint ID = BDF
    EXPECT_EQ(U16(d, r + 12), c.viot->ranges[n].bdf_start);
    EXPECT_EQ(U16(d, r + 14), c.viot->ranges[n].bdf_end);
    EXPECT_EQ(U16(d, r + 16), 48);  // output node: the IOMMU node
  }
  EXPECT_EQ(d.size(), 64u + 2 * 24);
}

TEST(Viot, ListedInXsdtAndRefusedWithDmar) {
  absl::StatusOr<AcpiBlob> blob = BuildAcpiTables(ViotConfig());
  ASSERT_TRUE(blob.ok()) << blob.status();
  bool found = false;
  for (size_t i = 0; i + 4 <= blob->bytes.size(); ++i) {
    if (std::equal(blob->bytes.begin() + i, blob->bytes.begin() + i + 4, "VIOT")) found = true;
  }
  EXPECT_TRUE(found);
  AcpiConfig both = ViotConfig();
  both.vtd = VtdAcpiConfig{};
  EXPECT_FALSE(BuildAcpiTables(both).ok());
}

TEST(Viot, RangesMustNotContainTheIommu) {
  AcpiConfig c = ViotConfig();
  c.viot->ranges = {{0x0000, 0x00ff}};
  EXPECT_FALSE(ValidateAcpiConfig(c).ok());
  c.viot->ranges = {{0x0020, 0x0010}};
  EXPECT_FALSE(ValidateAcpiConfig(c).ok());
  c.viot->ranges.clear();
  EXPECT_FALSE(ValidateAcpiConfig(c).ok());
}

}  // namespace
}  // namespace ionest
