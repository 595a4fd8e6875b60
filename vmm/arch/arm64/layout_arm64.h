// The arm64 machine's guest-physical memory map (docs/arm64.md). Close to QEMU's `virt` machine so
// that addresses look familiar; everything below kRamBase is MMIO (an access there exits to the VMM
// unless the in-kernel GIC claims it).
//
//   0x0800_0000  GICv3 distributor, 64 KiB       (KVM_VGIC_V3_DIST_SIZE)
//   0x0808_0000  GICv3 ITS, 128 KiB               (KVM_VGIC_V3_ITS_SIZE)
//   0x080A_0000  GICv3 redistributors, 128 KiB per vCPU (KVM_VGIC_V3_REDIST_SIZE; 8 vCPUs: 1 MiB)
//   0x0900_0000  16550 UART (ns16550a, byte registers), SPI 1
//   0x0905_0000  SMMUv3 (--iommu=smmuv3), 128 KiB: register pages 0 and 1 (IHI0070 §6.1)
//   0x1000_0000  PCIe 32-bit MMIO window (BARs), up to the ECAM
//   0x3F00_0000  PCIe ECAM, 16 MiB: buses 0-15 (PCIe 6.0 §7.2.2)
//   0x4000_0000  RAM (--memory), kernel at its start, initrd and DTB at its end
//   0x80_0000_0000  PCIe 64-bit MMIO window, 64 GiB
// Pure constants (no KVM); shared by the machine, the FDT builder and their tests.
#pragma once

#include <cstdint>

namespace ionest::arm64 {

inline constexpr uint64_t kGicDistBase = 0x08000000;
inline constexpr uint64_t kGicDistSize = 0x10000;
inline constexpr uint64_t kGicItsBase = 0x08080000;
inline constexpr uint64_t kGicItsSize = 0x20000;
inline constexpr uint64_t kGicRedistBase = 0x080A0000;
inline constexpr uint64_t kGicRedistSizePerCpu = 0x20000;  // RD_base + SGI_base frames
inline constexpr uint64_t kUartBase = 0x09000000;
inline constexpr uint64_t kUartSize = 0x1000;  // DT reg size; the 8 byte registers at its start
inline constexpr uint32_t kUartSpi = 1;         // GIC INTID 32 + 1
inline constexpr uint32_t kUartClockHz = 1843200;
inline constexpr uint64_t kSmmuBase = 0x09050000;
inline constexpr uint64_t kSmmuSize = 0x20000;
// The SMMU's own MSIs (event queue, GERROR, PRI queue, CMD_SYNC) reach the ITS with this DeviceID
// (the DT's msi-parent specifier), above every PCI requester ID of the 16 ECAM buses (< 0x1000) and
// within KVM's 16-bit vITS DeviceIDs.
inline constexpr uint16_t kSmmuItsDeviceId = 0x8000;
inline constexpr uint64_t kPcieMmio32Base = 0x10000000;
inline constexpr uint64_t kPcieMmio32Size = 0x2F000000;
inline constexpr uint64_t kPcieEcamBase = 0x3F000000;
inline constexpr uint64_t kPcieEcamSize = 16ull << 20;
inline constexpr uint64_t kPcieMmio64Base = 0x8000000000;
inline constexpr uint64_t kPcieMmio64Size = 0x1000000000;
inline constexpr uint64_t kRamBase = 0x40000000;
// KVM's default IPA space is 40 bits (KVM_CREATE_VM type 0, Documentation/virt/kvm/api.rst 4.2).
// RAM must end below the 64-bit PCIe window.
inline constexpr uint64_t kMaxRamSize = kPcieMmio64Base - kRamBase;

// GIC interrupt numbering (GICv3 architecture spec, IHI 0069, §2.2): SGIs 0-15, PPIs 16-31, SPIs 32+.
inline constexpr uint32_t kSpiBase = 32;
inline constexpr uint32_t kPpiBase = 16;
// Architected timer PPIs as KVM wires them (Documentation/devicetree/bindings/timer/arm,arch_timer.yaml
// order: secure phys, non-secure phys, virtual, hypervisor phys): INTIDs 29, 30, 27, 26.
inline constexpr uint32_t kTimerPpiSecurePhys = 13;
inline constexpr uint32_t kTimerPpiPhys = 14;
inline constexpr uint32_t kTimerPpiVirt = 11;
inline constexpr uint32_t kTimerPpiHypPhys = 10;

}  // namespace ionest::arm64
