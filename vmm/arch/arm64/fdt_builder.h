// The arm64 machine's flattened device tree (Devicetree Specification v0.4; bindings under the kernel's
// Documentation/devicetree/bindings/), built with libfdt's sequential-write API. Pure (no KVM):
// fdt_builder_test.cc parses it back with libfdt node by node.
//
//   /                 "linux,dummy-virt", #address-cells = #size-cells = 2, interrupt-parent = GIC
//   /chosen           bootargs, stdout-path, linux,initrd-start/-end (Documentation/arch/arm64/booting.rst)
//   /aliases          serial0
//   /memory@...       the RAM
//   /cpus/cpu@N       "arm,arm-v8", reg = MPIDR affinity (= N, KVM's default MPIDR for vCPU N < 16),
//                     enable-method = "psci"
//   /psci             "arm,psci-1.0", "arm,psci-0.2", method = "hvc" (KVM's in-kernel PSCI)
//   /intc@...         "arm,gic-v3": distributor + one redistributor region (arm,gic-v3.yaml),
//     /its@...        "arm,gic-v3-its", msi-controller (when with_its)
//   /timer            "arm,armv8-timer", the 4 timer PPIs, level-high (arm,arch_timer.yaml)
//   /uart@...         "ns16550a", byte registers, clock-frequency, SPI (8250.yaml)
//   /pcie@...         "pci-host-ecam-generic" (host-generic-pci.yaml): ECAM, the 32- and 64-bit MMIO
//                     windows, msi-map of every requester ID to the same ITS DeviceID (when with_pcie)
//   /smmuv3@...       "arm,smmu-v3" (iommu/arm,smmu-v3.yaml): 128 KiB of registers, #iommu-cells = 1
//                     (StreamID = RID), dma-coherent, msi-parent = <ITS DeviceID>: its interrupts are
//                     MSIs; the PCIe host's iommu-map sends every requester to it (when with_smmuv3)
//     /dma@D,F        a bus-0 function that can stall (the dmatest functions with --iommu=smmuv3): reg = its
//                     PCI address (pci/pci.txt), dma-can-stall, pasid-num-bits (iommu/iommu.txt), which
//                     Linux's of_pci code attaches to the pci_dev and arm-smmu-v3 reads
//     /iommu@D,F      "virtio,pci-iommu", "pci1af4,1057" at the virtio-iommu's devfn, #iommu-cells = 1, and
//                     the host's iommu-map: every bus-0 requester but that one -> endpoint ID = RID
//                     (virtio/pci-iommu.yaml, pci/pci-iommu.yaml; when virtio_iommu_devfn is set)
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace ionest::arm64 {

inline constexpr uint32_t kGicPhandle = 1;
inline constexpr uint32_t kItsPhandle = 2;
inline constexpr uint32_t kVirtioIommuPhandle = 3;
inline constexpr uint32_t kSmmuPhandle = 4;
// Interrupt specifier cells of arm,gic-v3.yaml: <type number flags>, type 0 SPI / 1 PPI; flags 4 = level high.
inline constexpr uint32_t kGicFdtSpi = 0;
inline constexpr uint32_t kGicFdtPpi = 1;
inline constexpr uint32_t kIrqTypeLevelHigh = 4;

struct FdtConfig {
  int cpus = 1;
  uint64_t ram_base = 0;
  uint64_t ram_size = 0;
  std::string bootargs;
  uint64_t initrd_start = 0;  // initrd_end > initrd_start: /chosen gets linux,initrd-*
  uint64_t initrd_end = 0;
  bool with_its = true;
  bool with_pcie = false;  // needs with_its (MSIs through the ITS)
  std::optional<uint8_t> virtio_iommu_devfn;  // --iommu=virtio: the virtio-iommu function (needs with_pcie)
  bool with_smmuv3 = false;                   // --iommu=smmuv3 (needs with_pcie; not with virtio_iommu_devfn)
  // Bus-0 functions whose DMA may be stalled by the SMMUv3 (needs with_smmuv3), with their PASID width.
  struct StallingFunction {
    uint8_t devfn = 0;
    uint32_t pasid_bits = 0;
  };
  std::vector<StallingFunction> stalling_functions;
};

// The DTB (at most 2 MiB, booting.rst); errors only for configurations that cannot be described.
absl::StatusOr<std::vector<uint8_t>> BuildFdt(const FdtConfig& config);

}  // namespace ionest::arm64
