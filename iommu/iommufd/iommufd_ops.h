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
#include <optional>
#include <span>
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

// IOMMU_HWPT_DATA_VTD_S1 (struct iommu_hwpt_vtd_s1): a guest's first-stage table nested on a
// nest-parent HWPT. Flags as the PASID entry's SRE / EAFE / WPE (VT-d §9.6).
struct VtdStage1 {
  uint64_t pgtbl_addr = 0;   // FLPTPTR (guest-physical, i.e. an IOVA of the nest parent)
  uint32_t addr_width = 48;  // 48 (4-level) or 57 (5-level)
  bool sre = false;
  bool eafe = false;
  bool wpe = false;
  bool operator==(const VtdStage1&) const = default;
};

// IOMMU_HWPT_ALLOC. `pt_id` is an IOAS (paging HWPT; with nest_parent the nesting stage 2) or,
// with `vtd_s1`, the nest-parent HWPT the nested HWPT sits on.
struct HwptAllocRequest {
  uint32_t dev_id = 0;
  uint32_t pt_id = 0;
  bool nest_parent = false;                // IOMMU_HWPT_ALLOC_NEST_PARENT
  std::optional<uint32_t> fault_id;        // IOMMU_HWPT_FAULT_ID_VALID + fault_id
  std::optional<VtdStage1> vtd_s1;         // data_type IOMMU_HWPT_DATA_VTD_S1, else DATA_NONE
  bool operator==(const HwptAllocRequest&) const = default;
};

// One entry of IOMMU_HWPT_INVALIDATE with IOMMU_HWPT_INVALIDATE_DATA_VTD_S1
// (struct iommu_hwpt_vtd_s1_invalidate): [addr, addr + npages*4K); addr 0 + npages UINT64_MAX is
// "everything". leaf = IOMMU_VTD_INV_FLAGS_LEAF (the guest's IH: only leaf entries changed).
struct VtdS1Invalidation {
  uint64_t addr = 0;
  uint64_t npages = 0;
  bool leaf = false;
  bool operator==(const VtdS1Invalidation&) const = default;
};

// What IOMMU_HWPT_INVALIDATE did: `done` entries were handled (the uAPI's entry_num on return,
// also on failure), `status` is the first failure (OK if all were handled).
struct InvalidateResult {
  absl::Status status;
  uint32_t done = 0;
};

// IOMMU_FAULT_QUEUE_ALLOC: the fault object's id (for IOMMU_HWPT_FAULT_ID_VALID) and its file
// descriptor, owned by the caller (close it after destroying the HWPTs that use it). Reading the fd
// yields struct iommu_hwpt_pgfault records; writing struct iommu_hwpt_page_response answers them.
struct FaultQueue {
  uint32_t id = 0;
  int fd = -1;
};

// struct iommu_hwpt_pgfault: one page request the host IOMMU took from a device, for an HWPT
// allocated with a fault_id.
struct HostPageFault {
  bool pasid_valid = false;  // IOMMU_PGFAULT_FLAGS_PASID_VALID
  bool last = false;         // IOMMU_PGFAULT_FLAGS_LAST_PAGE
  uint32_t dev_id = 0;
  uint32_t pasid = 0;
  uint32_t grpid = 0;        // PRG index (PCIe §10.4.1, 9 bits)
  uint32_t perm = 0;         // IOMMU_PGFAULT_PERM_READ 1, WRITE 2, EXEC 4, PRIV 8
  uint64_t addr = 0;
  uint32_t length = 0;
  uint32_t cookie = 0;
  bool operator==(const HostPageFault&) const = default;
};
inline constexpr uint32_t kPermRead = 1, kPermWrite = 2, kPermExec = 4, kPermPriv = 8;

// struct iommu_hwpt_page_response.
enum class HostResponseCode : uint32_t { kSuccess = 0, kInvalid = 1 };  // IOMMUFD_PAGE_RESP_*
struct HostPageResponse {
  uint32_t cookie = 0;
  HostResponseCode code = HostResponseCode::kSuccess;
  bool operator==(const HostPageResponse&) const = default;
};

class IommufdOps {
 public:
  virtual ~IommufdOps() = default;
  // The /dev/iommu file descriptor, passed to VFIO_DEVICE_BIND_IOMMUFD (-1 for a fake).
  virtual int fd() const = 0;
  virtual absl::StatusOr<uint32_t> AllocIoas() = 0;  // IOMMU_IOAS_ALLOC
  // IOMMU_IOAS_MAP with IOMMU_IOAS_MAP_FIXED_IOVA | READABLE (| WRITEABLE): pins [va, va+len).
  virtual absl::Status MapFixed(uint32_t ioas_id, uint64_t iova, void* va, uint64_t len, bool writeable) = 0;
  // IOMMU_IOAS_MAP with FIXED_IOVA and READABLE / WRITEABLE as given (at least one; the
  // virtio-iommu forwarding maps a guest's write-only MAP write-only). Default: MapFixed when
  // readable, else Unimplemented.
  virtual absl::Status MapFixedAccess(uint32_t ioas_id, uint64_t iova, void* va, uint64_t len, bool readable,
                                      bool writeable) {
    if (readable) return MapFixed(ioas_id, iova, va, len, writeable);
    return absl::UnimplementedError("IOMMU_IOAS_MAP without IOMMU_IOAS_MAP_READABLE is not supported here");
  }
  virtual absl::Status Unmap(uint32_t ioas_id, uint64_t iova, uint64_t len) = 0;  // IOMMU_IOAS_UNMAP
  // IOMMU_IOAS_IOVA_RANGES: the IOVA ranges the IOAS may map given every attached device's
  // reserved regions (e.g. the MSI window 0xfee00000-0xfeefffff on VT-d).
  virtual absl::StatusOr<std::vector<IovaRange>> AllowedIovaRanges(uint32_t ioas_id) = 0;
  virtual absl::StatusOr<HostIommuInfo> GetHwInfo(uint32_t dev_id) = 0;  // IOMMU_GET_HW_INFO
  virtual absl::Status Destroy(uint32_t object_id) = 0;                   // IOMMU_DESTROY

  // --- nesting and faults (issue 9) ---
  virtual absl::StatusOr<uint32_t> AllocHwpt(const HwptAllocRequest& request) = 0;  // IOMMU_HWPT_ALLOC
  // One IOMMU_HWPT_INVALIDATE call carrying every entry (data_type VTD_S1).
  virtual InvalidateResult InvalidateVtdS1(uint32_t hwpt_id, std::span<const VtdS1Invalidation> entries) = 0;
  virtual absl::StatusOr<FaultQueue> AllocFaultQueue() = 0;  // IOMMU_FAULT_QUEUE_ALLOC
  // Non-blocking read of up to `max` whole records from a fault queue fd (empty: nothing pending).
  virtual absl::StatusOr<std::vector<HostPageFault>> ReadFaults(int fault_fd, size_t max) = 0;
  // One write of every response (the kernel consumes whole records; a short write is an error).
  virtual absl::Status WriteResponses(int fault_fd, std::span<const HostPageResponse> responses) = 0;
};

}  // namespace ionest::iommufd
