// FADT and FACS (ACPI 6.5 §5.2.9, §5.2.10).
#include "absl/base/internal/raw_logging.h"
#include "firmware/acpi_table.h"
#include "firmware/tables.h"

namespace ionest {

Bytes BuildFacs() {
  // §5.2.10 Table 5.14. No checksum; 64 bytes; must be 64-byte aligned (the caller places it).
  ByteWriter w;
  w.Chars("FACS", 4).U32(64);
  w.U32(0);  // Hardware Signature
  w.U32(0);  // Firmware Waking Vector
  w.U32(0);  // Global Lock
  w.U32(0);  // Flags: no S4BIOS, no 64-bit wake
  w.U64(0);  // X_Firmware Waking Vector
  w.U8(2);   // Version
  w.Zeros(3);
  w.U32(0);  // OSPM Flags
  w.Zeros(24);
  ABSL_RAW_CHECK(w.size() == 64u, "w.size() == 64u");
  return std::move(w).Take();
}

Bytes BuildFadt(const AcpiConfig& c, uint64_t facs_gpa, uint64_t dsdt_gpa) {
  // Revision 6, minor version 5 = ACPI 6.5. Not HW-reduced: PM1a blocks and the PM timer are real
  // I/O ports (devices/acpi_pm_layout.h). Legacy 32-bit fields and X_ GAS fields describe the same
  // blocks with matching widths, so Linux's tbfadt.c finds no 32/64X mismatch. FIRMWARE_CTRL and
  // DSDT are 0 because X_FIRMWARE_CTRL / X_DSDT are set (Table 5.9 notes).
  AcpiTableWriter t("FACP", 6);
  ByteWriter& w = t.body();
  w.U32(0);                      // 36 FIRMWARE_CTRL
  w.U32(0);                      // 40 DSDT
  w.U8(0);                       // 44 reserved
  w.U8(0);                       // 45 Preferred_PM_Profile: unspecified
  w.U16(c.sci_irq);              // 46 SCI_INT
  w.U32(0);                      // 48 SMI_CMD: 0 = always in ACPI mode (ACPI_ENABLE unused)
  w.U8(0).U8(0).U8(0).U8(0);     // 52 ACPI_ENABLE, ACPI_DISABLE, S4BIOS_REQ, PSTATE_CNT
  w.U32(c.pm1a_evt_port);        // 56 PM1a_EVT_BLK
  w.U32(0);                      // 60 PM1b_EVT_BLK
  w.U32(c.pm1a_cnt_port);        // 64 PM1a_CNT_BLK
  w.U32(0);                      // 68 PM1b_CNT_BLK
  w.U32(0);                      // 72 PM2_CNT_BLK
  w.U32(c.pm_tmr_port);          // 76 PM_TMR_BLK
  w.U32(0).U32(0);               // 80 GPE0_BLK, 84 GPE1_BLK
  w.U8(c.pm1a_evt_len);          // 88 PM1_EVT_LEN
  w.U8(c.pm1a_cnt_len);          // 89 PM1_CNT_LEN
  w.U8(0);                       // 90 PM2_CNT_LEN
  w.U8(c.pm_tmr_port != 0 ? c.pm_tmr_len : 0);  // 91 PM_TMR_LEN
  w.U8(0).U8(0).U8(0).U8(0);     // 92 GPE0_BLK_LEN, GPE1_BLK_LEN, GPE1_BASE, CST_CNT
  w.U16(0x0FFF).U16(0x0FFF);     // 96 P_LVL2_LAT > 100, 98 P_LVL3_LAT > 1000: no C2/C3
  w.U16(0).U16(0);               // 100 FLUSH_SIZE, FLUSH_STRIDE
  w.U8(0).U8(0);                 // 104 DUTY_OFFSET, DUTY_WIDTH
  w.U8(0).U8(0);                 // 106 DAY_ALRM, MON_ALRM
  w.U8(c.has_cmos_rtc ? c.cmos_century_index : 0);  // 108 CENTURY (CMOS RAM index)
  uint16_t boot_arch = fadt::kLegacyDevices | fadt::kVgaNotPresent | fadt::kPcieAspmControls;
  if (c.has_i8042) boot_arch |= fadt::k8042;
  if (!c.has_cmos_rtc) boot_arch |= fadt::kCmosRtcNotPresent;
  w.U16(boot_arch);              // 109 IAPC_BOOT_ARCH (MSI supported: bit 3 clear)
  w.U8(0);                       // 111 reserved
  // PWR_BUTTON clear: fixed-feature power button (PM1 PWRBTN_STS/EN, devices/acpi_pm.h);
  // SLP_BUTTON set: no sleep button; FIX_RTC set: no RTC wake status in PM1.
  w.U32(fadt::kWbinvd | fadt::kProcC1 | fadt::kSlpButton | fadt::kFixRtc |
        fadt::kResetRegSup);     // 112 Flags (HW_REDUCED_ACPI clear)
  WriteGas(w, AddressSpace::kSystemIo, 8, AccessSize::kByte, c.reset_port);  // 116 RESET_REG
  w.U8(c.reset_value);           // 128 RESET_VALUE
  w.U16(0);                      // 129 ARM_BOOT_ARCH
  w.U8(5);                       // 131 FADT Minor Version
  w.U64(facs_gpa);               // 132 X_FIRMWARE_CTRL
  w.U64(dsdt_gpa);               // 140 X_DSDT
  WriteGas(w, AddressSpace::kSystemIo, c.pm1a_evt_len * 8, AccessSize::kUndefined, c.pm1a_evt_port);  // 148
  WriteNullGas(w);               // 160 X_PM1b_EVT_BLK
  WriteGas(w, AddressSpace::kSystemIo, c.pm1a_cnt_len * 8, AccessSize::kUndefined, c.pm1a_cnt_port);  // 172
  WriteNullGas(w);               // 184 X_PM1b_CNT_BLK
  WriteNullGas(w);               // 196 X_PM2_CNT_BLK
  if (c.pm_tmr_port != 0) {      // 208 X_PM_TMR_BLK
    WriteGas(w, AddressSpace::kSystemIo, c.pm_tmr_len * 8, AccessSize::kUndefined, c.pm_tmr_port);
  } else {
    WriteNullGas(w);
  }
  WriteNullGas(w);               // 220 X_GPE0_BLK
  WriteNullGas(w);               // 232 X_GPE1_BLK
  WriteNullGas(w);               // 244 SLEEP_CONTROL_REG (HW-reduced only)
  WriteNullGas(w);               // 256 SLEEP_STATUS_REG
  w.U64(0);                      // 268 Hypervisor Vendor Identity
  Bytes out = std::move(t).Finish();
  ABSL_RAW_CHECK(out.size() == fadt::kSize, "out.size() == fadt::kSize");
  return out;
}

}  // namespace ionest
