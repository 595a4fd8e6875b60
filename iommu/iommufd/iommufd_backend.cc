#include "iommu/iommufd/iommufd_backend.h"

#include <linux/iommufd.h>

#include <algorithm>
#include <optional>
#include <utility>

#include "absl/base/internal/raw_logging.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "iommu/iommufd/iommufd_kernel.h"

namespace ionest::iommufd {

namespace {

constexpr uint64_t kPageSize = 4096;
// The x86 interrupt address range (0xFEEx_xxxx, Intel SDM vol. 3 §11.11): the host IOMMU driver
// reserves it (IOMMU_RESV_MSI) because DMA there is an MSI, never a memory access.
constexpr IovaRange kMsiWindow{0xfee00000, 0xfeefffff};

absl::Status Annotate(const absl::Status& s, absl::string_view context) {
  return absl::Status(s.code(), absl::StrCat(context, ": ", s.message()));
}

bool Intersects(const IovaRange& r, uint64_t start, uint64_t last) { return r.start <= last && start <= r.last; }

// Last byte of [base, base+size), or nullopt if the range is empty or wraps.
std::optional<uint64_t> LastOf(uint64_t base, uint64_t size) {
  uint64_t last;
  if (size == 0 || __builtin_add_overflow(base, size - 1, &last)) return std::nullopt;
  return last;
}

// Sorted, with overlapping and adjacent ranges merged (the kernel returns them so already).
std::vector<IovaRange> Normalize(std::vector<IovaRange> ranges) {
  std::erase_if(ranges, [](const IovaRange& r) { return r.last < r.start; });
  std::sort(ranges.begin(), ranges.end(), [](const IovaRange& a, const IovaRange& b) { return a.start < b.start; });
  std::vector<IovaRange> out;
  for (const IovaRange& r : ranges) {
    if (!out.empty() && (out.back().last == UINT64_MAX || r.start <= out.back().last + 1)) {
      out.back().last = std::max(out.back().last, r.last);
    } else {
      out.push_back(r);
    }
  }
  return out;
}

// Complement of normalized `allowed` within [0, 2^64-1].
std::vector<IovaRange> Complement(const std::vector<IovaRange>& allowed) {
  std::vector<IovaRange> out;
  uint64_t next = 0;
  for (const IovaRange& r : allowed) {
    if (r.start > next) out.push_back({next, r.start - 1});
    if (r.last == UINT64_MAX) return out;
    next = r.last + 1;
  }
  out.push_back({next, UINT64_MAX});
  return out;
}

// What a reserved range most likely is, for the error message.
std::string ReservedKind(const IovaRange& r) {
  if (Intersects(r, kMsiWindow.start, kMsiWindow.last)) return " (the MSI window)";
  if (r.last == UINT64_MAX && r.start != 0) return " (beyond the host IOMMU's address width)";
  return "";
}

// "256 MiB": the largest binary unit that divides `bytes`.
std::string FormatSize(uint64_t bytes) {
  if (bytes != 0 && bytes % (1ull << 30) == 0) return absl::StrFormat("%d GiB", bytes >> 30);
  if (bytes != 0 && bytes % (1ull << 20) == 0) return absl::StrFormat("%d MiB", bytes >> 20);
  if (bytes != 0 && bytes % (1ull << 10) == 0) return absl::StrFormat("%d KiB", bytes >> 10);
  return absl::StrFormat("%d bytes", bytes);
}

std::string DescribeHostIommu(const HostIommuInfo& info) {
  std::string s = info.type == IOMMU_HW_INFO_TYPE_INTEL_VTD
                      ? absl::StrFormat("intel-vtd cap=0x%x ecap=0x%x", info.vtd_cap, info.vtd_ecap)
                  : info.type == IOMMU_HW_INFO_TYPE_NONE ? std::string("of unreported type")
                                                         : absl::StrFormat("of type %d", info.type);
  if (info.out_capabilities & IOMMU_HW_CAP_DIRTY_TRACKING) absl::StrAppend(&s, " dirty-tracking");
  if (info.max_pasid_log2) absl::StrAppend(&s, " pasid-bits=", static_cast<int>(info.max_pasid_log2));
  return s;
}

// Unmaps the first `count` ranges of `ram` (last first); failures are logged, there is nothing
// better to do on a rollback or teardown path.
void UnmapRam(IommufdOps& ops, uint32_t ioas_id, const std::vector<RamRange>& ram, size_t count) {
  for (size_t i = count; i-- > 0;) {
    absl::Status s = ops.Unmap(ioas_id, ram[i].gpa, ram[i].size);
    if (!s.ok()) ABSL_RAW_LOG(WARNING, "iommufd: unmapping guest RAM: %s", std::string(s.message()).c_str());
  }
}

}  // namespace

const RamRange* FindRamRange(const std::vector<RamRange>& ram, uint64_t gpa, uint64_t len) {
  auto it = std::upper_bound(ram.begin(), ram.end(), gpa, [](uint64_t g, const RamRange& r) { return g < r.gpa; });
  if (it == ram.begin()) return nullptr;
  const RamRange& r = *std::prev(it);
  const uint64_t off = gpa - r.gpa;
  if (off >= r.size || len > r.size - off) return nullptr;
  return &r;
}

absl::StatusOr<std::unique_ptr<IommufdBackend>> IommufdBackend::Create(std::unique_ptr<IommufdOps> ops,
                                                                       std::vector<RamRange> ram) {
  if (!ops) return absl::InvalidArgumentError("iommufd: no /dev/iommu");
  // Checked here, before anything is allocated: every later step relies on gpa..last not wrapping.
  std::vector<IovaRange> spans;
  for (const RamRange& r : ram) {
    std::string range = FormatIovaLen(r.gpa, r.size);
    std::optional<uint64_t> last = LastOf(r.gpa, r.size);
    if (!last) return absl::InvalidArgumentError(absl::StrFormat("iommufd: guest RAM %s is empty or wraps", range));
    if (!r.host || !LastOf(reinterpret_cast<uintptr_t>(r.host), r.size))
      return absl::InvalidArgumentError(
          absl::StrFormat("iommufd: guest RAM %s has no or a wrapping host address %p", range, r.host));
    if (r.gpa % kPageSize || r.size % kPageSize || reinterpret_cast<uintptr_t>(r.host) % kPageSize)
      return absl::InvalidArgumentError(
          absl::StrFormat("iommufd: guest RAM %s at host %p is not 4 KiB aligned", range, r.host));
    spans.push_back({r.gpa, *last});
  }
  std::sort(spans.begin(), spans.end(), [](const IovaRange& a, const IovaRange& b) { return a.start < b.start; });
  for (size_t i = 1; i < spans.size(); ++i) {
    if (spans[i].start <= spans[i - 1].last)
      return absl::InvalidArgumentError(absl::StrFormat("iommufd: guest RAM ranges %s and %s overlap",
                                                        FormatIovaRange(spans[i - 1]), FormatIovaRange(spans[i])));
  }

  absl::StatusOr<uint32_t> ioas = ops->AllocIoas();
  if (!ioas.ok()) return Annotate(ioas.status(), "iommufd: allocating the IOAS for guest RAM");
  std::unique_ptr<IommufdBackend> backend(new IommufdBackend(std::move(ops), std::move(ram)));
  backend->ioas_id_ = *ioas;
  return backend;
}

IommufdBackend::~IommufdBackend() {
  if (mapped_) UnmapRam(*ops_, ioas_id_, ram_, ram_.size());
  if (absl::Status s = ops_->Destroy(ioas_id_); !s.ok())
    ABSL_RAW_LOG(WARNING, "iommufd: destroying the guest RAM IOAS: %s", std::string(s.message()).c_str());
}

absl::Status IommufdBackend::CheckRamAllowed(const std::vector<IovaRange>& allowed, const std::string& name) const {
  std::vector<IovaRange> reserved = Complement(allowed);
  for (const RamRange& r : ram_) {
    uint64_t last = r.gpa + (r.size - 1);  // Create checked it does not wrap
    bool inside = std::any_of(allowed.begin(), allowed.end(),
                              [&](const IovaRange& a) { return a.start <= r.gpa && last <= a.last; });
    if (inside) continue;
    std::vector<std::string> hits;
    for (const IovaRange& res : reserved)
      if (Intersects(res, r.gpa, last)) hits.push_back(FormatIovaRange(res) + ReservedKind(res));
    return absl::InvalidArgumentError(absl::StrFormat(
        "iommufd: guest RAM %s overlaps the host IOMMU's reserved IOVA range%s %s of %s: give the guest less "
        "memory or move its RAM",
        FormatIovaLen(r.gpa, r.size), hits.size() > 1 ? "s" : "", absl::StrJoin(hits, ", "), name));
  }
  return absl::OkStatus();
}

absl::Status IommufdBackend::OnDeviceAttached(uint32_t dev_id, const std::string& name) {
  if (info_.count(dev_id))
    return absl::FailedPreconditionError(absl::StrFormat("iommufd: %s (dev %d) is already attached", name, dev_id));
  absl::StatusOr<HostIommuInfo> info = ops_->GetHwInfo(dev_id);
  if (!info.ok()) return Annotate(info.status(), absl::StrCat("iommufd: reading the host IOMMU of ", name));
  // The allowed ranges narrowed when the owner attached the device (its reserved regions).
  absl::StatusOr<std::vector<IovaRange>> allowed = ops_->AllowedIovaRanges(ioas_id_);
  if (!allowed.ok())
    return Annotate(allowed.status(), absl::StrCat("iommufd: reading the usable IOVA ranges after attaching ", name));
  std::vector<IovaRange> normalized = Normalize(std::move(*allowed));
  if (absl::Status s = CheckRamAllowed(normalized, name); !s.ok()) return s;

  if (!mapped_) {
    for (size_t i = 0; i < ram_.size(); ++i) {
      const RamRange& r = ram_[i];
      absl::Status s = ops_->MapFixed(ioas_id_, r.gpa, r.host, r.size, /*writeable=*/true);
      if (!s.ok()) {
        UnmapRam(*ops_, ioas_id_, ram_, i);
        return Annotate(s, absl::StrFormat("iommufd: mapping guest RAM %s (range %d of %d) for %s",
                                           FormatIovaLen(r.gpa, r.size), i + 1, ram_.size(), name));
      }
    }
    mapped_ = true;
  }
  info_[dev_id] = *info;
  reserved_ = Complement(normalized);
  return absl::OkStatus();
}

void IommufdBackend::OnDeviceDetaching(uint32_t dev_id) { info_.erase(dev_id); }

std::string IommufdBackend::Describe() const {
  uint64_t total = 0;
  for (const RamRange& r : ram_) total += r.size;
  std::string s = absl::StrFormat("iommufd: IOAS %d, %s guest RAM %s %d range%s%s", ioas_id_, FormatSize(total),
                                  mapped_ ? "mapped in" : "in", ram_.size(), ram_.size() == 1 ? "" : "s",
                                  mapped_ ? "" : " not mapped yet");
  if (info_.empty()) return s + ", no device attached";
  std::vector<std::string> reserved;
  for (const IovaRange& r : reserved_) reserved.push_back(absl::StrFormat("[0x%x-0x%x]", r.start, r.last));
  absl::StrAppend(&s, ", reserved IOVA ", reserved.empty() ? "none" : absl::StrJoin(reserved, ", "));
  // Devices behind the same IOMMU report the same registers: list each distinct IOMMU once.
  std::vector<HostIommuInfo> distinct;
  for (const auto& [id, info] : info_)
    if (std::find(distinct.begin(), distinct.end(), info) == distinct.end()) distinct.push_back(info);
  std::vector<std::string> hosts;
  for (const HostIommuInfo& info : distinct) hosts.push_back(DescribeHostIommu(info));
  absl::StrAppend(&s, ", host IOMMU", distinct.size() > 1 ? "s " : " ", absl::StrJoin(hosts, "; "));
  return s;
}

}  // namespace ionest::iommufd
