// The VM's iommufd context without a vIOMMU (issue 8): one /dev/iommu, one IOAS holding guest RAM
// at its guest-physical addresses, passthrough devices attached to that IOAS.
//
// Order of work (what the kernel requires): Create() allocates the IOAS; each passthrough device
// is bound (VFIO_DEVICE_BIND_IOMMUFD) and attached (VFIO_DEVICE_ATTACH_IOMMUFD_PT) by its owner,
// which then calls OnDeviceAttached(dev_id). The first call maps every guest RAM region with
// IOMMU_IOAS_MAP (fixed IOVA = GPA), after checking it against IOMMU_IOAS_IOVA_RANGES: guest RAM
// that overlaps a reserved range (the MSI window) is an error naming both ranges. Later devices
// are checked against the same ranges. The host IOMMU's capabilities (IOMMU_GET_HW_INFO) are kept
// per device for the nesting backend (issue 9).
//
// Destruction unmaps everything and destroys the IOAS; devices must be detached first (their
// owner does that). Thread safety: none; the machine calls it on its main thread during setup and
// teardown.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "iommu/iommufd/iommufd_ops.h"

namespace ionest::iommufd {

// A guest RAM range to map: guest-physical base, host virtual address, length (page aligned).
struct RamRange {
  uint64_t gpa = 0;
  void* host = nullptr;
  uint64_t size = 0;
};

// The range of `ram` (sorted by gpa, non-overlapping) holding all of [gpa, gpa+len), or null.
const RamRange* FindRamRange(const std::vector<RamRange>& ram, uint64_t gpa, uint64_t len);

class IommufdBackend {
 public:
  // Allocates the IOAS. `ram` is mapped at the first OnDeviceAttached.
  static absl::StatusOr<std::unique_ptr<IommufdBackend>> Create(std::unique_ptr<IommufdOps> ops,
                                                                std::vector<RamRange> ram);
  ~IommufdBackend();
  IommufdBackend(const IommufdBackend&) = delete;
  IommufdBackend& operator=(const IommufdBackend&) = delete;

  int fd() const { return ops_->fd(); }
  uint32_t ioas_id() const { return ioas_id_; }
  IommufdOps& ops() { return *ops_; }

  // After the device `dev_id` (named `name` in messages) was attached to ioas_id(): reads its
  // host IOMMU info, checks guest RAM against the allowed IOVA ranges, maps guest RAM on the first
  // call. On error nothing of this call stays mapped.
  absl::Status OnDeviceAttached(uint32_t dev_id, const std::string& name);
  // Before a device is detached/unbound: forgets its info (mappings stay for the other devices).
  void OnDeviceDetaching(uint32_t dev_id);

  bool ram_mapped() const { return mapped_; }
  const std::vector<RamRange>& ram() const { return ram_; }
  // Reserved IOVA ranges (complement of the allowed ranges) as read by the last successful
  // OnDeviceAttached; for logs and docs.
  const std::vector<IovaRange>& reserved_ranges() const { return reserved_; }
  const std::map<uint32_t, HostIommuInfo>& host_info() const { return info_; }
  // One line for the start-up log: IOAS id, bytes mapped, reserved ranges, host IOMMU type/caps.
  std::string Describe() const;

 private:
  IommufdBackend(std::unique_ptr<IommufdOps> ops, std::vector<RamRange> ram)
      : ops_(std::move(ops)), ram_(std::move(ram)) {}
  absl::Status CheckRamAllowed(const std::vector<IovaRange>& allowed, const std::string& name) const;

  std::unique_ptr<IommufdOps> ops_;
  std::vector<RamRange> ram_;
  uint32_t ioas_id_ = 0;
  bool mapped_ = false;
  std::vector<IovaRange> reserved_;
  std::map<uint32_t, HostIommuInfo> info_;
};

}  // namespace ionest::iommufd
