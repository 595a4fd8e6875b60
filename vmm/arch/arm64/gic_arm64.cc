#include "vmm/arch/arm64/gic_arm64.h"

#include <cstdio>

#include "absl/strings/str_format.h"
#include "vmm/arch/arm64/layout_arm64.h"

namespace ionest::arm64 {
namespace {

absl::Status SetAttr(int fd, uint32_t group, uint64_t attr, const void* value, const char* what) {
  kvm_device_attr a{};
  a.group = group;
  a.attr = attr;
  a.addr = reinterpret_cast<uint64_t>(value);
  auto r = Ioctl(fd, KVM_SET_DEVICE_ATTR, &a, "KVM_SET_DEVICE_ATTR");
  if (!r.ok()) return absl::Status(r.status().code(), absl::StrFormat("%s: %s", what, r.status().message()));
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::unique_ptr<Gicv3>> Gicv3::Create(KvmVm& vm, int cpus, bool with_its) {
  auto gic = vm.CreateDevice(KVM_DEV_TYPE_ARM_VGIC_V3);
  if (!gic.ok()) {
    return absl::FailedPreconditionError(absl::StrFormat(
        "this KVM cannot create an in-kernel GICv3 (%s): the host needs a GICv3 (QEMU: -M virt,gic-version=3)",
        gic.status().message()));
  }
  std::unique_ptr<Gicv3> g(new Gicv3(vm, std::move(*gic)));
  // arm-vgic-v3.rst, KVM_DEV_ARM_VGIC_GRP_ADDR: 64 KiB aligned guest-physical bases. The legacy
  // single redistributor region covers 128 KiB per vCPU, in vCPU order.
  const uint64_t dist = kGicDistBase, redist = kGicRedistBase;
  if (absl::Status s = SetAttr(g->gic_.get(), KVM_DEV_ARM_VGIC_GRP_ADDR, KVM_VGIC_V3_ADDR_TYPE_DIST, &dist,
                               "GICv3 distributor base");
      !s.ok()) {
    return s;
  }
  if (absl::Status s = SetAttr(g->gic_.get(), KVM_DEV_ARM_VGIC_GRP_ADDR, KVM_VGIC_V3_ADDR_TYPE_REDIST, &redist,
                               "GICv3 redistributor base");
      !s.ok()) {
    return s;
  }
  (void)cpus;  // the redistributor count follows the vCPUs created before Finalize
  if (with_its) {
    auto its = vm.CreateDevice(KVM_DEV_TYPE_ARM_VGIC_ITS);
    if (!its.ok()) {
      return absl::FailedPreconditionError(
          absl::StrFormat("this KVM cannot create a GICv3 ITS: %s", its.status().message()));
    }
    g->its_ = std::move(*its);
    // arm-vgic-its.rst, KVM_DEV_ARM_VGIC_GRP_ADDR / KVM_VGIC_ITS_ADDR_TYPE: 64 KiB aligned, 128 KiB.
    const uint64_t its_base = kGicItsBase;
    if (absl::Status s = SetAttr(g->its_.get(), KVM_DEV_ARM_VGIC_GRP_ADDR, KVM_VGIC_ITS_ADDR_TYPE, &its_base,
                                 "GICv3 ITS base");
        !s.ok()) {
      return s;
    }
  }
  return g;
}

absl::Status Gicv3::Finalize() {
  // arm-vgic-v3.rst KVM_DEV_ARM_VGIC_GRP_CTRL / KVM_DEV_ARM_VGIC_CTRL_INIT: "Must be called after all
  // VCPUs have been created"; then the ITS (arm-vgic-its.rst, same attribute).
  if (absl::Status s = SetAttr(gic_.get(), KVM_DEV_ARM_VGIC_GRP_CTRL, KVM_DEV_ARM_VGIC_CTRL_INIT, nullptr,
                               "GICv3 KVM_DEV_ARM_VGIC_CTRL_INIT");
      !s.ok()) {
    return s;
  }
  if (its_.valid()) {
    return SetAttr(its_.get(), KVM_DEV_ARM_VGIC_GRP_CTRL, KVM_DEV_ARM_VGIC_CTRL_INIT, nullptr,
                   "GICv3 ITS KVM_DEV_ARM_VGIC_CTRL_INIT");
  }
  return absl::OkStatus();
}

uint32_t SpiLine::IrqField(uint32_t spi) {
  return (KVM_ARM_IRQ_TYPE_SPI << KVM_ARM_IRQ_TYPE_SHIFT) | ((kSpiBase + spi) & KVM_ARM_IRQ_NUM_MASK);
}

void SpiLine::SetLevel(bool asserted) {
  absl::Status s = vm_.IrqLine(IrqField(spi_), asserted);
  if (!s.ok()) std::fprintf(stderr, "ionest: SPI %u: %s\n", spi_, std::string(s.message()).c_str());
}

absl::Status ItsMsiSink::SendMsi(const MsiMessage& msi) {
  // 0: the ITS dropped it (no mapping for the DeviceID/EventID yet), as hardware would.
  return vm_.SignalMsiWithDevid(msi.address, msi.data, msi.requester_id).status();
}

absl::Status TranslatedMsiSink::SendMsi(const MsiMessage& msi) {
  const std::optional<uint64_t> out = translate_(msi.requester_id, msi.address);
  if (!out) return absl::OkStatus();  // faulted: the SMMU recorded the event
  MsiMessage translated = msi;
  translated.address = *out;
  return its_.SendMsi(translated);
}

}  // namespace ionest::arm64
