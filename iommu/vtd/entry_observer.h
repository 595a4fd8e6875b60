// Tracks which context and PASID entries the guest has made valid, as observed at cache
// invalidations (the points where VT-d lets hardware pick up new entries, §6.5). Produces change
// notifications for listeners (e.g. a nesting backend binding HWPTs). Scans are bounded.
// Not thread-safe: VtdIommu uses it under its lock, and only when a listener is registered.
#pragma once

#include <cstdint>
#include <optional>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "iommu/vtd/caps.h"
#include "iommu/vtd/pasid.h"
#include "iommu/vtd/root_context.h"
#include "vmm/guest_memory.h"

namespace ionest::vtd {

struct ContextChange {
  uint16_t rid = 0;
  std::optional<ContextEntry> entry;  // nullopt: no longer valid
  // Set (with no entry) when the entry is present but malformed (reserved bits, unsupported
  // values): the architected fault, reported once per distinct fault; a valid entry that turns
  // malformed gives two changes, "gone" then the fault.
  std::optional<TableFault> fault;
};
struct PasidChange {
  uint16_t rid = 0;
  uint32_t pasid = 0;
  std::optional<PasidEntry> entry;
  std::optional<TableFault> fault;  // as ContextChange::fault
};

class EntryObserver {
 public:
  // Upper bound of table entries read by one scan.
  static constexpr uint32_t kMaxScanReads = 1u << 17;

  // Re-reads the context entries of requesters matching `sid` under `sid_mask` (mask 0: all
  // requesters: walks the root table).
  std::vector<ContextChange> ScanContexts(const PhysMemory& memory, const VtdProfile& profile, uint64_t rtaddr,
                                          uint16_t sid, uint16_t sid_mask);
  // Re-reads PASID entries of every valid scalable context: only `pasid` if given, else all PASIDs
  // reachable through present directory entries (bounded by kMaxScanReads).
  std::vector<PasidChange> ScanPasids(const PhysMemory& memory, const VtdProfile& profile,
                                      std::optional<uint32_t> pasid);
  void Clear();

 private:
  static constexpr size_t kMaxReportedFaults = 4096;
  void Compare(uint16_t rid, uint32_t pasid, const Decoded<PasidEntry>& d, std::vector<PasidChange>& out);
  // Returns the fault if it is new for `key` (and records it), nullopt if already reported.
  std::optional<TableFault> NoteFault(uint64_t key, const TableFault& fault);
  absl::flat_hash_map<uint16_t, ContextEntry> contexts_;
  absl::flat_hash_map<uint64_t, PasidEntry> pasids_;  // key rid << 32 | pasid
  // Malformed entries already reported (same keys; contexts as rid | 1 << 63), so a rescan does
  // not report them again. At most kMaxReportedFaults.
  absl::flat_hash_map<uint64_t, uint8_t> reported_faults_;
};

}  // namespace ionest::vtd
