#include "vmm/kvm.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#include "absl/strings/str_format.h"

namespace ionest {

Fd::~Fd() {
  if (fd_ >= 0) close(fd_);
}

Fd& Fd::operator=(Fd&& o) noexcept {
  if (this != &o) {
    if (fd_ >= 0) close(fd_);
    fd_ = o.fd_;
    o.fd_ = -1;
  }
  return *this;
}

absl::StatusOr<int> Ioctl(int fd, unsigned long request, void* arg, const char* what) {
  int r;
  do {
    r = ioctl(fd, request, arg);
  } while (r < 0 && errno == EINTR);
  if (r < 0) return absl::ErrnoToStatus(errno, absl::StrFormat("ioctl %s", what));
  return r;
}

absl::StatusOr<int> IoctlValue(int fd, unsigned long request, unsigned long arg, const char* what) {
  int r;
  do {
    r = ioctl(fd, request, arg);
  } while (r < 0 && errno == EINTR);
  if (r < 0) return absl::ErrnoToStatus(errno, absl::StrFormat("ioctl %s", what));
  return r;
}

absl::StatusOr<std::unique_ptr<KvmSystem>> KvmSystem::Open(const std::string& path) {
  int fd = open(path.c_str(), O_RDWR | O_CLOEXEC);
  if (fd < 0) {
    int err = errno;
    if (err == ENOENT) {
      return absl::NotFoundError(absl::StrFormat(
          "%s does not exist: KVM is not available (load the kvm module, or run on a host with KVM)", path));
    }
    if (err == EACCES || err == EPERM) {
      return absl::PermissionDeniedError(absl::StrFormat(
          "no permission to open %s: add your user to the 'kvm' group or make the device readable/writable",
          path));
    }
    return absl::ErrnoToStatus(err, absl::StrFormat("cannot open %s", path));
  }
  Fd owned(fd);
  auto version = IoctlValue(fd, KVM_GET_API_VERSION, 0, "KVM_GET_API_VERSION");
  if (!version.ok()) return version.status();
  if (*version != KVM_API_VERSION) {
    return absl::FailedPreconditionError(
        absl::StrFormat("%s: KVM API version %d, expected %d", path, *version, KVM_API_VERSION));
  }
  return std::unique_ptr<KvmSystem>(new KvmSystem(std::move(owned)));
}

int KvmSystem::CheckExtension(int cap) const {
  int r = ioctl(fd_.get(), KVM_CHECK_EXTENSION, cap);
  return r < 0 ? 0 : r;
}

absl::Status KvmSystem::RequireExtension(int cap, const char* name) const {
  if (CheckExtension(cap) <= 0) {
    return absl::FailedPreconditionError(
        absl::StrFormat("this KVM lacks %s, which ionest requires (use a newer host kernel)", name));
  }
  return absl::OkStatus();
}

absl::StatusOr<int> KvmSystem::VcpuMmapSize() const {
  return IoctlValue(fd_.get(), KVM_GET_VCPU_MMAP_SIZE, 0, "KVM_GET_VCPU_MMAP_SIZE");
}

absl::StatusOr<std::vector<kvm_cpuid_entry2>> KvmSystem::SupportedCpuid() const {
  for (uint32_t n = 64; n <= 4096; n *= 2) {
    std::vector<uint8_t> buf(sizeof(kvm_cpuid2) + n * sizeof(kvm_cpuid_entry2));
    auto* c = reinterpret_cast<kvm_cpuid2*>(buf.data());
    c->nent = n;
    int r = ioctl(fd_.get(), KVM_GET_SUPPORTED_CPUID, c);
    if (r == 0) return std::vector<kvm_cpuid_entry2>(c->entries, c->entries + c->nent);
    if (errno != E2BIG) return absl::ErrnoToStatus(errno, "ioctl KVM_GET_SUPPORTED_CPUID");
  }
  return absl::ResourceExhaustedError("KVM_GET_SUPPORTED_CPUID: too many entries");
}

absl::StatusOr<std::unique_ptr<KvmVm>> KvmSystem::CreateVm() {
  auto fd = IoctlValue(fd_.get(), KVM_CREATE_VM, 0, "KVM_CREATE_VM");
  if (!fd.ok()) return fd.status();
  return std::make_unique<KvmVm>(*this, Fd(*fd));
}

int KvmVm::CheckExtension(int cap) const {
  int r = ioctl(fd_.get(), KVM_CHECK_EXTENSION, cap);
  if (r < 0) return sys_.CheckExtension(cap);
  return r;
}

absl::Status KvmVm::EnableCap(uint32_t cap, uint64_t arg0) {
  kvm_enable_cap c{};
  c.cap = cap;
  c.args[0] = arg0;
  auto r = Ioctl(fd_.get(), KVM_ENABLE_CAP, &c, "KVM_ENABLE_CAP");
  if (!r.ok()) return absl::Status(r.status().code(), absl::StrFormat("%s (cap %u)", r.status().message(), cap));
  return absl::OkStatus();
}

absl::Status KvmVm::SetUserMemoryRegion(uint32_t slot, uint64_t gpa, uint64_t size, void* host) {
  kvm_userspace_memory_region r{};
  r.slot = slot;
  r.guest_phys_addr = gpa;
  r.memory_size = size;
  r.userspace_addr = reinterpret_cast<uint64_t>(host);
  auto s = Ioctl(fd_.get(), KVM_SET_USER_MEMORY_REGION, &r, "KVM_SET_USER_MEMORY_REGION");
  if (!s.ok()) {
    return absl::Status(s.status().code(), absl::StrFormat("%s (slot %u gpa 0x%x size 0x%x)",
                                                           s.status().message(), slot, gpa, size));
  }
  return absl::OkStatus();
}

absl::Status KvmVm::SetTssAddr(uint64_t addr) {
  return IoctlValue(fd_.get(), KVM_SET_TSS_ADDR, addr, "KVM_SET_TSS_ADDR").status();
}

absl::Status KvmVm::SetIdentityMapAddr(uint64_t addr) {
  return Ioctl(fd_.get(), KVM_SET_IDENTITY_MAP_ADDR, &addr, "KVM_SET_IDENTITY_MAP_ADDR").status();
}

absl::StatusOr<int> KvmVm::SignalMsi(uint64_t address, uint32_t data) {
  kvm_msi msi{};
  msi.address_lo = static_cast<uint32_t>(address);
  msi.address_hi = static_cast<uint32_t>(address >> 32);
  msi.data = data;
  return Ioctl(fd_.get(), KVM_SIGNAL_MSI, &msi, "KVM_SIGNAL_MSI");
}

absl::StatusOr<std::unique_ptr<KvmVcpu>> KvmVm::CreateVcpu(int id) {
  auto fd = IoctlValue(fd_.get(), KVM_CREATE_VCPU, id, "KVM_CREATE_VCPU");
  if (!fd.ok()) return fd.status();
  Fd owned(*fd);
  auto size = sys_.VcpuMmapSize();
  if (!size.ok()) return size.status();
  void* p = mmap(nullptr, *size, PROT_READ | PROT_WRITE, MAP_SHARED, owned.get(), 0);
  if (p == MAP_FAILED) return absl::ErrnoToStatus(errno, "mmap of kvm_run");
  return std::unique_ptr<KvmVcpu>(new KvmVcpu(id, std::move(owned), static_cast<kvm_run*>(p), *size));
}

KvmVcpu::~KvmVcpu() {
  if (run_) munmap(run_, run_size_);
}

absl::Status KvmVcpu::Run() {
  int r = ioctl(fd_.get(), KVM_RUN, 0);
  if (r < 0) {
    if (errno == EINTR || errno == EAGAIN) {
      run_->exit_reason = KVM_EXIT_INTR;
      return absl::OkStatus();
    }
    return absl::ErrnoToStatus(errno, absl::StrFormat("KVM_RUN on vCPU %d", id_));
  }
  return absl::OkStatus();
}

absl::StatusOr<kvm_regs> KvmVcpu::GetRegs() const {
  kvm_regs r{};
  auto s = Ioctl(fd_.get(), KVM_GET_REGS, &r, "KVM_GET_REGS");
  if (!s.ok()) return s.status();
  return r;
}
absl::Status KvmVcpu::SetRegs(const kvm_regs& regs) {
  kvm_regs r = regs;
  return Ioctl(fd_.get(), KVM_SET_REGS, &r, "KVM_SET_REGS").status();
}
absl::StatusOr<kvm_sregs> KvmVcpu::GetSregs() const {
  kvm_sregs r{};
  auto s = Ioctl(fd_.get(), KVM_GET_SREGS, &r, "KVM_GET_SREGS");
  if (!s.ok()) return s.status();
  return r;
}
absl::Status KvmVcpu::SetSregs(const kvm_sregs& sregs) {
  kvm_sregs r = sregs;
  return Ioctl(fd_.get(), KVM_SET_SREGS, &r, "KVM_SET_SREGS").status();
}
absl::StatusOr<kvm_fpu> KvmVcpu::GetFpu() const {
  kvm_fpu r{};
  auto s = Ioctl(fd_.get(), KVM_GET_FPU, &r, "KVM_GET_FPU");
  if (!s.ok()) return s.status();
  return r;
}
absl::Status KvmVcpu::SetFpu(const kvm_fpu& fpu) {
  kvm_fpu r = fpu;
  return Ioctl(fd_.get(), KVM_SET_FPU, &r, "KVM_SET_FPU").status();
}

absl::Status KvmVcpu::SetCpuid(const std::vector<kvm_cpuid_entry2>& entries) {
  std::vector<uint8_t> buf(sizeof(kvm_cpuid2) + entries.size() * sizeof(kvm_cpuid_entry2));
  auto* c = reinterpret_cast<kvm_cpuid2*>(buf.data());
  c->nent = entries.size();
  std::copy(entries.begin(), entries.end(), c->entries);
  return Ioctl(fd_.get(), KVM_SET_CPUID2, c, "KVM_SET_CPUID2").status();
}

absl::Status KvmVcpu::SetMsrs(const std::vector<kvm_msr_entry>& msrs) {
  std::vector<uint8_t> buf(sizeof(kvm_msrs) + msrs.size() * sizeof(kvm_msr_entry));
  auto* m = reinterpret_cast<kvm_msrs*>(buf.data());
  m->nmsrs = msrs.size();
  std::copy(msrs.begin(), msrs.end(), m->entries);
  auto r = Ioctl(fd_.get(), KVM_SET_MSRS, m, "KVM_SET_MSRS");
  if (!r.ok()) return r.status();
  if (static_cast<size_t>(*r) != msrs.size()) {
    return absl::InternalError(absl::StrFormat("KVM_SET_MSRS set %d of %d MSRs (first failing 0x%x)", *r,
                                               msrs.size(), msrs[*r].index));
  }
  return absl::OkStatus();
}

absl::StatusOr<uint64_t> KvmVcpu::GetMsr(uint32_t index) const {
  struct {
    kvm_msrs hdr;
    kvm_msr_entry entry;
  } m{};
  m.hdr.nmsrs = 1;
  m.entry.index = index;
  auto r = Ioctl(fd_.get(), KVM_GET_MSRS, &m, "KVM_GET_MSRS");
  if (!r.ok()) return r.status();
  if (*r != 1) return absl::NotFoundError(absl::StrFormat("MSR 0x%x not readable", index));
  return m.entry.data;
}

absl::StatusOr<kvm_vcpu_events> KvmVcpu::GetEvents() const {
  kvm_vcpu_events e{};
  auto s = Ioctl(fd_.get(), KVM_GET_VCPU_EVENTS, &e, "KVM_GET_VCPU_EVENTS");
  if (!s.ok()) return s.status();
  return e;
}
absl::Status KvmVcpu::SetEvents(const kvm_vcpu_events& events) {
  kvm_vcpu_events e = events;
  return Ioctl(fd_.get(), KVM_SET_VCPU_EVENTS, &e, "KVM_SET_VCPU_EVENTS").status();
}

absl::StatusOr<uint64_t> KvmVcpu::Translate(uint64_t gva) const {
  kvm_translation t{};
  t.linear_address = gva;
  auto s = Ioctl(fd_.get(), KVM_TRANSLATE, &t, "KVM_TRANSLATE");
  if (!s.ok()) return s.status();
  if (!t.valid) return absl::NotFoundError(absl::StrFormat("guest address 0x%x is not mapped", gva));
  return t.physical_address;
}

}  // namespace ionest
