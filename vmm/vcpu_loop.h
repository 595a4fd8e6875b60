// The run loop of one vCPU thread: KVM_RUN and exit dispatch (port I/O and MMIO through the IoBus,
// IOAPIC EOIs, emulation failures completed with EmulationCompleter, the SYSCALL work-around trap,
// shutdown/system events).
//
// Thread safety: Run() executes on the vCPU's own thread; everything it touches (buses, devices,
// stats, SyscallWorkaround, the stop callback) is safe for concurrent vCPU threads. Kick() may be
// called from any thread.
#pragma once

#include <atomic>
#include <chrono>
#include <functional>
#include <string>

#include "devices/io_bus.h"
#include "vmm/emulation_completer.h"
#include "vmm/emulation_stats.h"
#include "vmm/guest_memory.h"
#include "vmm/kvm.h"
#include "vmm/stop_reason.h"
#include "vmm/syscall_workaround.h"

namespace ionest {

struct VcpuEnvironment {
  IoBus* pio = nullptr;
  IoBus* mmio = nullptr;
  GuestMemory* memory = nullptr;
  EmulationStats* stats = nullptr;
  SyscallWorkaround* syscall_workaround = nullptr;  // null when disabled
  std::function<void(uint8_t vector)> ioapic_eoi;   // KVM_EXIT_IOAPIC_EOI
  std::function<void(StopReason, const std::string& why)> request_stop;
  const std::atomic<bool>* stopping = nullptr;
};

class VcpuLoop {
 public:
  VcpuLoop(KvmVcpu& vcpu, VcpuEnvironment env) : vcpu_(vcpu), env_(std::move(env)) {}
  // Runs until the machine stops. Install the kick signal handler (InstallKickSignalHandler) first.
  void Run();
  // Makes a blocked KVM_RUN on `thread` return (immediate_exit + signal).
  static void Kick(KvmVcpu& vcpu, pthread_t thread);
  static void InstallKickSignalHandler();

 private:
  bool HandleIo();
  bool HandleMmio();
  bool HandleEmulationFailure();
  void Crash(const std::string& why);
  absl::Status ReadGuestVirtual(uint64_t gva, void* dst, size_t len);

  KvmVcpu& vcpu_;
  VcpuEnvironment env_;
  EmulationCompleter completer_;
  std::chrono::steady_clock::time_point last_arm_check_{};
};

}  // namespace ionest
