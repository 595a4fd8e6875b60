// FADT/FACS field checks at ACPI 6.5 Table 5.9 / 5.14 offsets.
#include "devices/acpi_pm_layout.h"
#include "devices/cmos_rtc.h"
#include "firmware/acpi_test_util.h"
#include "firmware/tables.h"
#include "gtest/gtest.h"

namespace ionest {
namespace {

using namespace ionest::testing;

TEST(Facs, LayoutAndSize) {
  Bytes f = BuildFacs();
  ASSERT_EQ(f.size(), 64u);
  EXPECT_EQ(Str(f, 0, 4), "FACS");
  EXPECT_EQ(U32(f, 4), 64u);
  EXPECT_EQ(U32(f, 16), 0u);  // global lock free
  EXPECT_EQ(U8(f, 32), 2);    // version
}

TEST(Fadt, HeaderAndPointers) {
  Bytes f = BuildFadt(AcpiConfig{}, 0xE0040, 0xE0080);
  ExpectValidTable(f, "FACP", 6);
  ASSERT_EQ(f.size(), fadt::kSize);
  EXPECT_EQ(U8(f, fadt::kMinorVersion), 5);
  // 32-bit pointers are zero when the X_ fields are used (Table 5.9).
  EXPECT_EQ(U32(f, fadt::kFirmwareCtrl), 0u);
  EXPECT_EQ(U32(f, fadt::kDsdt), 0u);
  EXPECT_EQ(U64(f, fadt::kXFirmwareCtrl), 0xE0040u);
  EXPECT_EQ(U64(f, fadt::kXDsdt), 0xE0080u);
}

TEST(Fadt, FixedHardwareMatchesDevicesLayout) {
  Bytes f = BuildFadt(AcpiConfig{}, 0x1000, 0x2000);
  EXPECT_EQ(U16(f, fadt::kSciInt), acpi_pm::kSciIrq);
  EXPECT_EQ(U32(f, fadt::kSmiCmd), 0u);  // always in ACPI mode
  EXPECT_EQ(U32(f, fadt::kPm1aEvtBlk), acpi_pm::kPm1aEvtPort);
  EXPECT_EQ(U8(f, fadt::kPm1EvtLen), acpi_pm::kPm1EvtLen);
  EXPECT_EQ(U32(f, fadt::kPm1aCntBlk), acpi_pm::kPm1aCntPort);
  EXPECT_EQ(U8(f, fadt::kPm1CntLen), acpi_pm::kPm1CntLen);
  EXPECT_EQ(U32(f, fadt::kPmTmrBlk), acpi_pm::kPmTmrPort);
  EXPECT_EQ(U8(f, fadt::kPmTmrLen), acpi_pm::kPmTmrLen);
  EXPECT_EQ(U32(f, fadt::kGpe0Blk), 0u);
  // X_ GAS: SystemIO (1), bit width = 8 × legacy length, same address (no 32/64X mismatch).
  for (auto [gas, port, len] : {std::tuple{fadt::kXPm1aEvtBlk, acpi_pm::kPm1aEvtPort, acpi_pm::kPm1EvtLen},
                                std::tuple{fadt::kXPm1aCntBlk, acpi_pm::kPm1aCntPort, acpi_pm::kPm1CntLen},
                                std::tuple{fadt::kXPmTmrBlk, acpi_pm::kPmTmrPort, acpi_pm::kPmTmrLen}}) {
    EXPECT_EQ(U8(f, gas), 1) << gas;
    EXPECT_EQ(U8(f, gas + 1), len * 8) << gas;
    EXPECT_EQ(U64(f, gas + 4), port) << gas;
  }
  EXPECT_EQ(U8(f, fadt::kCentury), kCmosCentury);
}

TEST(Fadt, ResetRegisterIsI8042Pulse) {
  Bytes f = BuildFadt(AcpiConfig{}, 0x1000, 0x2000);
  EXPECT_TRUE(U32(f, fadt::kFlags) & fadt::kResetRegSup);
  EXPECT_EQ(U8(f, fadt::kResetReg), 1);       // SystemIO
  EXPECT_EQ(U8(f, fadt::kResetReg + 1), 8);   // 8-bit
  EXPECT_EQ(U8(f, fadt::kResetReg + 3), 1);   // byte access
  EXPECT_EQ(U64(f, fadt::kResetReg + 4), acpi_pm::kResetRegPort);
  EXPECT_EQ(U8(f, fadt::kResetValue), acpi_pm::kResetValue);
}

TEST(Fadt, FlagsAndBootArch) {
  AcpiConfig c;
  Bytes f = BuildFadt(c, 0x1000, 0x2000);
  const uint32_t flags = U32(f, fadt::kFlags);
  EXPECT_FALSE(flags & fadt::kHwReducedAcpi);
  EXPECT_FALSE(flags & fadt::kPwrButton);  // fixed-feature power button
  EXPECT_TRUE(flags & fadt::kWbinvd);
  const uint16_t arch = U16(f, fadt::kIapcBootArch);
  EXPECT_TRUE(arch & fadt::kVgaNotPresent);
  EXPECT_FALSE(arch & fadt::kMsiNotSupported);
  EXPECT_TRUE(arch & fadt::kPcieAspmControls);
  EXPECT_TRUE(arch & fadt::k8042);
  EXPECT_FALSE(arch & fadt::kCmosRtcNotPresent);

  c.has_i8042 = false;
  c.has_cmos_rtc = false;
  c.pm_tmr_port = 0;
  f = BuildFadt(c, 0x1000, 0x2000);
  EXPECT_FALSE(U16(f, fadt::kIapcBootArch) & fadt::k8042);
  EXPECT_TRUE(U16(f, fadt::kIapcBootArch) & fadt::kCmosRtcNotPresent);
  EXPECT_EQ(U8(f, fadt::kCentury), 0);
  EXPECT_EQ(U8(f, fadt::kPmTmrLen), 0);
  EXPECT_EQ(U64(f, fadt::kXPmTmrBlk + 4), 0u);
}

}  // namespace
}  // namespace ionest
