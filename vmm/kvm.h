// RAII wrappers over the KVM API: the system fd (/dev/kvm), a VM fd and vCPU fds.
// Shared calls are in kvm.cc; the architecture's own ioctls (declared under #if below) in
// kvm_x86.cc and arch/arm64/kvm_arm64.cc (CMake picks one, docs/arm64.md).
//
// Thread safety: KvmSystem/KvmVm are set up on the main thread before vCPUs start; VM ioctls used
// afterwards (SignalMsi, Translate via the vCPU) are safe from any thread (the kernel serialises).
// A KvmVcpu is used only by its own vCPU thread, except RequestExit(), which any thread may call.
#pragma once

#include <linux/kvm.h>

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace ionest {

// Owns a file descriptor; closes it on destruction.
class Fd {
 public:
  Fd() = default;
  explicit Fd(int fd) : fd_(fd) {}
  ~Fd();
  Fd(Fd&& o) noexcept : fd_(o.fd_) { o.fd_ = -1; }
  Fd& operator=(Fd&& o) noexcept;
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  int get() const { return fd_; }
  bool valid() const { return fd_ >= 0; }

 private:
  int fd_ = -1;
};

// ioctl that retries on EINTR and turns failures into a Status naming the request.
absl::StatusOr<int> Ioctl(int fd, unsigned long request, void* arg, const char* what);
absl::StatusOr<int> IoctlValue(int fd, unsigned long request, unsigned long arg, const char* what);

class KvmVm;

class KvmSystem {
 public:
  // Opens /dev/kvm (or `path`) and checks the API version. Errors name the cause and the fix
  // (missing device: load the kvm module; EACCES: add the user to group kvm or fix permissions).
  static absl::StatusOr<std::unique_ptr<KvmSystem>> Open(const std::string& path = "/dev/kvm");
  int CheckExtension(int cap) const;  // KVM_CHECK_EXTENSION on the system fd; 0 if absent
  absl::Status RequireExtension(int cap, const char* name) const;
  absl::StatusOr<int> VcpuMmapSize() const;
#if defined(__x86_64__)
  absl::StatusOr<std::vector<kvm_cpuid_entry2>> SupportedCpuid() const;
#endif
  absl::StatusOr<std::unique_ptr<KvmVm>> CreateVm();
  int fd() const { return fd_.get(); }

 private:
  explicit KvmSystem(Fd fd) : fd_(std::move(fd)) {}
  Fd fd_;
};

class KvmVcpu;

class KvmVm {
 public:
  KvmVm(KvmSystem& sys, Fd fd) : sys_(sys), fd_(std::move(fd)) {}
  int CheckExtension(int cap) const;  // on the VM fd (falls back to the system fd)
  absl::Status EnableCap(uint32_t cap, uint64_t arg0 = 0);
  absl::Status SetUserMemoryRegion(uint32_t slot, uint64_t gpa, uint64_t size, void* host);
#if defined(__x86_64__)
  absl::Status SetTssAddr(uint64_t addr);
  absl::Status SetIdentityMapAddr(uint64_t addr);
#endif
#if defined(__aarch64__)
  // KVM_ARM_PREFERRED_TARGET (Documentation/virt/kvm/api.rst 4.83).
  absl::StatusOr<kvm_vcpu_init> ArmPreferredTarget();
  // KVM_CREATE_DEVICE (api.rst 4.79): the new device's fd.
  absl::StatusOr<Fd> CreateDevice(uint32_t type);
  // KVM_IRQ_LINE (api.rst 4.25) with the arm64 irq encoding (type, vcpu index, irq id).
  absl::Status IrqLine(uint32_t irq, bool level);
  // KVM_SIGNAL_MSI with KVM_MSI_VALID_DEVID (api.rst 4.71: the GICv3 ITS needs the DeviceID).
  absl::StatusOr<int> SignalMsiWithDevid(uint64_t address, uint32_t data, uint32_t devid);
#endif
  // KVM_SIGNAL_MSI; returns >0 delivered, 0 blocked by the guest (masked/no destination).
  absl::StatusOr<int> SignalMsi(uint64_t address, uint32_t data);
  absl::StatusOr<std::unique_ptr<KvmVcpu>> CreateVcpu(int id);
  // Replaces the GSI routing table (KVM_SET_GSI_ROUTING).
  absl::Status SetGsiRouting(const std::vector<kvm_irq_routing_entry>& entries);
  int fd() const { return fd_.get(); }
  KvmSystem& system() { return sys_; }

 private:
  KvmSystem& sys_;
  Fd fd_;
};

class KvmVcpu {
 public:
  ~KvmVcpu();
  KvmVcpu(const KvmVcpu&) = delete;
  KvmVcpu& operator=(const KvmVcpu&) = delete;

  int id() const { return id_; }
  kvm_run* run() const { return run_; }
  size_t run_size() const { return run_size_; }
  // KVM_RUN; EINTR/EAGAIN are reported as OK with run()->exit_reason == KVM_EXIT_INTR.
  absl::Status Run();
  // Makes the current or next KVM_RUN return (immediate_exit); call from any thread, then signal.
  void RequestExit() { __atomic_store_n(&run_->immediate_exit, 1, __ATOMIC_SEQ_CST); }

#if defined(__x86_64__)
  absl::StatusOr<kvm_regs> GetRegs() const;
  absl::Status SetRegs(const kvm_regs& regs);
  absl::StatusOr<kvm_sregs> GetSregs() const;
  absl::Status SetSregs(const kvm_sregs& sregs);
  absl::StatusOr<kvm_fpu> GetFpu() const;
  absl::Status SetFpu(const kvm_fpu& fpu);
  absl::Status SetCpuid(const std::vector<kvm_cpuid_entry2>& entries);
  absl::Status SetMsrs(const std::vector<kvm_msr_entry>& msrs);
  absl::StatusOr<uint64_t> GetMsr(uint32_t index) const;
  absl::StatusOr<kvm_vcpu_events> GetEvents() const;
  absl::Status SetEvents(const kvm_vcpu_events& events);
  // GVA -> GPA through the guest's current page tables (KVM_TRANSLATE).
  absl::StatusOr<uint64_t> Translate(uint64_t gva) const;
#endif
#if defined(__aarch64__)
  // KVM_ARM_VCPU_INIT (api.rst 4.82).
  absl::Status ArmVcpuInit(const kvm_vcpu_init& init);
  // KVM_GET_ONE_REG / KVM_SET_ONE_REG (api.rst 4.68/4.69) of a 64-bit register.
  absl::StatusOr<uint64_t> GetOneReg(uint64_t id) const;
  absl::Status SetOneReg(uint64_t id, uint64_t value);
#endif

 private:
  friend class KvmVm;
  KvmVcpu(int id, Fd fd, kvm_run* run, size_t run_size) : id_(id), fd_(std::move(fd)), run_(run), run_size_(run_size) {}
  int id_;
  Fd fd_;
  kvm_run* run_;
  size_t run_size_;
};

}  // namespace ionest
