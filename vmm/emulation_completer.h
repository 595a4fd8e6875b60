// Completes instructions that KVM's instruction emulator failed on (KVM_EXIT_INTERNAL_ERROR /
// KVM_INTERNAL_ERROR_EMULATION with the instruction bytes).
//
// A pure function over the instruction bytes, a register snapshot and a guest-virtual reader: no
// KVM. Decoding uses Capstone. Handled: int3 (RIP past it, #BP to inject — a trap, Intel SDM vol. 3
// §6.5), fwait/wait (no x87 exceptions pending: a no-op), ldmxcsr m32 (new MXCSR; #GP for reserved
// bits, SDM vol. 2A LDMXCSR), clac/stac (RFLAGS.AC), popcnt r, r/m (SDM vol. 2B POPCNT flags),
// endbr64 and nop (no-ops).
//
// Thread safety: an EmulationCompleter is used by one vCPU thread (it owns a Capstone handle).
#pragma once

#include <linux/kvm.h>

#include <cstdint>
#include <functional>
#include <optional>
#include <span>
#include <string>

#include "absl/status/statusor.h"

namespace ionest {

struct VcpuSnapshot {
  kvm_regs regs{};
  uint64_t fs_base = 0;
  uint64_t gs_base = 0;
};

struct Completion {
  std::string mnemonic;     // Capstone mnemonic, e.g. "int3"
  std::string disassembly;  // "int3" / "ldmxcsr dword ptr [rsp]"
  kvm_regs regs{};          // registers after the instruction
  std::optional<uint8_t> inject_exception;  // vector to inject (no error code unless set below)
  std::optional<uint32_t> inject_error_code;
  std::optional<uint32_t> new_mxcsr;
};

// Reads guest-virtual memory (the caller translates with KVM_TRANSLATE).
using GuestVirtualReader = std::function<absl::Status(uint64_t gva, void* dst, size_t len)>;

class EmulationCompleter {
 public:
  EmulationCompleter();
  ~EmulationCompleter();
  EmulationCompleter(const EmulationCompleter&) = delete;
  EmulationCompleter& operator=(const EmulationCompleter&) = delete;

  // Unimplemented if the instruction is not one we complete (the caller then stops the VM with
  // a register dump); InvalidArgument if the bytes do not decode.
  absl::StatusOr<Completion> Complete(std::span<const uint8_t> bytes, const VcpuSnapshot& state,
                                      const GuestVirtualReader& read) const;

  // One-line disassembly of the first instruction at `rip`, or "(undecodable: xx xx ...)".
  std::string Disassemble(std::span<const uint8_t> bytes, uint64_t rip) const;

 private:
  size_t handle_ = 0;  // csh
};

// Multi-line register dump for the "stopped" report.
std::string FormatRegisters(const kvm_regs& r, const kvm_sregs* sregs);

}  // namespace ionest
