// DSDT content checks on the AML bytes (structure is verified independently by iasl in
// iasl_test.cc).
#include <algorithm>

#include "firmware/acpi_test_util.h"
#include "firmware/aml.h"
#include "firmware/aml_resources.h"
#include "firmware/tables.h"
#include "gtest/gtest.h"

namespace ionest {
namespace {

using namespace ionest::testing;

size_t Count(const Bytes& hay, const Bytes& needle) {
  size_t n = 0;
  for (auto it = hay.begin(); (it = std::search(it, hay.end(), needle.begin(), needle.end())) != hay.end(); ++it) ++n;
  return n;
}
bool Contains(const Bytes& hay, const Bytes& needle) { return Count(hay, needle) > 0; }

TEST(Dsdt, ValidHeaderRevision2) { ExpectValidTable(BuildDsdt(AcpiConfig{}), "DSDT", 2); }

TEST(Dsdt, S5PackageCarriesSlpTyp) {
  AcpiConfig c;
  c.s5_slp_typ = 7;
  // Name (\_S5, Package () { 7, 7, 0, 0 })
  EXPECT_TRUE(Contains(BuildDsdt(c), Bytes({0x08, 0x5C, '_', 'S', '5', '_', 0x12, 0x08, 0x04, 0x0A, 0x07,
                                             0x0A, 0x07, 0x00, 0x00})));
}

TEST(Dsdt, HostBridgeIdsAndWindows) {
  AcpiConfig c;
  c.mmio32_base = 0xA0000000;
  c.mmio32_size = 0x10000000;
  c.mmio64_base = 0x8000000000;
  c.mmio64_size = 0x1000000000;
  Bytes d = BuildDsdt(c);
  EXPECT_TRUE(Contains(d, aml::Name("_HID", aml::Integer(aml::EisaId("PNP0A08")))));
  EXPECT_TRUE(Contains(d, aml::Name("_CID", aml::Integer(aml::EisaId("PNP0A03")))));
  EXPECT_TRUE(Contains(d, aml::Name("_SEG", aml::Integer(0))));
  EXPECT_TRUE(Contains(d, aml::Name("_BBN", aml::Integer(0))));
  EXPECT_TRUE(Contains(d, aml::WordBusNumber(0, 255)));
  EXPECT_TRUE(Contains(d, aml::WordIo(0x0000, 0x0CF7)));
  EXPECT_TRUE(Contains(d, aml::WordIo(0x0D00, 0xFFFF)));
  EXPECT_TRUE(Contains(d, aml::DWordMemory(0xA0000000, 0xAFFFFFFF, false)));
  EXPECT_TRUE(Contains(d, aml::QWordMemory(0x8000000000, 0x8FFFFFFFFF, true, true)));

  c.mmio64_size = 0;
  EXPECT_FALSE(Contains(BuildDsdt(c), Bytes({0x8A, 0x2B, 0x00, 0x00, 0x0C})));  // no producer QWord
}

TEST(Dsdt, EcamReservedAsMotherboardResource) {
  AcpiConfig c;
  c.ecam_base = 0xB0000000;
  c.bus_end = 15;
  Bytes d = BuildDsdt(c);
  EXPECT_TRUE(Contains(d, aml::Name("_HID", aml::Integer(aml::EisaId("PNP0C02")))));
  EXPECT_TRUE(Contains(d, aml::QWordMemory(0xB0000000, 0xB0FFFFFF, false, false)));
}

TEST(Dsdt, Com1Optional) {
  const Bytes crs = aml::ResourceTemplate({aml::IoPort(0x3F8, 0x3F8, 0, 8), aml::IrqNoFlags({4})});
  AcpiConfig c;
  EXPECT_TRUE(Contains(BuildDsdt(c), crs));
  EXPECT_TRUE(Contains(BuildDsdt(c), aml::Name("_HID", aml::Integer(aml::EisaId("PNP0501")))));
  c.has_com1 = false;
  EXPECT_FALSE(Contains(BuildDsdt(c), crs));
}

TEST(Dsdt, RtcOptional) {
  const Bytes crs = aml::ResourceTemplate({aml::IoPort(0x70, 0x70, 1, 2), aml::IrqNoFlags({8})});
  AcpiConfig c;
  EXPECT_TRUE(Contains(BuildDsdt(c), crs));
  EXPECT_TRUE(Contains(BuildDsdt(c), aml::Name("_HID", aml::Integer(aml::EisaId("PNP0B00")))));
  c.has_cmos_rtc = false;
  EXPECT_FALSE(Contains(BuildDsdt(c), crs));
}

TEST(Dsdt, OneProcessorDevicePerCpu) {
  for (size_t n : {1, 4, 17}) {
    Bytes d = BuildDsdt(ConfigWithCpus(n));
    EXPECT_EQ(Count(d, aml::String("ACPI0007")), n);
    EXPECT_TRUE(Contains(d, Bytes({0x5B, 0x82})));
    const std::string last = n == 17 ? "C010" : n == 4 ? "C003" : "C000";
    EXPECT_TRUE(Contains(d, Bytes(last.begin(), last.end()))) << last;
    EXPECT_TRUE(Contains(d, aml::Name("_UID", aml::Integer(n - 1))));
  }
}

TEST(Dsdt, PrtOnlyWithIntx) {
  AcpiConfig c;
  c.intx_gsi_base = 20;
  Bytes d = BuildDsdt(c);
  // Slot 2 pin 3 (INTD) → 20 + (2 + 3) % 4 = 21.
  EXPECT_TRUE(Contains(d, aml::Package({aml::Integer(0x2FFFF), aml::Integer(3), aml::Integer(0), aml::Integer(21)})));
  EXPECT_TRUE(Contains(d, Bytes({'_', 'P', 'R', 'T', 0x12})));
  c.intx_gsi_base.reset();
  EXPECT_FALSE(Contains(BuildDsdt(c), Bytes({'_', 'P', 'R', 'T'})));
}

TEST(Dsdt, OscOptional) {
  AcpiConfig c;
  const Bytes uuid = aml::Uuid("33DB4D5B-1FF7-401C-9657-7441C03DD766");
  EXPECT_TRUE(Contains(BuildDsdt(c), uuid));
  c.osc_grant_all = false;
  EXPECT_FALSE(Contains(BuildDsdt(c), uuid));
}

}  // namespace
}  // namespace ionest
