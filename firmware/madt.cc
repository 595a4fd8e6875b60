// MADT (ACPI 6.5 §5.2.12).
#include "firmware/acpi_table.h"
#include "firmware/tables.h"

namespace ionest {
namespace {

// Interrupt controller structure types (Table 5.21).
constexpr uint8_t kLocalApic = 0, kIoApic = 1, kSourceOverride = 2, kLocalApicNmi = 4,
                  kLocalX2Apic = 9, kLocalX2ApicNmi = 10;
constexpr uint32_t kProcessorEnabled = 1;  // Local APIC Flags bit 0 (Table 5.23)
// MPS INTI flags (Table 5.26): polarity bits 1:0, trigger mode bits 3:2.
constexpr uint16_t kActiveHigh = 0x1, kLevelTriggered = 0xC;
constexpr uint8_t kIsaBus = 0;
// x2APIC IDs below 255 must use Local APIC entries (§5.2.12.12).
constexpr uint32_t kMaxXApicId = 254;

}  // namespace

Bytes BuildMadt(const AcpiConfig& c) {
  AcpiTableWriter t("APIC", 5);
  ByteWriter& w = t.body();
  w.U32(c.local_apic_address);  // 36 Local Interrupt Controller Address
  w.U32(0);                     // 40 Flags: PCAT_COMPAT = 0 (no 8259 pair)

  bool any_x2apic = false;
  for (size_t uid = 0; uid < c.apic_ids.size(); ++uid) {
    const uint32_t id = c.apic_ids[uid];
    if (id <= kMaxXApicId && uid <= 0xFF) {
      // §5.2.12.2: type, length 8, ACPI Processor UID, APIC ID, flags.
      w.U8(kLocalApic).U8(8).U8(static_cast<uint8_t>(uid)).U8(static_cast<uint8_t>(id)).U32(kProcessorEnabled);
    } else {
      // §5.2.12.12: type, length 16, reserved, x2APIC ID, flags, ACPI Processor UID.
      w.U8(kLocalX2Apic).U8(16).U16(0).U32(id).U32(kProcessorEnabled).U32(static_cast<uint32_t>(uid));
      any_x2apic = true;
    }
  }
  // §5.2.12.3: type, length 12, I/O APIC ID, reserved, address, GSI base 0.
  w.U8(kIoApic).U8(12).U8(c.ioapic_id).U8(0).U32(c.ioapic_address).U32(0);
  // §5.2.12.5: type, length 10, bus (ISA), source IRQ, GSI, flags.
  w.U8(kSourceOverride).U8(10).U8(kIsaBus).U8(0).U32(2).U16(0);  // PIT IRQ0 → GSI2, bus default
  w.U8(kSourceOverride).U8(10).U8(kIsaBus).U8(c.sci_irq).U32(c.sci_irq).U16(kActiveHigh | kLevelTriggered);
  // LINT1 is NMI on every processor (§5.2.12.7: UID 0xFF = all; §5.2.12.13: 0xFFFFFFFF = all).
  w.U8(kLocalApicNmi).U8(6).U8(0xFF).U16(0).U8(1);
  if (any_x2apic) w.U8(kLocalX2ApicNmi).U8(12).U16(0).U32(0xFFFFFFFF).U8(1).Zeros(3);
  return std::move(t).Finish();
}

}  // namespace ionest
