// The arm64 ioctls of the KVM wrappers (vmm/kvm.h, under #if defined(__aarch64__)). References are to
// Documentation/virt/kvm/api.rst of Linux 6.12.
#include <errno.h>
#include <sys/ioctl.h>

#include "absl/strings/str_format.h"
#include "vmm/kvm.h"

namespace ionest {

absl::StatusOr<kvm_vcpu_init> KvmVm::ArmPreferredTarget() {
  kvm_vcpu_init init{};
  auto r = Ioctl(fd_.get(), KVM_ARM_PREFERRED_TARGET, &init, "KVM_ARM_PREFERRED_TARGET");
  if (!r.ok()) return r.status();
  return init;
}

absl::StatusOr<Fd> KvmVm::CreateDevice(uint32_t type) {
  kvm_create_device d{};
  d.type = type;
  auto r = Ioctl(fd_.get(), KVM_CREATE_DEVICE, &d, "KVM_CREATE_DEVICE");
  if (!r.ok()) {
    return absl::Status(r.status().code(), absl::StrFormat("%s (device type %u)", r.status().message(), type));
  }
  return Fd(static_cast<int>(d.fd));
}

absl::Status KvmVm::IrqLine(uint32_t irq, bool level) {
  kvm_irq_level l{};
  l.irq = irq;
  l.level = level ? 1 : 0;
  return Ioctl(fd_.get(), KVM_IRQ_LINE, &l, "KVM_IRQ_LINE").status();
}

absl::StatusOr<int> KvmVm::SignalMsiWithDevid(uint64_t address, uint32_t data, uint32_t devid) {
  kvm_msi msi{};
  msi.address_lo = static_cast<uint32_t>(address);
  msi.address_hi = static_cast<uint32_t>(address >> 32);
  msi.data = data;
  msi.flags = KVM_MSI_VALID_DEVID;
  msi.devid = devid;
  return Ioctl(fd_.get(), KVM_SIGNAL_MSI, &msi, "KVM_SIGNAL_MSI");
}

absl::Status KvmVcpu::ArmVcpuInit(const kvm_vcpu_init& init) {
  kvm_vcpu_init i = init;
  return Ioctl(fd_.get(), KVM_ARM_VCPU_INIT, &i, "KVM_ARM_VCPU_INIT").status();
}

absl::StatusOr<uint64_t> KvmVcpu::GetOneReg(uint64_t id) const {
  uint64_t value = 0;
  kvm_one_reg reg{id, reinterpret_cast<uint64_t>(&value)};
  auto r = Ioctl(fd_.get(), KVM_GET_ONE_REG, &reg, "KVM_GET_ONE_REG");
  if (!r.ok()) return absl::Status(r.status().code(), absl::StrFormat("%s (0x%x)", r.status().message(), id));
  return value;
}

absl::Status KvmVcpu::SetOneReg(uint64_t id, uint64_t value) {
  kvm_one_reg reg{id, reinterpret_cast<uint64_t>(&value)};
  auto r = Ioctl(fd_.get(), KVM_SET_ONE_REG, &reg, "KVM_SET_ONE_REG");
  if (!r.ok()) return absl::Status(r.status().code(), absl::StrFormat("%s (0x%x)", r.status().message(), id));
  return absl::OkStatus();
}

}  // namespace ionest
