#include "iommu/first_stage.h"

#include "iommu/table_access.h"

namespace ionest {
namespace {

constexpr uint64_t Bits(int hi, int lo) { return ((hi == 63 ? ~0ull : (1ull << (hi + 1)) - 1)) & ~((1ull << lo) - 1); }

// Reserved bits of a present entry at `level` (SDM vol.3 §4.5, table 4-20; VT-d §9.7). XD is never
// reserved (VT-d has no NXE; Linux sets it in DMA mappings); bits 62:52 are ignored.
uint64_t ReservedMask(const FirstStageConfig& c, int level, uint64_t entry) {
  const uint64_t addr_rsv = c.haw_bits >= 52 ? 0 : Bits(51, c.haw_bits);
  switch (level) {
    case 5:
    case 4:
      return addr_rsv | fs::kPS;
    case 3:
      if (!(entry & fs::kPS)) return addr_rsv;
      return c.allow_1g ? (addr_rsv | Bits(29, 13)) : (addr_rsv | fs::kPS);
    case 2:
      return (entry & fs::kPS) ? (addr_rsv | Bits(20, 13)) : addr_rsv;
    default:
      return addr_rsv;
  }
}

struct Rights {
  uint32_t user = 0;
  uint32_t supervisor = 0;
};

// Access rights from the flags accumulated over the walk (SDM vol.3 §4.6; VT-d §3.6.2: no SMAP/SMEP,
// WPE plays CR0.WP, ERE gates execute, SRE gates privileged requests).
Rights ComputeRights(const FirstStageConfig& c, bool all_us, bool all_rw, bool any_xd) {
  Rights r;
  if (all_us) {
    r.user = kDmaRead;
    if (all_rw) r.user |= kDmaWrite;
    if (c.ere && !any_xd) r.user |= kDmaExec;
  }
  if (c.sre) {
    r.supervisor = kDmaRead;
    if (all_rw || !c.wpe) r.supervisor |= kDmaWrite;
    if (c.ere && !any_xd) r.supervisor |= kDmaExec;
  }
  return r;
}

// One pass over the tables. Sets *restart if an entry changed under an A/D update.
WalkResult WalkOnce(TableAccess& io, const FirstStageConfig& c, uint64_t iova, uint32_t access, bool* restart) {
  constexpr WalkStage kStage = WalkStage::kFirst;
  const bool priv = access & kDmaPriv;
  const bool write = access & kDmaWrite;
  uint64_t table = c.root & fs::kAddrMask;
  bool all_us = true, all_rw = true, any_xd = false;
  WalkResult r;
  for (int level = c.levels; level >= 1; --level) {
    const int shift = 12 + 9 * (level - 1);
    const uint64_t entry_addr = table + ((iova >> shift) & 511) * 8;
    uint64_t e = 0;
    if (!io.ReadEntry(entry_addr, level, iova, &e, &r)) return r;
    if (!(e & fs::kP)) return MakeFault(WalkFaultKind::kNotPresent, kStage, level, iova, e, entry_addr);
    if (e & ReservedMask(c, level, e))
      return MakeFault(WalkFaultKind::kReservedBit, kStage, level, iova, e, entry_addr);
    all_us &= (e & fs::kUS) != 0;
    all_rw &= (e & fs::kRW) != 0;
    any_xd |= (e & fs::kXD) != 0;
    const bool leaf = level == 1 || ((level == 2 || level == 3) && (e & fs::kPS));
    const uint64_t accessed = fs::kA | (c.eafe ? fs::kEA : 0);
    if (!leaf) {
      // A (and EA) on every paging-structure entry used (SDM vol.3 §4.8; VT-d §3.6.3).
      if (c.update_ad && (e & accessed) != accessed) {
        uint64_t expected = e;
        switch (io.UpdateEntry(entry_addr, level, iova, &expected, e | accessed, &r)) {
          case TableAccess::CasOutcome::kFault: return r;
          case TableAccess::CasOutcome::kChanged: *restart = true; return r;
          case TableAccess::CasOutcome::kSwapped: break;
        }
      }
      table = e & fs::kAddrMask;
      continue;
    }
    const uint64_t page_size = LevelPageSize(level);
    const Rights rights = ComputeRights(c, all_us, all_rw, any_xd);
    const uint32_t granted = priv ? rights.supervisor : rights.user;
    if ((access & kDmaRwx) & ~granted)
      return MakeFault(WalkFaultKind::kPermission, kStage, level, iova, e, entry_addr);
    bool dirty = !c.update_ad || (e & fs::kD);
    if (c.update_ad) {
      const uint64_t desired = e | accessed | (write ? fs::kD : 0);
      if (desired != e) {
        uint64_t expected = e;
        switch (io.UpdateEntry(entry_addr, level, iova, &expected, desired, &r)) {
          case TableAccess::CasOutcome::kFault: return r;
          case TableAccess::CasOutcome::kChanged: *restart = true; return r;
          case TableAccess::CasOutcome::kSwapped: break;
        }
        dirty |= write;
      }
    }
    // Cacheable rights: without D set, a write must walk again to set it.
    const uint32_t strip = dirty ? 0u : uint32_t{kDmaWrite};
    r.ok = true;
    r.page_size = page_size;
    r.output = (e & fs::kAddrMask & ~(page_size - 1)) | (iova & (page_size - 1));
    r.user_perms = rights.user & ~strip;
    r.supervisor_perms = rights.supervisor & ~strip;
    r.perms = (priv ? rights.supervisor : rights.user) & ~strip;
    return r;
  }
  // Unreachable: level 1 is always a leaf.
  return MakeFault(WalkFaultKind::kInvalidConfig, kStage, 0, iova);
}

}  // namespace

bool IsCanonical(uint64_t addr, int levels) {
  const int bits = 12 + 9 * levels;  // 48 or 57
  const int64_t extended = static_cast<int64_t>(addr << (64 - bits)) >> (64 - bits);
  return static_cast<uint64_t>(extended) == addr;
}

WalkResult WalkFirstStageVia(TableAccess& tables, const FirstStageConfig& c, uint64_t iova, uint32_t access) {
  constexpr WalkStage kStage = WalkStage::kFirst;
  if ((c.levels != 4 && c.levels != 5) || c.haw_bits < 12 || c.haw_bits > 52)
    return MakeFault(WalkFaultKind::kInvalidConfig, kStage, 0, iova);
  if (!IsCanonical(iova, c.levels)) return MakeFault(WalkFaultKind::kNonCanonical, kStage, 0, iova);
  if (((access & kDmaPriv) && !c.sre) || ((access & kDmaExec) && !c.ere))
    return MakeFault(WalkFaultKind::kRequestNotAllowed, kStage, 0, iova);
  for (int attempt = 0; attempt < kMaxWalkAttempts; ++attempt) {
    bool restart = false;
    WalkResult r = WalkOnce(tables, c, iova, access, &restart);
    if (!restart) return r;
  }
  // The guest kept rewriting entries under our A/D updates.
  return MakeFault(WalkFaultKind::kTableAccess, kStage, 0, iova);
}

WalkResult WalkFirstStage(PhysMemory& memory, const FirstStageConfig& config, uint64_t iova, uint32_t access) {
  DirectTableAccess tables(memory, WalkStage::kFirst);
  return WalkFirstStageVia(tables, config, iova, access);
}

}  // namespace ionest
