// The x86 ioctls of the KVM wrappers (vmm/kvm.h, under #if defined(__x86_64__)); moved unchanged
// from kvm.cc. The shared calls stay in kvm.cc, the arm64 ones are in arch/arm64/kvm_arm64.cc.
#include <errno.h>
#include <sys/ioctl.h>

#include <algorithm>

#include "absl/strings/str_format.h"
#include "vmm/kvm.h"
#include "vmm/kvm_internal.h"

namespace ionest {
namespace {

using kvm_internal::FlexBuffer;
using kvm_internal::kFlexHeader;
constexpr unsigned long kIoctlGetSupportedCpuid = _IOC(_IOC_READ | _IOC_WRITE, KVMIO, 0x05, kFlexHeader);
constexpr unsigned long kIoctlSetCpuid2 = _IOC(_IOC_WRITE, KVMIO, 0x90, kFlexHeader);
constexpr unsigned long kIoctlGetMsrs = _IOC(_IOC_READ | _IOC_WRITE, KVMIO, 0x88, kFlexHeader);
constexpr unsigned long kIoctlSetMsrs = _IOC(_IOC_WRITE, KVMIO, 0x89, kFlexHeader);

}  // namespace

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

absl::Status KvmVm::SetTssAddr(uint64_t addr) {
  return IoctlValue(fd_.get(), KVM_SET_TSS_ADDR, addr, "KVM_SET_TSS_ADDR").status();
}

absl::Status KvmVm::SetIdentityMapAddr(uint64_t addr) {
  return Ioctl(fd_.get(), KVM_SET_IDENTITY_MAP_ADDR, &addr, "KVM_SET_IDENTITY_MAP_ADDR").status();
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
