// A passthrough function's VFIO_DEVICE_ATTACH/DETACH_IOMMUFD_PT for tests and fuzzers of the
// iommufd-side backends (NestedDevice, host_device.h), checked as the kernel does against a
// FakeIommufd: the target must exist, and the IOAS it is attached to is marked attached (so
// IOMMU_DESTROY of it is EBUSY). `attached` 0 = detached (the host's blocking domain).
#pragma once

#include <cerrno>
#include <string>
#include <utility>

#include "iommu/iommufd/host_device.h"
#include "iommu/iommufd/iommufd_kernel.h"
#include "iommu/iommufd/testing/fake_iommufd.h"

namespace ionest::iommufd_testing {

class FakeHostDevice final : public iommufd::NestedDevice {
 public:
  FakeHostDevice(FakeIommufd& fake, uint16_t rid, std::string name = "vfio@02.0")
      : fake_(fake), rid_(rid), name_(std::move(name)) {}
  const std::string& name() const override { return name_; }
  uint32_t dev_id() const override { return 1; }
  uint16_t rid() const override { return rid_; }
  bool pri() const override { return false; }
  absl::Status Attach(uint32_t pt) override {
    if (fail_attach) return iommufd::IommufdErrno(fail_errno, "VFIO_DEVICE_ATTACH_IOMMUFD_PT");
    if (!fake_.ioas_exists(pt)) return iommufd::IommufdErrno(ENOENT, "VFIO_DEVICE_ATTACH_IOMMUFD_PT");
    Set(pt);
    return absl::OkStatus();
  }
  absl::Status Detach() override {
    Set(0);
    return absl::OkStatus();
  }
  absl::Status AttachPasid(uint32_t, uint32_t) override { return absl::UnimplementedError("no PASID"); }
  absl::Status DetachPasid(uint32_t) override { return absl::UnimplementedError("no PASID"); }

  uint32_t attached = 0;
  bool fail_attach = false;  // every Attach fails with fail_errno while set
  int fail_errno = EINVAL;

 private:
  void Set(uint32_t pt) {
    if (attached) fake_.MarkAttached(attached, false);
    if (pt) fake_.MarkAttached(pt, true);
    attached = pt;
  }
  FakeIommufd& fake_;
  const uint16_t rid_;
  const std::string name_;
};

}  // namespace ionest::iommufd_testing
