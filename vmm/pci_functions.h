// The emulated PCI functions every machine (x86, arm64) plugs in from its MachineOptions:
// virtio-blk for --disk and the --device test functions (dmatest, pci-epf-test). Each is attached
// by PciHost::AddDevice with requester ID = devfn, the host's MSI sink and the DmaSpace its IOMMU
// provides. `vfio` functions are the passthrough code's (vmm/passthrough.h), skipped here.
// Called on the main thread during machine setup.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "devices/pci_device.h"
#include "devices/pci_host.h"
#include "devices/virtio_blk.h"
#include "devices/virtio_pci.h"
#include "vmm/machine_options.h"

namespace ionest {

// --disk: virtio-blk over `disk` at kVirtioBlkDevfn.
absl::Status AddVirtioBlk(PciHost& pci, const std::string& disk, std::unique_ptr<VirtioBlk>& blk,
                          std::unique_ptr<VirtioPciDevice>& transport);
// --device dmatest / pci-epf-test functions at their devfn (DeviceDevfn), appended to `out`.
absl::Status AddEmulatedTestDevices(PciHost& pci, const std::vector<TestDeviceSpec>& devices,
                                    std::vector<std::unique_ptr<PciDevice>>& out);

}  // namespace ionest
