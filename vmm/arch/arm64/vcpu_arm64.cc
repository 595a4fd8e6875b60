#include "vmm/arch/arm64/vcpu_arm64.h"

#include <signal.h>

#include "absl/strings/str_format.h"
#include "vmm/exit_dispatch.h"

namespace ionest::arm64 {
namespace {

constexpr int kKickSignal = SIGUSR1;  // as the x86 loop (vmm/vcpu_loop.cc)
void NoopHandler(int) {}

}  // namespace

kvm_vcpu_init VcpuInitFor(const kvm_vcpu_init& preferred, int index) {
  kvm_vcpu_init init = preferred;
  init.features[0] |= 1u << KVM_ARM_VCPU_PSCI_0_2;
  if (index > 0) init.features[0] |= 1u << KVM_ARM_VCPU_POWER_OFF;
  return init;
}

absl::Status SetBootRegs(KvmVcpu& vcpu, uint64_t pc, uint64_t dtb) {
  if (absl::Status s = vcpu.SetOneReg(kRegX0, dtb); !s.ok()) return s;
  for (int i = 1; i <= 3; ++i) {
    if (absl::Status s = vcpu.SetOneReg(RegX(i), 0); !s.ok()) return s;
  }
  return vcpu.SetOneReg(kRegPc, pc);
}

std::string DescribeVcpu(const KvmVcpu& vcpu) {
  auto pc = vcpu.GetOneReg(kRegPc);
  auto pstate = vcpu.GetOneReg(kRegPstate);
  if (!pc.ok() || !pstate.ok()) return "";
  // PSTATE.M[3:0] (EL and SP selection), DAIF at bits 9:6.
  return absl::StrFormat("PC=%016x PSTATE=%08x (EL%d)", *pc, *pstate, (*pstate >> 2) & 3);
}

void VcpuLoop::InstallKickSignalHandler() {
  struct sigaction sa {};
  sa.sa_handler = NoopHandler;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = 0;  // no SA_RESTART: KVM_RUN must return EINTR
  sigaction(kKickSignal, &sa, nullptr);
}

void VcpuLoop::Kick(KvmVcpu& vcpu, pthread_t thread) {
  vcpu.RequestExit();
  pthread_kill(thread, kKickSignal);
}

void VcpuLoop::Crash(const std::string& why) {
  std::string state = DescribeVcpu(vcpu_);
  env_.request_stop(StopReason::kGuestCrash, state.empty() ? why : why + "\n  " + state);
}

void VcpuLoop::Run() {
  while (!env_.stopping->load()) {
    absl::Status s = vcpu_.Run();
    if (!s.ok()) {
      std::string why(s.message());
      // KVM_RUN fails with ENOSYS on a data abort outside the memslots that it cannot decode (no
      // syndrome: e.g. an MMIO access with writeback) unless KVM_CAP_ARM_NISV_TO_USER is enabled,
      // and with ENOEXEC when the guest executes from device memory (api.rst 4.10 KVM_RUN).
      if (absl::IsUnimplemented(s)) why += " (an MMIO access KVM could not decode: ESR_EL2.ISV = 0)";
      if (s.message().find("Exec format error") != absl::string_view::npos) {
        why += " (the guest executed from an address with no RAM behind it)";
      }
      std::string state = DescribeVcpu(vcpu_);
      env_.request_stop(StopReason::kHostError, state.empty() ? why : why + "\n  " + state);
      return;
    }
    kvm_run* run = vcpu_.run();
    switch (run->exit_reason) {
      case KVM_EXIT_INTR:
        break;
      case KVM_EXIT_MMIO:
        if (absl::Status d = DispatchMmio(*run, *env_.mmio); !d.ok()) {
          Crash(std::string(d.message()));
          return;
        }
        break;
      case KVM_EXIT_SYSTEM_EVENT:
        // PSCI SYSTEM_OFF / SYSTEM_RESET (api.rst 5, KVM_EXIT_SYSTEM_EVENT).
        switch (run->system_event.type) {
          case KVM_SYSTEM_EVENT_SHUTDOWN:
            env_.request_stop(StopReason::kPowerOff, "PSCI SYSTEM_OFF");
            break;
          case KVM_SYSTEM_EVENT_RESET:
            env_.request_stop(StopReason::kReset, "PSCI SYSTEM_RESET");
            break;
          case KVM_SYSTEM_EVENT_CRASH:
            Crash("system event: crash");
            break;
          default:
            Crash(absl::StrFormat("system event %u", run->system_event.type));
            break;
        }
        return;
      case KVM_EXIT_FAIL_ENTRY:
        env_.request_stop(StopReason::kHostError,
                          absl::StrFormat("vCPU %d: VM entry failed, reason 0x%x", vcpu_.id(),
                                          run->fail_entry.hardware_entry_failure_reason));
        return;
      case KVM_EXIT_INTERNAL_ERROR:
        Crash(absl::StrFormat("vCPU %d: KVM internal error, suberror %d", vcpu_.id(), run->internal.suberror));
        return;
      default:
        Crash(absl::StrFormat("vCPU %d: unexpected KVM exit reason %d", vcpu_.id(), run->exit_reason));
        return;
    }
  }
}

}  // namespace ionest::arm64
