// Context cache and PASID cache (VT-d §6.2.1, §6.2.2): bounded caches of decoded context and PASID
// entries. Only successfully decoded (present, valid) entries are cached, so not-present entries
// are never cached — required with CAP.CM=1 (§6.1) and allowed without it.
// Not thread-safe: owned by VtdIommu and used under its lock.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "iommu/vtd/pasid.h"
#include "iommu/vtd/root_context.h"

namespace ionest::vtd {

// Requester-id mask of a context-cache device-selective invalidation with function mask FM (§6.5.2.1):
// FM=1 ignores bit 2 of the function number, 2 bits 2:1, 3 bits 2:0.
inline uint16_t SidMaskForFm(uint8_t fm) {
  static constexpr uint16_t kMasks[4] = {0xffff, 0xfffb, 0xfff9, 0xfff8};
  return kMasks[fm & 3];
}

class ContextCache {
 public:
  explicit ContextCache(size_t capacity) : capacity_(capacity) {}
  const ContextEntry* Lookup(uint16_t rid) const;
  void Insert(uint16_t rid, const ContextEntry& entry);
  void InvalidateAll() { map_.clear(); }
  // Legacy entries of domain `did` (scalable entries carry no DID: invalidated too).
  void InvalidateDomain(uint16_t did);
  // Entries whose requester id matches `sid` in the bits of `sid_mask`. Returns the rids dropped.
  std::vector<uint16_t> InvalidateDevice(uint16_t sid, uint16_t sid_mask);
  size_t size() const { return map_.size(); }

 private:
  size_t capacity_;
  absl::flat_hash_map<uint16_t, ContextEntry> map_;
};

class PasidCache {
 public:
  explicit PasidCache(size_t capacity) : capacity_(capacity) {}
  const PasidEntry* Lookup(uint16_t rid, uint32_t pasid) const;
  void Insert(uint16_t rid, uint32_t pasid, const PasidEntry& entry);
  void InvalidateAll() { map_.clear(); }
  void InvalidateDomain(uint16_t did);
  void InvalidatePasid(uint16_t did, uint32_t pasid);
  void InvalidateRequester(uint16_t rid);
  size_t size() const { return map_.size(); }

 private:
  static uint64_t Key(uint16_t rid, uint32_t pasid) { return (uint64_t{rid} << 32) | pasid; }
  size_t capacity_;
  absl::flat_hash_map<uint64_t, PasidEntry> map_;
};

}  // namespace ionest::vtd
