// DMAR (Intel VT-d spec rev 4.x/5.0 §8), shaped for what Linux 6.12 parses
// (drivers/iommu/intel/dmar.c, irq_remapping.c).
#include "absl/base/internal/raw_logging.h"
#include "firmware/acpi_table.h"
#include "firmware/tables.h"

namespace ionest {
namespace {

// Remapping structure types (§8.2 Table 8-2).
constexpr uint16_t kDrhd = 0, kAtsr = 2, kSatc = 5;
// Device scope entry types (§8.3.1).
constexpr uint8_t kScopeEndpoint = 1, kScopeIoapic = 3;
// DMAR flags (§8.1): bit 0 INTR_REMAP, bit 1 X2APIC_OPT_OUT (kept clear), bit 2 PLATFORM_OPT_IN.
constexpr uint8_t kIntrRemap = 1u << 0, kPlatformOptIn = 1u << 2;
constexpr uint8_t kDrhdIncludePciAll = 1u << 0;  // §8.3
constexpr uint8_t kAtsrAllPorts = 1u << 0;       // §8.5

// §8.3.1: type, length (6 + 2 per hop), flags, reserved, enumeration ID, start bus, path.
void WriteScope(ByteWriter& w, uint8_t type, uint8_t enumeration_id, const PciPath& path) {
  w.U8(type).U8(static_cast<uint8_t>(6 + 2 * path.hops.size())).U8(0).U8(0);
  w.U8(enumeration_id).U8(path.start_bus);
  for (const PciPath::Hop& hop : path.hops) w.U8(hop.device).U8(hop.function);
}

// Remapping structure: type, 16-bit length (patched), then the caller's fields and scopes.
class Structure {
 public:
  Structure(ByteWriter& w, uint16_t type) : w_(w), start_(w.size()) { w.U16(type).U16(0); }
  ~Structure() {
    const size_t len = w_.size() - start_;
    ABSL_RAW_CHECK(len <= 0xFFFFu, "len <= 0xFFFFu");
    w_.Patch8(start_ + 2, static_cast<uint8_t>(len));
    w_.Patch8(start_ + 3, static_cast<uint8_t>(len >> 8));
  }

 private:
  ByteWriter& w_;
  const size_t start_;
};

}  // namespace

Bytes BuildDmar(const AcpiConfig& c) {
  ABSL_RAW_CHECK(c.vtd.has_value(), "c.vtd.has_value()");
  const VtdAcpiConfig& v = *c.vtd;
  AcpiTableWriter t("DMAR", 1);
  ByteWriter& w = t.body();
  w.U8(v.host_address_width - 1);                               // 36 Host Address Width (N-1)
  w.U8(kIntrRemap | (v.platform_opt_in ? kPlatformOptIn : 0));  // 37 Flags
  w.Zeros(10);                                                  // 38 reserved
  {
    // §8.3 DRHD: flags, size (2^N pages), segment, register base; one IOAPIC scope whose
    // enumeration ID is the MADT IOAPIC ID (Linux irq_remapping.c:879-921).
    Structure drhd(w, kDrhd);
    w.U8(kDrhdIncludePciAll).U8(v.register_size_log2_pages).U16(0).U64(v.register_base);
    WriteScope(w, kScopeIoapic, c.ioapic_id, v.ioapic_path);
  }
  {
    // §8.5 ATSR: every root port of segment 0 supports ATS.
    Structure atsr(w, kAtsr);
    w.U8(kAtsrAllPorts).U8(0).U16(0);
  }
  if (!v.satc_endpoints.empty()) {
    // §8.8 SATC: flags (ATC_REQUIRED = 0), reserved, segment, endpoint scopes.
    Structure satc(w, kSatc);
    w.U8(0).U8(0).U16(0);
    for (const PciPath& p : v.satc_endpoints) WriteScope(w, kScopeEndpoint, 0, p);
  }
  return std::move(t).Finish();
}

}  // namespace ionest
