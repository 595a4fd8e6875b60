// In-memory IommufdOps for tests: IOAS objects, fixed mappings, reserved ranges and per-device
// host IOMMU info, with the kernel's rules and errnos (drivers/iommu/iommufd/io_pagetable.c):
//   - IOMMU_IOAS_MAP (fixed IOVA): EINVAL if the range is empty, neither readable nor writeable, or
//     touches a reserved range,
//     EEXIST if it overlaps a mapping, EOVERFLOW if iova+len or va+len wraps.
//   - IOMMU_IOAS_UNMAP: every area the range touches must lie entirely inside it, else ENOENT
//     (areas before the split one are already gone, as in iopt_unmap_iova_range); ENOENT if
//     nothing was mapped there; [0, U64_MAX] unmaps everything and always succeeds.
//   - IOMMU_IOAS_IOVA_RANGES: the complement of the IOAS's reserved ranges in [0, 2^64-1].
//   - IOMMU_DESTROY: ENOENT for an unknown id; destroying an IOAS drops its mappings.
//   - IOMMU_GET_HW_INFO: ENOENT for a device the test did not describe with SetHwInfo.
// Nesting and faults (drivers/iommu/iommufd/hw_pagetable.c, fault.c and drivers/iommu/intel/
// nested.c, Linux 6.12):
//   - IOMMU_HWPT_ALLOC: ENOENT for a dev_id SetHwInfo did not describe; EINVAL if pt_id is no IOAS
//     and no paging HWPT (unknown, nested HWPT, fault queue). pt_id an IOAS: a paging HWPT, or with
//     nest_parent a nest parent (EOPNOTSUPP after SetNestingSupported(false), as on a host IOMMU
//     without ECAP.NEST); vtd_s1 there is EOPNOTSUPP (intel_iommu_domain_alloc_user takes no data
//     for a paging domain). pt_id a paging HWPT: a nested HWPT; EOPNOTSUPP without vtd_s1 or with
//     nest_parent (iommufd_hwpt_nested_alloc), EINVAL if the parent is no nest parent. fault_id
//     must name a live fault queue (ENOENT), checked last; nothing is created on failure. (A
//     fault_id is accepted on paging HWPTs too; 6.12 may refuse that with EOPNOTSUPP.)
//   - IOMMU_HWPT_INVALIDATE: ENOENT unless hwpt_id is a nested HWPT (6.12 looks it up as
//     IOMMUFD_OBJ_HWPT_NESTED; later kernels say EINVAL for a paging HWPT). Entries are checked in
//     order as intel_nested_cache_invalidate_user does, stopping at the first bad one (done = its
//     index): addr not 4 KiB aligned, npages UINT64_MAX with addr != 0, or npages 0 (stricter than
//     the kernel, which flushes a meaningless range) are EINVAL.
//   - IOMMU_FAULT_QUEUE_ALLOC: the fd is an eventfd (EFD_NONBLOCK | EFD_CLOEXEC) the caller owns
//     and closes, as it does the kernel's fault fd; the fake never closes it. It is readable while
//     faults are pending (InjectFault adds 1; ReadFaults drains it when the queue is empty).
//   - read(2) of a fault fd (ReadFaults): EBADF for an fd no live queue owns; whole groups only
//     (consecutive pending records with one cookie), a group that does not fit in `max` stays
//     queued and nothing is returned, as iommufd_fault_fops_read does. Records read become
//     outstanding (the kernel allocates the cookie's response slot at read time).
//   - write(2) of responses (WriteResponses): taken in order; an unknown cookie (never read, or
//     already answered) or a code other than SUCCESS/INVALID stops there: EINVAL if it is the first,
//     else the short-write error iommufd_kernel.cc reports (ShortResponseWrite), the earlier
//     responses having been taken.
//   - IOMMU_DESTROY: EBUSY for an object the test marked attached (MarkAttached), an IOAS with
//     HWPTs on it, a nest parent with nested HWPTs on it, a fault queue an HWPT uses. Destroying a
//     fault queue answers its outstanding and pending faults with INVALID (iommufd_fault_destroy):
//     see auto_responses(). Not modelled: the kernel also refuses (EBUSY) to destroy a fault queue
//     whose fd is still open (the file holds a reference), so close the fd first on a real host;
//     and detaching a device auto-answers its outstanding faults.
//   - Response listener (SetResponseListener, unset by default): every response WriteResponses
//     takes, and every INVALID a fault-queue destruction gives, is also reported with the last
//     record of its group (what the host IOMMU driver turns into the PRG response to the device:
//     requester, PASID, group index). Lets a test host route answers back to a device model.
// Failures carry the same messages as iommufd_kernel.cc ("IOMMU_IOAS_MAP ioas 1 iova [...):
// File exists (errno 17)"). Ids (IOAS, HWPT and fault queue share one space) are handed out from 1
// upward, so a test may configure an IOAS before the code under test allocates it. Not thread-safe.
#pragma once

