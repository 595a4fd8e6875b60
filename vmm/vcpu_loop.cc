#include "vmm/vcpu_loop.h"

#include <pthread.h>
#include <signal.h>

#include <cstring>

#include "absl/strings/str_format.h"
#include "vmm/exit_dispatch.h"

namespace ionest {
namespace {

constexpr int kKickSignal = SIGUSR1;
constexpr auto kArmCheckInterval = std::chrono::milliseconds(20);

void NoopHandler(int) {}

}  // namespace

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

void VcpuLoop::Crash(const std::string& why) { env_.request_stop(StopReason::kGuestCrash, why); }

absl::Status VcpuLoop::ReadGuestVirtual(uint64_t gva, void* dst, size_t len) {
  auto* out = static_cast<uint8_t*>(dst);
  while (len) {
    size_t chunk = std::min<size_t>(len, 4096 - (gva & 0xfff));
    auto gpa = vcpu_.Translate(gva);
    if (!gpa.ok()) return gpa.status();
    absl::Status s = env_.memory->Read(*gpa, out, chunk);
    if (!s.ok()) return s;
    gva += chunk;
    out += chunk;
    len -= chunk;
  }
  return absl::OkStatus();
}

bool VcpuLoop::HandleIo() {
  absl::Status s = DispatchPortIo(*vcpu_.run(), vcpu_.run_size(), *env_.pio);
  if (!s.ok()) Crash(std::string(s.message()));
  return s.ok();
}

bool VcpuLoop::HandleMmio() {
  absl::Status s = DispatchMmio(*vcpu_.run(), *env_.mmio);
  if (!s.ok()) Crash(std::string(s.message()));
  return s.ok();
}

bool VcpuLoop::HandleEmulationFailure() {
  kvm_run* run = vcpu_.run();
  auto regs = vcpu_.GetRegs();
  auto sregs = vcpu_.GetSregs();
  if (!regs.ok() || !sregs.ok()) {
    env_.request_stop(StopReason::kHostError, "cannot read vCPU registers after an emulation failure");
    return false;
  }
  uint8_t bytes[15] = {};
  size_t nbytes = 0;
  const auto& ef = run->emulation_failure;
  if (ef.ndata >= 2 && (ef.flags & KVM_INTERNAL_ERROR_EMULATION_FLAG_INSTRUCTION_BYTES) && ef.insn_size > 0) {
    nbytes = std::min<size_t>(ef.insn_size, sizeof(bytes));
    std::memcpy(bytes, ef.insn_bytes, nbytes);
  } else if (ReadGuestVirtual(regs->rip, bytes, sizeof(bytes)).ok()) {
    nbytes = sizeof(bytes);
  }
  std::span<const uint8_t> insn(bytes, nbytes);

  if (env_.syscall_workaround) {
    auto handled = env_.syscall_workaround->HandleTrap(vcpu_, *regs, *sregs);
    if (!handled.ok()) {
      Crash("SYSCALL work-around: " + std::string(handled.status().message()));
      return false;
    }
    if (*handled) return true;
  }

  VcpuSnapshot snap;
  snap.regs = *regs;
  snap.fs_base = sregs->fs.base;
  snap.gs_base = sregs->gs.base;
  auto done = completer_.Complete(insn, snap, [this](uint64_t gva, void* dst, size_t len) {
    return ReadGuestVirtual(gva, dst, len);
  });
  if (!done.ok()) {
    Crash(absl::StrFormat("vCPU %d: emulation failure not completed: %s\n  instruction: %s\n%s", vcpu_.id(),
                          done.status().message(), completer_.Disassemble(insn, regs->rip),
                          FormatRegisters(*regs, &*sregs)));
    return false;
  }
  absl::Status s = vcpu_.SetRegs(done->regs);
  if (s.ok() && done->new_mxcsr) {
    auto fpu = vcpu_.GetFpu();
    if (fpu.ok()) {
      fpu->mxcsr = *done->new_mxcsr;
      s = vcpu_.SetFpu(*fpu);
    } else {
      s = fpu.status();
    }
  }
  if (s.ok() && done->inject_exception) {
    auto ev = vcpu_.GetEvents();
    if (ev.ok()) {
      ev->exception.injected = 1;
      ev->exception.nr = *done->inject_exception;
      ev->exception.has_error_code = done->inject_error_code.has_value();
      ev->exception.error_code = done->inject_error_code.value_or(0);
      ev->flags = 0;  // leave NMI/SIPI/shadow state alone
      s = vcpu_.SetEvents(*ev);
    } else {
      s = ev.status();
    }
  }
  if (!s.ok()) {
    env_.request_stop(StopReason::kHostError, "completing '" + done->disassembly + "': " + std::string(s.message()));
    return false;
  }
  env_.stats->Add(done->mnemonic);
  return true;
}

void VcpuLoop::Run() {
  while (!env_.stopping->load()) {
    if (env_.syscall_workaround) {
      auto now = std::chrono::steady_clock::now();
      if (now - last_arm_check_ >= kArmCheckInterval) {
        last_arm_check_ = now;
        auto sregs = vcpu_.GetSregs();
        if (sregs.ok()) {
          absl::Status s = env_.syscall_workaround->MaybeArm(vcpu_, *sregs);
          if (!s.ok()) {
            env_.request_stop(StopReason::kHostError, "arming SYSCALL work-around: " + std::string(s.message()));
            return;
          }
        }
      }
    }
    absl::Status s = vcpu_.Run();
    if (!s.ok()) {
      env_.request_stop(StopReason::kHostError, std::string(s.message()));
      return;
    }
    kvm_run* run = vcpu_.run();
    switch (run->exit_reason) {
      case KVM_EXIT_INTR:
        break;
      case KVM_EXIT_IO:
        if (!HandleIo()) return;
        break;
      case KVM_EXIT_MMIO:
        if (!HandleMmio()) return;
        break;
      case KVM_EXIT_IOAPIC_EOI:
        if (env_.ioapic_eoi) env_.ioapic_eoi(run->eoi.vector);
        break;
      case KVM_EXIT_HLT:
        break;  // with the in-kernel LAPIC HLT does not exit; tolerate it
      case KVM_EXIT_SHUTDOWN: {
        auto regs = vcpu_.GetRegs();
        auto sregs = vcpu_.GetSregs();
        Crash(absl::StrFormat("vCPU %d: triple fault (KVM_EXIT_SHUTDOWN)\n%s", vcpu_.id(),
                              regs.ok() && sregs.ok() ? FormatRegisters(*regs, &*sregs) : ""));
        return;
      }
      case KVM_EXIT_SYSTEM_EVENT:
        switch (run->system_event.type) {
          case KVM_SYSTEM_EVENT_SHUTDOWN: env_.request_stop(StopReason::kPowerOff, "system event: shutdown"); break;
          case KVM_SYSTEM_EVENT_RESET: env_.request_stop(StopReason::kReset, "system event: reset"); break;
          default: Crash(absl::StrFormat("system event %d", run->system_event.type)); break;
        }
        return;
      case KVM_EXIT_INTERNAL_ERROR:
        if (run->internal.suberror == KVM_INTERNAL_ERROR_EMULATION) {
          if (!HandleEmulationFailure()) return;
          break;
        }
        {
          auto regs = vcpu_.GetRegs();
          auto sregs = vcpu_.GetSregs();
          Crash(absl::StrFormat("vCPU %d: KVM internal error, suberror %d\n%s", vcpu_.id(), run->internal.suberror,
                                regs.ok() && sregs.ok() ? FormatRegisters(*regs, &*sregs) : ""));
        }
        return;
      case KVM_EXIT_FAIL_ENTRY:
        env_.request_stop(StopReason::kHostError,
                          absl::StrFormat("vCPU %d: VM entry failed, reason 0x%x", vcpu_.id(),
                                          run->fail_entry.hardware_entry_failure_reason));
        return;
      default:
        Crash(absl::StrFormat("vCPU %d: unexpected KVM exit reason %d", vcpu_.id(), run->exit_reason));
        return;
    }
  }
}

}  // namespace ionest
