#include "iommu/vtd/entry_observer.h"

namespace ionest::vtd {

namespace {
bool SameContext(const ContextEntry& a, const ContextEntry& b) { return a.raw == b.raw && a.scalable == b.scalable; }
// Faults that mean "no entry" rather than "a malformed entry". A PASID beyond the context's
// directory (0x46) is no entry either: an invalidation naming it is not a request hitting it.
bool IsAbsent(uint8_t reason) {
  return reason == kFrRootNotPresent || reason == kFrContextNotPresent || reason == kSmRootNotPresent ||
         reason == kSmContextNotPresent || reason == kSmPasidDirNotPresent || reason == kSmPasidEntryNotPresent ||
         reason == kSmPasidTooLarge;
}
constexpr uint64_t kContextFaultKey = uint64_t{1} << 63;
}  // namespace

std::optional<TableFault> EntryObserver::NoteFault(uint64_t key, const TableFault& fault) {
  auto it = reported_faults_.find(key);
  if (it != reported_faults_.end()) {
    if (it->second == fault.reason) return std::nullopt;
    it->second = fault.reason;
    return fault;
  }
  // A guest can make any number of malformed entries: past the cap they are no longer reported.
  if (reported_faults_.size() >= kMaxReportedFaults) return std::nullopt;
  reported_faults_.emplace(key, fault.reason);
  return fault;
}

void EntryObserver::Clear() {
  contexts_.clear();
  pasids_.clear();
  reported_faults_.clear();
}

std::vector<ContextChange> EntryObserver::ScanContexts(const PhysMemory& memory, const VtdProfile& profile,
                                                       uint64_t rtaddr, uint16_t sid, uint16_t sid_mask) {
  std::vector<ContextChange> changes;
  auto check = [&](uint16_t rid) {
    Decoded<ContextEntry> d = ReadContextEntry(memory, profile, rtaddr, rid);
    auto it = contexts_.find(rid);
    if (d.ok()) {
      if (it == contexts_.end() || !SameContext(it->second, *d.entry)) {
        contexts_[rid] = *d.entry;
        changes.push_back({rid, d.entry});
      }
      reported_faults_.erase(kContextFaultKey | rid);
    } else {
      std::optional<TableFault> fault;
      if (!IsAbsent(d.fault.reason)) {
        fault = NoteFault(kContextFaultKey | rid, d.fault);
      }
      const bool was_valid = it != contexts_.end();
      if (was_valid) contexts_.erase(it);
      if (was_valid) changes.push_back({rid, std::nullopt});
      if (fault) changes.push_back({rid, std::nullopt, fault});
    }
  };
  if (sid_mask == 0xffff || sid_mask == 0xfffb || sid_mask == 0xfff9 || sid_mask == 0xfff8) {
    for (uint32_t low = 0; low < 8; ++low) {
      uint16_t rid = (sid & sid_mask) | (low & ~sid_mask & 7);
      if ((low & ~sid_mask & 7) != low) continue;
      check(rid);
    }
    return changes;
  }
  // Global / domain scope: every requester whose root entry is present, plus those seen before.
  std::vector<uint16_t> known;
  for (const auto& [rid, _] : contexts_) known.push_back(rid);
  const uint64_t root = RtaddrBase(rtaddr);
  const bool scalable = RtaddrMode(rtaddr) == TranslationTableMode::kScalable;
  for (uint32_t bus = 0; bus < 256; ++bus) {
    uint64_t re[2];
    if (!memory.Read(root + bus * 16, re, sizeof(re)).ok()) break;
    for (uint32_t devfn = 0; devfn < 256; ++devfn) {
      bool present = scalable ? (re[devfn >= 128 ? 1 : 0] & 1) : (re[0] & 1);
      if (present) check(static_cast<uint16_t>(bus << 8 | devfn));
    }
  }
  for (uint16_t rid : known) {
    uint64_t re[2];
    if (memory.Read(root + (rid >> 8) * 16ull, re, sizeof(re)).ok() &&
        (scalable ? (re[(rid & 0xff) >= 128 ? 1 : 0] & 1) : (re[0] & 1))) {
      continue;  // already checked above
    }
    check(rid);
  }
  return changes;  // PASID entries of vanished contexts are reported by the next ScanPasids
}

void EntryObserver::Compare(uint16_t rid, uint32_t pasid, const Decoded<PasidEntry>& d,
                            std::vector<PasidChange>& out) {
  const uint64_t key = (uint64_t{rid} << 32) | pasid;
  auto it = pasids_.find(key);
  if (d.ok()) {
    if (it == pasids_.end() || it->second.raw != d.entry->raw) {
      pasids_[key] = *d.entry;
      out.push_back({rid, pasid, d.entry});
    }
    reported_faults_.erase(key);
    return;
  }
  std::optional<TableFault> fault;
  if (!IsAbsent(d.fault.reason)) {
    fault = NoteFault(key, d.fault);
  }
  const bool was_valid = it != pasids_.end();
  if (was_valid) pasids_.erase(it);
  if (was_valid) out.push_back({rid, pasid, std::nullopt});
  if (fault) out.push_back({rid, pasid, std::nullopt, fault});
}

std::vector<PasidChange> EntryObserver::ScanPasids(const PhysMemory& memory, const VtdProfile& profile,
                                                   std::optional<uint32_t> pasid) {
  std::vector<PasidChange> changes;
  uint32_t reads = 0;
  for (const auto& [rid, ctx] : contexts_) {
    if (!ctx.scalable) continue;
    if (pasid) {
      Compare(rid, *pasid, ReadPasidEntry(memory, profile, ctx, *pasid), changes);
      continue;
    }
    const uint64_t limit = std::min<uint64_t>(ctx.pasid_limit(), profile.max_pasid());
    for (uint64_t dir = 0; dir < limit / 64 && reads < kMaxScanReads; ++dir) {
      uint64_t de;
      ++reads;
      if (!memory.Read(ctx.pasid_dir + dir * 8, &de, 8).ok()) break;
      if (!(de & 1)) continue;
      for (uint32_t i = 0; i < 64 && reads < kMaxScanReads; ++i, ++reads) {
        uint32_t p = static_cast<uint32_t>(dir * 64 + i);
        Compare(rid, p, ReadPasidEntry(memory, profile, ctx, p), changes);
      }
    }
  }
  // Entries seen before whose directory entry went away.
  std::vector<uint64_t> stale;
  for (const auto& [key, e] : pasids_) {
    if (pasid && (key & 0xffffffff) != *pasid) continue;
    uint16_t rid = key >> 32;
    auto c = contexts_.find(rid);
    if (c == contexts_.end()) {
      stale.push_back(key);
    } else if (!pasid) {
      Decoded<PasidEntry> d = ReadPasidEntry(memory, profile, c->second, static_cast<uint32_t>(key));
      if (!d.ok()) stale.push_back(key);
    }
  }
  for (uint64_t key : stale) {
    pasids_.erase(key);
    changes.push_back({static_cast<uint16_t>(key >> 32), static_cast<uint32_t>(key), std::nullopt});
  }
  return changes;
}

}  // namespace ionest::vtd