#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <span>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "iommu/iommufd/iommufd_ops.h"

namespace ionest::iommufd_testing {

using iommufd::FaultQueue;
using iommufd::HostIommuInfo;
using iommufd::HostPageFault;
using iommufd::HostPageResponse;
using iommufd::HostResponseCode;
using iommufd::HwptAllocRequest;
using iommufd::InvalidateResult;
using iommufd::IovaRange;
using iommufd::VtdS1Invalidation;

class FakeIommufd final : public iommufd::IommufdOps {
 public:
  enum class Op {
    kAllocIoas,
    kMapFixed,
    kUnmap,
    kAllowedIovaRanges,
    kGetHwInfo,
    kDestroy,
    kAllocHwpt,
    kInvalidate,
    kAllocFaultQueue,
    kReadFaults,
    kWriteResponses,
  };
  enum class HwptKind { kPaging, kNestParent, kNested };
  struct Hwpt {
    HwptAllocRequest request;
    HwptKind kind = HwptKind::kPaging;
    bool operator==(const Hwpt&) const = default;
  };
  struct Invalidation {
    uint32_t hwpt_id = 0;
    std::vector<VtdS1Invalidation> entries;
    bool operator==(const Invalidation&) const = default;
  };
  struct Mapping {
    uint32_t ioas_id = 0;
    uint64_t iova = 0;
    uint64_t len = 0;
    void* va = nullptr;
    bool writeable = false;
    bool readable = true;  // false only through MapFixedAccess (write-only)
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
  // Whether the host IOMMU can nest (default true); false: nest_parent allocations fail EOPNOTSUPP.
  void SetNestingSupported(bool supported) { nesting_ = supported; }
  // Marks object `id` (IOAS or HWPT) as having a device attached, so IOMMU_DESTROY of it is EBUSY.
  void MarkAttached(uint32_t id, bool attached);
  // The first later InvalidateVtdS1 call with more than `entry` entries fails at that entry with
  // `err` (done = entry; the entries before it count as handled). One-shot.
  void FailInvalidationAt(uint32_t entry, int err) { inv_failure_ = {entry, err}; }
  // Queues a page request on fault queue `fault_id` and makes its fd readable. A zero f.cookie gets
  // the next cookie (1, 2, ...); a non-zero one is kept (records sharing a cookie form one group).
  // Returns the cookie, or 0 if no such queue exists (nothing queued).
  uint32_t InjectFault(uint32_t fault_id, HostPageFault f);
  // Called (synchronously, inside WriteResponses / Destroy) for each group answered: its last
  // record (the last one read or queued with the cookie) and the code. Empty function: none.
  using ResponseListener = std::function<void(const HostPageFault& group_last, HostResponseCode code)>;
  void SetResponseListener(ResponseListener listener) { response_listener_ = std::move(listener); }

