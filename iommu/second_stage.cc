#include "iommu/second_stage.h"

#include "iommu/first_stage.h"  // kMaxWalkAttempts
#include "iommu/table_access.h"

namespace ionest {
namespace {

constexpr uint64_t Bits(int hi, int lo) { return ((1ull << (hi + 1)) - 1) & ~((1ull << lo) - 1); }

WalkResult WalkOnce(TableAccess& io, const SecondStageConfig& c, uint64_t addr, uint32_t access, bool* restart) {
  constexpr WalkStage kStage = WalkStage::kSecond;
  const bool write = access & kDmaWrite;
  uint64_t table = c.root & ss::kAddrMask;
  uint32_t rights = kDmaRwx;
  WalkResult r;
  for (int level = c.levels; level >= 1; --level) {
    const int shift = 12 + 9 * (level - 1);
    const uint64_t entry_addr = table + ((addr >> shift) & 511) * 8;
    uint64_t e = 0;
    if (!io.ReadEntry(entry_addr, level, addr, &e, &r)) return r;
    if (!(e & (ss::kR | ss::kW | ss::kX)))
      return MakeFault(WalkFaultKind::kNotPresent, kStage, level, addr, e, entry_addr);
    if (e & SecondStageReservedMask(c, level, e))
      return MakeFault(WalkFaultKind::kReservedBit, kStage, level, addr, e, entry_addr);
    rights &= SecondStageEntryRights(e);  // effective rights: intersection over all levels (VT-d §3.7.1)
    const bool leaf = level == 1 || (e & ss::kPS);
    if (!leaf) {
      if (c.ad_enabled && !(e & ss::kA)) {
        uint64_t expected = e;
        switch (io.UpdateEntry(entry_addr, level, addr, &expected, e | ss::kA, &r)) {
          case TableAccess::CasOutcome::kFault: return r;
          case TableAccess::CasOutcome::kChanged: *restart = true; return r;
          case TableAccess::CasOutcome::kSwapped: break;
        }
      }
      table = e & ss::kAddrMask;
      continue;
    }
    if ((access & kDmaRwx) & ~rights)
      return MakeFault(WalkFaultKind::kPermission, kStage, level, addr, e, entry_addr);
    bool dirty = !c.ad_enabled || (e & ss::kD);
    if (c.ad_enabled) {
      const uint64_t desired = e | ss::kA | (write ? ss::kD : 0);
      if (desired != e) {
        uint64_t expected = e;
        switch (io.UpdateEntry(entry_addr, level, addr, &expected, desired, &r)) {
          case TableAccess::CasOutcome::kFault: return r;
          case TableAccess::CasOutcome::kChanged: *restart = true; return r;
          case TableAccess::CasOutcome::kSwapped: break;
        }
        dirty |= write;
      }
    }
    const uint64_t page_size = LevelPageSize(level);
    const uint32_t cacheable = rights & ~(dirty ? 0u : uint32_t{kDmaWrite});
    r.ok = true;
    r.page_size = page_size;
    r.output = (e & ss::kAddrMask & ~(page_size - 1)) | (addr & (page_size - 1));
    r.perms = r.user_perms = r.supervisor_perms = cacheable;
    return r;
  }
  return MakeFault(WalkFaultKind::kInvalidConfig, kStage, 0, addr);
}

}  // namespace

bool IsValidSecondStageConfig(const SecondStageConfig& c) {
  return c.levels >= 3 && c.levels <= 5 && c.aw_bits > 12 && c.aw_bits <= 12 + 9 * c.levels && c.haw_bits >= 12 &&
         c.haw_bits <= 52;
}

uint64_t SecondStageReservedMask(const SecondStageConfig& c, int level, uint64_t entry) {
  const uint64_t addr_rsv = c.haw_bits >= 52 ? 0 : Bits(51, c.haw_bits);
  const bool ps = entry & ss::kPS;
  switch (level) {
    case 5:
    case 4:
      return addr_rsv | ss::kPS;
    case 3:
      if (!ps) return addr_rsv;
      return (c.superpage_mask & kSuperpage1G) ? (addr_rsv | Bits(29, 12)) : (addr_rsv | ss::kPS);
    case 2:
      if (!ps) return addr_rsv;
      return (c.superpage_mask & kSuperpage2M) ? (addr_rsv | Bits(20, 12)) : (addr_rsv | ss::kPS);
    default:
      return addr_rsv;
  }
}

uint32_t SecondStageEntryRights(uint64_t e) {
  uint32_t r = 0;
  if (e & ss::kR) r |= kDmaRead;
  if (e & ss::kW) r |= kDmaWrite;
  if (e & ss::kX) r |= kDmaExec;
  return r;
}

WalkResult WalkSecondStage(PhysMemory& memory, const SecondStageConfig& c, uint64_t addr, uint32_t access) {
  constexpr WalkStage kStage = WalkStage::kSecond;
  if (!IsValidSecondStageConfig(c)) return MakeFault(WalkFaultKind::kInvalidConfig, kStage, 0, addr);
  if (c.aw_bits < 64 && (addr >> c.aw_bits) != 0) return MakeFault(WalkFaultKind::kAddressWidth, kStage, 0, addr);
  DirectTableAccess io(memory, kStage);
  for (int attempt = 0; attempt < kMaxWalkAttempts; ++attempt) {
    bool restart = false;
    WalkResult r = WalkOnce(io, c, addr, access, &restart);
    if (!restart) return r;
  }
  return MakeFault(WalkFaultKind::kTableAccess, kStage, 0, addr);
}

}  // namespace ionest
