// Builders for the PCI Express capability and the extended capabilities a device model needs:
// ATS (PCIe 6.0 §10.5.1), PRI (§10.5.2), PASID (§7.8.8). Each returns the capability offset; field
// offsets below are relative to it. Guest write masks are installed per the spec; dynamic
// behaviour (ATS invalidations, PRI Stopped/reset, FLR) belongs to the device model, typically in
// PciDevice::OnConfigWrite.
#pragma once

#include <cstdint>

#include "absl/status/statusor.h"
#include "devices/pci_config_space.h"

namespace ionest {

// PCI Express Capability (PCIe 6.0 §7.5.3).
namespace pcie {
inline constexpr uint16_t kCaps = 0x02;
inline constexpr uint16_t kDevCap = 0x04;
inline constexpr uint16_t kDevCtl = 0x08;
inline constexpr uint16_t kDevSta = 0x0A;
inline constexpr uint16_t kLnkCap = 0x0C;
inline constexpr uint16_t kLnkCtl = 0x10;
inline constexpr uint16_t kLnkSta = 0x12;
inline constexpr uint16_t kDevCap2 = 0x24;
inline constexpr uint16_t kDevCtl2 = 0x28;
inline constexpr uint16_t kLnkCap2 = 0x2C;
inline constexpr uint16_t kLnkCtl2 = 0x30;
inline constexpr uint16_t kCapSize = 0x3C;

inline constexpr uint32_t kDevCapRoleBasedErrorReporting = 1u << 15;
inline constexpr uint32_t kDevCapFlr = 1u << 28;
inline constexpr uint16_t kDevCtlInitiateFlr = 1u << 15;
// DEVCTL reset value (§7.5.3.4): Relaxed Ordering, No Snoop, Max_Read_Request_Size 512 B.
inline constexpr uint16_t kDevCtlResetValue = 0x2810;
inline constexpr uint16_t kDevCtlMaxPayloadMask = 0x7u << 5;
inline constexpr uint16_t kDevCtlAuxPowerPm = 1u << 10;  // RWS (sticky)
inline constexpr uint16_t kDevStaErrorsRw1c = 0x000F;    // CED, NFED, FED, URD
inline constexpr uint16_t kDevStaTransactionsPending = 1u << 5;
inline constexpr uint32_t kDevCap2EndEndTlpPrefix = 1u << 21;  // needed for PASID below a root port
inline constexpr unsigned kDevCap2MaxEndEndPrefixesShift = 22;
inline constexpr uint32_t kDevCap2Ltr = 1u << 11;
inline constexpr uint32_t kDevCap2CompletionTimeoutDisable = 1u << 4;
}  // namespace pcie

enum class PcieDeviceType : uint8_t {
  kEndpoint = 0x0,
  kLegacyEndpoint = 0x1,
  kRootPort = 0x4,
  kRcIntegratedEndpoint = 0x9,  // no link; ATS/PASID usable without ATSR/root-port prefix support
};

struct PcieCapConfig {
  PcieDeviceType type = PcieDeviceType::kRcIntegratedEndpoint;
  uint32_t devcap = pcie::kDevCapRoleBasedErrorReporting;  // max payload 128 B
  uint32_t devcap2 = pcie::kDevCap2CompletionTimeoutDisable;
  bool flr = false;  // advertise Function Level Reset (DEVCTL bit 15 becomes writable)
};
absl::StatusOr<uint16_t> AddPcieCapability(PciConfigSpace& config, const PcieCapConfig& c);
// Function Level Reset of the PCI Express Capability at `offset` (PCIe 6.0 §6.6.2): DEVCTL back to
// its reset value except Max_Payload_Size and the sticky Aux Power PM Enable (both exempt), so
// Initiate FLR reads 0; DEVSTA error bits clear; DEVCTL2 0. Link registers are exempt.
void ResetPcieCapabilityForFlr(PciConfigSpace& config, uint16_t offset);

// ATS extended capability.
namespace ats {
inline constexpr uint16_t kCap = 0x04;      // 16-bit
inline constexpr uint16_t kControl = 0x06;  // 16-bit
inline constexpr uint16_t kCapPageAlignedRequest = 1u << 5;
inline constexpr uint16_t kCapGlobalInvalidate = 1u << 6;
inline constexpr uint16_t kControlEnable = 1u << 15;
inline constexpr uint16_t kControlStuMask = 0x1F;  // smallest translation unit, 4096 << STU
inline constexpr uint16_t kCapSize = 8;
}  // namespace ats
struct AtsCapConfig {
  uint8_t invalidate_queue_depth = 0;  // 0 means 32
  bool page_aligned_request = true;    // Linux requires it (intel-iommu)
  bool global_invalidate = false;
};
absl::StatusOr<uint16_t> AddAtsCapability(PciConfigSpace& config, const AtsCapConfig& c);

// PASID extended capability.
namespace pasid {
inline constexpr uint16_t kCap = 0x04;
inline constexpr uint16_t kControl = 0x06;
inline constexpr uint16_t kCapExec = 1u << 1;
inline constexpr uint16_t kCapPriv = 1u << 2;
inline constexpr unsigned kCapMaxWidthShift = 8;
inline constexpr uint16_t kControlEnable = 1u << 0;
inline constexpr uint16_t kControlExec = 1u << 1;
inline constexpr uint16_t kControlPriv = 1u << 2;
inline constexpr uint16_t kCapSize = 8;
}  // namespace pasid
struct PasidCapConfig {
  uint8_t max_width = 20;  // PASIDs 0 .. 2^width - 1
  bool exec = false;
  bool priv = false;
};
absl::StatusOr<uint16_t> AddPasidCapability(PciConfigSpace& config, const PasidCapConfig& c);

// Page Request Interface extended capability.
namespace pri {
inline constexpr uint16_t kControl = 0x04;    // 16-bit
inline constexpr uint16_t kStatus = 0x06;     // 16-bit
inline constexpr uint16_t kCapacity = 0x08;   // 32-bit, outstanding page request capacity
inline constexpr uint16_t kAllocation = 0x0C; // 32-bit, outstanding page request allocation
inline constexpr uint16_t kControlEnable = 1u << 0;
inline constexpr uint16_t kControlReset = 1u << 1;  // device clears it after resetting its PRI state
inline constexpr uint16_t kStatusResponseFailure = 1u << 0;  // RW1C
inline constexpr uint16_t kStatusUprgi = 1u << 1;            // RW1C: unexpected PRG index
inline constexpr uint16_t kStatusStopped = 1u << 8;          // RO: device maintains (reset 1)
inline constexpr uint16_t kStatusPrgResponsePasidRequired = 1u << 15;
inline constexpr uint16_t kCapSize = 0x10;
}  // namespace pri
struct PriCapConfig {
  uint32_t outstanding_capacity = 512;
  bool prg_response_pasid_required = true;  // Linux requires it when PASID is enabled
};
absl::StatusOr<uint16_t> AddPriCapability(PciConfigSpace& config, const PriCapConfig& c);

}  // namespace ionest
