// Address Translation Cache of the DMA test device (PCIe 6.0 §10.2): a small fully associative
// cache of ATS translation completions, tagged by PASID (none = untagged) and privilege.
//
// Invalidation (§10.3) removes every entry overlapping the range for the PASID tag. A generation
// counter lets the owner drop a completion that raced with an invalidation (Insert fails if any
// invalidation happened since `generation()` was read before the translation request).
// Thread safety: all methods may be called concurrently (internal lock).
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "iommu/dma_space.h"

namespace ionest::dmatest {

struct AtcEntry {
  std::optional<uint32_t> pasid;
  bool priv = false;
  uint64_t iova = 0;  // aligned to size
  uint64_t size = 0;  // power of two >= 4 KiB
  uint64_t gpa = 0;   // translated base
  uint32_t perms = 0;
};

class DeviceAtc {
 public:
  explicit DeviceAtc(size_t capacity) : capacity_(capacity == 0 ? 1 : capacity) {}

  // Entry covering addr for the tag, if any.
  std::optional<AtcEntry> Lookup(std::optional<uint32_t> pasid, bool priv, uint64_t addr) ABSL_LOCKS_EXCLUDED(mu_);
  // Inserts (replacing overlapping entries of the same tag; evicting the oldest when full) unless
  // an invalidation happened after `generation`. Returns whether it was inserted.
  bool Insert(const AtcEntry& entry, uint64_t generation) ABSL_LOCKS_EXCLUDED(mu_);
  // Removes entries of `pasid` (nullopt: untagged entries) overlapping [addr, addr+size); size 0 or
  // a range reaching past 2^64 means "to the end". Returns how many were removed.
  size_t Invalidate(std::optional<uint32_t> pasid, uint64_t addr, uint64_t size) ABSL_LOCKS_EXCLUDED(mu_);
  void Clear() ABSL_LOCKS_EXCLUDED(mu_);

  uint64_t generation() const ABSL_LOCKS_EXCLUDED(mu_);
  size_t size() const ABSL_LOCKS_EXCLUDED(mu_);

  // The lock translated accesses hold (shared) so that an invalidation, which takes it exclusively,
  // completes only after in-flight translated requests using old entries (§10.3.1).
  absl::Mutex& access_lock() { return access_mu_; }

 private:
  const size_t capacity_;
  mutable absl::Mutex mu_;
  std::vector<AtcEntry> entries_ ABSL_GUARDED_BY(mu_);  // oldest first
  uint64_t generation_ ABSL_GUARDED_BY(mu_) = 0;
  absl::Mutex access_mu_ ABSL_ACQUIRED_BEFORE(mu_);
};

}  // namespace ionest::dmatest
