// Guest-physical memory map of the ionest machine (x86-64).
//
//   0x0000_0000 .. low_ram_end     RAM (low_ram_end <= 0xC000_0000); legacy hole 0x9FC00-0xFFFFF is
//                                  backed but reported reserved (EBDA/BIOS area; MP table lives there)
//   0xC000_0000 .. 0xFFFF_FFFF     32-bit PCI hole: MMIO BARs 0xC000_0000-0xDFFF_FFFF,
//                                  ECAM 0xE000_0000 (256 MiB, buses 0-255), VT-d 0xFED9_0000,
//                                  IOAPIC 0xFEC0_0000, LAPIC 0xFEE0_0000
//   0x1_0000_0000 ..               RAM above 4 GiB (only if memory > 3 GiB)
//
// Pure data and functions; no KVM. Thread-compatible.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "vmm/guest_memory.h"

namespace ionest {

inline constexpr uint64_t kPciHoleStart = 0xC000'0000;
inline constexpr uint64_t kPciMmioStart = 0xC000'0000;
inline constexpr uint64_t kPciMmioSize = 0x2000'0000;
inline constexpr uint64_t kEcamBase = 0xE000'0000;
inline constexpr uint64_t kEcamSize = 0x1000'0000;
inline constexpr uint64_t kLayoutIoapicBase = 0xFEC0'0000;
inline constexpr uint64_t kLayoutIoapicSize = 0x1000;
inline constexpr uint64_t kVtdBase = 0xFED9'0000;
inline constexpr uint64_t kVtdSize = 0x1000;
inline constexpr uint64_t kLapicBase = 0xFEE0'0000;
inline constexpr uint64_t kLapicSize = 0x10'0000;
inline constexpr uint64_t kHighRamStart = 0x1'0000'0000;

// Legacy low-memory area (reported reserved in e820).
inline constexpr uint64_t kEbdaStart = 0x9'FC00;
inline constexpr uint64_t kBiosEnd = 0x10'0000;

// Fixed boot-time structures in low RAM (all below the EBDA).
inline constexpr uint64_t kGdtAddr = 0x500;
inline constexpr uint64_t kBootParamsAddr = 0x7000;
inline constexpr uint64_t kPml4Addr = 0x9000;
inline constexpr uint64_t kPdptAddr = 0xA000;
inline constexpr uint64_t kPdAddr = 0xB000;  // 4 pages: identity map of the first 4 GiB with 2 MiB pages
inline constexpr uint64_t kCmdlineAddr = 0x20000;
inline constexpr uint64_t kCmdlineMax = 0x10000;
inline constexpr uint64_t kMpTableAddr = 0xF0000;  // BIOS ROM area the kernel scans (MP spec 1.4 §4)
inline constexpr uint64_t kAcpiAddr = 0xE0000;     // firmware tables, 64 KiB below the MP table
inline constexpr uint64_t kAcpiSize = 0x10000;
inline constexpr uint64_t kKvmTssAddr = 0xFFFB'D000;  // KVM_SET_TSS_ADDR (3 pages), inside the hole
inline constexpr uint64_t kKvmIdentityMapAddr = 0xFFFB'C000;

inline constexpr uint64_t kMinMemory = 32ull << 20;

// e820 entry types (ACPI 6.5 §15.1 "System Address Map Interfaces", AddressRangeMemory etc.).
enum class E820Type : uint32_t { kRam = 1, kReserved = 2, kAcpi = 3, kNvs = 4 };

struct E820Entry {
  uint64_t addr;
  uint64_t size;
  E820Type type;
  bool operator==(const E820Entry&) const = default;
};

struct MemoryLayout {
  uint64_t memory_size = 0;   // total guest RAM
  uint64_t low_ram_end = 0;   // end of RAM below the PCI hole
  uint64_t high_ram_size = 0; // RAM at kHighRamStart
  std::vector<MemoryRegionSpec> ram;  // for GuestMemory::Create
  std::vector<E820Entry> e820;
};

// Splits `memory_size` bytes of RAM around the PCI hole. Errors: not 2 MiB aligned, < 32 MiB,
// or > 1 TiB.
absl::StatusOr<MemoryLayout> ComputeMemoryLayout(uint64_t memory_size);

// Parses "512M", "2G", "1048576", "64K" (binary units). Errors on junk or overflow.
absl::StatusOr<uint64_t> ParseMemorySize(const std::string& text);

}  // namespace ionest
