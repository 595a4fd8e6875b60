// Address map of the ionest PCI root complex (segment 0, root bus 0), for the VMM and the firmware
// (MCFG, host bridge _CRS, DMAR scopes).
#pragma once

#include <cstdint>

namespace ionest::pci_layout {

// ECAM (PCIe 6.0 §7.2.2): bus 27:20, device 19:15, function 14:12, register 11:0. MCFG: buses 0-255.
inline constexpr uint64_t kEcamBase = 0xE0000000;
inline constexpr uint64_t kEcamSize = 256ull << 20;
inline constexpr uint8_t kEcamStartBus = 0;
inline constexpr uint8_t kEcamEndBus = 255;

// Windows BARs are assigned from (host bridge _CRS).
inline constexpr uint64_t kMmio32Base = 0xC0000000;
inline constexpr uint64_t kMmio32Size = 0x20000000;  // up to the ECAM window
inline constexpr uint64_t kMmio64Base = 0x8000000000;  // 512 GiB
inline constexpr uint64_t kMmio64Size = 0x1000000000;  // 64 GiB
inline constexpr uint16_t kIoBase = 0xC000;
inline constexpr uint16_t kIoSize = 0x4000;

// Legacy configuration mechanism #1 (PCI Local Bus 3.0 §3.2.2.3.2).
inline constexpr uint16_t kConfigAddressPort = 0xCF8;
inline constexpr uint16_t kConfigDataPort = 0xCFC;

// Host bridge at 00:00.0.
inline constexpr uint8_t kHostBridgeDevfn = 0x00;
inline constexpr uint16_t kHostBridgeVendorId = 0x1B36;  // Red Hat, Inc. (QEMU PCIe host bridge ID)
inline constexpr uint16_t kHostBridgeDeviceId = 0x0008;

}  // namespace ionest::pci_layout
