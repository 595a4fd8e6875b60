#include "iommu/iommufd/testing/fake_iommufd.h"

#include <linux/iommufd.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <iterator>

#include "absl/strings/str_format.h"
#include "iommu/iommufd/iommufd_kernel.h"

namespace ionest::iommufd_testing {

using iommufd::FormatHwptAlloc;
using iommufd::FormatInvalidate;
using iommufd::FormatIovaLen;
using iommufd::HostResponseCode;
using iommufd::IommufdErrno;
using iommufd::ShortResponseWrite;

namespace {

// Forwards to a FakeIommufd owned elsewhere.
class FakeHandle final : public iommufd::IommufdOps {
 public:
  explicit FakeHandle(FakeIommufd& fake) : fake_(fake) {}
  int fd() const override { return fake_.fd(); }
  absl::StatusOr<uint32_t> AllocIoas() override { return fake_.AllocIoas(); }
  absl::Status MapFixed(uint32_t ioas_id, uint64_t iova, void* va, uint64_t len, bool writeable) override {
    return fake_.MapFixed(ioas_id, iova, va, len, writeable);
  }
  absl::Status MapFixedAccess(uint32_t ioas_id, uint64_t iova, void* va, uint64_t len, bool readable,
                              bool writeable) override {
    return fake_.MapFixedAccess(ioas_id, iova, va, len, readable, writeable);
  }
  absl::Status Unmap(uint32_t ioas_id, uint64_t iova, uint64_t len) override { return fake_.Unmap(ioas_id, iova, len); }
  absl::StatusOr<std::vector<IovaRange>> AllowedIovaRanges(uint32_t ioas_id) override {
    return fake_.AllowedIovaRanges(ioas_id);
  }
  absl::StatusOr<HostIommuInfo> GetHwInfo(uint32_t dev_id) override { return fake_.GetHwInfo(dev_id); }
  absl::Status Destroy(uint32_t object_id) override { return fake_.Destroy(object_id); }
  absl::StatusOr<uint32_t> AllocHwpt(const HwptAllocRequest& request) override { return fake_.AllocHwpt(request); }
  InvalidateResult InvalidateVtdS1(uint32_t hwpt_id, std::span<const VtdS1Invalidation> entries) override {
    return fake_.InvalidateVtdS1(hwpt_id, entries);
  }
  absl::StatusOr<FaultQueue> AllocFaultQueue() override { return fake_.AllocFaultQueue(); }
  absl::StatusOr<std::vector<HostPageFault>> ReadFaults(int fault_fd, size_t max) override {
    return fake_.ReadFaults(fault_fd, max);
  }
  absl::Status WriteResponses(int fault_fd, std::span<const HostPageResponse> responses) override {
    return fake_.WriteResponses(fault_fd, responses);
  }

