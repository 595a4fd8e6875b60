// VIOT, the Virtual I/O Translation table (ACPI 6.5 §5.2.32): one virtio-pci IOMMU node and the
// PCI range nodes of the endpoints it translates. Layout as Linux's include/acpi/actbl3.h
// (struct acpi_table_viot and its nodes), read by drivers/acpi/viot.c.
#include "absl/base/internal/raw_logging.h"
#include "firmware/acpi_table.h"
#include "firmware/tables.h"

namespace ionest {
namespace {

// Node types (§5.2.32.2).
constexpr uint8_t kPciRange = 1, kVirtioIommuPci = 3;
constexpr uint16_t kPciRangeLength = 24, kVirtioIommuPciLength = 16;
constexpr uint16_t kFirstNodeOffset = 48;  // header (36) + node count, node offset, 8 reserved

}  // namespace

Bytes BuildViot(const AcpiConfig& c) {
  ABSL_RAW_CHECK(c.viot.has_value(), "c.viot.has_value()");
  const ViotAcpiConfig& v = *c.viot;
  AcpiTableWriter t("VIOT", 0);
  ByteWriter& w = t.body();
  w.U16(static_cast<uint16_t>(1 + v.ranges.size()));  // 36 node count
  w.U16(kFirstNodeOffset);                             // 38 node offset
  w.Zeros(8);                                          // 40 reserved
  // The IOMMU node first, so every range can name its offset (from the start of the table).
  const uint16_t iommu_node = kFirstNodeOffset;
  w.U8(kVirtioIommuPci).U8(0).U16(kVirtioIommuPciLength);  // §5.2.32.4
  w.U16(0).U16(v.iommu_bdf);                                // segment, BDF
  w.Zeros(8);
  for (const ViotAcpiConfig::Range& r : v.ranges) {
    w.U8(kPciRange).U8(0).U16(kPciRangeLength);  // §5.2.32.3
    w.U32(r.bdf_start);                          // endpoint start: endpoint ID = BDF
    w.U16(0).U16(0);                             // segment start, end
    w.U16(r.bdf_start).U16(r.bdf_end);
    w.U16(iommu_node);                           // output node
    w.Zeros(6);
  }
  return std::move(t).Finish();
}

}  // namespace ionest
