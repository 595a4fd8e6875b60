// Linux x86 64-bit boot protocol (Documentation/arch/x86/boot.rst): zero page (struct boot_params)
// with the e820 map, command line and initrd placement.
//
// Pure functions over PhysMemory; thread-compatible.
#pragma once

#include <asm/bootparam.h>

#include <cstdint>
#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "vmm/guest_memory.h"
#include "vmm/kernel_loader.h"
#include "vmm/memory_layout.h"

namespace ionest {

struct InitrdPlacement {
  uint64_t addr = 0;
  uint64_t size = 0;
};

// Highest 2 MiB-aligned... (page-aligned) address below min(low_ram_end, initrd_addr_max) and above the kernel.
absl::StatusOr<InitrdPlacement> PlaceInitrd(const MemoryLayout& layout, const LoadedKernel& kernel, uint64_t size);

struct BootParamsInput {
  std::string cmdline;
  std::optional<InitrdPlacement> initrd;
  uint64_t acpi_rsdp_addr = 0;  // 0: let the kernel scan for it
};

// Builds the zero page (bzImage setup header copied if present, else a minimal 2.15 header).
absl::StatusOr<boot_params> BuildBootParams(const MemoryLayout& layout, const LoadedKernel& kernel,
                                            const BootParamsInput& in);

// Writes boot_params at kBootParamsAddr and the command line at kCmdlineAddr.
absl::Status WriteBootParams(PhysMemory& memory, const boot_params& params, const std::string& cmdline);

}  // namespace ionest
