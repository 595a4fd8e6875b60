// Fixed-hardware ACPI register layout of the ionest machine, for the FADT/DSDT the firmware builds.
// (ACPI 6.5 §4.8 "ACPI Hardware Specification", §5.2.9 FADT.) All blocks are in system I/O space.
#pragma once

#include <cstdint>

namespace ionest::acpi_pm {

// PM1a_EVT_BLK: PM1_STS (2 bytes) + PM1_EN (2 bytes). FADT.PM1a_EVT_BLK / PM1_EVT_LEN.
inline constexpr uint16_t kPm1aEvtPort = 0x600;
inline constexpr uint8_t kPm1EvtLen = 4;
// PM1a_CNT_BLK: PM1_CNT (2 bytes). FADT.PM1a_CNT_BLK / PM1_CNT_LEN.
inline constexpr uint16_t kPm1aCntPort = 0x604;
inline constexpr uint8_t kPm1CntLen = 2;
// PM_TMR_BLK: 24-bit ACPI PM timer at 3.579545 MHz (FADT.Flags.TMR_VAL_EXT = 0). FADT.PM_TMR_LEN.
inline constexpr uint16_t kPmTmrPort = 0x608;
inline constexpr uint8_t kPmTmrLen = 4;
inline constexpr uint32_t kPmTimerHz = 3579545;
// The PM I/O window registered on the bus: [kPmIoBase, kPmIoBase + kPmIoLen).
inline constexpr uint16_t kPmIoBase = kPm1aEvtPort;
inline constexpr uint16_t kPmIoLen = 0x0C;

// SCI interrupt (FADT.SCI_INT; ISA IRQ 9, level/active-low per convention). Nothing raises it yet:
// no fixed events are generated.
inline constexpr uint8_t kSciIrq = 9;

// PM1_CNT fields (ACPI 6.5 §4.8.3.2.1, Table 4.13).
inline constexpr uint16_t kPm1CntSciEn = 1u << 0;
inline constexpr unsigned kPm1CntSlpTypShift = 10;
inline constexpr uint16_t kPm1CntSlpTypMask = 0x7u << kPm1CntSlpTypShift;
inline constexpr uint16_t kPm1CntSlpEn = 1u << 13;

// \_S5 package value (DSDT: Name (_S5, Package () { kSlpTypS5, kSlpTypS5, 0, 0 })).
// Writing SLP_TYP = kSlpTypS5 with SLP_EN powers the machine off. Other SLP_TYP values are ignored.
inline constexpr uint8_t kSlpTypS5 = 5;

// PM1_STS / PM1_EN bits (ACPI 6.5 §4.8.3.1, Tables 4.11/4.12) that are implemented.
inline constexpr uint16_t kPm1StsTmr = 1u << 0;
inline constexpr uint16_t kPm1StsGbl = 1u << 5;     // global lock release (§4.8.3.1.1)
inline constexpr uint16_t kPm1StsPwrBtn = 1u << 8;
inline constexpr uint16_t kPm1StsRtc = 1u << 10;
inline constexpr uint16_t kPm1StsWak = 1u << 15;

// FADT.RESET_REG (ACPI 6.5 §4.8.3.6): system I/O, 8-bit, at the i8042 command port; value 0xFE.
// Set FADT.Flags.RESET_REG_SUP.
inline constexpr uint16_t kResetRegPort = 0x64;
inline constexpr uint8_t kResetValue = 0xFE;

// i8042 keyboard controller ports (the firmware need not describe it; Linux probes it).
inline constexpr uint16_t kI8042DataPort = 0x60;
inline constexpr uint16_t kI8042CommandPort = 0x64;

}  // namespace ionest::acpi_pm
