// Work-around for broken SYSCALL from guest user mode on kvm_pvm (the software KVM on these hosts).
//
// The bug: a guest user-mode SYSCALL loads RIP from IA32_LSTAR but leaves the vCPU at CPL3 with the
// user CS/SS, so the next instruction fetch (kernel text, supervisor page) raises #PF in user mode
// ("segfault at entry_SYSCALL_64, error 15") and init dies.
//
// The work-around: make the guest kernel's #PF entry exit to the VMM. When the IDT's #PF handler
// begins with an instruction that only has to be skipped (endbr64, a NOP, or clac), its first byte
// is overwritten with 0x9B (fwait), which KVM's emulator cannot execute -> emulation-failure exit at
// the handler. The VMM then looks at the exception frame the CPU pushed (Intel SDM vol. 3 §6.14.2:
// error code, RIP, CS, RFLAGS, RSP, SS): if it is a user-mode fault at LSTAR with CR2 == LSTAR, the
// vCPU is rewritten to what SYSCALL architecturally produces (SDM vol. 2B SYSCALL: CS = STAR[47:32],
// SS = STAR[47:32]+8 at CPL0, RIP = LSTAR, RCX = return RIP, R11 = RFLAGS, RFLAGS &= ~FMASK; the
// user RSP is kept; KVM already did the RCX/R11/RFLAGS part); otherwise the original first instruction is completed in the VMM and the real
// #PF handler continues. The trap is re-armed whenever the IDT's #PF handler changes (early boot
// uses a different handler) or the kernel rewrites its first bytes (alternatives patching).
//
// Enabled by --syscall-workaround=on, or =auto (default) when the host KVM is kvm_pvm. Off on a KVM
// without the bug.
//
// Thread safety: MaybeArm/HandleTrap may be called concurrently from vCPU threads (internal lock).
#pragma once

#include <linux/kvm.h>

#include <atomic>
#include <cstdint>
#include <optional>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "vmm/emulation_completer.h"
#include "vmm/guest_memory.h"
#include "vmm/kvm.h"
#include "vmm/machine_options.h"

namespace ionest {

// SyscallWorkaroundMode and ParseSyscallWorkaroundMode: vmm/machine_options.h.
// kAuto -> whether the host KVM is kvm_pvm (/sys/module/kvm_pvm exists).
bool SyscallWorkaroundNeeded(SyscallWorkaroundMode mode);

// The exception frame pushed for a #PF in 64-bit mode (with error code).
struct PageFaultFrame {
  uint64_t error_code = 0;
  uint64_t rip = 0;
  uint64_t cs = 0;
  uint64_t rflags = 0;
  uint64_t rsp = 0;
  uint64_t ss = 0;
};

struct SyscallMsrs {
  uint64_t star = 0;
  uint64_t lstar = 0;
  uint64_t fmask = 0;
};

inline constexpr uint8_t kTrapByte = 0x9B;  // fwait: the emulator cannot execute it

// Is this #PF the broken SYSCALL (user-mode instruction fetch fault at LSTAR)?
bool IsBrokenSyscallFault(const PageFaultFrame& frame, uint64_t cr2, const SyscallMsrs& msrs);

// Rewrites regs/sregs to the state right after an architectural SYSCALL from the faulting user
// context. kvm_pvm already performed the register part of SYSCALL (RCX = return RIP, R11 = user
// RFLAGS, RFLAGS &= ~FMASK; measured: deriving R11 from the frame instead left user mode running with
// IF=0), so RCX/R11 are kept; what is fixed is the privilege switch: CS/SS from STAR at CPL0,
// RIP = LSTAR, RSP = the user RSP from the frame, RFLAGS masked by FMASK.
void RewriteToSyscallEntry(const PageFaultFrame& frame, const SyscallMsrs& msrs, kvm_regs& regs, kvm_sregs& sregs);

// The first instruction of a handler we may trap: its length and whether it is clac.
struct TrappableInstruction {
  size_t length = 0;
  bool is_clac = false;
};
// nullopt if the instruction is not one we can complete ourselves (then we do not arm).
std::optional<TrappableInstruction> ClassifyHandlerStart(const EmulationCompleter& decoder,
                                                         std::span<const uint8_t> bytes);

class SyscallWorkaround {
 public:
  SyscallWorkaround(GuestMemory& memory, const EmulationCompleter& decoder) : memory_(memory), decoder_(decoder) {}

  // Reads the vCPU's IDT #PF gate; (re)patches the handler when it changed or lost its trap byte.
  absl::Status MaybeArm(KvmVcpu& vcpu, const kvm_sregs& sregs) ABSL_LOCKS_EXCLUDED(mu_);

  // Called on an emulation failure at `regs.rip`. Returns false if it is not our trap.
  // On true, the vCPU state has been updated (SYSCALL entry, or #PF handler continuing).
  absl::StatusOr<bool> HandleTrap(KvmVcpu& vcpu, const kvm_regs& regs, const kvm_sregs& sregs)
      ABSL_LOCKS_EXCLUDED(mu_);

  uint64_t syscalls_rewritten() const { return syscalls_.load(); }
  uint64_t faults_passed_through() const { return faults_.load(); }
  uint64_t arm_count() const { return arms_.load(); }

 private:
  absl::StatusOr<uint64_t> GuestVirtToPhys(KvmVcpu& vcpu, uint64_t gva, size_t len);

  GuestMemory& memory_;
  const EmulationCompleter& decoder_;
  absl::Mutex mu_;
  uint64_t handler_gva_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t handler_gpa_ ABSL_GUARDED_BY(mu_) = 0;
  TrappableInstruction original_ ABSL_GUARDED_BY(mu_);
  std::atomic<uint64_t> syscalls_{0}, faults_{0}, arms_{0};
};

}  // namespace ionest
