// RSDP and XSDT (ACPI 6.5 §5.2.5.3, §5.2.8).
#include "absl/base/internal/raw_logging.h"
#include "firmware/acpi_table.h"
#include "firmware/tables.h"

namespace ionest {

Bytes BuildXsdt(const std::vector<uint64_t>& table_gpas) {
  AcpiTableWriter t("XSDT", 1);
  for (uint64_t gpa : table_gpas) t.body().U64(gpa);
  return std::move(t).Finish();
}

Bytes BuildRsdp(uint64_t xsdt_gpa) {
  // Table 5.3: Signature, Checksum (first 20 bytes), OEMID, Revision 2, RsdtAddress (0: no RSDT,
  // OSPM uses the XSDT when revision ≥ 2), Length 36, XsdtAddress, Extended Checksum (all 36
  // bytes), reserved.
  ByteWriter w;
  w.Chars("RSD PTR ", 8).U8(0).Chars(kAcpiOemId, 6).U8(2).U32(0);
  w.U32(36).U64(xsdt_gpa).U8(0).Zeros(3);
  ABSL_RAW_CHECK(w.size() == 36u, "w.size() == 36u");
  w.Patch8(8, AcpiChecksumFor(w.bytes().data(), 20));
  w.Patch8(32, AcpiChecksumFor(w.bytes().data(), 36));
  return std::move(w).Take();
}

}  // namespace ionest
