// Capabilities of the DMA test device, built with devices/pci_express_caps.h: PCI Express
// (RC-integrated endpoint by default, DEVCAP Function Level Reset, DEVCAP2 End-End TLP Prefix),
// ATS with Page Aligned Request, PASID (exec/priv configurable) and PRI (Stopped at reset, PRG
// Response PASID Required) — the bits Linux 6.12 checks
// (drivers/pci/ats.c, drivers/iommu/intel/iommu.c).
#pragma once

#include <cstdint>

#include "absl/status/statusor.h"
#include "devices/pci_config_space.h"
#include "devices/pci_express_caps.h"

namespace ionest::dmatest {

struct CapOffsets {
  uint16_t pcie = 0;
  uint16_t ats = 0;
  uint16_t pasid = 0;
  uint16_t pri = 0;
};

struct CapOptions {
  // RC-integrated: Linux enables PASID on it without a prefix-capable root port (probe.c:2268).
  PcieDeviceType port_type = PcieDeviceType::kRcIntegratedEndpoint;
  uint8_t pasid_width = 20;
  bool pasid_exec = true;
  bool pasid_priv = true;
  uint32_t pri_capacity = 32;  // Outstanding Page Request Capacity (Linux allows <= 2048)
  // DEVCAP Function Level Reset Capability (PCIe 6.0 §7.5.3.3): vfio-pci can reset the function
  // (pcie_flr) only if it is set.
  bool flr = true;
};

absl::StatusOr<CapOffsets> AddDmaTestCapabilities(PciConfigSpace& config, const CapOptions& options);

}  // namespace ionest::dmatest
