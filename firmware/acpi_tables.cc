#include "firmware/acpi_tables.h"

#include <algorithm>

#include "absl/strings/str_format.h"
#include "firmware/tables.h"

namespace ionest {
namespace {

constexpr size_t kRsdpOffset = 0;
constexpr size_t kFacsOffset = 0x40;  // FACS must be 64-byte aligned (ACPI 6.5 §5.2.10)
constexpr size_t kFirstTableOffset = 0x80;
constexpr size_t kTableAlign = 16;

size_t AlignUp(size_t v, size_t a) { return (v + a - 1) / a * a; }

class BlobBuilder {
 public:
  explicit BlobBuilder(uint64_t base) { blob_.base_gpa = base; }
  // Places `table` at the next `align`ed offset ≥ `min_offset`; returns its gpa.
  uint64_t Place(std::string signature, const Bytes& table, size_t min_offset = 0, size_t align = kTableAlign) {
    const size_t offset = AlignUp(std::max(min_offset, blob_.bytes.size()), align);
    blob_.bytes.resize(offset, 0);
    blob_.bytes.insert(blob_.bytes.end(), table.begin(), table.end());
    const uint64_t gpa = blob_.base_gpa + offset;
    blob_.tables.push_back({std::move(signature), gpa, table.size()});
    return gpa;
  }
  uint64_t NextGpa() const { return blob_.base_gpa + AlignUp(blob_.bytes.size(), kTableAlign); }
  AcpiBlob Take() && { return std::move(blob_); }

 private:
  AcpiBlob blob_;
};

}  // namespace

absl::StatusOr<AcpiBlob> BuildAcpiTables(const AcpiConfig& config) {
  if (absl::Status s = ValidateAcpiConfig(config); !s.ok()) return s;

  // Address-independent tables first; the RSDP and XSDT sizes are fixed, so every address is
  // known before the pointer-holding tables are built.
  const Bytes facs = BuildFacs();
  const Bytes dsdt = BuildDsdt(config);
  std::vector<std::pair<std::string, Bytes>> listed;  // tables the XSDT points at, after the FADT
  listed.emplace_back("APIC", BuildMadt(config));
  listed.emplace_back("MCFG", BuildMcfg(config));
  if (config.vtd.has_value()) listed.emplace_back("DMAR", BuildDmar(config));
  if (config.viot.has_value()) listed.emplace_back("VIOT", BuildViot(config));

  BlobBuilder b(config.base_gpa);
  const uint64_t rsdp_gpa_placeholder = b.Place("RSD PTR ", Bytes(36, 0), kRsdpOffset);
  const uint64_t facs_gpa = b.Place("FACS", facs, kFacsOffset, 64);
  const uint64_t dsdt_gpa = b.Place("DSDT", dsdt, kFirstTableOffset);
  std::vector<uint64_t> xsdt_entries;
  xsdt_entries.push_back(b.Place("FACP", BuildFadt(config, facs_gpa, dsdt_gpa)));
  for (const auto& [sig, table] : listed) xsdt_entries.push_back(b.Place(sig, table));
  const uint64_t xsdt_gpa = b.Place("XSDT", BuildXsdt(xsdt_entries));
  AcpiBlob blob = std::move(b).Take();

  const Bytes rsdp = BuildRsdp(xsdt_gpa);
  std::copy(rsdp.begin(), rsdp.end(), blob.bytes.begin() + kRsdpOffset);
  blob.rsdp_gpa = rsdp_gpa_placeholder;

  if (blob.bytes.size() > config.max_size) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "ACPI tables need 0x%x bytes, only 0x%x reserved at 0x%x", blob.bytes.size(), config.max_size,
        config.base_gpa));
  }
  return blob;
}

absl::Status WriteAcpiTables(const AcpiBlob& blob, PhysMemory& memory) {
  absl::Status s = memory.Write(blob.base_gpa, blob.bytes.data(), blob.bytes.size());
  if (!s.ok()) {
    return absl::Status(s.code(), absl::StrFormat("writing ACPI tables at 0x%x (+0x%x): %s", blob.base_gpa,
                                                  blob.bytes.size(), s.message()));
  }
  return absl::OkStatus();
}

}  // namespace ionest
