#include "iommu/vtd/root_context.h"

namespace ionest::vtd {

uint32_t AwBits(uint8_t aw) {
  switch (aw) {
    case 1: return 39;
    case 2: return 48;
    case 3: return 57;
    default: return 0;
  }
}

uint32_t AwLevels(uint8_t aw) { return aw >= 1 && aw <= 3 ? aw + 2u : 0u; }

bool AwSupported(const VtdProfile& profile, uint8_t aw) {
  if (aw > 4) return false;
  return (profile.Cap() >> 8) & (1u << aw);  // CAP.SAGAW bit n ⇔ AW n (§11.4.2)
}

namespace {

constexpr uint64_t kPageMask = ~uint64_t{0xfff};

Decoded<ContextEntry> ReadLegacy(const PhysMemory& memory, const VtdProfile& profile, uint64_t root_table,
                                 uint16_t rid) {
  const uint8_t bus = rid >> 8, devfn = rid & 0xff;
  // Root entry §9.1: P 0, CTP 63:12; bits 11:1 and the upper qword reserved.
  uint64_t root[2];
  if (!memory.Read(root_table + bus * 16ull, root, sizeof(root)).ok()) return Decoded<ContextEntry>::Fail(kFrRootAccess);
  if (!(root[0] & 1)) return Decoded<ContextEntry>::Fail(kFrRootNotPresent);
  if ((root[0] & 0xffe) || root[1]) return Decoded<ContextEntry>::Fail(kFrRootReserved);
  // Context entry §9.3: lo P 0, FPD 1, TT 3:2, SLPTPTR 63:12 (11:4 reserved);
  // hi AW 2:0, AVAIL 6:3, DID 23:8 (bit 7, 63:24 reserved).
  ContextEntry c;
  if (!memory.Read((root[0] & kPageMask) + devfn * 16ull, c.raw.data(), 16).ok()) {
    return Decoded<ContextEntry>::Fail(kFrContextAccess);
  }
  const uint64_t lo = c.raw[0], hi = c.raw[1];
  c.fpd = lo & 2;
  if (!(lo & 1)) return Decoded<ContextEntry>::Fail(kFrContextNotPresent, false, c.fpd);
  if ((lo & 0xff0) || (hi & 0xffffffffff000080ull)) return Decoded<ContextEntry>::Fail(kFrContextReserved, false, c.fpd);
  c.tt = (lo >> 2) & 3;
  c.aw = hi & 7;
  c.did = (hi >> 8) & 0xffff;
  c.slptptr = lo & kPageMask;
  bool valid_tt = c.tt == kTtUntranslatedOnly || (c.tt == kTtAllWithDeviceTlb && profile.ats) ||
                  (c.tt == kTtPassThrough && profile.pt);
  if (!valid_tt) return Decoded<ContextEntry>::Fail(kFrContextInvalid, false, c.fpd);
  if (c.tt != kTtPassThrough && !AwSupported(profile, c.aw)) {
    return Decoded<ContextEntry>::Fail(kFrContextInvalid, false, c.fpd);
  }
  if (c.did >= profile.domain_count()) return Decoded<ContextEntry>::Fail(kFrContextInvalid, false, c.fpd);
  return Decoded<ContextEntry>::Ok(c);
}

Decoded<ContextEntry> ReadScalable(const PhysMemory& memory, const VtdProfile& profile, uint64_t root_table,
                                   uint16_t rid) {
  const uint8_t bus = rid >> 8, devfn = rid & 0xff;
  // Scalable root entry §9.2: lo = LCTP|LP (devfn 0-127), hi = UCTP|UP (devfn 128-255).
  uint64_t root[2];
  if (!memory.Read(root_table + bus * 16ull, root, sizeof(root)).ok()) return Decoded<ContextEntry>::Fail(kSmRootAccess);
  uint64_t half = root[devfn >= 128 ? 1 : 0];
  if (!(half & 1)) return Decoded<ContextEntry>::Fail(kSmRootNotPresent);
  if (half & 0xffe) return Decoded<ContextEntry>::Fail(kSmRootReserved);
  // Scalable context entry §9.4 (256 bits): qw0 P 0, FPD 1, DTE 2, PASIDE 3, PRE 4, PDTS 11:9,
  // PASIDDIRPTR 63:12 (8:5 reserved); qw1 RID_PASID 19:0, RID_PRIV 20 (63:21 reserved); qw2-3 reserved.
  ContextEntry c;
  c.scalable = true;
  if (!memory.Read((half & kPageMask) + (devfn & 0x7f) * 32ull, c.raw.data(), 32).ok()) {
    return Decoded<ContextEntry>::Fail(kSmContextAccess);
  }
  const uint64_t q0 = c.raw[0], q1 = c.raw[1];
  c.fpd = q0 & 2;
  if (!(q0 & 1)) return Decoded<ContextEntry>::Fail(kSmContextNotPresent, false, c.fpd);
  if ((q0 & 0x1e0) || (q1 & ~uint64_t{0x1fffff}) || c.raw[2] || c.raw[3]) {
    return Decoded<ContextEntry>::Fail(kSmContextReserved, false, c.fpd);
  }
  c.dte = q0 & 4;
  c.pasid_enable = q0 & 8;
  c.pre = q0 & 16;
  c.pdts = (q0 >> 9) & 7;
  c.pasid_dir = q0 & kPageMask;
  c.rid_pasid = q1 & 0xfffff;
  c.rid_priv = q1 & (1u << 20);
  if ((c.dte && !profile.ats) || (c.pre && !profile.prs) || (c.pasid_enable && !profile.pasid())) {
    return Decoded<ContextEntry>::Fail(kSmContextInvalid, false, c.fpd);
  }
  if (c.rid_pasid >= c.pasid_limit()) return Decoded<ContextEntry>::Fail(kSmRidPasidError, false, c.fpd);
  return Decoded<ContextEntry>::Ok(c);
}

}  // namespace

Decoded<ContextEntry> ReadContextEntry(const PhysMemory& memory, const VtdProfile& profile, uint64_t rtaddr,
                                       uint16_t rid) {
  switch (RtaddrMode(rtaddr)) {
    case TranslationTableMode::kLegacy:
      return ReadLegacy(memory, profile, RtaddrBase(rtaddr), rid);
    case TranslationTableMode::kScalable:
      if (!profile.scalable_mode) return Decoded<ContextEntry>::Fail(kSmInvalidRootTable);
      return ReadScalable(memory, profile, RtaddrBase(rtaddr), rid);
    default:  // §11.4.6: TTM 10b/11b reserved
      return Decoded<ContextEntry>::Fail(kSmInvalidRootTable);
  }
}

}  // namespace ionest::vtd
