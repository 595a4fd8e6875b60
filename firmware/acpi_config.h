// Description of the ionest machine that the ACPI tables publish. Filled by the VMM at start-up
// (host data, never guest data); ValidateAcpiConfig() rejects inconsistent values with
// InvalidArgument. Defaults match vmm/memory_layout.h, devices/acpi_pm_layout.h and
// devices/pci_layout.h (acpi_config_test checks the ones it can include).
// Thread-compatible value types.
#pragma once

#include <cstdint>
#include <optional>
#include <vector>

#include "absl/status/status.h"
#include "devices/acpi_pm_layout.h"
#include "devices/pci_layout.h"

namespace ionest {

// A PCI device as reached from a root bus: start bus + (device, function) hops, the form of
// DMAR device scopes (VT-d spec §8.3.1). Single hop = a device on the root bus.
struct PciPath {
  struct Hop {
    uint8_t device = 0;    // 0-31
    uint8_t function = 0;  // 0-7
  };
  uint8_t start_bus = 0;
  std::vector<Hop> hops;

  // Requester/source ID (bus << 8 | dev << 3 | fn) of a single-hop path.
  uint16_t SourceId() const;
  // Single-hop path of the function with this source ID.
  static PciPath FromSourceId(uint16_t source_id);
};

// Default IOAPIC source-id: bus 0xF0, device 0x1F, function 0 (= devices/ioapic.h
// kIoapicDefaultSourceId; not a real PCI function). The IOAPIC model sends its MSIs with it.
inline constexpr uint16_t kDefaultIoapicSourceId = 0xF0F8;

struct VtdAcpiConfig {
  // DMAR.HostAddressWidth is emitted as this − 1 (VT-d §8.1). Linux requires ≥ 12.
  uint8_t host_address_width = 48;
  uint64_t register_base = 0xFED9'0000;
  // DRHD.Size: the register set spans 2^size_log2_pages 4 KiB pages (VT-d §8.3).
  uint8_t register_size_log2_pages = 0;
  // DMAR.Flags.DMA_CTRL_PLATFORM_OPT_IN (bit 2).
  bool platform_opt_in = false;
  // IOAPIC device scope path; its source-id goes into IRTE.SID for the IOAPIC's interrupts.
  PciPath ioapic_path = PciPath::FromSourceId(kDefaultIoapicSourceId);
  // Endpoints listed in one SATC (VT-d §8.8, ATC_REQUIRED = 0) so Linux allows ATS on them even
  // if they sit on the root bus. An ATSR with ALL_PORTS is always emitted too (VT-d §8.5).
  std::vector<PciPath> satc_endpoints;
};

// VIOT (ACPI 6.5 §5.2.32): a virtio-pci IOMMU and the PCI endpoints it translates.
struct ViotAcpiConfig {
  uint16_t iommu_bdf = 0;  // the virtio-iommu function (segment 0)
  struct Range {
    uint16_t bdf_start = 0;
    uint16_t bdf_end = 0;  // inclusive
  };
  // Endpoint ID = BDF (the virtio-iommu's endpoint IDs are requester IDs). Must not contain
  // iommu_bdf: the IOMMU does not translate itself.
  std::vector<Range> ranges;
};

struct AcpiConfig {
  // Guest-physical base of the blob (64-byte aligned: the FACS must be, ACPI 6.5 §5.2.10) and
  // the room the VMM reserved for it.
  uint64_t base_gpa = 0xE0000;
  uint64_t max_size = 0x10000;

  // Local APIC IDs, one per vCPU; vCPU i gets ACPI processor UID i. IDs < 255 use a Local APIC
  // MADT entry, larger ones a Local x2APIC entry (ACPI 6.5 §5.2.12.12).
  std::vector<uint32_t> apic_ids = {0};

  // Fixed hardware (FADT, ACPI 6.5 §5.2.9); all in system I/O space.
  uint16_t pm1a_evt_port = acpi_pm::kPm1aEvtPort;
  uint8_t pm1a_evt_len = acpi_pm::kPm1EvtLen;
  uint16_t pm1a_cnt_port = acpi_pm::kPm1aCntPort;
  uint8_t pm1a_cnt_len = acpi_pm::kPm1CntLen;
  uint16_t pm_tmr_port = acpi_pm::kPmTmrPort;  // 0 = no PM timer
  uint8_t pm_tmr_len = acpi_pm::kPmTmrLen;
  uint8_t sci_irq = acpi_pm::kSciIrq;
  uint8_t s5_slp_typ = acpi_pm::kSlpTypS5;
  uint16_t reset_port = acpi_pm::kResetRegPort;
  uint8_t reset_value = acpi_pm::kResetValue;
  bool has_i8042 = true;     // IAPC_BOOT_ARCH.8042
  bool has_cmos_rtc = true;  // DSDT RTC (PNP0B00, IO 0x70/2, IRQ 8); else IAPC_BOOT_ARCH.CMOS_RTC_NOT_PRESENT
  uint8_t cmos_century_index = 0x32;  // FADT.CENTURY when has_cmos_rtc (devices/cmos_rtc.h)
  bool has_com1 = true;      // DSDT COM1: PNP0501, IO 0x3F8/8, IRQ 4

  // Interrupt controllers (MADT, ACPI 6.5 §5.2.12). GSI base is 0.
  uint8_t ioapic_id = 0;
  uint32_t ioapic_address = 0xFEC0'0000;
  uint32_t local_apic_address = 0xFEE0'0000;

  // PCI (MCFG; DSDT host bridge). One segment (0).
  // The host bridge _CRS windows must contain every BAR the VMM pre-assigns (PciHost::
  // AssignResources uses the same pci_layout windows) or Linux moves the BARs.
  uint64_t ecam_base = pci_layout::kEcamBase;  // ECAM address of bus 0 (MCFG semantics)
  uint8_t bus_start = pci_layout::kEcamStartBus;
  uint8_t bus_end = pci_layout::kEcamEndBus;
  uint32_t mmio32_base = pci_layout::kMmio32Base;
  uint32_t mmio32_size = pci_layout::kMmio32Size;
  uint64_t mmio64_base = pci_layout::kMmio64Base;
  uint64_t mmio64_size = pci_layout::kMmio64Size;  // 0 = no 64-bit window
  // Legacy INTx: if set, the host bridge gets a _PRT routing INTA-D of every root-bus slot to
  // GSI base + ((slot + pin) % 4) (level, active-low, as Linux assumes for _PRT GSIs). nullopt =
  // MSI only, no _PRT.
  std::optional<uint32_t> intx_gsi_base = 16;
  // Host bridge _OSC grants the OS every PCIe feature it asks for (PCI Firmware spec 3.3 §4.5).
  bool osc_grant_all = true;

  // DMAR is emitted only when set.
  std::optional<VtdAcpiConfig> vtd;
  // VIOT is emitted only when set (not together with vtd: one IOMMU per machine).
  std::optional<ViotAcpiConfig> viot;
};

inline constexpr size_t kMaxAcpiCpus = 4096;  // DSDT processor names are C000-CFFF
inline constexpr size_t kMaxPciPathHops = 8;

absl::Status ValidateAcpiConfig(const AcpiConfig& config);

// The decoded ECAM window: buses bus_start..bus_end, 1 MiB each (PCIe 6.0 §7.2.2).
inline uint64_t EcamWindowStart(const AcpiConfig& c) { return c.ecam_base + (uint64_t{c.bus_start} << 20); }
inline uint64_t EcamWindowSize(const AcpiConfig& c) { return (c.bus_end - c.bus_start + 1ull) << 20; }

}  // namespace ionest
