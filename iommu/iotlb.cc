#include "iommu/iotlb.h"

#include <algorithm>
#include <vector>

#include "absl/container/inlined_vector.h"

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

Iotlb::Iotlb(size_t capacity)
    : capacity_(std::clamp<size_t>(capacity, 1, size_t{1} << 24)), slot_keys_(capacity_) {
  free_slots_.reserve(capacity_);
  for (size_t i = capacity_; i-- > 0;) free_slots_.push_back(static_cast<uint32_t>(i));
  index_.reserve(capacity_);
}

uint64_t Iotlb::generation() const { return generation_.load(std::memory_order_acquire); }

size_t Iotlb::size() const {
  absl::ReaderMutexLock lock(&mu_);
  return index_.size();
}

IotlbStats Iotlb::stats() const {
  absl::ReaderMutexLock lock(&mu_);
  IotlbStats s = stats_;
  s.hits = hits_.load(std::memory_order_relaxed);
  s.misses = misses_.load(std::memory_order_relaxed);
  return s;
}

std::optional<IotlbHit> Iotlb::Lookup(uint16_t did, uint32_t pasid, uint64_t addr, uint32_t access) {
  absl::ReaderMutexLock lock(&mu_);
  for (int i = 0; i < kNumSizes; ++i) {
    if (size_counts_[i] == 0) continue;
    const int shift = PageShift(i);
    auto it = index_.find(Key::Make(did, pasid, addr >> shift, i));
    if (it == index_.end()) continue;
    Entry& e = it->second;
    const uint32_t perms = (access & kDmaPriv) ? e.supervisor_perms : e.user_perms;
    if ((access & kDmaRwx) & ~perms) break;  // not enough cached rights: walk again
    std::atomic_ref<uint8_t> referenced(e.referenced);
    if (!referenced.load(std::memory_order_relaxed)) referenced.store(1, std::memory_order_relaxed);
    hits_.fetch_add(1, std::memory_order_relaxed);
    const uint64_t page_size = 1ull << shift;
    return IotlbHit{e.output_base | (addr & (page_size - 1)), page_size, perms, e.type};
  }
  misses_.fetch_add(1, std::memory_order_relaxed);
  return std::nullopt;
}

uint32_t Iotlb::AllocSlotLocked() {
  if (!free_slots_.empty()) {
    const uint32_t slot = free_slots_.back();
    free_slots_.pop_back();
    return slot;
  }
  // CLOCK: referenced entries get a second chance. All slots are in use and no reader runs, so
  // this ends within one full turn plus one step.
  for (;;) {
    const uint32_t slot = static_cast<uint32_t>(clock_hand_);
    clock_hand_ = (clock_hand_ + 1) % capacity_;
    auto it = index_.find(slot_keys_[slot]);
    if (it->second.referenced) {
      it->second.referenced = 0;
      continue;
    }
    EraseLocked(it);
    ++stats_.evictions;
    free_slots_.pop_back();  // the slot EraseLocked just freed
    return slot;
  }
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
  const Key key = Key::Make(did, pasid, addr >> PageShift(i), i);
  Entry entry{result.page_output(), result.user_perms, result.supervisor_perms, 0, type, 0};
  if (auto it = index_.find(key); it != index_.end()) {
    entry.slot = it->second.slot;
    it->second = entry;
  } else {
    entry.slot = AllocSlotLocked();
    slot_keys_[entry.slot] = key;
    index_.emplace(key, entry);
    ++tag_counts_[DidPasid{did, pasid}];
    ++size_counts_[i];
  }
  ++stats_.inserts;
}

void Iotlb::EraseLocked(Map::iterator it) {
  const Key key = it->first;
  const uint32_t slot = it->second.slot;
  index_.erase(it);
  --size_counts_[key.size_index()];
  auto tc = tag_counts_.find(DidPasid{key.did(), key.pasid()});
  if (tc != tag_counts_.end() && --tc->second == 0) tag_counts_.erase(tc);
  free_slots_.push_back(slot);
}

void Iotlb::BumpGenerationLocked() { generation_.fetch_add(1, std::memory_order_acq_rel); }

template <typename Pred>
void Iotlb::EraseIfLocked(Pred pred) {
  for (auto it = index_.begin(); it != index_.end();) {
    auto cur = it++;
    if (pred(cur->first, cur->second)) {
      EraseLocked(cur);
      ++stats_.invalidated_entries;
    }
  }
}

void Iotlb::InvalidateAll() {
  absl::MutexLock lock(&mu_);
  BumpGenerationLocked();
  EraseIfLocked([](const Key&, const Entry&) { return true; });
}

void Iotlb::InvalidateDomain(uint16_t did, uint32_t type_mask) {
  absl::MutexLock lock(&mu_);
  BumpGenerationLocked();
  EraseIfLocked([&](const Key& k, const Entry& e) { return k.did() == did && (type_mask & IotlbTypeBit(e.type)); });
}

void Iotlb::InvalidatePasid(uint16_t did, uint32_t pasid, uint32_t type_mask) {
  absl::MutexLock lock(&mu_);
  BumpGenerationLocked();
  if (!tag_counts_.contains(DidPasid{did, pasid})) return;
  EraseIfLocked([&](const Key& k, const Entry& e) {
    return k.did() == did && k.pasid() == pasid && (type_mask & IotlbTypeBit(e.type));
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
  absl::InlinedVector<uint32_t, 8> pasids;
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
    EraseIfLocked([&](const Key& k, const Entry& e) {
      if (k.did() != did || (pasid && k.pasid() != *pasid) || !matches(e)) return false;
      const int shift = PageShift(k.size_index());
      const uint64_t e_first = k.page() << shift;
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
        auto it = index_.find(Key::Make(did, p, page, i));
        if (it != index_.end() && matches(it->second)) {
          EraseLocked(it);
          ++stats_.invalidated_entries;
        }
        if (page == (last >> shift)) break;
      }
    }
  }
}

}  // namespace ionest
