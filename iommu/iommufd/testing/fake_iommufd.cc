#include "iommu/iommufd/testing/fake_iommufd.h"

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <iterator>

#include "absl/strings/str_format.h"
#include "iommu/iommufd/iommufd_kernel.h"

namespace ionest::iommufd_testing {

using iommufd::FormatIovaLen;
using iommufd::IommufdErrno;

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
  absl::Status Unmap(uint32_t ioas_id, uint64_t iova, uint64_t len) override { return fake_.Unmap(ioas_id, iova, len); }
  absl::StatusOr<std::vector<IovaRange>> AllowedIovaRanges(uint32_t ioas_id) override {
    return fake_.AllowedIovaRanges(ioas_id);
  }
  absl::StatusOr<HostIommuInfo> GetHwInfo(uint32_t dev_id) override { return fake_.GetHwInfo(dev_id); }
  absl::Status Destroy(uint32_t object_id) override { return fake_.Destroy(object_id); }

 private:
  FakeIommufd& fake_;
};

}  // namespace

std::unique_ptr<iommufd::IommufdOps> FakeIommufd::NewOps() { return std::make_unique<FakeHandle>(*this); }

std::vector<FakeIommufd::Mapping> FakeIommufd::mappings() const {
  std::vector<Mapping> out;
  for (const auto& [id, areas] : ioas_)
    for (const auto& [iova, a] : areas) out.push_back({id, iova, a.last - iova + 1, a.va, a.writeable});
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
  if (absl::Status s = Enter(Op::kMapFixed); !s.ok()) return s;
  auto what = absl::StrFormat("IOMMU_IOAS_MAP ioas %d iova %s from va %p%s", ioas_id, FormatIovaLen(iova, len), va,
                              writeable ? "" : " read-only");
  auto ioas = ioas_.find(ioas_id);
  if (ioas == ioas_.end()) return IommufdErrno(ENOENT, what);
  if (len == 0) return IommufdErrno(EINVAL, what);
  if (va == nullptr) return IommufdErrno(EFAULT, what);
  uint64_t last = iova + (len - 1);
  if (last < iova || reinterpret_cast<uintptr_t>(va) + (len - 1) < reinterpret_cast<uintptr_t>(va))
    return IommufdErrno(EOVERFLOW, what);
  if (Reserved(ioas_id, iova, last)) return IommufdErrno(EINVAL, what);  // iopt_check_iova
  auto& areas = ioas->second;
  auto next = areas.lower_bound(iova);
  if (next != areas.end() && next->first <= last) return IommufdErrno(EEXIST, what);
  if (next != areas.begin() && std::prev(next)->second.last >= iova) return IommufdErrno(EEXIST, what);
  areas.emplace_hint(next, iova, Area{last, va, writeable});
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

absl::Status FakeIommufd::Destroy(uint32_t object_id) {
  if (absl::Status s = Enter(Op::kDestroy); !s.ok()) return s;
  // iommufd_ioas_destroy unmaps whatever is left.
  if (ioas_.erase(object_id) == 0) return IommufdErrno(ENOENT, absl::StrFormat("IOMMU_DESTROY id %d", object_id));
  destroyed_.push_back(object_id);
  return absl::OkStatus();
}

}  // namespace ionest::iommufd_testing
