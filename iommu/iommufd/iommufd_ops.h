// The host iommufd (/dev/iommu) as a narrow seam: one method per ioctl ionest issues. The real
// implementation (iommufd_kernel.h) wraps the ioctls of Linux's include/uapi/linux/iommufd.h; the
// test double (testing/fake_iommufd.h) models objects, mappings and reserved ranges in memory so
// IommufdBackend's logic is unit-tested without a kernel.
//
// Errors are absl::Status naming the ioctl, its arguments and errno, e.g. "IOMMU_IOAS_MAP ioas 2
// iova [0x0, +0x800000) ...: Cannot allocate memory (errno 12)"; the status code follows the errno
// (absl::ErrnoToStatusCode), so ENOENT is NotFound, EEXIST AlreadyExists, EINVAL InvalidArgument.
// Thread safety: none; the owner serialises calls.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace ionest::iommufd {

// Inclusive IOVA range (the uAPI's struct iommu_iova_range).
struct IovaRange {
  uint64_t start = 0;
  uint64_t last = 0;
  bool operator==(const IovaRange&) const = default;
};

// IOMMU_GET_HW_INFO of one bound device (include/uapi/linux/iommufd.h struct iommu_hw_info).
struct HostIommuInfo {
  uint32_t type = 0;                // IOMMU_HW_INFO_TYPE_NONE / _INTEL_VTD
  uint64_t out_capabilities = 0;    // IOMMU_HW_CAP_* (e.g. DIRTY_TRACKING)
  // VT-d (type INTEL_VTD): the host's CAP_REG / ECAP_REG and flags (IOMMU_HW_INFO_VTD_*).
  uint64_t vtd_cap = 0;
  uint64_t vtd_ecap = 0;
  uint32_t vtd_flags = 0;
  // Added with the kernel backend (last, so positional initialisers keep working):
  // out_max_pasid_log2, the host's PASID width (0: no PASID), which the nesting backend (issue 9)
  // needs next to the VT-d registers; 0 on kernels without the field.
  uint8_t max_pasid_log2 = 0;
  bool operator==(const HostIommuInfo&) const = default;  // added: tests and de-duplicated logs
};

class IommufdOps {
 public:
  virtual ~IommufdOps() = default;
  // The /dev/iommu file descriptor, passed to VFIO_DEVICE_BIND_IOMMUFD (-1 for a fake).
  virtual int fd() const = 0;
  virtual absl::StatusOr<uint32_t> AllocIoas() = 0;  // IOMMU_IOAS_ALLOC
  // IOMMU_IOAS_MAP with IOMMU_IOAS_MAP_FIXED_IOVA | READABLE (| WRITEABLE): pins [va, va+len).
  virtual absl::Status MapFixed(uint32_t ioas_id, uint64_t iova, void* va, uint64_t len, bool writeable) = 0;
  virtual absl::Status Unmap(uint32_t ioas_id, uint64_t iova, uint64_t len) = 0;  // IOMMU_IOAS_UNMAP
  // IOMMU_IOAS_IOVA_RANGES: the IOVA ranges the IOAS may map given every attached device's
  // reserved regions (e.g. the MSI window 0xfee00000-0xfeefffff on VT-d).
  virtual absl::StatusOr<std::vector<IovaRange>> AllowedIovaRanges(uint32_t ioas_id) = 0;
  virtual absl::StatusOr<HostIommuInfo> GetHwInfo(uint32_t dev_id) = 0;  // IOMMU_GET_HW_INFO
  virtual absl::Status Destroy(uint32_t object_id) = 0;                   // IOMMU_DESTROY
};

}  // namespace ionest::iommufd
