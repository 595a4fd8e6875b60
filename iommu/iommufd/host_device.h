// One passthrough device as iommufd-side backends drive it: the VT-d nesting backend
// (vtd_nesting.h) and the virtio-iommu forwarding (viommu_forwarding.h). vmm/passthrough adapts
// VFIO devices to this (VFIO_DEVICE_ATTACH/DETACH_IOMMUFD_PT, ..._PASID); tests use doubles.
#pragma once

#include <cstdint>
#include <string>

#include "absl/status/status.h"

namespace ionest::iommufd {

class NestedDevice {
 public:
  virtual ~NestedDevice() = default;
  virtual const std::string& name() const = 0;
  virtual uint32_t dev_id() const = 0;  // iommufd device id
  virtual uint16_t rid() const = 0;     // the guest's requester id of the function
  virtual bool pri() const = 0;         // PRI capable: its nested HWPTs get the fault queue
  virtual absl::Status Attach(uint32_t pt_id) = 0;  // RID (replaces the current attachment)
  virtual absl::Status Detach() = 0;                // RID → the host's blocking domain
  virtual absl::Status AttachPasid(uint32_t pasid, uint32_t pt_id) = 0;
  virtual absl::Status DetachPasid(uint32_t pasid) = 0;
};

}  // namespace ionest::iommufd
