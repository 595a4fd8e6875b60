#include "vmm/kvm.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#include "absl/strings/str_format.h"
#include "vmm/kvm_internal.h"

namespace ionest {
namespace {

using kvm_internal::FlexBuffer;
using kvm_internal::kFlexHeader;
constexpr unsigned long kIoctlSetGsiRouting = _IOC(_IOC_WRITE, KVMIO, 0x6a, kFlexHeader);

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

}  // namespace ionest
