#include "iommu/vmsa_walk.h"

#include <algorithm>

#include "iommu/table_access.h"

namespace ionest {
namespace {

// Geometry of one walk: level L resolves input bits [Shift(L) + stride - 1, Shift(L)], except the
// start level, which resolves everything up to input_bits (concatenated tables at stage 2).
struct Geometry {
  int granule_shift = 12;
  int stride = 9;
  int start_level = 0;
  int input_bits = 48;
  int Shift(int level) const { return granule_shift + stride * (3 - level); }
};

uint64_t Mask(int bits) { return bits >= 64 ? ~0ull : (1ull << bits) - 1; }

bool ValidGranule(int g) { return g == 12 || g == 14 || g == 16; }

// Stage 1 start level: as many levels as the input needs (Arm ARM D8.2.5).
Geometry Stage1Geometry(const VmsaRegion& r) {
  Geometry g;
  g.granule_shift = r.granule_shift;
  g.stride = r.granule_shift - 3;
  g.input_bits = 64 - r.tsz;
  const int levels = (g.input_bits - g.granule_shift + g.stride - 1) / g.stride;
  g.start_level = 4 - levels;
  return g;
}

// Stage 2 start level from SL0 (Arm ARM D8.2.6, VTCR_EL2.SL0), or start_level = -1 if the
// combination is inconsistent with T0SZ.
Geometry Stage2Geometry(const VmsaStage2Config& c) {
  Geometry g;
  g.granule_shift = c.granule_shift;
  g.stride = c.granule_shift - 3;
  g.input_bits = 64 - c.t0sz;
  g.start_level = (c.granule_shift == 12 ? 2 : 3) - c.sl0;
  const bool sl0_ok = c.sl0 >= 0 && c.sl0 <= (c.granule_shift == 14 ? 3 : 2);
  // The start level must resolve at least one bit and at most 4 bits more than one table holds
  // (up to 16 concatenated tables).
  const int top = g.Shift(g.start_level) + g.stride;
  if (!sl0_ok || g.start_level < 0 || g.input_bits <= g.Shift(g.start_level) || g.input_bits > top + 4)
    g.start_level = -1;
  return g;
}

WalkResult Fault(WalkFaultKind kind, WalkStage stage, int level, uint64_t addr, uint64_t entry = 0,
                 uint64_t entry_addr = 0) {
  return MakeFault(kind, stage, level, addr, entry, entry_addr);
}

// Hierarchical restrictions collected from table descriptors (stage 1 only).
struct TableLimits {
  bool no_el0 = false, read_only = false, uxn = false, pxn = false;
};

struct LeafWalk {
  bool ok = false;
  WalkResult fault;
  uint64_t desc = 0;
  uint64_t desc_addr = 0;
  int level = 0;
  TableLimits limits;
};

// Walks down to the leaf (block or page) descriptor of `input`. Checks validity, reserved
// encodings and output address size; not AF or permissions.
LeafWalk FindLeaf(TableAccess& io, const Geometry& g, uint64_t ttb, int oas_bits, WalkStage stage, bool stage1,
                  uint64_t input) {
  LeafWalk w;
  // The start table is aligned to its own size (at least 64 bytes); lower TTB bits are ignored.
  const int start_index_bits = g.input_bits - g.Shift(g.start_level);
  const uint64_t start_table_bytes = uint64_t{8} << start_index_bits;
  const uint64_t oa_mask = Mask(oas_bits);
  uint64_t table = ttb & Mask(vmsa::kMaxAddressBits) & ~(std::max<uint64_t>(start_table_bytes, 64) - 1);
  if (ttb & ~oa_mask & Mask(vmsa::kMaxAddressBits + 4)) {
    w.fault = Fault(WalkFaultKind::kAddressWidth, stage, g.start_level, input, 0, ttb);
    return w;
  }
  for (int level = g.start_level; level <= 3; ++level) {
    const int shift = g.Shift(level);
    const int index_bits = level == g.start_level ? start_index_bits : g.stride;
    const uint64_t index = (input >> shift) & Mask(index_bits);
    const uint64_t entry_addr = table + index * 8;
    uint64_t e = 0;
    WalkResult rf;
    if (!io.ReadEntry(entry_addr, level, input, &e, &rf)) {
      w.fault = rf;
      return w;
    }
    if (!(e & vmsa::kValid)) {
      w.fault = Fault(WalkFaultKind::kNotPresent, stage, level, input, e, entry_addr);
      return w;
    }
    const bool table_or_page = e & vmsa::kTableOrPage;
    if (level == 3 ? !table_or_page : (!table_or_page && !VmsaBlockAllowed(g.granule_shift, level))) {
      w.fault = Fault(WalkFaultKind::kReservedBit, stage, level, input, e, entry_addr);
      return w;
    }
    const bool leaf = level == 3 || !table_or_page;
    // Output (or next-table) address: bits [47:granule] (or [47:block size]); the RES0 address
    // bits above (51:48 of a table, 49:48 of a leaf, whose 51:50 are DBM and GP) without FEAT_LPA
    // are, like any bit at or above the output size, an address size fault.
    const uint64_t addr = e & Mask(vmsa::kMaxAddressBits) & ~Mask(leaf ? shift : g.granule_shift);
    if ((e & (leaf ? vmsa::kOaHighLeaf : vmsa::kOaHighTable)) || (addr & ~oa_mask)) {
      w.fault = Fault(WalkFaultKind::kAddressWidth, stage, level, input, e, entry_addr);
      return w;
    }
    if (leaf) {
      w.ok = true;
      w.desc = e;
      w.desc_addr = entry_addr;
      w.level = level;
      return w;
    }
    if (stage1) {
      w.limits.no_el0 |= (e & vmsa::kApTableNoEl0) != 0;
      w.limits.read_only |= (e & vmsa::kApTableReadOnly) != 0;
      w.limits.uxn |= (e & vmsa::kXnTable) != 0;
      w.limits.pxn |= (e & vmsa::kPxnTable) != 0;
    }
    table = addr;
  }
  w.fault = Fault(WalkFaultKind::kInvalidConfig, stage, 0, input);  // unreachable: level 3 is a leaf
  return w;
}

struct Rights {
  uint32_t user = 0, supervisor = 0;
};

// Stage 1 data/instruction permissions (Arm ARM D8.4.1, D8.4.2; no PAN, WXN or EPAN).
Rights Stage1Rights(uint64_t d, const TableLimits& t) {
  Rights r;
  const bool el0 = (d & vmsa::kAp1) && !t.no_el0;
  const bool ro = (d & vmsa::kAp2) || t.read_only;
  if (el0) {
    r.user = kDmaRead | (ro ? 0u : uint32_t{kDmaWrite});
    if (!(d & vmsa::kUxn) && !t.uxn) r.user |= kDmaExec;
  }
  r.supervisor = kDmaRead | (ro ? 0u : uint32_t{kDmaWrite});
  // Memory writable at EL0 is never privileged-executable (D8.4.1.2).
  const bool el0_writable = el0 && !ro;
  if (!(d & vmsa::kPxn) && !t.pxn && !el0_writable) r.supervisor |= kDmaExec;
  return r;
}

uint32_t Stage2Rights(uint64_t d) {
  uint32_t r = 0;
  if (d & vmsa::kS2apRead) r |= kDmaRead;
  if (d & vmsa::kS2apWrite) r |= kDmaWrite;
  if (!(d & vmsa::kUxn)) r |= kDmaExec;
  return r;
}

// AF handling on the leaf (Arm ARM D8.5): hardware update (CAS) when enabled, AFFD treats AF=0 as
// set, else an Access flag fault. Sets *restart if the descriptor changed under the update.
bool HandleAccessFlag(TableAccess& io, const LeafWalk& w, bool hardware_af, bool affd, WalkStage stage,
                      uint64_t input, bool* restart, WalkResult* fault) {
  if ((w.desc & vmsa::kAf) || affd) return true;
  if (!hardware_af) {
    *fault = Fault(WalkFaultKind::kAccessFlag, stage, w.level, input, w.desc, w.desc_addr);
    return false;
  }
  uint64_t expected = w.desc;
  switch (io.UpdateEntry(w.desc_addr, w.level, input, &expected, w.desc | vmsa::kAf, fault)) {
    case TableAccess::CasOutcome::kFault: return false;
    case TableAccess::CasOutcome::kChanged: *restart = true; return false;
    case TableAccess::CasOutcome::kSwapped: return true;
  }
  return false;
}

// The translation of `input` by the leaf descriptor found (rights left to the caller).
WalkResult LeafResult(const LeafWalk& w, const Geometry& g, uint64_t input) {
  WalkResult r;
  r.ok = true;
  r.page_size = uint64_t{1} << g.Shift(w.level);
  r.output = (w.desc & Mask(vmsa::kMaxAddressBits) & ~(r.page_size - 1)) | (input & (r.page_size - 1));
  return r;
}

WalkResult Stage1Once(TableAccess& io, const VmsaStage1Config& c, uint64_t va, uint32_t access, bool* restart) {
  constexpr WalkStage kStage = WalkStage::kFirst;
  // TTBR selection by VA[55], then the top bits must all equal it (D8.2.2; TBI not supported).
  const int half = (va >> 55) & 1;
  const VmsaRegion& region = c.ttbr[half];
  const int input_bits = 64 - region.tsz;
  const uint64_t top = input_bits >= 64 ? 0 : va >> input_bits;
  const uint64_t expect_top = half ? Mask(64 - input_bits) : 0;
  if (top != expect_top) return Fault(WalkFaultKind::kNonCanonical, kStage, 0, va);
  if (!region.enabled) return Fault(WalkFaultKind::kNotPresent, kStage, 0, va);
  const Geometry g = Stage1Geometry(region);
  LeafWalk w = FindLeaf(io, g, region.ttb, c.oas_bits, kStage, true, va);
  if (!w.ok) return w.fault;
  const Rights rights = Stage1Rights(w.desc, w.limits);
  const uint32_t granted = (access & kDmaPriv) ? rights.supervisor : rights.user;
  // Fault priority (Arm ARM D8.15): access flag before permission; with HA only a permitted access
  // sets AF.
  if (!(w.desc & vmsa::kAf) && !c.hardware_af && !c.af_fault_disable)
    return Fault(WalkFaultKind::kAccessFlag, kStage, w.level, va, w.desc, w.desc_addr);
  if ((access & kDmaRwx) & ~granted) return Fault(WalkFaultKind::kPermission, kStage, w.level, va, w.desc, w.desc_addr);
  WalkResult fault;
  if (!HandleAccessFlag(io, w, c.hardware_af, c.af_fault_disable, kStage, va, restart, &fault)) return fault;
  WalkResult r = LeafResult(w, g, va);
  r.user_perms = rights.user;
  r.supervisor_perms = rights.supervisor;
  r.perms = granted;
  return r;
}

WalkResult Stage2Once(TableAccess& io, const VmsaStage2Config& c, uint64_t ipa, uint32_t access, bool* restart) {
  constexpr WalkStage kStage = WalkStage::kSecond;
  const Geometry g = Stage2Geometry(c);
  if (g.start_level < 0) return Fault(WalkFaultKind::kInvalidConfig, kStage, 0, ipa);
  if (g.input_bits < 64 && (ipa >> g.input_bits) != 0) return Fault(WalkFaultKind::kNonCanonical, kStage, 0, ipa);
  LeafWalk w = FindLeaf(io, g, c.ttb, c.oas_bits, kStage, false, ipa);
  if (!w.ok) return w.fault;
  const uint32_t rights = Stage2Rights(w.desc);
  if (!(w.desc & vmsa::kAf) && !c.hardware_af && !c.af_fault_disable)
    return Fault(WalkFaultKind::kAccessFlag, kStage, w.level, ipa, w.desc, w.desc_addr);
  if ((access & kDmaRwx) & ~rights) return Fault(WalkFaultKind::kPermission, kStage, w.level, ipa, w.desc, w.desc_addr);
  WalkResult fault;
  if (!HandleAccessFlag(io, w, c.hardware_af, c.af_fault_disable, kStage, ipa, restart, &fault)) return fault;
  WalkResult r = LeafResult(w, g, ipa);
  r.perms = r.user_perms = r.supervisor_perms = rights;
  return r;
}

template <typename Once, typename Config>
WalkResult Retry(TableAccess& io, const Config& c, uint64_t input, uint32_t access, WalkStage stage, Once once) {
  for (int attempt = 0; attempt < kMaxVmsaWalkAttempts; ++attempt) {
    bool restart = false;
    WalkResult r = once(io, c, input, access, &restart);
    if (!restart) return r;
  }
  return Fault(WalkFaultKind::kTableAccess, stage, 0, input);  // the guest kept rewriting the leaf
}

}  // namespace

bool VmsaBlockAllowed(int granule_shift, int level) {
  if (granule_shift == 12) return level == 1 || level == 2;
  return level == 2;
}

bool IsValidVmsaRegion(const VmsaRegion& r) {
  return ValidGranule(r.granule_shift) && r.tsz >= 16 && r.tsz <= 39;
}

bool IsValidVmsaStage1(const VmsaStage1Config& c) {
  if (c.oas_bits < 32 || c.oas_bits > vmsa::kMaxAddressBits) return false;
  for (const VmsaRegion& r : c.ttbr)
    if (r.enabled && !IsValidVmsaRegion(r)) return false;
  return true;
}

bool IsValidVmsaStage2(const VmsaStage2Config& c) {
  if (!ValidGranule(c.granule_shift) || c.t0sz < 16 || c.t0sz > 39) return false;
  if (c.oas_bits < 32 || c.oas_bits > vmsa::kMaxAddressBits) return false;
  return Stage2Geometry(c).start_level >= 0;
}

WalkResult WalkVmsaStage1Via(TableAccess& tables, const VmsaStage1Config& c, uint64_t va, uint32_t access) {
  if (!IsValidVmsaStage1(c)) return Fault(WalkFaultKind::kInvalidConfig, WalkStage::kFirst, 0, va);
  return Retry(tables, c, va, access, WalkStage::kFirst, Stage1Once);
}

WalkResult WalkVmsaStage1(PhysMemory& memory, const VmsaStage1Config& c, uint64_t va, uint32_t access) {
  DirectTableAccess tables(memory, WalkStage::kFirst);
  return WalkVmsaStage1Via(tables, c, va, access);
}

WalkResult WalkVmsaStage2Via(TableAccess& tables, const VmsaStage2Config& c, uint64_t ipa, uint32_t access) {
  if (!IsValidVmsaStage2(c)) return Fault(WalkFaultKind::kInvalidConfig, WalkStage::kSecond, 0, ipa);
  return Retry(tables, c, ipa, access, WalkStage::kSecond, Stage2Once);
}

WalkResult WalkVmsaStage2(PhysMemory& memory, const VmsaStage2Config& c, uint64_t ipa, uint32_t access) {
  DirectTableAccess tables(memory, WalkStage::kSecond);
  return WalkVmsaStage2Via(tables, c, ipa, access);
}

WalkResult WalkVmsaNested(PhysMemory& memory, const VmsaStage1Config& s1, const VmsaStage2Config& s2, uint64_t va,
                          uint32_t access) {
  if (!IsValidVmsaStage2(s2)) return Fault(WalkFaultKind::kInvalidConfig, WalkStage::kSecond, 0, va);
  auto translate = [&](uint64_t ipa, uint32_t table_access) { return WalkVmsaStage2(memory, s2, ipa, table_access); };
  TranslatedTableAccess tables(memory, translate);
  WalkResult f = WalkVmsaStage1Via(tables, s1, va, access);
  if (!f.ok) return f;
  WalkResult s = WalkVmsaStage2(memory, s2, f.output, access & kDmaRwx);
  if (!s.ok) return s;  // stage kSecond, addr = the stage-1 output IPA
  return CombineNestedStages(f, s);
}

}  // namespace ionest
