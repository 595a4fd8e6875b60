// A VM's passthrough devices and their iommufd context (issue 8, no vIOMMU): opens /dev/iommu,
// allocates the IOAS over guest RAM, and for each `--device vfio,...` locates the host function,
// opens its VFIO cdev, binds it to the iommufd, attaches it to the IOAS, maps guest RAM (after the
// first attach, when the host's reserved IOVA ranges are known) and builds the guest-facing
// VfioPciDevice. Used by the Machine and by the passthrough test bed (the same code path).
//
// Failure at any step releases everything opened so far (devices closed, so unbound and detached;
// IOAS unmapped and destroyed; /dev/iommu closed) and returns one error naming the device, the
// cause and the fix. Destruction releases devices first, then the IOAS.
//
// Thread safety: Open and the destructor on the machine's main thread; devices as PciDevice.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "devices/vfio/vfio_locate.h"
#include "devices/vfio/vfio_pci_device.h"
#include "iommu/iommufd/iommufd_backend.h"
#include "iommu/iommufd/viommu_forwarding.h"
#include "iommu/iommufd/vtd_nesting.h"

namespace ionest {

// Where Passthrough gets its host objects. Default: the real host (vfio_locate + the kernel
// iommufd); tests substitute doubles (e.g. a loopback VFIO device over an emulated function and a
// fake iommufd) to run the whole stack without a kernel.
struct PassthroughHost {
  std::function<absl::StatusOr<vfio::LocatedDevice>(const vfio::VfioDeviceSpec&)> locate;
  std::function<absl::StatusOr<std::unique_ptr<iommufd::IommufdOps>>()> open_iommufd;
  std::function<absl::StatusOr<std::unique_ptr<vfio::VfioDeviceOps>>(const vfio::LocatedDevice&)> open_device;
  std::function<absl::Status(const absl::Status&, const vfio::LocatedDevice&)> explain_bind_error;
  static PassthroughHost Real(const vfio::LocateOptions& options = {});
};

struct PassthroughRequest {
  vfio::VfioDeviceSpec spec;
  std::string name;  // for messages and the PCI device name, e.g. "vfio@02.0"
};

class Passthrough {
 public:
  static absl::StatusOr<std::unique_ptr<Passthrough>> Open(const std::vector<PassthroughRequest>& requests,
                                                          std::vector<iommufd::RamRange> ram,
                                                          const PassthroughHost& host = PassthroughHost::Real());
  ~Passthrough();
  Passthrough(const Passthrough&) = delete;
  Passthrough& operator=(const Passthrough&) = delete;

  size_t size() const { return devices_.size(); }
  vfio::VfioPciDevice& device(size_t i) { return *devices_[i].device; }
  const vfio::LocatedDevice& located(size_t i) const { return devices_[i].located; }
  iommufd::IommufdBackend& backend() { return *backend_; }
  // Start-up log lines: the iommufd context and one line per device (host BDF, cdev, dev ID).
  std::string Describe() const;
  // Resets every device through VFIO (guest reset, VMM exit): no device keeps DMA or interrupts
  // running for a guest that is gone.
  void ResetAll();

  // --iommu=vtd (issue 9): hands the devices to the VT-d nesting backend, which binds their guest
  // VT-d state to the host (nest parent over the IOAS, nested first stages, shadows, faults).
  // `rids[i]` is the guest requester id of device(i). Call once, after Open; the backend is
  // destroyed first when this object is (devices back on the IOAS, HWPTs destroyed). `iommu` and
  // `guest` must outlive this object.
  absl::Status EnableVtdNesting(vtd::VtdIommu& iommu, PhysMemory& guest, const std::vector<uint16_t>& rids,
                                iommufd::VtdNestingOptions options = {});
  iommufd::VtdNestingBackend* nesting() { return nesting_.get(); }

  // --iommu=virtio (issue 12 item 5): the functions become host endpoints of `viommu`
  // (VirtioIommu::SetEndpointHost): its ATTACH/DETACH/MAP/UNMAP/bypass/reset for them are forwarded
  // to the host (iommufd/viommu_forwarding.h). `endpoints[i]` is device(i)'s endpoint ID (its
  // requester id). Call once, after Open; released first when this object is (functions back on
  // the IOAS, per-domain IOASes destroyed). `viommu` must outlive this object.
  absl::Status EnableVirtioIommuForwarding(VirtioIommu& viommu, const std::vector<uint16_t>& endpoints);
  iommufd::ViommuForwarder* viommu_forwarding() { return forwarding_.get(); }

 private:
  struct Entry {
    vfio::LocatedDevice located;
    uint32_t dev_id = 0;
    std::unique_ptr<vfio::VfioPciDevice> device;
  };
  Passthrough() = default;
  absl::Status OpenOne(const PassthroughRequest& request, const PassthroughHost& host);

  std::unique_ptr<iommufd::IommufdBackend> backend_;
  std::vector<Entry> devices_;  // destroyed before backend_ (explicitly, in the destructor)
  std::vector<std::unique_ptr<iommufd::NestedDevice>> nested_devices_;
  std::unique_ptr<iommufd::VtdNestingBackend> nesting_;  // destroyed first
  std::unique_ptr<iommufd::ViommuForwarder> forwarding_;  // destroyed first as well
};

}  // namespace ionest
