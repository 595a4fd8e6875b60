#include "firmware/acpi_config.h"

#include <set>

#include "absl/base/internal/raw_logging.h"
#include "absl/strings/str_format.h"

namespace ionest {
namespace {

template <typename... Args>
absl::Status Invalid(const absl::FormatSpec<Args...>& fmt, const Args&... args) {
  return absl::InvalidArgumentError("ACPI config: " + absl::StrFormat(fmt, args...));
}

// [base, base + size) is non-empty and does not wrap.
bool ValidRange(uint64_t base, uint64_t size) { return size != 0 && base + (size - 1) >= base; }
bool Overlap(uint64_t a, uint64_t a_size, uint64_t b, uint64_t b_size) {
  return a <= b + (b_size - 1) && b <= a + (a_size - 1);
}

absl::Status ValidatePath(const PciPath& path, const char* what) {
  if (path.hops.empty() || path.hops.size() > kMaxPciPathHops) {
    return Invalid("%s path needs 1-%d hops, has %d", what, kMaxPciPathHops, path.hops.size());
  }
  for (const PciPath::Hop& hop : path.hops) {
    if (hop.device > 31 || hop.function > 7) {
      return Invalid("%s path hop %02x.%x out of range", what, hop.device, hop.function);
    }
  }
  return absl::OkStatus();
}

absl::Status ValidateVtd(const AcpiConfig& c, const VtdAcpiConfig& v) {
  // VT-d §8.1: HAW−1 is stored; Linux rejects widths below 12 bits (dmar.c:668).
  if (v.host_address_width < 12 || v.host_address_width > 64) {
    return Invalid("VT-d host address width %d not in [12, 64]", v.host_address_width);
  }
  if (v.register_size_log2_pages > 15) return Invalid("VT-d register size 2^%d pages", v.register_size_log2_pages);
  const uint64_t size = uint64_t{4096} << v.register_size_log2_pages;
  if (v.register_base == 0 || v.register_base % size != 0 || !ValidRange(v.register_base, size)) {
    return Invalid("VT-d register base 0x%x not aligned to its size 0x%x", v.register_base, size);
  }
  if (Overlap(v.register_base, size, EcamWindowStart(c), EcamWindowSize(c)) ||
      Overlap(v.register_base, size, c.mmio32_base, c.mmio32_size) ||
      Overlap(v.register_base, size, c.ioapic_address, 0x1000) ||
      Overlap(v.register_base, size, c.local_apic_address, 0x1000)) {
    return Invalid("VT-d registers at 0x%x overlap another MMIO range", v.register_base);
  }
  if (absl::Status s = ValidatePath(v.ioapic_path, "IOAPIC scope"); !s.ok()) return s;
  for (const PciPath& p : v.satc_endpoints) {
    if (absl::Status s = ValidatePath(p, "SATC endpoint"); !s.ok()) return s;
  }
  return absl::OkStatus();
}

}  // namespace

uint16_t PciPath::SourceId() const {
  ABSL_RAW_CHECK(hops.size() == 1u, "hops.size() == 1u");
  return static_cast<uint16_t>(start_bus << 8 | hops[0].device << 3 | hops[0].function);
}

PciPath PciPath::FromSourceId(uint16_t source_id) {
  return PciPath{static_cast<uint8_t>(source_id >> 8),
                 {{static_cast<uint8_t>((source_id >> 3) & 0x1F), static_cast<uint8_t>(source_id & 0x7)}}};
}

absl::Status ValidateAcpiConfig(const AcpiConfig& c) {
  if (c.base_gpa % 64 != 0 || !ValidRange(c.base_gpa, c.max_size)) {
    return Invalid("table area 0x%x+0x%x must be 64-byte aligned and not wrap", c.base_gpa, c.max_size);
  }
  if (c.apic_ids.empty() || c.apic_ids.size() > kMaxAcpiCpus) {
    return Invalid("need 1-%d CPUs, have %d", kMaxAcpiCpus, c.apic_ids.size());
  }
  std::set<uint32_t> seen;
  for (uint32_t id : c.apic_ids) {
    if (id == 0xFFFFFFFF || !seen.insert(id).second) return Invalid("APIC ID 0x%x invalid or duplicated", id);
  }
  // ACPI 6.5 §4.8.3: PM1_EVT_LEN ≥ 4 and even (status + enable halves), PM1_CNT_LEN ≥ 2,
  // PM_TMR_LEN = 4.
  if (c.pm1a_evt_port == 0 || c.pm1a_evt_len < 4 || c.pm1a_evt_len % 2 != 0) {
    return Invalid("PM1a event block 0x%x/%d", c.pm1a_evt_port, c.pm1a_evt_len);
  }
  if (c.pm1a_cnt_port == 0 || c.pm1a_cnt_len < 2) {
    return Invalid("PM1a control block 0x%x/%d", c.pm1a_cnt_port, c.pm1a_cnt_len);
  }
  if (c.pm_tmr_port != 0 && c.pm_tmr_len != 4) return Invalid("PM timer length %d != 4", c.pm_tmr_len);
  if (c.sci_irq >= 16 || c.sci_irq == 0 || c.sci_irq == 2) return Invalid("SCI IRQ %d", c.sci_irq);
  if (c.s5_slp_typ > 7) return Invalid("SLP_TYP %d is a 3-bit field", c.s5_slp_typ);
  if (c.reset_port == 0) return Invalid("reset register port 0");
  // CMOS RAM indices 0x0E-0x7F are free for firmware use; 0 = no century byte.
  if (c.has_cmos_rtc && c.cmos_century_index != 0 && (c.cmos_century_index < 0x0E || c.cmos_century_index > 0x7F)) {
    return Invalid("CMOS century index 0x%x", c.cmos_century_index);
  }

  if (c.bus_start > c.bus_end) return Invalid("bus range %d-%d", c.bus_start, c.bus_end);
  const uint64_t ecam_size = EcamWindowSize(c);
  if (c.ecam_base % (1 << 20) != 0 || c.ecam_base + ((c.bus_end + 1ull) << 20) - 1 < c.ecam_base) {
    return Invalid("ECAM base 0x%x not 1 MiB aligned or wraps", c.ecam_base);
  }
  if (!ValidRange(c.mmio32_base, c.mmio32_size) || c.mmio32_base + uint64_t{c.mmio32_size} > (1ull << 32)) {
    return Invalid("32-bit MMIO window 0x%x+0x%x", c.mmio32_base, c.mmio32_size);
  }
  if (c.mmio64_size != 0 && (c.mmio64_base < (1ull << 32) || !ValidRange(c.mmio64_base, c.mmio64_size))) {
    return Invalid("64-bit MMIO window 0x%x+0x%x", c.mmio64_base, c.mmio64_size);
  }
  const struct {
    uint64_t base, size;
    const char* name;
  } ranges[] = {{EcamWindowStart(c), ecam_size, "ECAM"},
                {c.mmio32_base, c.mmio32_size, "32-bit MMIO window"},
                {c.ioapic_address, 0x1000, "IOAPIC"},
                {c.local_apic_address, 0x1000, "local APIC"},
                {c.base_gpa, c.max_size, "ACPI table area"}};
  for (size_t i = 0; i < std::size(ranges); ++i) {
    for (size_t j = i + 1; j < std::size(ranges); ++j) {
      if (Overlap(ranges[i].base, ranges[i].size, ranges[j].base, ranges[j].size)) {
        return Invalid("%s overlaps %s", ranges[i].name, ranges[j].name);
      }
    }
  }
  if (c.intx_gsi_base.has_value() && (*c.intx_gsi_base < 16 || *c.intx_gsi_base > 0xFFFF)) {
    return Invalid("INTx GSI base %d must be >= 16 (above the ISA IRQs)", *c.intx_gsi_base);
  }
  if (c.vtd.has_value() && c.viot.has_value()) {
    return absl::InvalidArgumentError("one IOMMU per machine: DMAR (vtd) and VIOT (viot) are both set");
  }
  if (c.vtd.has_value()) return ValidateVtd(c, *c.vtd);
  if (c.viot.has_value()) {
    // Linux's viot.c rejects an endpoint range that would translate the IOMMU itself.
    if (c.viot->ranges.empty()) return absl::InvalidArgumentError("VIOT: no PCI endpoint range");
    if (c.viot->ranges.size() > 64) return absl::InvalidArgumentError("VIOT: more than 64 PCI ranges");
    for (const ViotAcpiConfig::Range& r : c.viot->ranges) {
      if (r.bdf_start > r.bdf_end) return absl::InvalidArgumentError("VIOT: PCI range start after its end");
      if (c.viot->iommu_bdf >= r.bdf_start && c.viot->iommu_bdf <= r.bdf_end) {
        return absl::InvalidArgumentError("VIOT: a PCI range contains the virtio-iommu itself");
      }
    }
  }
  return absl::OkStatus();
}

}  // namespace ionest
