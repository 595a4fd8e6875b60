// The emulated PCI functions every machine (x86, arm64) plugs in from its MachineOptions:
// virtio-blk for --disk, the --device test functions (dmatest, pci-epf-test) and, with
// --iommu=virtio, the virtio-iommu. Each is attached
// by PciHost::AddDevice with requester ID = devfn, the host's MSI sink and the DmaSpace its IOMMU
// provides. `vfio` functions are the passthrough code's (vmm/passthrough.h): AddPassthroughFunctions.
// Called on the main thread during machine setup.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "iommu/dma_space.h"
#include "iommu/virtio/virtio_iommu.h"
#include "devices/pci_device.h"
#include "devices/pci_host.h"
#include "devices/virtio_blk.h"
#include "devices/virtio_pci.h"
#include "vmm/guest_memory.h"
#include "vmm/machine_options.h"
#include "vmm/passthrough.h"

namespace ionest {

// --disk: virtio-blk over `disk` at kVirtioBlkDevfn.
absl::Status AddVirtioBlk(PciHost& pci, const std::string& disk, std::unique_ptr<VirtioBlk>& blk,
                          std::unique_ptr<VirtioPciDevice>& transport);
// --device dmatest / pci-epf-test functions at their devfn (DeviceDevfn), appended to `out`.
absl::Status AddEmulatedTestDevices(PciHost& pci, const std::vector<TestDeviceSpec>& devices,
                                    std::vector<std::unique_ptr<PciDevice>>& out);

// --device vfio (x86 and arm64): one PassthroughRequest per vfio spec, in option order, named
// "vfio@DD.F" after its devfn (DeviceDevfn), and that devfn.
struct PassthroughPlan {
  std::vector<PassthroughRequest> requests;
  std::vector<uint8_t> devfns;
};
PassthroughPlan PlanPassthrough(const std::vector<TestDeviceSpec>& devices);
// Guest RAM as the IOAS maps it (IOVA = guest-physical address).
std::vector<iommufd::RamRange> PassthroughRam(const GuestMemory& memory);
// Opens the plan's functions over `memory` (Passthrough::Open), lets `bind` attach them to a vIOMMU
// (x86 --iommu=vtd: the VT-d nesting backend; may be null), plugs each into `pci` at its devfn and
// prints "ionest: <Passthrough::Describe()>" on stderr. Null result (and nothing opened) when the
// plan is empty.
using PassthroughBinder = std::function<absl::Status(Passthrough&, const PassthroughPlan&)>;
absl::StatusOr<std::unique_ptr<Passthrough>> AddPassthroughFunctions(PciHost& pci, const GuestMemory& memory,
                                                                     const PassthroughPlan& plan,
                                                                     const PassthroughBinder& bind = nullptr);
// --iommu=virtio (x86 and arm64): the binder making the plan's functions host endpoints of
// `viommu` (endpoint ID = requester ID = devfn on bus 0), their MAP/UNMAP forwarded to host IOASes.
PassthroughBinder VirtioIommuBinder(VirtioIommu& viommu);

// --iommu=virtio: the device, the DmaSpaceProvider of every requester (all but the virtio-iommu
// function itself, whose queues are guest-physical: an IOMMU does not translate its own accesses),
// and its PCI transport at kVirtioIommuDevfn. Endpoint ID = requester ID on bus 0 (ACPI VIOT on x86,
// the PCIe host's iommu-map on arm64 say so).
struct VirtioIommuFunction {
  std::unique_ptr<VirtioIommu> device;
  std::unique_ptr<DmaSpaceProvider> provider;
  std::unique_ptr<VirtioPciDevice> transport;
};
// Before the PciHost (whose DmaSpaceProvider is `provider`). [msi_start, msi_end] is the interrupt
// controller's MSI doorbell, reported by PROBE as the RESV_MEM MSI region (virtio 1.2 §5.13.6.8.1):
// the guest leaves it unmapped and MSIs bypass translation there.
absl::StatusOr<VirtioIommuFunction> CreateVirtioIommu(PhysMemory& memory, bool boot_bypass, uint64_t msi_start,
                                                      uint64_t msi_end);
// After: the PCI function at kVirtioIommuDevfn, its event queue kicked when a fault is recorded.
absl::Status AttachVirtioIommu(PciHost& pci, VirtioIommuFunction& function);

}  // namespace ionest
