// Intel MultiProcessor Specification 1.4 table: STOPGAP for SMP enumeration until the firmware's
// ACPI MADT is wired in. Describes N processors (APIC IDs 0..N-1, CPU 0 the BSP), one ISA bus, the
// IOAPIC (ID N, at kLayoutIoapicBase) with ISA IRQ i -> pin i (IRQ0 -> pin 2), and LINT0 ExtINT / LINT1 NMI.
// Pure function; thread-compatible.
#pragma once

#include <cstdint>
#include <vector>

#include "absl/status/statusor.h"

namespace ionest {

inline constexpr int kMaxMpCpus = 64;

// Returns the floating pointer (16 bytes) followed by the configuration table, to be copied to
// `base` (its physical address; the kernel scans 0xF0000-0xFFFFF, MP spec §4).
absl::StatusOr<std::vector<uint8_t>> BuildMpTable(int num_cpus, uint64_t base, uint64_t ioapic_base);

}  // namespace ionest
