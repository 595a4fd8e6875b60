#include "vmm/kvm.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#include "absl/strings/str_format.h"

namespace ionest {
namespace {

// <linux/kvm.h> declares its flexible arrays with __DECLARE_FLEX_ARRAY, whose empty struct has size
// 1 in C++: sizeof(kvm_cpuid2)/kvm_msrs/kvm_irq_routing and the entries' offsets differ from the
// kernel's C layout, and so do the ioctl numbers (they encode the size). Use the C layout: an 8-byte
// header followed by the entries, with ioctl numbers built for that 8-byte header.
constexpr size_t kFlexHeader = 8;
constexpr unsigned long kIoctlGetSupportedCpuid = _IOC(_IOC_READ | _IOC_WRITE, KVMIO, 0x05, kFlexHeader);
constexpr unsigned long kIoctlSetCpuid2 = _IOC(_IOC_WRITE, KVMIO, 0x90, kFlexHeader);
constexpr unsigned long kIoctlGetMsrs = _IOC(_IOC_READ | _IOC_WRITE, KVMIO, 0x88, kFlexHeader);
constexpr unsigned long kIoctlSetMsrs = _IOC(_IOC_WRITE, KVMIO, 0x89, kFlexHeader);
constexpr unsigned long kIoctlSetGsiRouting = _IOC(_IOC_WRITE, KVMIO, 0x6a, kFlexHeader);

// Header word pair + entries, 8-byte aligned.
template <typename Entry>
struct FlexBuffer {
  explicit FlexBuffer(size_t n) : words((kFlexHeader + n * sizeof(Entry) + 7) / 8, 0) {}
  uint32_t* header() { return reinterpret_cast<uint32_t*>(words.data()); }
  Entry* entries() { return reinterpret_cast<Entry*>(reinterpret_cast<uint8_t*>(words.data()) + kFlexHeader); }
  void* data() { return words.data(); }
  std::vector<uint64_t> words;
};

}  // namespace

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
    FlexBuffer<kvm_cpuid_entry2> buf(n);
    buf.header()[0] = n;
    int r = ioctl(fd_.get(), kIoctlGetSupportedCpuid, buf.data());
    if (r == 0) {
      uint32_t got = std::min(buf.header()[0], n);
      return std::vector<kvm_cpuid_entry2>(buf.entries(), buf.entries() + got);
    }
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

absl::Status KvmVm::SetGsiRouting(const std::vector<kvm_irq_routing_entry>& entries) {
  FlexBuffer<kvm_irq_routing_entry> buf(entries.size());
  buf.header()[0] = entries.size();
  std::copy(entries.begin(), entries.end(), buf.entries());
  return Ioctl(fd_.get(), kIoctlSetGsiRouting, buf.data(), "KVM_SET_GSI_ROUTING").status();
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
  FlexBuffer<kvm_cpuid_entry2> buf(entries.size());
  buf.header()[0] = entries.size();
  std::copy(entries.begin(), entries.end(), buf.entries());
  return Ioctl(fd_.get(), kIoctlSetCpuid2, buf.data(), "KVM_SET_CPUID2").status();
}

absl::Status KvmVcpu::SetMsrs(const std::vector<kvm_msr_entry>& msrs) {
  FlexBuffer<kvm_msr_entry> buf(msrs.size());
  buf.header()[0] = msrs.size();
  std::copy(msrs.begin(), msrs.end(), buf.entries());
  auto r = Ioctl(fd_.get(), kIoctlSetMsrs, buf.data(), "KVM_SET_MSRS");
  if (!r.ok()) return r.status();
  if (static_cast<size_t>(*r) != msrs.size()) {
    return absl::InternalError(absl::StrFormat("KVM_SET_MSRS set %d of %d MSRs (first failing 0x%x)", *r,
                                               msrs.size(), msrs[*r].index));
  }
  return absl::OkStatus();
}

absl::StatusOr<uint64_t> KvmVcpu::GetMsr(uint32_t index) const {
  FlexBuffer<kvm_msr_entry> buf(1);
  buf.header()[0] = 1;
  buf.entries()[0].index = index;
  auto r = Ioctl(fd_.get(), kIoctlGetMsrs, buf.data(), "KVM_GET_MSRS");
  if (!r.ok()) return r.status();
  if (*r != 1) return absl::NotFoundError(absl::StrFormat("MSR 0x%x not readable", index));
  return buf.entries()[0].data;
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
