// PCI/PCIe configuration-space register offsets and IDs (PCIe 6.0 §7.5, §7.7, §7.8, §7.9).
#pragma once

#include <cstdint>

namespace ionest::pci {

// Type 0 header (PCIe 6.0 §7.5.1).
inline constexpr uint16_t kVendorId = 0x00;
inline constexpr uint16_t kDeviceId = 0x02;
inline constexpr uint16_t kCommand = 0x04;
inline constexpr uint16_t kStatus = 0x06;
inline constexpr uint16_t kRevisionId = 0x08;
inline constexpr uint16_t kClassCode = 0x09;  // 3 bytes: prog-if, subclass, base class
inline constexpr uint16_t kCacheLineSize = 0x0C;
inline constexpr uint16_t kHeaderType = 0x0E;
inline constexpr uint16_t kBar0 = 0x10;
inline constexpr unsigned kNumBars = 6;
inline constexpr uint16_t kSubsystemVendorId = 0x2C;
inline constexpr uint16_t kSubsystemId = 0x2E;
inline constexpr uint16_t kExpansionRom = 0x30;
inline constexpr uint16_t kCapabilitiesPointer = 0x34;
inline constexpr uint16_t kInterruptLine = 0x3C;
inline constexpr uint16_t kInterruptPin = 0x3D;
inline constexpr uint16_t kHeaderEnd = 0x40;
inline constexpr uint16_t kConfigSpaceSize = 4096;
inline constexpr uint16_t kExtCapStart = 0x100;

// Command register bits (§7.5.1.1.3).
inline constexpr uint16_t kCommandIo = 1u << 0;
inline constexpr uint16_t kCommandMemory = 1u << 1;
inline constexpr uint16_t kCommandBusMaster = 1u << 2;
inline constexpr uint16_t kCommandParityErrorResponse = 1u << 6;
inline constexpr uint16_t kCommandSerr = 1u << 8;
inline constexpr uint16_t kCommandIntxDisable = 1u << 10;
// Status register bits (§7.5.1.1.4).
inline constexpr uint16_t kStatusIntx = 1u << 3;
inline constexpr uint16_t kStatusCapList = 1u << 4;
inline constexpr uint16_t kStatusRw1c = 0xF900;  // parity/abort/SERR error bits

// BAR low bits (§7.5.1.2.1).
inline constexpr uint32_t kBarIoSpace = 1u << 0;
inline constexpr uint32_t kBarMem64 = 2u << 1;
inline constexpr uint32_t kBarPrefetchable = 1u << 3;

// Capability IDs (PCI Code and ID Assignment spec).
inline constexpr uint8_t kCapIdMsi = 0x05;
inline constexpr uint8_t kCapIdVendor = 0x09;
inline constexpr uint8_t kCapIdPcie = 0x10;
inline constexpr uint8_t kCapIdMsix = 0x11;
// Extended capability IDs.
inline constexpr uint16_t kExtCapIdAts = 0x000F;
inline constexpr uint16_t kExtCapIdPri = 0x0013;
inline constexpr uint16_t kExtCapIdPasid = 0x001B;
inline constexpr uint16_t kExtCapIdAcs = 0x000D;

}  // namespace ionest::pci
