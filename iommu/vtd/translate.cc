#include "iommu/vtd/translate.h"

#include <algorithm>

#include "iommu/first_stage.h"
#include "iommu/nested.h"
#include "iommu/second_stage.h"
#include "iommu/vtd/fault_reasons.h"
#include "iommu/vtd/pasid.h"

namespace ionest::vtd {

namespace {

constexpr int kHostAddressWidth = 48;  // HAW reported in the DMAR table (width + 1)
constexpr uint32_t kAllRights = kDmaRead | kDmaWrite | kDmaExec | kDmaPriv;

DmaFaultKind TableFaultKind(uint8_t reason) {
  switch (reason) {
    case kFrRootNotPresent:
    case kFrContextNotPresent:
    case kFrTranslationBlocked:
    case kSmRootNotPresent:
    case kSmContextNotPresent:
    case kSmDteClear:
    case kSmPasidDisabled:
    case kSmPasidTooLarge:
    case kSmTtmLegacyWithPasid:
    case kSmPasidDirNotPresent:
    case kSmPasidEntryNotPresent:
      return DmaFaultKind::kBlocked;
    default:
      return DmaFaultKind::kInvalidEntry;
  }
}

TranslateOutcome Fail(const TableFault& f) {
  TranslateOutcome o;
  o.fault = f;
  o.dma_kind = TableFaultKind(f.reason);
  return o;
}

TranslateOutcome Identity(uint64_t iova, bool device_tlb) {
  TranslateOutcome o;
  o.ok = true;
  o.output = iova;
  o.page_size = kPage1G;
  o.perms = kAllRights;
  o.device_tlb = device_tlb;
  return o;
}

bool IsQualifiedWalkFault(WalkFaultKind k) {
  return k == WalkFaultKind::kNotPresent || k == WalkFaultKind::kPermission || k == WalkFaultKind::kNonCanonical ||
         k == WalkFaultKind::kAddressWidth || k == WalkFaultKind::kRequestNotAllowed;
}

uint32_t SuperpageMask(const VtdProfile& p) { return p.sl_large_pages ? (kSuperpage2M | kSuperpage1G) : 0; }

SecondStageConfig SecondStage(const VtdProfile& p, uint64_t root, uint8_t aw, bool ad) {
  SecondStageConfig c;
  c.root = root;
  c.levels = static_cast<int>(AwLevels(aw));
  c.aw_bits = static_cast<int>(std::min<uint32_t>(AwBits(aw), p.aw));  // MGAW bounds the input (§3.7)
  c.ad_enabled = ad;
  c.superpage_mask = SuperpageMask(p);
  c.haw_bits = kHostAddressWidth;
  return c;
}

TranslateOutcome FromWalk(const WalkResult& w, bool scalable, uint32_t access, bool fpd, bool device_tlb) {
  TranslateOutcome o;
  o.device_tlb = device_tlb;
  if (w.ok) {
    o.ok = true;
    o.output = w.output;
    o.page_size = w.page_size;
    o.perms = w.perms;
    return o;
  }
  o.fault = {WalkFaultReason(w.fault, scalable, access), IsQualifiedWalkFault(w.fault.kind), fpd};
  o.dma_kind = ToDmaFaultKind(w.fault.kind);
  return o;
}

}  // namespace

uint8_t WalkFaultReason(const WalkFault& f, bool scalable, uint32_t access) {
  const bool write = access & kDmaWrite;
  if (!scalable) {  // legacy second-stage only (Appendix A, 1h-Dh)
    switch (f.kind) {
      case WalkFaultKind::kNotPresent:
      case WalkFaultKind::kPermission:
        return write ? kFrWriteDenied : kFrReadDenied;
      case WalkFaultKind::kReservedBit: return kFrPteReserved;
      case WalkFaultKind::kAddressWidth: return kFrAddressBeyondAw;
      case WalkFaultKind::kTableAccess: return kFrSlPtrError;
      default: return kFrContextInvalid;
    }
  }
  if (f.stage == WalkStage::kFirst) {
    switch (f.kind) {
      case WalkFaultKind::kNotPresent: return kSmFlNotPresent;
      case WalkFaultKind::kReservedBit: return kSmFlReserved;
      case WalkFaultKind::kTableAccess: return kSmFlAccess;
      case WalkFaultKind::kNonCanonical: return kSmNonCanonical;
      case WalkFaultKind::kAddressWidth: return kSmBeyondMaxAddress;
      case WalkFaultKind::kRequestNotAllowed: return (access & kDmaPriv) ? kSmSreClear : kSmExecDenied;
      case WalkFaultKind::kPermission:
        // 81h: a user-mode request to a supervisor page (U/S=0 in the faulting entry).
        if (!(access & kDmaPriv) && !(f.entry & (1u << 2))) return kSmUserDenied;
        if (access & kDmaExec) return kSmExecDenied;
        return write ? kSmWriteDenied : kSmReadDenied;
      default: return kSmPasidEntryInvalid;
    }
  }
  const bool for_table = f.stage == WalkStage::kSecondForFirstTable;
  switch (f.kind) {
    case WalkFaultKind::kNotPresent:
    case WalkFaultKind::kPermission:
      if (for_table) return write ? kSmFlWriteDeniedNested : 0x76;  // 76h: read denied on FL entry (nested)
      return write ? kSmWriteDenied : kSmReadDenied;
    case WalkFaultKind::kReservedBit: return kSmSlReserved;
    case WalkFaultKind::kTableAccess: return kSmSlAccess;
    case WalkFaultKind::kAddressWidth: return for_table ? kSmFlBeyondMgawNested : kSmSlBeyondMax;
    default: return kSmSlInvalidPointer;
  }
}

Decoded<ContextEntry> LookupContext(PhysMemory& memory, const VtdProfile& profile, const TranslationState& state,
                                    ContextCache& cache, uint16_t rid) {
  if (const ContextEntry* c = cache.Lookup(rid)) return Decoded<ContextEntry>::Ok(*c);
  Decoded<ContextEntry> d = ReadContextEntry(memory, profile, state.rtaddr, rid);
  if (d.ok()) cache.Insert(rid, *d.entry);  // faults are never cached (§6.1, CM)
  return d;
}

std::optional<TranslateOutcome> TranslateCached(const TranslationState& state, const ContextCache& contexts,
                                                const PasidCache& pasids, Iotlb& iotlb, const TranslateRequest& req) {
  if (!state.enabled) return Identity(req.iova, true);
  const ContextEntry* ctx = contexts.Lookup(req.rid);
  if (!ctx) return std::nullopt;
  const bool device_tlb = ctx->device_tlb();
  auto hit = [&](uint16_t did, uint32_t pasid, uint32_t access) -> std::optional<TranslateOutcome> {
    if (auto h = iotlb.Lookup(did, pasid, req.iova, access)) {
      return TranslateOutcome{true, h->output, h->page_size, h->perms, device_tlb};
    }
    return std::nullopt;
  };
  if (!ctx->scalable) {
    if (req.pasid || (req.kind == RequestKind::kTranslationRequest && ctx->tt != kTtAllWithDeviceTlb)) {
      return std::nullopt;  // faults take the full path
    }
    if (ctx->tt == kTtPassThrough) return Identity(req.iova, device_tlb);
    return hit(ctx->did, kNoPasid, req.access & (kDmaRead | kDmaWrite));
  }
  if (req.kind == RequestKind::kTranslationRequest && !ctx->dte) return std::nullopt;
  if (req.pasid && !ctx->pasid_enable) return std::nullopt;
  uint32_t access = req.access;
  uint32_t pasid = req.pasid.value_or(ctx->rid_pasid);
  if (!req.pasid) {
    access &= ~(kDmaPriv | kDmaExec);
    if (ctx->rid_priv) access |= kDmaPriv;
  }
  const PasidEntry* pe = pasids.Lookup(req.rid, pasid);
  if (!pe) return std::nullopt;
  if (pe->pgtt == kPgttPassThrough) return Identity(req.iova, device_tlb);
  return hit(pe->did, pasid, access);
}

TranslateOutcome TranslateDma(PhysMemory& memory, const VtdProfile& profile, const TranslationState& state,
                              TranslationCaches& caches, const TranslateRequest& req) {
  // §3.4.1 / §4.2: with translation disabled, requests pass through untranslated.
  if (!state.enabled) return Identity(req.iova, true);
  const bool scalable = RtaddrMode(state.rtaddr) == TranslationTableMode::kScalable;
  if (!scalable && RtaddrMode(state.rtaddr) == TranslationTableMode::kLegacy && req.pasid) {
    return Fail({kSmTtmLegacyWithPasid, false, false});  // §3.4.2: no PASID-tagged requests in legacy mode
  }
  Decoded<ContextEntry> cd = LookupContext(memory, profile, state, caches.contexts, req.rid);
  if (!cd.ok()) return Fail(cd.fault);
  const ContextEntry& ctx = *cd.entry;
  const bool device_tlb = ctx.device_tlb();

  if (!ctx.scalable) {
    // Legacy context entry, §3.4.3 / §9.3.
    if (req.kind == RequestKind::kTranslationRequest && ctx.tt != kTtAllWithDeviceTlb) {
      return Fail({kFrTranslationBlocked, false, ctx.fpd});
    }
    if (ctx.tt == kTtPassThrough) return Identity(req.iova, device_tlb);
    const uint32_t access = req.access & (kDmaRead | kDmaWrite);
    if (auto hit = caches.iotlb.Lookup(ctx.did, kNoPasid, req.iova, access)) {
      return {true, hit->output, hit->page_size, hit->perms, device_tlb};
    }
    uint64_t gen = caches.iotlb.generation();
    WalkResult w = WalkSecondStage(memory, SecondStage(profile, ctx.slptptr, ctx.aw, false), req.iova, access);
    if (w.ok) caches.iotlb.Insert(ctx.did, kNoPasid, req.iova, w, IotlbType::kSecondStage, gen);
    return FromWalk(w, false, access, ctx.fpd, device_tlb);
  }

  // Scalable mode, §3.4.3 / §9.4-9.6.
  if (req.kind == RequestKind::kTranslationRequest && !ctx.dte) return Fail({kSmDteClear, false, ctx.fpd});
  uint32_t access = req.access;
  uint32_t pasid;
  if (req.pasid) {
    if (!ctx.pasid_enable) return Fail({kSmPasidDisabled, false, ctx.fpd});
    pasid = *req.pasid;
  } else {
    // Requests without PASID use RID_PASID; privilege from RID_PRIV, never execute (§9.4).
    pasid = ctx.rid_pasid;
    access &= ~(kDmaPriv | kDmaExec);
    if (ctx.rid_priv) access |= kDmaPriv;
  }
  const PasidEntry* cached = caches.pasids.Lookup(req.rid, pasid);
  PasidEntry pe;
  if (cached) {
    pe = *cached;
  } else {
    Decoded<PasidEntry> pd = ReadPasidEntry(memory, profile, ctx, pasid);
    if (!pd.ok()) return Fail(pd.fault);
    pe = *pd.entry;
    caches.pasids.Insert(req.rid, pasid, pe);
  }
  if (pe.pgtt == kPgttPassThrough) return Identity(req.iova, device_tlb);
  if (auto hit = caches.iotlb.Lookup(pe.did, pasid, req.iova, access)) {
    return {true, hit->output, hit->page_size, hit->perms, device_tlb};
  }
  FirstStageConfig fs;
  fs.root = pe.flptptr;
  fs.levels = pe.flpm == 1 ? 5 : 4;
  fs.sre = pe.sre;
  fs.wpe = pe.wpe;
  fs.ere = false;  // ECAP.ERS = 0: execute requests are not supported
  fs.eafe = pe.eafe;
  fs.update_ad = true;
  fs.allow_1g = profile.fl1gp;
  fs.haw_bits = kHostAddressWidth;
  const bool ssad = pe.ssade && profile.slads;
  uint64_t gen = caches.iotlb.generation();
  WalkResult w;
  IotlbType type;
  switch (pe.pgtt) {
    case kPgttFirstStage:
      w = WalkFirstStage(memory, fs, req.iova, access);
      type = IotlbType::kFirstStage;
      break;
    case kPgttSecondStage:
      w = WalkSecondStage(memory, SecondStage(profile, pe.slptptr, pe.aw, ssad), req.iova, access & ~kDmaPriv);
      type = IotlbType::kSecondStage;
      break;
    default:  // kPgttNested (ReadPasidEntry rejected every other value)
      w = WalkNested(memory, fs, SecondStage(profile, pe.slptptr, pe.aw, ssad), req.iova, access);
      type = IotlbType::kNested;
      break;
  }
  if (w.ok) caches.iotlb.Insert(pe.did, pasid, req.iova, w, type, gen);
  return FromWalk(w, true, access, pe.fpd, device_tlb);
}

}  // namespace ionest::vtd
