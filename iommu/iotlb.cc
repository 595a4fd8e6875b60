#include "iommu/iotlb.h"

#include <algorithm>
#include <vector>

namespace ionest {
namespace {

int SizeIndex(uint64_t page_size) {
  switch (page_size) {
    case kPage4K: return 0;
    case kPage2M: return 1;
    case kPage1G: return 2;
    default: return -1;
  }
}

}  // namespace

Iotlb::Iotlb(size_t capacity) : capacity_(std::max<size_t>(capacity, 1)) {}

uint64_t Iotlb::generation() const { return generation_.load(std::memory_order_acquire); }

size_t Iotlb::size() const {
  absl::MutexLock lock(&mu_);
  return index_.size();
}

IotlbStats Iotlb::stats() const {
  absl::MutexLock lock(&mu_);
  return stats_;
}

std::optional<IotlbHit> Iotlb::Lookup(uint16_t did, uint32_t pasid, uint64_t addr, uint32_t access) {
  absl::MutexLock lock(&mu_);
  for (int i = 0; i < kNumSizes; ++i) {
    if (size_counts_[i] == 0) continue;
    const int shift = PageShift(i);
    auto it = index_.find(Key{addr >> shift, pasid, did, static_cast<uint8_t>(i)});
    if (it == index_.end()) continue;
    const Entry& e = *it->second;
    const uint32_t perms = (access & kDmaPriv) ? e.supervisor_perms : e.user_perms;
    if ((access & kDmaRwx) & ~perms) break;  // not enough cached rights: walk again
    lru_.splice(lru_.begin(), lru_, it->second);
    ++stats_.hits;
    const uint64_t page_size = 1ull << shift;
    return IotlbHit{e.output_base | (addr & (page_size - 1)), page_size, perms, e.type};
  }
  ++stats_.misses;
  return std::nullopt;
}

void Iotlb::Insert(uint16_t did, uint32_t pasid, uint64_t addr, const WalkResult& result, IotlbType type,
                   uint64_t generation) {
  if (!result.ok) return;  // never cache faults (not-present results in particular)
  const int i = SizeIndex(result.page_size);
  if (i < 0) return;
  absl::MutexLock lock(&mu_);
  if (generation != generation_.load(std::memory_order_relaxed)) {
    ++stats_.stale_inserts_dropped;
    return;
  }
  const Key key{addr >> PageShift(i), pasid, did, static_cast<uint8_t>(i)};
  Entry entry{key, result.page_output(), result.user_perms, result.supervisor_perms, type};
  if (auto it = index_.find(key); it != index_.end()) {
    *it->second = entry;
    lru_.splice(lru_.begin(), lru_, it->second);
    ++stats_.inserts;
    return;
  }
  while (index_.size() >= capacity_) {
    EraseLocked(std::prev(lru_.end()));
    ++stats_.evictions;
  }
  lru_.push_front(entry);
  index_.emplace(key, lru_.begin());
  ++tag_counts_[DidPasid{did, pasid}];
  ++size_counts_[i];
  ++stats_.inserts;
}

void Iotlb::EraseLocked(List::iterator it) {
  const Key key = it->key;
  index_.erase(key);
  --size_counts_[key.size_index];
  auto tc = tag_counts_.find(DidPasid{key.did, key.pasid});
  if (tc != tag_counts_.end() && --tc->second == 0) tag_counts_.erase(tc);
  lru_.erase(it);
}

void Iotlb::BumpGenerationLocked() { generation_.fetch_add(1, std::memory_order_acq_rel); }

template <typename Pred>
void Iotlb::EraseIfLocked(Pred pred) {
  for (auto it = lru_.begin(); it != lru_.end();) {
    auto next = std::next(it);
    if (pred(*it)) {
      EraseLocked(it);
      ++stats_.invalidated_entries;
    }
    it = next;
  }
}

void Iotlb::InvalidateAll() {
  absl::MutexLock lock(&mu_);
  BumpGenerationLocked();
  stats_.invalidated_entries += index_.size();
  lru_.clear();
  index_.clear();
  tag_counts_.clear();
  std::fill(std::begin(size_counts_), std::end(size_counts_), 0);
}

void Iotlb::InvalidateDomain(uint16_t did, uint32_t type_mask) {
  absl::MutexLock lock(&mu_);
  BumpGenerationLocked();
  EraseIfLocked([&](const Entry& e) { return e.key.did == did && (type_mask & IotlbTypeBit(e.type)); });
}

void Iotlb::InvalidatePasid(uint16_t did, uint32_t pasid, uint32_t type_mask) {
  absl::MutexLock lock(&mu_);
  BumpGenerationLocked();
  if (!tag_counts_.contains(DidPasid{did, pasid})) return;
  EraseIfLocked([&](const Entry& e) {
    return e.key.did == did && e.key.pasid == pasid && (type_mask & IotlbTypeBit(e.type));
  });
}

void Iotlb::InvalidatePages(uint16_t did, std::optional<uint32_t> pasid, uint64_t addr, unsigned am, bool ih,
                            uint32_t type_mask) {
  // ih: see header; leaf entries are invalidated regardless (VT-d §6.5.2.3).
  absl::MutexLock lock(&mu_);
  BumpGenerationLocked();
  // Range [first, last] of 2^am 4 KiB pages, aligned to its size; AM >= 52 covers everything.
  const unsigned range_shift = std::min(12u + am, 64u);
  const uint64_t range_mask = range_shift >= 64 ? ~0ull : (1ull << range_shift) - 1;
  const uint64_t first = addr & ~range_mask;
  const uint64_t last = first | range_mask;

  // PASIDs to probe in this domain.
  std::vector<uint32_t> pasids;
  if (pasid) {
    if (tag_counts_.contains(DidPasid{did, *pasid})) pasids.push_back(*pasid);
  } else {
    for (const auto& [tag, count] : tag_counts_)
      if (tag.did == did) pasids.push_back(tag.pasid);
  }
  if (pasids.empty()) return;

  // Probe candidate keys when that is cheaper than scanning every entry.
  uint64_t candidates = 0;
  for (int i = 0; i < kNumSizes && candidates <= index_.size(); ++i) {
    if (size_counts_[i] == 0) continue;
    const int shift = PageShift(i);
    const uint64_t pages = (last >> shift) - (first >> shift) + 1;  // <= 2^52, no wrap
    candidates = pages > index_.size() ? ~0ull : candidates + pages * pasids.size();
  }
  auto matches = [&](const Entry& e) { return (type_mask & IotlbTypeBit(e.type)) != 0; };
  if (candidates > index_.size()) {
    EraseIfLocked([&](const Entry& e) {
      if (e.key.did != did || (pasid && e.key.pasid != *pasid) || !matches(e)) return false;
      const int shift = PageShift(e.key.size_index);
      const uint64_t e_first = e.key.page << shift;
      const uint64_t e_last = e_first | ((1ull << shift) - 1);
      return e_first <= last && first <= e_last;
    });
    return;
  }
  for (int i = 0; i < kNumSizes; ++i) {
    if (size_counts_[i] == 0) continue;
    const int shift = PageShift(i);
    for (uint32_t p : pasids) {
      for (uint64_t page = first >> shift;; ++page) {
        auto it = index_.find(Key{page, p, did, static_cast<uint8_t>(i)});
        if (it != index_.end() && matches(*it->second)) {
          EraseLocked(it->second);
          ++stats_.invalidated_entries;
        }
        if (page == (last >> shift)) break;
      }
    }
  }
}

}  // namespace ionest
