// CPU state for the Linux 64-bit boot protocol: identity page tables (first 4 GiB, 2 MiB pages), a
// flat GDT (__BOOT_CS 0x10, __BOOT_DS 0x18, TSS 0x20) and long-mode registers (Intel SDM vol. 3
// §10.8.5 "Initializing IA-32e Mode").
//
// Pure functions; thread-compatible.
#pragma once

#include <linux/kvm.h>

#include <cstdint>

#include "absl/status/status.h"
#include "vmm/guest_memory.h"

namespace ionest {

inline constexpr uint16_t kBootCs = 0x10;
inline constexpr uint16_t kBootDs = 0x18;
inline constexpr uint16_t kBootTss = 0x20;

// Writes the GDT at kGdtAddr and page tables at kPml4Addr/kPdptAddr/kPdAddr.
absl::Status WriteBootPageTablesAndGdt(PhysMemory& memory);

// Long-mode system registers, starting from the vCPU's current sregs (keeps apic_base etc.).
kvm_sregs LongModeSregs(const kvm_sregs& current);

// General registers at the 64-bit entry: RIP=entry, RSI=boot_params.
kvm_regs EntryRegs(uint64_t entry, uint64_t boot_params_addr);

}  // namespace ionest
