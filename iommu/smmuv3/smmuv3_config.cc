#include "iommu/smmuv3/smmuv3_config.h"

#include <algorithm>

#include "iommu/smmuv3/smmuv3_defs.h"

namespace ionest::smmuv3 {
namespace {

bool ReadWords(PhysMemory& memory, uint64_t addr, uint64_t (&w)[8]) {
  return memory.Read(addr, w, sizeof(w)).ok();
}

// TG0 / S2TG (0: 4 KiB, 1: 64 KiB, 2: 16 KiB) and TG1 (1: 16 KiB, 2: 4 KiB, 3: 64 KiB) encodings.
int GranuleShift(uint32_t tg, bool tg1, const DecodeCaps& caps) {
  int shift = -1;
  if (!tg1) shift = tg == 0 ? 12 : tg == 1 ? 16 : tg == 2 ? 14 : -1;
  else shift = tg == 1 ? 14 : tg == 2 ? 12 : tg == 3 ? 16 : -1;
  if ((shift == 12 && !caps.gran4k) || (shift == 14 && !caps.gran16k) || (shift == 16 && !caps.gran64k)) return -1;
  return shift;
}

// An IPS/S2PS encoding, capped by the SMMU's OAS (§5.2 S2PS, §5.4 IPS: larger values behave as OAS).
int OutputBits(uint32_t encoding, const DecodeCaps& caps) {
  const int bits = AddressSizeBits(encoding);
  if (bits < 0) return -1;
  return std::min(bits, caps.oas_bits);
}

}  // namespace

std::optional<SteConfig> DecodeSte(const uint64_t (&w)[8], const DecodeCaps& caps) {
  if (!(w[0] & kSte0V)) return std::nullopt;
  SteConfig s;
  s.config = Field(w[0], 3, 1);
  // §5.2 Config: the reserved encodings 0b001-0b011 behave as 0b000 (abort, no event), not ILLEGAL.
  if (s.config < kSteCfgBypass) s.config = kSteCfgAbort;
  s.s1 = s.config == kSteCfgS1 || s.config == kSteCfgNested;
  s.s2 = s.config == kSteCfgS2 || s.config == kSteCfgNested;
  if ((s.s1 && !caps.stage1) || (s.s2 && !caps.stage2)) return std::nullopt;
  s.eats = Field(w[1], 29, 28);
  if (caps.ats && s.eats == 3) return std::nullopt;
  if (!caps.ats) s.eats = 0;
  // S2VMID tags stage-1-only translations too when stage 2 is implemented (§5.2 S2VMID).
  if (caps.stage2) s.vmid = static_cast<uint16_t>(Field(w[2], 15, 0) & (caps.vmid16 ? 0xFFFF : 0xFF));
  if (s.s1) {
    s.s1_fmt = Field(w[0], 5, 4);
    s.s1_context_ptr = w[0] & kSte0S1CtxPtr;
    s.s1_cd_max = Field(w[0], 63, 59);
    s.s1_dss = Field(w[1], 1, 0);
    s.s1_stall_disable = w[1] & kSte1S1StallD;
    // §5.2: S1Fmt 0b11 behaves as 0b00 (linear), S1DSS 0b11 as 0b00 (terminate).
    if (s.s1_fmt == 3) s.s1_fmt = kS1FmtLinear;
    if (s.s1_dss == 3) s.s1_dss = kS1DssTerminate;
    if (s.s1_cd_max > static_cast<uint32_t>(caps.ssid_bits)) return std::nullopt;
    if (s.s1_cd_max != 0 && s.s1_fmt != kS1FmtLinear && !caps.two_level_cd) return std::nullopt;
    if (s.s1_context_ptr >> caps.oas_bits) return std::nullopt;
    if (Field(w[1], 31, 30) != kStrwNsEl1) return std::nullopt;  // no EL2/EL3 stream worlds (IDR0.HYP=0)
  }
  if (s.s2) {
    const uint64_t vtcr = Field(w[2], 50, 32);
    VmsaStage2Config& c = s.s2_config;
    c.t0sz = static_cast<int>(Field(vtcr, 5, 0));
    c.sl0 = static_cast<int>(Field(vtcr, 7, 6));
    c.granule_shift = GranuleShift(Field(vtcr, 15, 14), false, caps);
    c.oas_bits = OutputBits(Field(vtcr, 18, 16), caps);
    c.ttb = w[3] & kSte3S2Ttb;
    c.af_fault_disable = w[2] & kSte2S2Affd;
    c.hardware_af = caps.hardware_af && (w[2] & kSte2S2Ha);
    if (!(w[2] & kSte2S2AA64) || (w[2] & kSte2S2Endi)) return std::nullopt;  // AArch64, little-endian only
    if (c.granule_shift < 0 || c.oas_bits < 0 || !IsValidVmsaStage2(c)) return std::nullopt;
    s.s2_stall = caps.stall && (w[2] & kSte2S2S);
    s.s2_record = w[2] & kSte2S2R;
  }
  return s;
}

Fetched<SteConfig> FetchSte(PhysMemory& memory, const DecodeCaps& caps, const StreamTable& table, uint32_t sid) {
  Fetched<SteConfig> r;
  const uint32_t log2size = std::min<uint32_t>(Field(table.cfg, 5, 0), caps.sid_bits);
  const uint32_t fmt = Field(table.cfg, 17, 16);
  const uint64_t base = table.base & kStrtabBaseAddr;
  if (log2size < 32 && (uint64_t{sid} >> log2size) != 0) {
    r.fault.event = kEvtBadStreamId;
    return r;
  }
  uint64_t ste_addr = 0;
  if (fmt == kStrtabFmt2Level && caps.two_level_stream_table) {
    // §3.4.3: SPLIT of 6, 8 or 10 bits; level-1 descriptors of 8 bytes with Span and L2Ptr.
    const uint32_t split = Field(table.cfg, 10, 6);
    if (split != 6 && split != 8 && split != 10) {
      r.fault.event = kEvtBadStreamId;
      return r;
    }
    const uint64_t l1_addr = base + (uint64_t{sid} >> split) * 8;
    uint64_t l1 = 0;
    if (!memory.Read(l1_addr, &l1, 8).ok()) {
      r.fault = {kEvtSteFetch, l1_addr, std::nullopt};
      return r;
    }
    const uint32_t span = std::min<uint32_t>(Field(l1, 4, 0), split + 1);
    const uint64_t index = sid & ((1u << split) - 1);
    if (span == 0 || index >= (uint64_t{1} << (span - 1))) {
      r.fault.event = kEvtBadStreamId;
      return r;
    }
    ste_addr = (l1 & kL1StdL2Ptr) + index * kSteSize;
  } else if (fmt == kStrtabFmtLinear) {
    ste_addr = base + uint64_t{sid} * kSteSize;
  } else {
    r.fault.event = kEvtBadStreamId;  // reserved format
    return r;
  }
  uint64_t w[8];
  if (!ReadWords(memory, ste_addr, w)) {
    r.fault = {kEvtSteFetch, ste_addr, std::nullopt};
    return r;
  }
  r.config = DecodeSte(w, caps);
  if (!r.config) r.fault.event = kEvtBadSte;
  return r;
}

std::optional<CdConfig> DecodeCd(const uint64_t (&w)[8], const DecodeCaps& caps) {
  if (!(w[0] & kCd0V)) return std::nullopt;
  if (!(w[0] & kCd0AA64) || (w[0] & kCd0Endi)) return std::nullopt;  // AArch64, little-endian only
  CdConfig c;
  VmsaStage1Config& s1 = c.s1;
  // §5.4 IPS: 0b111 is reserved and behaves as 0b110 (52 bits) in SMMUv3.1-3.3, capped by the OAS.
  s1.oas_bits = OutputBits(std::min<uint32_t>(Field(w[0], 34, 32), 6), caps);
  if (s1.oas_bits < 0) return std::nullopt;
  s1.hardware_af = caps.hardware_af && (w[0] & kCd0Ha);
  s1.af_fault_disable = w[0] & kCd0Affd;
  for (int half = 0; half < 2; ++half) {
    VmsaRegion& r = s1.ttbr[half];
    const int lo = half ? 16 : 0;
    r.enabled = !(w[0] & (half ? kCd0Epd1 : kCd0Epd0));
    r.tsz = static_cast<int>(Field(w[0], lo + 5, lo));
    r.granule_shift = GranuleShift(Field(w[0], lo + 7, lo + 6), half == 1, caps);
    r.ttb = w[1 + half] & kCdTtb;
    if (r.enabled && (r.granule_shift < 0 || !IsValidVmsaRegion(r))) return std::nullopt;
  }
  c.asid = static_cast<uint16_t>(Field(w[0], 63, 48) & (caps.asid16 ? 0xFFFF : 0xFF));
  c.stall = caps.stall && (w[0] & kCd0S);
  c.record = w[0] & kCd0R;
  c.abort = w[0] & kCd0A;
  return c;
}

Fetched<CdConfig> FetchCd(PhysMemory& memory, const DecodeCaps& caps, const SteConfig& ste, uint32_t ssid) {
  Fetched<CdConfig> r;
  // Table addresses are IPAs under stage 2: each access is translated (read) first.
  auto translate = [&](uint64_t addr, uint64_t* pa) {
    if (!ste.s2) {
      *pa = addr;
      return true;
    }
    WalkResult t = WalkVmsaStage2(memory, ste.s2_config, addr, kDmaRead);
    if (!t.ok) {
      r.fault.event = EventForWalkFault(t.fault);
      r.fault.s2_fault = t.fault;
      return false;
    }
    *pa = t.output;
    return true;
  };
  const uint64_t max_ssid = uint64_t{1} << ste.s1_cd_max;
  if (ssid >= max_ssid) {
    r.fault.event = kEvtBadSubstreamId;
    return r;
  }
  uint64_t cd_addr = ste.s1_context_ptr + uint64_t{ssid} * kCdSize;
  if (ste.s1_cd_max != 0 && ste.s1_fmt != kS1FmtLinear) {
    const int leaf_bits = ste.s1_fmt == kS1Fmt4KL2 ? 6 : 10;  // 4 KiB or 64 KiB leaf tables (§5.2 S1Fmt)
    const uint64_t l1_ipa = ste.s1_context_ptr + (uint64_t{ssid} >> leaf_bits) * 8;
    uint64_t l1_pa = 0, l1 = 0;
    if (!translate(l1_ipa, &l1_pa)) return r;
    if (!memory.Read(l1_pa, &l1, 8).ok()) {
      r.fault = {kEvtCdFetch, l1_pa, std::nullopt};
      return r;
    }
    if (!(l1 & kL1CdV)) {
      r.fault.event = kEvtBadSubstreamId;  // §5.4.1: L1CD.V == 0
      return r;
    }
    cd_addr = (l1 & kL1CdL2Ptr) + (ssid & ((1u << leaf_bits) - 1)) * kCdSize;
  }
  uint64_t cd_pa = 0;
  if (!translate(cd_addr, &cd_pa)) return r;
  uint64_t w[8];
  if (!ReadWords(memory, cd_pa, w)) {
    r.fault = {kEvtCdFetch, cd_pa, std::nullopt};
    return r;
  }
  r.config = DecodeCd(w, caps);
  if (!r.config) r.fault.event = kEvtBadCd;
  return r;
}

uint8_t EventForWalkFault(const WalkFault& f) {
  switch (f.kind) {
    case WalkFaultKind::kAddressWidth: return kEvtAddrSize;
    case WalkFaultKind::kAccessFlag: return kEvtAccess;
    case WalkFaultKind::kPermission: return kEvtPermission;
    case WalkFaultKind::kTableAccess: return kEvtWalkEabt;
    default: return kEvtTranslation;
  }
}

}  // namespace ionest::smmuv3
