// The in-kernel GICv3 (+ ITS) of the arm64 machine, per Documentation/virt/kvm/devices/arm-vgic-v3.rst
// and arm-vgic-its.rst:
//   Create (before the vCPUs): KVM_CREATE_DEVICE(KVM_DEV_TYPE_ARM_VGIC_V3), the distributor and
//     redistributor base addresses (KVM_DEV_ARM_VGIC_GRP_ADDR), then the ITS device and its base;
//   Finalize (after every vCPU exists and was initialised, before the first KVM_RUN):
//     KVM_DEV_ARM_VGIC_CTRL_INIT on the GIC, then on the ITS.
// Also the SPI lines devices drive (KVM_IRQ_LINE, api.rst 4.25: irq_type SPI, INTID 32+).
//
// Thread safety: Create/Finalize on the main thread; SpiLine::SetLevel from any thread.
#pragma once

#include <functional>
#include <optional>

#include <cstdint>
#include <memory>

#include "absl/status/statusor.h"
#include "devices/irq_line.h"
#include "iommu/msi.h"
#include "vmm/kvm.h"

namespace ionest::arm64 {

class Gicv3 {
 public:
  // with_its: also an ITS (MSIs for PCI functions). Fails with the cause if this KVM has no GICv3.
  static absl::StatusOr<std::unique_ptr<Gicv3>> Create(KvmVm& vm, int cpus, bool with_its);
  absl::Status Finalize();
  bool has_its() const { return its_.valid(); }

 private:
  Gicv3(KvmVm& vm, Fd gic) : vm_(vm), gic_(std::move(gic)) {}
  KvmVm& vm_;
  Fd gic_;
  Fd its_;
};

// A GIC SPI driven with KVM_IRQ_LINE (level-sensitive, as the device tree declares it).
class SpiLine final : public IrqLine {
 public:
  SpiLine(KvmVm& vm, uint32_t spi) : vm_(vm), spi_(spi) {}
  void SetLevel(bool asserted) override;
  // The KVM_IRQ_LINE irq field for SPI `spi` (api.rst 4.25: bits 27:24 type 1 = SPI, 15:0 INTID).
  static uint32_t IrqField(uint32_t spi);

 private:
  KvmVm& vm_;
  const uint32_t spi_;
};

// Device MSIs into the in-kernel ITS: KVM_SIGNAL_MSI with DeviceID = requester ID (the device tree's
// msi-map is the identity). The message is the one the guest's ITS driver wrote into the function's
// MSI/MSI-X capability: address GITS_TRANSLATER (IHI 0069 §12.19.5), data the EventID.
class ItsMsiSink final : public MsiSink {
 public:
  explicit ItsMsiSink(KvmVm& vm) : vm_(vm) {}
  absl::Status SendMsi(const MsiMessage& msi) override;

 private:
  KvmVm& vm_;
};

// MSIs of PCI functions behind the SMMUv3 are memory writes like their DMA, so they are translated
// (IHI0070 §3.18: MSI writes are subject to translation): Linux maps the ITS doorbell at an IOVA of
// its IOMMU_RESV_SW_MSI window and programs that IOVA into MSI-X. `translate` gives the output
// address of a 4-byte write by `rid` at `iova`, or nothing when the SMMU faulted it (it recorded the
// event; the write is dropped). Called on the device's thread; the SMMU's own MSIs do not come here.
class TranslatedMsiSink final : public MsiSink {
 public:
  using Translate = std::function<std::optional<uint64_t>(uint16_t rid, uint64_t iova)>;
  TranslatedMsiSink(MsiSink& its, Translate translate) : its_(its), translate_(std::move(translate)) {}
  absl::Status SendMsi(const MsiMessage& msi) override;

 private:
  MsiSink& its_;
  Translate translate_;
};

}  // namespace ionest::arm64