 private:
  FakeIommufd& fake_;
};

}  // namespace

std::unique_ptr<iommufd::IommufdOps> FakeIommufd::NewOps() { return std::make_unique<FakeHandle>(*this); }

std::vector<FakeIommufd::Mapping> FakeIommufd::mappings() const {
  std::vector<Mapping> out;
  for (const auto& [id, areas] : ioas_)
    for (const auto& [iova, a] : areas) out.push_back({id, iova, a.last - iova + 1, a.va, a.writeable, a.readable});
  return out;
}

int FakeIommufd::calls(Op op) const {
  auto it = calls_.find(op);
  return it == calls_.end() ? 0 : it->second;
}

absl::Status FakeIommufd::Enter(Op op) {
  ++calls_[op];
  auto it = std::find_if(failures_.begin(), failures_.end(), [op](const Injected& f) { return f.op == op; });
  if (it == failures_.end()) return absl::OkStatus();
  if (it->skip > 0) {
    --it->skip;
    return absl::OkStatus();
  }
  absl::Status s = std::move(it->status);
  failures_.erase(it);
  return s;
}

bool FakeIommufd::Reserved(uint32_t ioas_id, uint64_t start, uint64_t last) const {
  auto it = reserved_.find(ioas_id);
  if (it == reserved_.end()) return false;
  return std::any_of(it->second.begin(), it->second.end(),
                     [&](const IovaRange& r) { return r.start <= last && start <= r.last; });
}

absl::StatusOr<uint32_t> FakeIommufd::AllocIoas() {
  if (absl::Status s = Enter(Op::kAllocIoas); !s.ok()) return s;
  uint32_t id = next_id_++;
  ioas_[id];
  return id;
}

absl::Status FakeIommufd::MapFixed(uint32_t ioas_id, uint64_t iova, void* va, uint64_t len, bool writeable) {
  return MapFixedAccess(ioas_id, iova, va, len, /*readable=*/true, writeable);
}

absl::Status FakeIommufd::MapFixedAccess(uint32_t ioas_id, uint64_t iova, void* va, uint64_t len, bool readable,
                                         bool writeable) {
  if (absl::Status s = Enter(Op::kMapFixed); !s.ok()) return s;
  auto what = absl::StrFormat("IOMMU_IOAS_MAP ioas %d iova %s from va %p%s", ioas_id, FormatIovaLen(iova, len), va,
                              !readable ? " write-only" : writeable ? "" : " read-only");
  auto ioas = ioas_.find(ioas_id);
  if (ioas == ioas_.end()) return IommufdErrno(ENOENT, what);
  if (len == 0 || !(readable || writeable)) return IommufdErrno(EINVAL, what);
  if (va == nullptr) return IommufdErrno(EFAULT, what);
  uint64_t last = iova + (len - 1);
  if (last < iova || reinterpret_cast<uintptr_t>(va) + (len - 1) < reinterpret_cast<uintptr_t>(va))
    return IommufdErrno(EOVERFLOW, what);
  if (Reserved(ioas_id, iova, last)) return IommufdErrno(EINVAL, what);  // iopt_check_iova
  auto& areas = ioas->second;
  auto next = areas.lower_bound(iova);
  if (next != areas.end() && next->first <= last) return IommufdErrno(EEXIST, what);
  if (next != areas.begin() && std::prev(next)->second.last >= iova) return IommufdErrno(EEXIST, what);
  areas.emplace_hint(next, iova, Area{last, va, writeable, readable});
  return absl::OkStatus();
}

absl::Status FakeIommufd::Unmap(uint32_t ioas_id, uint64_t iova, uint64_t len) {
  if (absl::Status s = Enter(Op::kUnmap); !s.ok()) return s;
  auto what = absl::StrFormat("IOMMU_IOAS_UNMAP ioas %d iova %s", ioas_id, FormatIovaLen(iova, len));
  auto ioas = ioas_.find(ioas_id);
  if (ioas == ioas_.end()) return IommufdErrno(ENOENT, what);
  auto& areas = ioas->second;
  if (iova == 0 && len == UINT64_MAX) {  // iopt_unmap_all
    areas.clear();
    return absl::OkStatus();
  }
  if (len == 0) return IommufdErrno(EINVAL, what);
  uint64_t last = iova + (len - 1);
  if (last < iova) return IommufdErrno(EOVERFLOW, what);
  // First area touching [iova, last]: the one starting before iova if it reaches it, else the next.
  auto it = areas.lower_bound(iova);
  if (it != areas.begin() && std::prev(it)->second.last >= iova) --it;
  uint64_t unmapped = 0;
  while (it != areas.end() && it->first <= last) {
    if (it->first < iova || it->second.last > last) return IommufdErrno(ENOENT, what);  // would split it
    unmapped += it->second.last - it->first + 1;
    it = areas.erase(it);
  }
  if (unmapped == 0) return IommufdErrno(ENOENT, what);
  return absl::OkStatus();
}

absl::StatusOr<std::vector<IovaRange>> FakeIommufd::AllowedIovaRanges(uint32_t ioas_id) {
  if (absl::Status s = Enter(Op::kAllowedIovaRanges); !s.ok()) return s;
  if (!ioas_exists(ioas_id))
    return IommufdErrno(ENOENT, absl::StrFormat("IOMMU_IOAS_IOVA_RANGES ioas %d", ioas_id));
  std::vector<IovaRange> reserved;
  if (auto it = reserved_.find(ioas_id); it != reserved_.end()) reserved = it->second;
  std::sort(reserved.begin(), reserved.end(), [](const IovaRange& a, const IovaRange& b) { return a.start < b.start; });
  // Holes between the reserved spans, as interval_tree_for_each_span in iommufd_ioas_iova_ranges.
  std::vector<IovaRange> allowed;
  uint64_t next = 0;  // first IOVA not yet known to be reserved
  bool done = false;  // reserved up to U64_MAX
  for (const IovaRange& r : reserved) {
    if (r.last < r.start) continue;  // malformed configuration: ignore
    if (r.start > next) allowed.push_back({next, r.start - 1});
    if (r.last >= next) {
      if (r.last == UINT64_MAX) {
        done = true;
        break;
      }
      next = r.last + 1;
    }
  }
  if (!done) allowed.push_back({next, UINT64_MAX});
  return allowed;
}

absl::StatusOr<HostIommuInfo> FakeIommufd::GetHwInfo(uint32_t dev_id) {
  if (absl::Status s = Enter(Op::kGetHwInfo); !s.ok()) return s;
  auto it = hw_info_.find(dev_id);
  if (it == hw_info_.end()) return IommufdErrno(ENOENT, absl::StrFormat("IOMMU_GET_HW_INFO dev %d", dev_id));
  return it->second;
}

bool FakeIommufd::Busy(uint32_t id) const {
  if (attached_.count(id)) return true;
  for (const auto& [hwpt_id, h] : hwpts_) {
    if (h.request.pt_id == id) return true;  // a HWPT on this IOAS / nested on this parent
    if (h.request.fault_id == id) return true;
  }
  return false;
}

absl::Status FakeIommufd::Destroy(uint32_t object_id) {
  if (absl::Status s = Enter(Op::kDestroy); !s.ok()) return s;
  const std::string what = absl::StrFormat("IOMMU_DESTROY id %d", object_id);
  if (!ioas_exists(object_id) && !hwpts_.count(object_id) && !faults_.count(object_id))
    return IommufdErrno(ENOENT, what);
  // iommufd_object_remove: EBUSY while anything else holds a reference.
  if (Busy(object_id)) return IommufdErrno(EBUSY, what);
  // iommufd_ioas_destroy unmaps whatever is left.
  ioas_.erase(object_id);
  hwpts_.erase(object_id);
  if (auto f = faults_.find(object_id); f != faults_.end()) {
    // iommufd_fault_destroy: every group still queued or awaiting a response gets INVALID.
    std::set<uint32_t> cookies = f->second.outstanding;
    std::map<uint32_t, HostPageFault> last = f->second.group_last;
    for (const HostPageFault& p : f->second.pending) {
      cookies.insert(p.cookie);
      last[p.cookie] = p;  // queued in order: the final one is the group's last
    }
    for (uint32_t c : cookies) auto_responses_.push_back({c, HostResponseCode::kInvalid});
    faults_.erase(f);  // the eventfd stays open: it is the caller's
    if (response_listener_) {
      for (uint32_t c : cookies) response_listener_(last[c], HostResponseCode::kInvalid);
    }
  }
  destroyed_.push_back(object_id);
  return absl::OkStatus();
}

void FakeIommufd::MarkAttached(uint32_t id, bool attached) {
  if (attached) {
    attached_.insert(id);
  } else {
    attached_.erase(id);
  }
}

absl::StatusOr<uint32_t> FakeIommufd::AllocHwpt(const HwptAllocRequest& request) {
  if (absl::Status s = Enter(Op::kAllocHwpt); !s.ok()) return s;
  hwpt_requests_.push_back(request);
  const std::string what = FormatHwptAlloc(request);
  if (!hw_info_.count(request.dev_id)) return IommufdErrno(ENOENT, what);  // iommufd_get_device
  HwptKind kind;
  if (ioas_exists(request.pt_id)) {
    // iommufd_hwpt_paging_alloc → intel_iommu_domain_alloc_user.
    if (request.nest_parent && !nesting_) return IommufdErrno(EOPNOTSUPP, what);
    if (request.vtd_s1) return IommufdErrno(EOPNOTSUPP, what);  // no user data for a paging domain
    kind = request.nest_parent ? HwptKind::kNestParent : HwptKind::kPaging;
  } else if (auto parent = hwpts_.find(request.pt_id);
             parent != hwpts_.end() && parent->second.kind != HwptKind::kNested) {
    // iommufd_hwpt_nested_alloc: only FAULT_ID_VALID among the flags, data required.
    if (request.nest_parent || !request.vtd_s1) return IommufdErrno(EOPNOTSUPP, what);
    if (parent->second.kind != HwptKind::kNestParent) return IommufdErrno(EINVAL, what);
    kind = HwptKind::kNested;
  } else {
    return IommufdErrno(EINVAL, what);  // pt_id: no such object, or one of the wrong type
  }
  if (request.fault_id && !faults_.count(*request.fault_id)) return IommufdErrno(ENOENT, what);
  uint32_t id = next_id_++;
  hwpts_[id] = Hwpt{request, kind};
  return id;
}

InvalidateResult FakeIommufd::InvalidateVtdS1(uint32_t hwpt_id, std::span<const VtdS1Invalidation> entries) {
  if (absl::Status s = Enter(Op::kInvalidate); !s.ok()) return {s, 0};
  invalidations_.push_back({hwpt_id, std::vector<VtdS1Invalidation>(entries.begin(), entries.end())});
  auto h = hwpts_.find(hwpt_id);
  if (h == hwpts_.end() || h->second.kind != HwptKind::kNested)
    return {IommufdErrno(ENOENT, FormatInvalidate(hwpt_id, entries, 0)), 0};
  for (uint32_t i = 0; i < entries.size(); ++i) {
    const VtdS1Invalidation& e = entries[i];
    int err = 0;
    if (inv_failure_ && inv_failure_->first == i) {
      err = inv_failure_->second;
      inv_failure_.reset();
    } else if (e.addr % 4096 != 0 || (e.npages == UINT64_MAX && e.addr != 0) || e.npages == 0) {
      err = EINVAL;
    }
    if (err) return {IommufdErrno(err, FormatInvalidate(hwpt_id, entries, i)), i};
  }
  return {absl::OkStatus(), static_cast<uint32_t>(entries.size())};
}

absl::StatusOr<FaultQueue> FakeIommufd::AllocFaultQueue() {
  if (absl::Status s = Enter(Op::kAllocFaultQueue); !s.ok()) return s;
  int fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (fd < 0) return IommufdErrno(errno, "IOMMU_FAULT_QUEUE_ALLOC");
  uint32_t id = next_id_++;
  faults_[id].fd = fd;
  return FaultQueue{id, fd};
}

uint32_t FakeIommufd::InjectFault(uint32_t fault_id, HostPageFault f) {
  auto it = faults_.find(fault_id);
  if (it == faults_.end()) return 0;
  if (f.cookie == 0) f.cookie = next_cookie_++;
  it->second.pending.push_back(f);
  uint64_t one = 1;
  (void)!write(it->second.fd, &one, sizeof(one));
  return f.cookie;
}

size_t FakeIommufd::outstanding(uint32_t fault_id) const {
  auto it = faults_.find(fault_id);
  return it == faults_.end() ? 0 : it->second.outstanding.size();
}

size_t FakeIommufd::pending(uint32_t fault_id) const {
  auto it = faults_.find(fault_id);
  return it == faults_.end() ? 0 : it->second.pending.size();
}

FakeIommufd::Fault* FakeIommufd::FaultByFd(int fd) {
  for (auto& [id, f] : faults_)
    if (f.fd == fd) return &f;
  return nullptr;
}

absl::StatusOr<std::vector<HostPageFault>> FakeIommufd::ReadFaults(int fault_fd, size_t max) {
  if (absl::Status s = Enter(Op::kReadFaults); !s.ok()) return s;
  Fault* f = FaultByFd(fault_fd);
  if (f == nullptr)
    return IommufdErrno(EBADF, absl::StrFormat("read of fault fd %d (up to %d records)", fault_fd, max));
  std::vector<HostPageFault> out;
  // Whole groups (consecutive records sharing a cookie) while they fit.
  while (!f->pending.empty()) {
    const uint32_t cookie = f->pending.front().cookie;
    size_t group = 0;
    while (group < f->pending.size() && f->pending[group].cookie == cookie) ++group;
    if (group > max - out.size()) break;
    for (size_t i = 0; i < group; ++i) {
      out.push_back(f->pending.front());
      f->pending.pop_front();
    }
    f->outstanding.insert(cookie);
    f->group_last[cookie] = out.back();
  }
  if (f->pending.empty()) {
    uint64_t count;
    (void)!read(f->fd, &count, sizeof(count));  // no longer readable
  }
  return out;
}

absl::Status FakeIommufd::WriteResponses(int fault_fd, std::span<const HostPageResponse> responses) {
  if (absl::Status s = Enter(Op::kWriteResponses); !s.ok()) return s;
  const std::string what = absl::StrFormat("write of %d page responses to fault fd %d", responses.size(), fault_fd);
  Fault* f = FaultByFd(fault_fd);
  if (f == nullptr) return IommufdErrno(EBADF, what);
  for (size_t i = 0; i < responses.size(); ++i) {
    const HostPageResponse& r = responses[i];
    bool valid_code = r.code == HostResponseCode::kSuccess || r.code == HostResponseCode::kInvalid;
    if (!valid_code || f->outstanding.erase(r.cookie) == 0) {
      if (i == 0) return IommufdErrno(EINVAL, what);
      return ShortResponseWrite(fault_fd, responses.size(), i * sizeof(iommu_hwpt_page_response));
    }
    responses_.push_back(r);
    auto last = f->group_last.find(r.cookie);
    HostPageFault group_last;
    if (last != f->group_last.end()) {
      group_last = last->second;
      f->group_last.erase(last);
    }
    if (response_listener_) response_listener_(group_last, r.code);
  }
  return absl::OkStatus();
}

}  // namespace ionest::iommufd_testing
