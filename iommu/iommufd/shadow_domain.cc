#include "iommu/iommufd/shadow_domain.h"

#include <algorithm>
#include <iterator>
#include <string>
#include <utility>

#include "absl/base/internal/raw_logging.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "iommu/iommufd/iommufd_kernel.h"
#include "iommu/walk_types.h"

namespace ionest::iommufd {

namespace {

constexpr uint64_t kPageMask = kPage4K - 1;

absl::Status Annotate(const absl::Status& s, absl::string_view context) {
  return absl::Status(s.code(), absl::StrCat(context, ": ", s.message()));
}

absl::Status ValidateConfig(const SecondStageConfig& c) {
  if (!IsValidSecondStageConfig(c))
    return absl::InvalidArgumentError(absl::StrFormat(
        "second-stage config not walkable: levels %d, aw_bits %d, haw_bits %d", c.levels, c.aw_bits, c.haw_bits));
  // The host IOMMU walks the shadow, not the guest's table: it would never set the guest's A/D
  // bits (VT-d §9.8, SSADE), so a guest relying on them would silently lose dirty pages.
  if (c.ad_enabled)
    return absl::UnimplementedError("second-stage A/D updates (SSADE) cannot be shadowed in an iommufd IOAS");
  return absl::OkStatus();
}

}  // namespace

struct ShadowDomain::WalkState {
  uint64_t first = 0;  // walked IOVA range, inclusive, 4 KiB aligned
  uint64_t last = 0;
  uint64_t reads = 0;  // table entries read so far
  std::vector<Run> runs;
};

absl::StatusOr<std::unique_ptr<ShadowDomain>> ShadowDomain::Create(IommufdOps& ops, const PhysMemory& guest,
                                                                   std::vector<RamRange> ram,
                                                                   const SecondStageConfig& config,
                                                                   ShadowLimits limits) {
  if (absl::Status s = ValidateConfig(config); !s.ok()) return s;
  for (const RamRange& r : ram) {
    const uintptr_t host = reinterpret_cast<uintptr_t>(r.host);
    uint64_t end;
    uintptr_t host_end;
    if (r.size == 0 || ((r.gpa | r.size | host) & kPageMask) != 0 || host == 0 ||
        __builtin_add_overflow(r.gpa, r.size, &end) || __builtin_add_overflow(host, r.size, &host_end))
      return absl::InvalidArgumentError(
          absl::StrFormat("guest RAM range gpa %#x size %#x host %p: empty, unaligned or wrapping", r.gpa, r.size,
                          r.host));
  }
  std::sort(ram.begin(), ram.end(), [](const RamRange& a, const RamRange& b) { return a.gpa < b.gpa; });
  for (size_t i = 1; i < ram.size(); ++i)
    if (ram[i - 1].gpa + ram[i - 1].size > ram[i].gpa)
      return absl::InvalidArgumentError(
          absl::StrFormat("guest RAM ranges at %#x and %#x overlap", ram[i - 1].gpa, ram[i].gpa));
  absl::StatusOr<uint32_t> id = ops.AllocIoas();
  if (!id.ok()) return Annotate(id.status(), "allocating the second-stage shadow IOAS");
  return std::unique_ptr<ShadowDomain>(new ShadowDomain(ops, guest, std::move(ram), config, limits, *id));
}

ShadowDomain::~ShadowDomain() {
  if (!areas_.empty()) {
    ++stats_.unmap_calls;
    if (absl::Status s = ops_.Unmap(ioas_id_, 0, UINT64_MAX); !s.ok())
      ABSL_RAW_LOG(WARNING, "iommufd: unmapping the second-stage shadow IOAS %u: %s", ioas_id_,
                   std::string(s.message()).c_str());
  }
  if (absl::Status s = ops_.Destroy(ioas_id_); !s.ok())
    ABSL_RAW_LOG(WARNING, "iommufd: destroying the second-stage shadow IOAS %u: %s", ioas_id_,
                 std::string(s.message()).c_str());
}

ShadowDomain::Stats ShadowDomain::stats() const {
  Stats s = stats_;
  s.mappings = areas_.size();
  return s;
}

absl::Status ShadowDomain::SetConfig(const SecondStageConfig& config) {
  if (absl::Status s = ValidateConfig(config); !s.ok()) return s;
  config_ = config;
  return SyncAll();
}

const RamRange* ShadowDomain::FindRam(uint64_t gpa, uint64_t len) const { return FindRamRange(ram_, gpa, len); }

// Recursive descent over the present entries of one table (VT-d §9.8) that lie in [st.first,
// st.last]. `base`: the IOVA the table's entry 0 starts at; `rights`: the R/W/X the levels above
// allow (effective rights are the intersection over all levels, VT-d §3.7.1). Only running out of
// the read budget is an error; everything else the guest got wrong is skipped and counted.
absl::Status ShadowDomain::WalkTable(uint64_t table, int level, uint64_t base, uint32_t rights, WalkState& st) {
  const int shift = 12 + 9 * (level - 1);
  const uint64_t entry_size = 1ull << shift;
  const uint64_t span_last = base + (entry_size << 9) - 1;  // level <= 5: no overflow (< 2^58)
  const uint64_t lo = std::max(st.first, base);
  const uint64_t hi = std::min(st.last, span_last);
  if (lo > hi) return absl::OkStatus();
  const uint64_t i0 = (lo - base) >> shift;
  const uint64_t i1 = (hi - base) >> shift;
  const uint64_t n = i1 - i0 + 1;
  if (n > limits_.max_table_reads_per_sync - std::min(st.reads, limits_.max_table_reads_per_sync))
    return absl::ResourceExhaustedError(absl::StrFormat(
        "walking the guest second-stage table needs more than %d entry reads", limits_.max_table_reads_per_sync));
  st.reads += n;
  uint64_t entries[512];
  if (!guest_.Read(table + i0 * 8, entries, n * 8).ok()) {  // table pointer outside guest memory
    ++stats_.skipped_tables;
    return absl::OkStatus();
  }
  for (uint64_t i = i0; i <= i1; ++i) {
    const uint64_t e = entries[i - i0];
    const uint64_t iova = base + i * entry_size;
    if (!(e & (ss::kR | ss::kW | ss::kX))) continue;  // not present: R=W=X=0
    const bool leaf = level == 1 || (level <= 3 && (e & ss::kPS));
    uint64_t& skipped = leaf ? stats_.skipped_leaves : stats_.skipped_tables;
    if (e & SecondStageReservedMask(config_, level, e)) {
      ++skipped;
      continue;
    }
    const uint32_t r = rights & SecondStageEntryRights(e);
    // iommufd mappings are always readable: a leaf (or subtree) the guest made write- or
    // execute-only cannot be shadowed without granting reads the guest did not, so it stays
    // unmapped and DMA there faults in the host.
    if (!(r & kDmaRead)) {
      ++skipped;
      continue;
    }
    if (!leaf) {
      if (absl::Status s = WalkTable(e & ss::kAddrMask, level - 1, iova, r, st); !s.ok()) return s;
      continue;
    }
    const uint64_t out = e & ss::kAddrMask & ~(entry_size - 1);
    const RamRange* ram = FindRam(out, entry_size);
    if (ram == nullptr) {  // not (wholly) guest RAM: never pinned, DMA there faults in the host
      ++skipped;
      continue;
    }
    const uint64_t p_lo = std::max(iova, st.first);
    const uint64_t p_hi = std::min(iova + entry_size - 1, st.last);
    const uintptr_t host = reinterpret_cast<uintptr_t>(ram->host) + (out - ram->gpa) + (p_lo - iova);
    const bool writeable = r & kDmaWrite;
    const uint64_t len = p_hi - p_lo + 1;
    if (!st.runs.empty()) {
      Run& prev = st.runs.back();
      if (prev.iova + prev.len == p_lo && prev.host + prev.len == host && prev.writeable == writeable) {
        prev.len += len;
        continue;
      }
    }
    st.runs.push_back({p_lo, len, host, writeable});
  }
  return absl::OkStatus();
}

absl::Status ShadowDomain::UnmapAreas(const std::vector<uint64_t>& starts) {
  absl::Status first_error;
  size_t i = 0;
  while (i < starts.size()) {
    // A group: areas that are neighbours in areas_ (nothing kept between them), one IOAS_UNMAP.
    auto it = areas_.find(starts[i]);
    size_t j = i + 1;
    auto last = it;
    while (j < starts.size() && std::next(last) != areas_.end() && std::next(last)->first == starts[j]) {
      ++last;
      ++j;
    }
    const uint64_t g_first = it->first;
    const uint64_t g_len = last->first + last->second.len - g_first;
    ++stats_.unmap_calls;
    absl::Status s = ops_.Unmap(ioas_id_, g_first, g_len);
    if (s.ok()) {
      areas_.erase(it, std::next(last));
    } else if (j - i == 1) {
      if (s.code() == absl::StatusCode::kNotFound) areas_.erase(it);  // nothing mapped there any more
      else if (first_error.ok()) first_error = s;
    } else {
      // The kernel may have unmapped some areas before failing: retry one by one, ENOENT meaning
      // the area is already gone.
      for (size_t k = i; k < j; ++k) {
        auto a = areas_.find(starts[k]);
        ++stats_.unmap_calls;
        absl::Status one = ops_.Unmap(ioas_id_, a->first, a->second.len);
        if (one.ok() || one.code() == absl::StatusCode::kNotFound) areas_.erase(a);
        else if (first_error.ok()) first_error = one;
      }
    }
    i = j;
  }
  if (!first_error.ok()) return Annotate(first_error, "unmapping");
  return absl::OkStatus();
}

absl::Status ShadowDomain::ClearRange(uint64_t first, uint64_t last) {
  std::vector<uint64_t> starts;
  for (auto it = areas_.lower_bound(first); it != areas_.end() && it->first <= last; ++it) starts.push_back(it->first);
  return UnmapAreas(starts);
}

absl::Status ShadowDomain::MapPiece(const Run& run) {
  if (areas_.size() >= limits_.max_mappings)
    return absl::ResourceExhaustedError(absl::StrFormat("more than %d mappings", limits_.max_mappings));
  ++stats_.map_calls;
  absl::Status s = ops_.MapFixed(ioas_id_, run.iova, reinterpret_cast<void*>(run.host), run.len, run.writeable);
  if (!s.ok()) return s;
  areas_.emplace(run.iova, Area{run.len, run.host, run.writeable});
  return absl::OkStatus();
}

absl::Status ShadowDomain::MapRun(const Run& run, std::optional<std::vector<IovaRange>>& allowed) {
  if (!allowed) {
    absl::Status s = MapPiece(run);
    if (s.ok() || s.code() != absl::StatusCode::kInvalidArgument) return s;
    // EINVAL: most likely the run touches an IOVA range the host reserves for the attached device
    // (the MSI window). Learn the allowed ranges once per Sync and map around them.
    absl::StatusOr<std::vector<IovaRange>> got = ops_.AllowedIovaRanges(ioas_id_);
    if (!got.ok()) return got.status();
    std::sort(got->begin(), got->end(), [](const IovaRange& a, const IovaRange& b) { return a.start < b.start; });
    allowed = std::move(*got);
  }
  const uint64_t run_last = run.iova + run.len - 1;
  uint64_t cursor = run.iova;  // first IOVA of the run not yet mapped or skipped
  for (const IovaRange& r : *allowed) {
    if (r.last < r.start || r.start > run_last || r.last < cursor) continue;
    const uint64_t lo = (std::max(r.start, cursor) + kPageMask) & ~kPageMask;  // <= run_last + 1 < 2^58
    const uint64_t hi_end = (std::min(r.last, run_last) + 1) & ~kPageMask;      // exclusive
    if (lo >= hi_end) continue;
    if (lo > cursor) ++stats_.skipped_reserved;
    // An EINVAL inside an allowed range is not about reserved ranges: a real error.
    if (absl::Status s = MapPiece({lo, hi_end - lo, run.host + (lo - run.iova), run.writeable}); !s.ok()) return s;
    cursor = hi_end;
  }
  if (cursor <= run_last) ++stats_.skipped_reserved;
  return absl::OkStatus();
}

// Replays a guest invalidation (with CAP.CM=1 also of not-present -> present changes, VT-d §6.1).
absl::Status ShadowDomain::Sync(uint64_t iova, uint64_t size) {
  const uint64_t in_last = (1ull << config_.aw_bits) - 1;  // aw_bits <= 57 (IsValidSecondStageConfig)
  uint64_t first = iova;
  uint64_t last;
  if (size == 0 || __builtin_add_overflow(iova, size - 1, &last)) {
    first = 0;
    last = in_last;
  }
  if (first > in_last) return absl::OkStatus();  // beyond the input width: nothing can be mapped there
  last = std::min(last, in_last);
  first &= ~kPageMask;
  last |= kPageMask;
  // IOMMU_IOAS_UNMAP cannot split an area: widen to the areas the range cuts, re-walk the union.
  if (auto it = areas_.upper_bound(first); it != areas_.begin()) {
    --it;
    if (it->first + it->second.len > first) first = it->first;
  }
  if (auto it = areas_.upper_bound(last); it != areas_.begin()) {
    --it;
    last = std::max(last, it->first + it->second.len - 1);
  }
  const std::string what = absl::StrFormat("shadow IOAS %u: syncing [%#x, %#x]", ioas_id_, first, last);
  // On failure: nothing of [first, last] stays mapped (no half-mapped range for the device).
  auto fail = [&](const absl::Status& s) {
    absl::Status annotated = Annotate(s, what);
    if (absl::Status c = ClearRange(first, last); !c.ok())
      annotated = absl::Status(annotated.code(), absl::StrCat(annotated.message(), "; then ", c.message()));
    return annotated;
  };

  // 1. Walk the guest table over the range.
  WalkState st;
  st.first = first;
  st.last = last;
  if (absl::Status s = WalkTable(config_.root & ss::kAddrMask, config_.levels, 0, kDmaRwx, st); !s.ok())
    return fail(s);

  // 2. Diff against the areas inside [first, last] (all of them lie wholly inside it): an area
  // the walk confirms stays, the others go.
  std::vector<uint64_t> stale;
  std::vector<std::pair<uint64_t, uint64_t>> kept;  // [start, end)
  size_t r = 0;
  for (auto a = areas_.lower_bound(first); a != areas_.end() && a->first <= last; ++a) {
    const uint64_t a_end = a->first + a->second.len;
    while (r < st.runs.size() && st.runs[r].iova + st.runs[r].len <= a->first) ++r;
    const bool keep = r < st.runs.size() && st.runs[r].iova <= a->first &&
                      a_end <= st.runs[r].iova + st.runs[r].len &&
                      st.runs[r].host + (a->first - st.runs[r].iova) == a->second.host &&
                      st.runs[r].writeable == a->second.writeable;
    if (keep) kept.emplace_back(a->first, a_end);
    else stale.push_back(a->first);
  }
  // 3. What is left to map: the walked runs minus the kept areas.
  std::vector<Run> to_map;
  size_t k = 0;
  for (const Run& run : st.runs) {
    const uint64_t end = run.iova + run.len;
    uint64_t cur = run.iova;
    for (; k < kept.size() && kept[k].first < end; ++k) {
      if (kept[k].first > cur) to_map.push_back({cur, kept[k].first - cur, run.host + (cur - run.iova), run.writeable});
      cur = kept[k].second;
    }
    if (cur < end) to_map.push_back({cur, end - cur, run.host + (cur - run.iova), run.writeable});
  }
  if (areas_.size() - stale.size() + to_map.size() > limits_.max_mappings)
    return fail(absl::ResourceExhaustedError(absl::StrFormat("needs %d mappings, more than the limit of %d",
                                                             areas_.size() - stale.size() + to_map.size(),
                                                             limits_.max_mappings)));

  // 4. Apply: unmap what changed, then map what is new.
  if (absl::Status s = UnmapAreas(stale); !s.ok()) return fail(s);
  std::optional<std::vector<IovaRange>> allowed;  // host-allowed IOVA ranges, fetched on first EINVAL
  for (const Run& run : to_map) {
    if (absl::Status s = MapRun(run, allowed); !s.ok())
      return fail(Annotate(s, absl::StrFormat("mapping IOVA [%#x, +%#x) to host %#x", run.iova, run.len, run.host)));
  }
  return absl::OkStatus();
}

}  // namespace ionest::iommufd
