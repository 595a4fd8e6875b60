#include "iommu/vtd/context_cache.h"

namespace ionest::vtd {

const ContextEntry* ContextCache::Lookup(uint16_t rid) const {
  auto it = map_.find(rid);
  return it == map_.end() ? nullptr : &it->second;
}

void ContextCache::Insert(uint16_t rid, const ContextEntry& entry) {
  if (map_.size() >= capacity_ && !map_.contains(rid)) map_.erase(map_.begin());  // bounded: evict any entry
  map_[rid] = entry;
}

void ContextCache::InvalidateDomain(uint16_t did) {
  absl::erase_if(map_, [did](const auto& kv) { return kv.second.scalable || kv.second.did == did; });
}

std::vector<uint16_t> ContextCache::InvalidateDevice(uint16_t sid, uint16_t sid_mask) {
  std::vector<uint16_t> dropped;
  absl::erase_if(map_, [&](const auto& kv) {
    bool match = ((kv.first ^ sid) & sid_mask) == 0;
    if (match) dropped.push_back(kv.first);
    return match;
  });
  return dropped;
}

const PasidEntry* PasidCache::Lookup(uint16_t rid, uint32_t pasid) const {
  auto it = map_.find(Key(rid, pasid));
  return it == map_.end() ? nullptr : &it->second;
}

void PasidCache::Insert(uint16_t rid, uint32_t pasid, const PasidEntry& entry) {
  uint64_t k = Key(rid, pasid);
  if (map_.size() >= capacity_ && !map_.contains(k)) map_.erase(map_.begin());
  map_[k] = entry;
}

void PasidCache::InvalidateDomain(uint16_t did) {
  absl::erase_if(map_, [did](const auto& kv) { return kv.second.did == did; });
}

void PasidCache::InvalidatePasid(uint16_t did, uint32_t pasid) {
  absl::erase_if(map_, [&](const auto& kv) { return kv.second.did == did && kv.second.pasid == pasid; });
}

void PasidCache::InvalidateRequester(uint16_t rid) {
  absl::erase_if(map_, [rid](const auto& kv) { return (kv.first >> 32) == rid; });
}

}  // namespace ionest::vtd
