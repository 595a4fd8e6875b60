// MCFG (PCI Firmware Specification 3.3 §4.1.2; signature reserved in ACPI 6.5 Table 5.6).
#include "firmware/acpi_table.h"
#include "firmware/tables.h"

namespace ionest {

Bytes BuildMcfg(const AcpiConfig& c) {
  AcpiTableWriter t("MCFG", 1);
  ByteWriter& w = t.body();
  w.Zeros(8);  // 36 reserved
  // One configuration space base address allocation (Table 4-3): ECAM base (of bus 0), segment 0,
  // start and end bus, reserved.
  w.U64(c.ecam_base).U16(0).U8(c.bus_start).U8(c.bus_end).U32(0);
  return std::move(t).Finish();
}

}  // namespace ionest
