// DMAR layout (VT-d §8) against the Linux 6.12 requirements (drivers/iommu/intel/dmar.c).
#include "devices/ioapic.h"
#include "firmware/acpi_test_util.h"
#include "firmware/tables.h"
#include "gtest/gtest.h"

namespace ionest {
namespace {

using namespace ionest::testing;

AcpiConfig VtdConfig() {
  AcpiConfig c;
  c.ioapic_id = 3;
  c.vtd = VtdAcpiConfig{};
  return c;
}

TEST(Dmar, HeaderWidthAndFlags) {
  Bytes d = BuildDmar(VtdConfig());
  ExpectValidTable(d, "DMAR", 1);
  EXPECT_EQ(U8(d, 36), 47);   // HAW 48 - 1
  EXPECT_EQ(U8(d, 37), 0x01); // INTR_REMAP; X2APIC_OPT_OUT clear
  for (int i = 38; i < 48; ++i) EXPECT_EQ(d[i], 0) << i;

  AcpiConfig c = VtdConfig();
  c.vtd->platform_opt_in = true;
  c.vtd->host_address_width = 39;
  d = BuildDmar(c);
  EXPECT_EQ(U8(d, 36), 38);
  EXPECT_EQ(U8(d, 37), 0x05);
}

TEST(Dmar, DrhdIncludeAllWithIoapicScope) {
  AcpiConfig c = VtdConfig();
  c.vtd->register_base = 0xFED91000;
  c.vtd->register_size_log2_pages = 0;
  Bytes d = BuildDmar(c);
  const size_t drhd = 48;
  EXPECT_EQ(U16(d, drhd), 0);       // type DRHD
  EXPECT_EQ(U16(d, drhd + 2), 24);  // 16 + one 8-byte scope
  EXPECT_EQ(U8(d, drhd + 4), 1);    // INCLUDE_PCI_ALL
  EXPECT_EQ(U8(d, drhd + 5), 0);    // size: 2^0 pages
  EXPECT_EQ(U16(d, drhd + 6), 0);   // segment
  EXPECT_EQ(U64(d, drhd + 8), 0xFED91000u);
  const size_t scope = drhd + 16;
  EXPECT_EQ(U8(d, scope), 3);       // IOAPIC
  EXPECT_EQ(U8(d, scope + 1), 8);   // 6 + one path hop
  EXPECT_EQ(U8(d, scope + 4), 3);   // enumeration ID = MADT IOAPIC ID
  // Source-id = what devices/ioapic.h sends with: bus 0xF0, 1f.0.
  const uint16_t sid = U8(d, scope + 5) << 8 | U8(d, scope + 6) << 3 | U8(d, scope + 7);
  EXPECT_EQ(sid, kIoapicDefaultSourceId);
  EXPECT_EQ(sid, kDefaultIoapicSourceId);
}

TEST(Dmar, AtsrAllPortsAndSatcEndpoints) {
  AcpiConfig c = VtdConfig();
  c.vtd->satc_endpoints = {PciPath{0, {{3, 0}}}, PciPath{0, {{1, 0}, {0, 1}}}};
  Bytes d = BuildDmar(c);
  size_t off = 48 + U16(d, 48 + 2);
  EXPECT_EQ(U16(d, off), 2);      // ATSR
  EXPECT_EQ(U16(d, off + 2), 8);
  EXPECT_EQ(U8(d, off + 4), 1);   // ALL_PORTS
  EXPECT_EQ(U16(d, off + 6), 0);  // segment
  off += 8;
  EXPECT_EQ(U16(d, off), 5);      // SATC
  EXPECT_EQ(U16(d, off + 2), 8 + 8 + 10);
  EXPECT_EQ(U8(d, off + 4), 0);   // ATC_REQUIRED clear
  size_t s = off + 8;
  EXPECT_EQ(U8(d, s), 1);         // endpoint
  EXPECT_EQ(U8(d, s + 1), 8);
  EXPECT_EQ(U8(d, s + 5), 0);     // start bus
  EXPECT_EQ(U8(d, s + 6), 3);
  EXPECT_EQ(U8(d, s + 7), 0);
  s += 8;
  EXPECT_EQ(U8(d, s), 1);
  EXPECT_EQ(U8(d, s + 1), 10);    // two hops: root port 01.0, then 00.1 below it
  EXPECT_EQ(U8(d, s + 6), 1);
  EXPECT_EQ(U8(d, s + 7), 0);
  EXPECT_EQ(U8(d, s + 8), 0);
  EXPECT_EQ(U8(d, s + 9), 1);
  EXPECT_EQ(s + 10, d.size());
}

TEST(Dmar, NoSatcWithoutEndpoints) {
  Bytes d = BuildDmar(VtdConfig());
  EXPECT_EQ(d.size(), 48u + 24u + 8u);
}

TEST(Dmar, DefaultsMatchIoapicModel) {
  EXPECT_EQ(AcpiConfig{}.ioapic_address, kIoapicBase);
  EXPECT_EQ(VtdAcpiConfig{}.ioapic_path.SourceId(), kIoapicDefaultSourceId);
}

TEST(PciPath, SourceIdRoundTrip) {
  PciPath p = PciPath::FromSourceId(0xF0F8);
  EXPECT_EQ(p.start_bus, 0xF0);
  ASSERT_EQ(p.hops.size(), 1u);
  EXPECT_EQ(p.hops[0].device, 0x1F);
  EXPECT_EQ(p.hops[0].function, 0);
  EXPECT_EQ(p.SourceId(), 0xF0F8);
}

}  // namespace
}  // namespace ionest