  // --- inspection ---
  // Every live mapping, ordered by IOAS then IOVA.
  std::vector<Mapping> mappings() const;
  // Live IOAS, HWPT and fault-queue objects.
  size_t live_objects() const { return ioas_.size() + hwpts_.size() + faults_.size(); }
  bool ioas_exists(uint32_t id) const { return ioas_.count(id) != 0; }
  // Live HWPTs by id.
  const std::map<uint32_t, Hwpt>& hwpts() const { return hwpts_; }
  // Every AllocHwpt request, in call order, including failed ones (not injected failures).
  const std::vector<HwptAllocRequest>& hwpt_requests() const { return hwpt_requests_; }
  // Every InvalidateVtdS1 call, including failed ones (not injected failures).
  const std::vector<Invalidation>& invalidations() const { return invalidations_; }
  bool fault_queue_exists(uint32_t fault_id) const { return faults_.count(fault_id) != 0; }
  // Faults read through ReadFaults and not yet answered (groups, i.e. cookies), and records
  // injected and not yet read; 0 for an unknown queue.
  size_t outstanding(uint32_t fault_id) const;
  size_t pending(uint32_t fault_id) const;
  // Responses taken by WriteResponses, in order.
  const std::vector<HostPageResponse>& responses() const { return responses_; }
  // INVALID responses the "kernel" gave when a fault queue was destroyed with faults outstanding or
  // pending (one per cookie).
  const std::vector<HostPageResponse>& auto_responses() const { return auto_responses_; }
  const std::vector<uint32_t>& destroyed() const { return destroyed_; }
  // Calls of `op` (including failed and injected-failure ones).
  int calls(Op op) const;

  // --- IommufdOps ---
  int fd() const override { return -1; }
  absl::StatusOr<uint32_t> AllocIoas() override;
  absl::Status MapFixed(uint32_t ioas_id, uint64_t iova, void* va, uint64_t len, bool writeable) override;
  absl::Status MapFixedAccess(uint32_t ioas_id, uint64_t iova, void* va, uint64_t len, bool readable,
                              bool writeable) override;
  absl::Status Unmap(uint32_t ioas_id, uint64_t iova, uint64_t len) override;
  absl::StatusOr<std::vector<IovaRange>> AllowedIovaRanges(uint32_t ioas_id) override;
  absl::StatusOr<HostIommuInfo> GetHwInfo(uint32_t dev_id) override;
  absl::Status Destroy(uint32_t object_id) override;
  absl::StatusOr<uint32_t> AllocHwpt(const HwptAllocRequest& request) override;
  InvalidateResult InvalidateVtdS1(uint32_t hwpt_id, std::span<const VtdS1Invalidation> entries) override;
  absl::StatusOr<FaultQueue> AllocFaultQueue() override;
  absl::StatusOr<std::vector<HostPageFault>> ReadFaults(int fault_fd, size_t max) override;
  absl::Status WriteResponses(int fault_fd, std::span<const HostPageResponse> responses) override;

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
    bool readable = true;
  };
  struct Fault {
    int fd = -1;                       // the eventfd (the caller's)
    std::deque<HostPageFault> pending;  // injected, not read
    std::set<uint32_t> outstanding;     // cookies read, not answered
    std::map<uint32_t, HostPageFault> group_last;  // cookie read -> its group's last record
  };
  // Counts the call; returns the injected failure if one is due.
  absl::Status Enter(Op op);
  bool Reserved(uint32_t ioas_id, uint64_t start, uint64_t last) const;
  // Whether object `id` is referenced (attached device, HWPT on it, HWPT using the fault queue).
  bool Busy(uint32_t id) const;
  Fault* FaultByFd(int fd);

  uint32_t next_id_ = 1;
  std::map<uint32_t, std::map<uint64_t, Area>> ioas_;  // IOAS id -> areas by first IOVA
  std::map<uint32_t, std::vector<IovaRange>> reserved_;
  std::map<uint32_t, HostIommuInfo> hw_info_;
  std::vector<Injected> failures_;
  std::map<Op, int> calls_;
  std::vector<uint32_t> destroyed_;
  bool nesting_ = true;
  std::set<uint32_t> attached_;
  std::map<uint32_t, Hwpt> hwpts_;
  std::vector<HwptAllocRequest> hwpt_requests_;
  std::vector<Invalidation> invalidations_;
  std::optional<std::pair<uint32_t, int>> inv_failure_;  // entry, errno
  std::map<uint32_t, Fault> faults_;
  uint32_t next_cookie_ = 1;
  std::vector<HostPageResponse> responses_;
  std::vector<HostPageResponse> auto_responses_;
  ResponseListener response_listener_;
};

}  // namespace ionest::iommufd_testing
