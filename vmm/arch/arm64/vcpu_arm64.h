// arm64 vCPUs: register ids, KVM_ARM_VCPU_INIT features, the entry state booting.rst asks for, and
// the run loop of one vCPU thread (KVM_RUN; MMIO exits go through the same DispatchMmio as x86,
// vmm/exit_dispatch.h; PSCI SYSTEM_OFF/SYSTEM_RESET arrive as KVM_EXIT_SYSTEM_EVENT).
//
// Thread safety: VcpuLoop::Run on the vCPU's own thread; Kick from any thread.
#pragma once

#include <linux/kvm.h>
#include <pthread.h>

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>

#include "absl/status/status.h"
#include "devices/io_bus.h"
#include "vmm/kvm.h"
#include "vmm/stop_reason.h"

namespace ionest::arm64 {

// KVM_REG_ARM_CORE register ids (api.rst 4.68, "arm64 core/FP-SIMD registers":
// offset into struct kvm_regs in 32-bit words).
constexpr uint64_t CoreRegId(size_t offset_bytes) {
  return KVM_REG_ARM64 | KVM_REG_SIZE_U64 | KVM_REG_ARM_CORE | (offset_bytes / sizeof(uint32_t));
}
inline constexpr uint64_t kRegPc = CoreRegId(offsetof(kvm_regs, regs.pc));
inline constexpr uint64_t kRegPstate = CoreRegId(offsetof(kvm_regs, regs.pstate));
inline constexpr uint64_t kRegX0 = CoreRegId(offsetof(kvm_regs, regs.regs[0]));
inline constexpr uint64_t RegX(int n) { return CoreRegId(offsetof(kvm_regs, regs.regs[0]) + 8 * n); }

// Features for KVM_ARM_VCPU_INIT of vCPU `index`: PSCI 0.2 (in-kernel PSCI: CPU_ON, SYSTEM_OFF, ...);
// secondaries start powered off and are brought up by the guest's PSCI CPU_ON (booting.rst §5).
kvm_vcpu_init VcpuInitFor(const kvm_vcpu_init& preferred, int index);

// Primary vCPU entry (booting.rst §4 "Call the kernel image"): PC = Image start, x0 = DTB, x1-x3 = 0;
// KVM's reset state already gives EL1h, DAIF masked, MMU and caches off.
absl::Status SetBootRegs(KvmVcpu& vcpu, uint64_t pc, uint64_t dtb);

// "PC=... PSTATE=..." of a stopped vCPU (empty if unreadable).
std::string DescribeVcpu(const KvmVcpu& vcpu);

struct VcpuEnvironment {
  IoBus* mmio = nullptr;
  std::function<void(StopReason, const std::string& why)> request_stop;
  const std::atomic<bool>* stopping = nullptr;
};

class VcpuLoop {
 public:
  VcpuLoop(KvmVcpu& vcpu, VcpuEnvironment env) : vcpu_(vcpu), env_(std::move(env)) {}
  void Run();
  static void Kick(KvmVcpu& vcpu, pthread_t thread);
  static void InstallKickSignalHandler();

 private:
  void Crash(const std::string& why);
  KvmVcpu& vcpu_;
  VcpuEnvironment env_;
};

}  // namespace ionest::arm64
