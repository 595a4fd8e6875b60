#include "devices/testdev/dma_test_device_atc.h"

#include <algorithm>

namespace ionest::dmatest {
namespace {

uint64_t RangeEnd(uint64_t addr, uint64_t size) {
  if (size == 0 || addr + size < addr) return UINT64_MAX;  // saturate: "to the end"
  return addr + size - 1;
}

bool Overlaps(const AtcEntry& e, uint64_t first, uint64_t last) {
  return e.iova <= last && RangeEnd(e.iova, e.size) >= first;
}

}  // namespace

std::optional<AtcEntry> DeviceAtc::Lookup(std::optional<uint32_t> pasid, bool priv, uint64_t addr) {
  absl::MutexLock l(&mu_);
  for (const AtcEntry& e : entries_)
    if (e.pasid == pasid && e.priv == priv && addr >= e.iova && addr <= RangeEnd(e.iova, e.size)) return e;
  return std::nullopt;
}

bool DeviceAtc::Insert(const AtcEntry& entry, uint64_t generation) {
  absl::MutexLock l(&mu_);
  if (generation != generation_) return false;
  const uint64_t last = RangeEnd(entry.iova, entry.size);
  std::erase_if(entries_, [&](const AtcEntry& e) {
    return e.pasid == entry.pasid && e.priv == entry.priv && Overlaps(e, entry.iova, last);
  });
  if (entries_.size() >= capacity_) entries_.erase(entries_.begin());
  entries_.push_back(entry);
  return true;
}

size_t DeviceAtc::Invalidate(std::optional<uint32_t> pasid, uint64_t addr, uint64_t size) {
  // Wait for translated requests in flight (they hold access_mu_ shared).
  absl::MutexLock access(&access_mu_);
  absl::MutexLock l(&mu_);
  ++generation_;
  const uint64_t last = RangeEnd(addr, size);
  return std::erase_if(entries_, [&](const AtcEntry& e) { return e.pasid == pasid && Overlaps(e, addr, last); });
}

void DeviceAtc::Clear() {
  absl::MutexLock access(&access_mu_);
  absl::MutexLock l(&mu_);
  ++generation_;
  entries_.clear();
}

uint64_t DeviceAtc::generation() const {
  absl::MutexLock l(&mu_);
  return generation_;
}

size_t DeviceAtc::size() const {
  absl::MutexLock l(&mu_);
  return entries_.size();
}

}  // namespace ionest::dmatest
