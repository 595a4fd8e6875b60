// Bounded, thread-safe IOTLB: caches successful translations (never faults) tagged by domain ID,
// PASID (or kNoPasid) and page; CLOCK (second-chance LRU approximation) eviction; VT-d-style invalidations (§6.5.2.3 IOTLB
// invalidation, §6.5.2.4 PASID-based IOTLB invalidation). The VT-d layer decides which scopes and
// translation types a given descriptor targets; this class only does the matching.
//
// Stale inserts: read generation() before starting a walk and pass it to Insert(); the insert is
// dropped if any invalidation happened in between, so a walk racing an invalidation never leaves
// a stale entry behind.
//
// No paging-structure cache is kept, so IH (invalidation hint) has nothing to preserve: leaf
// entries in range are always invalidated.
//
// Thread safety: every method may be called concurrently from any thread (vCPUs, event loop).
// Lookups share a reader lock (they only set an atomic reference bit); inserts and invalidations
// take it exclusively.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/synchronization/mutex.h"
#include "iommu/walk_types.h"

namespace ionest {

inline constexpr uint32_t kNoPasid = 0xFFFF'FFFFu;  // requests without PASID (PASIDs are 20 bits)

// Which kind of translation produced an entry (scalable-mode PGTT), for type-selective invalidation.
enum class IotlbType : uint8_t { kFirstStage = 0, kSecondStage = 1, kNested = 2, kPassThrough = 3 };
inline constexpr uint32_t IotlbTypeBit(IotlbType t) { return 1u << static_cast<uint32_t>(t); }
inline constexpr uint32_t kAllIotlbTypes = 0xF;

struct IotlbHit {
  uint64_t output = 0;     // translated address of the looked-up address
  uint64_t page_size = 0;
  uint32_t perms = 0;      // rights for requests of the looked-up privilege
  IotlbType type = IotlbType::kSecondStage;
};

struct IotlbStats {
  uint64_t hits = 0;
  uint64_t misses = 0;
  uint64_t inserts = 0;
  uint64_t stale_inserts_dropped = 0;
  uint64_t evictions = 0;
  uint64_t invalidated_entries = 0;
};

class Iotlb {
 public:
  static constexpr size_t kDefaultCapacity = 4096;
  explicit Iotlb(size_t capacity = kDefaultCapacity);
  Iotlb(const Iotlb&) = delete;
  Iotlb& operator=(const Iotlb&) = delete;

  // Bumped by every invalidation.
  uint64_t generation() const;

  // Finds an entry covering `addr` (any page size) whose cached rights include all of `access`'s
  // R/W/X bits for its privilege (kDmaPriv). Otherwise a miss: the caller walks (which may set D or
  // report the fault).
  std::optional<IotlbHit> Lookup(uint16_t did, uint32_t pasid, uint64_t addr, uint32_t access);

  // Caches `result` for the page holding `addr`. Ignored if !result.ok, the page size is not 4 KiB /
  // 2 MiB / 1 GiB, or an invalidation happened since `generation` was read. Replaces an existing
  // entry for the same tag; when full evicts an entry not looked up since the clock hand last
  // passed it (new entries start unreferenced).
  void Insert(uint16_t did, uint32_t pasid, uint64_t addr, const WalkResult& result, IotlbType type,
              uint64_t generation);

  void InvalidateAll();
  void InvalidateDomain(uint16_t did, uint32_t type_mask = kAllIotlbTypes);
  void InvalidatePasid(uint16_t did, uint32_t pasid, uint32_t type_mask = kAllIotlbTypes);
  // Entries of `did` (and `pasid`, if given; else every PASID incl. kNoPasid) overlapping the 2^am
  // pages starting at addr rounded down to that size (VT-d §6.5.2.3: ADDR, AM). `ih` is accepted
  // for completeness: it only spares paging-structure caches, which this IOTLB does not keep.
  void InvalidatePages(uint16_t did, std::optional<uint32_t> pasid, uint64_t addr, unsigned am, bool ih,
                       uint32_t type_mask = kAllIotlbTypes);

  size_t size() const;
  size_t capacity() const { return capacity_; }
  IotlbStats stats() const;

 private:
  static constexpr int kNumSizes = 3;  // 4 KiB, 2 MiB, 1 GiB
  // Packed tag: page number and size in one word, domain and PASID in the other.
  struct Key {
    uint64_t page_and_size = 0;  // (addr >> page shift) << 2 | size index
    uint64_t did_and_pasid = 0;  // did << 32 | pasid
    static Key Make(uint16_t did, uint32_t pasid, uint64_t page, int size_index) {
      return Key{page << 2 | static_cast<uint64_t>(size_index), uint64_t{did} << 32 | pasid};
    }
    uint64_t page() const { return page_and_size >> 2; }
    int size_index() const { return static_cast<int>(page_and_size & 3); }
    uint16_t did() const { return static_cast<uint16_t>(did_and_pasid >> 32); }
    uint32_t pasid() const { return static_cast<uint32_t>(did_and_pasid); }
    bool operator==(const Key&) const = default;
    template <typename H>
    friend H AbslHashValue(H h, const Key& k) {
      return H::combine(std::move(h), k.page_and_size, k.did_and_pasid);
    }
  };
  // Cached translation; the map value itself so a hit touches one hash slot.
  struct Entry {
    uint64_t output_base = 0;
    uint32_t user_perms = 0;
    uint32_t supervisor_perms = 0;
    uint32_t slot = 0;  // index in slot_keys_ (the CLOCK ring)
    IotlbType type = IotlbType::kSecondStage;
    uint8_t referenced = 0;  // CLOCK bit; Lookup sets it through std::atomic_ref under the reader lock
  };
  struct DidPasid {
    uint16_t did;
    uint32_t pasid;
    bool operator==(const DidPasid&) const = default;
    template <typename H>
    friend H AbslHashValue(H h, const DidPasid& k) {
      return H::combine(std::move(h), k.did, k.pasid);
    }
  };

  static int PageShift(int size_index) { return 12 + 9 * size_index; }
  using Map = absl::flat_hash_map<Key, Entry>;
  void EraseLocked(Map::iterator it) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  uint32_t AllocSlotLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void BumpGenerationLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  template <typename Pred>
  void EraseIfLocked(Pred pred) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const size_t capacity_;
  mutable absl::Mutex mu_;
  Map index_ ABSL_GUARDED_BY(mu_);
  std::vector<Key> slot_keys_ ABSL_GUARDED_BY(mu_);  // CLOCK ring: key held by each used slot
  std::vector<uint32_t> free_slots_ ABSL_GUARDED_BY(mu_);
  size_t clock_hand_ ABSL_GUARDED_BY(mu_) = 0;
  absl::flat_hash_map<DidPasid, size_t> tag_counts_ ABSL_GUARDED_BY(mu_);  // entries per (did, pasid)
  size_t size_counts_[kNumSizes] ABSL_GUARDED_BY(mu_) = {};
  std::atomic<uint64_t> generation_{0};  // written under mu_, read lock-free
  std::atomic<uint64_t> hits_{0}, misses_{0};
  IotlbStats stats_ ABSL_GUARDED_BY(mu_);  // all but hits/misses
};

}  // namespace ionest
