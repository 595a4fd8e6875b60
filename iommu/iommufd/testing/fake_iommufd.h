// In-memory IommufdOps for tests: IOAS objects, fixed mappings, reserved ranges and per-device
// host IOMMU info, with the kernel's rules and errnos (drivers/iommu/iommufd/io_pagetable.c):
//   - IOMMU_IOAS_MAP (fixed IOVA): EINVAL if the range is empty or touches a reserved range,
//     EEXIST if it overlaps a mapping, EOVERFLOW if iova+len or va+len wraps.
//   - IOMMU_IOAS_UNMAP: every area the range touches must lie entirely inside it, else ENOENT
//     (areas before the split one are already gone, as in iopt_unmap_iova_range); ENOENT if
//     nothing was mapped there; [0, U64_MAX] unmaps everything and always succeeds.
//   - IOMMU_IOAS_IOVA_RANGES: the complement of the IOAS's reserved ranges in [0, 2^64-1].
//   - IOMMU_DESTROY: ENOENT for an unknown id; destroying an IOAS drops its mappings.
//   - IOMMU_GET_HW_INFO: ENOENT for a device the test did not describe with SetHwInfo.
// Failures carry the same messages as iommufd_kernel.cc ("IOMMU_IOAS_MAP ioas 1 iova [...):
// File exists (errno 17)"). Ids are handed out from 1 upward, so a test may configure an IOAS
// before the code under test allocates it. Not thread-safe.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "iommu/iommufd/iommufd_ops.h"

namespace ionest::iommufd_testing {

using iommufd::HostIommuInfo;
using iommufd::IovaRange;

class FakeIommufd final : public iommufd::IommufdOps {
 public:
  enum class Op { kAllocIoas, kMapFixed, kUnmap, kAllowedIovaRanges, kGetHwInfo, kDestroy };
  struct Mapping {
    uint32_t ioas_id = 0;
    uint64_t iova = 0;
    uint64_t len = 0;
    void* va = nullptr;
    bool writeable = false;
    bool operator==(const Mapping&) const = default;
  };

  // An IommufdOps forwarding to this fake, for the code under test to own while the test keeps the
  // fake (which must outlive it) to inspect after the owner is gone.
  std::unique_ptr<iommufd::IommufdOps> NewOps();

  // --- configuration ---
  // Reserves `range` in IOAS `ioas_id` (allocated or not yet), as an attached device's reserved
  // regions do. Not checked against existing mappings.
  void AddReserved(uint32_t ioas_id, IovaRange range) { reserved_[ioas_id].push_back(range); }
  void SetHwInfo(uint32_t dev_id, const HostIommuInfo& info) { hw_info_[dev_id] = info; }
  // The (skip+1)-th next call of `op` returns `status` and has no effect. Several injections for
  // one op apply one after the other, in the order given.
  void FailNext(Op op, absl::Status status, int skip = 0) { failures_.push_back({op, skip, std::move(status)}); }

  // --- inspection ---
  // Every live mapping, ordered by IOAS then IOVA.
  std::vector<Mapping> mappings() const;
  size_t live_objects() const { return ioas_.size(); }
  bool ioas_exists(uint32_t id) const { return ioas_.count(id) != 0; }
  const std::vector<uint32_t>& destroyed() const { return destroyed_; }
  // Calls of `op` (including failed and injected-failure ones).
  int calls(Op op) const;

  // --- IommufdOps ---
  int fd() const override { return -1; }
  absl::StatusOr<uint32_t> AllocIoas() override;
  absl::Status MapFixed(uint32_t ioas_id, uint64_t iova, void* va, uint64_t len, bool writeable) override;
  absl::Status Unmap(uint32_t ioas_id, uint64_t iova, uint64_t len) override;
  absl::StatusOr<std::vector<IovaRange>> AllowedIovaRanges(uint32_t ioas_id) override;
  absl::StatusOr<HostIommuInfo> GetHwInfo(uint32_t dev_id) override;
  absl::Status Destroy(uint32_t object_id) override;

 private:
  struct Injected {
    Op op;
    int skip;
    absl::Status status;
  };
  struct Area {
    uint64_t last = 0;
    void* va = nullptr;
    bool writeable = false;
  };
  // Counts the call; returns the injected failure if one is due.
  absl::Status Enter(Op op);
  bool Reserved(uint32_t ioas_id, uint64_t start, uint64_t last) const;

  uint32_t next_id_ = 1;
  std::map<uint32_t, std::map<uint64_t, Area>> ioas_;  // IOAS id -> areas by first IOVA
  std::map<uint32_t, std::vector<IovaRange>> reserved_;
  std::map<uint32_t, HostIommuInfo> hw_info_;
  std::vector<Injected> failures_;
  std::map<Op, int> calls_;
  std::vector<uint32_t> destroyed_;
};

}  // namespace ionest::iommufd_testing
