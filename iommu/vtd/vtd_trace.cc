// VT-d trace names and the table dump (VtdIommu::DumpTables, iommu/trace.h).
#include "iommu/vtd/vtd_trace.h"

#include "absl/strings/str_format.h"
#include "iommu/trace.h"
#include "iommu/vtd/descriptors.h"
#include "iommu/vtd/fault_reasons.h"
#include "iommu/vtd/pasid.h"
#include "iommu/vtd/root_context.h"
#include "iommu/vtd/vtd_iommu.h"

namespace ionest::vtd {

std::string_view FaultReasonName(uint8_t reason) {
  switch (reason) {
    case kFrRootNotPresent: return "root-not-present";
    case kFrContextNotPresent: return "context-not-present";
    case kFrContextInvalid: return "context-invalid";
    case kFrAddressBeyondAw: return "address-beyond-aw";
    case kFrWriteDenied: return "write-denied";
    case kFrReadDenied: return "read-denied";
    case kFrSlPtrError: return "sl-entry-access";
    case kFrRootAccess: return "root-access";
    case kFrContextAccess: return "context-access";
    case kFrRootReserved: return "root-reserved";
    case kFrContextReserved: return "context-reserved";
    case kFrPteReserved: return "pte-reserved";
    case kFrTranslationBlocked: return "translation-type-blocked";
    case kIrReservedInRequest: return "ir-request-reserved";
    case kIrIndexBeyondSize: return "ir-index-beyond-size";
    case kIrEntryNotPresent: return "ir-entry-not-present";
    case kIrTableAccess: return "ir-table-access";
    case kIrEntryReserved: return "ir-entry-reserved";
    case kIrCompatBlocked: return "ir-compat-blocked";
    case kIrSidMismatch: return "ir-sid-mismatch";
    case kSmInvalidRootTable: return "sm-ttm-reserved";
    case kSmTtmLegacyWithPasid: return "sm-legacy-mode-pasid-request";
    case kSmTtmLegacyPageRequest: return "sm-legacy-mode-page-request";
    case kSmRootAccess: return "sm-root-access";
    case kSmRootNotPresent: return "sm-root-not-present";
    case kSmRootReserved: return "sm-root-reserved";
    case kSmContextAccess: return "sm-context-access";
    case kSmContextNotPresent: return "sm-context-not-present";
    case kSmContextReserved: return "sm-context-reserved";
    case kSmContextInvalid: return "sm-context-invalid";
    case kSmDteClear: return "sm-dte-clear";
    case kSmPasidDisabled: return "sm-pasid-disabled";
    case kSmPasidTooLarge: return "sm-pasid-too-large";
    case kSmPreClear: return "sm-pre-clear";
    case kSmRidPasidError: return "sm-rid-pasid";
    case kSmPasidDirAccess: return "sm-pasid-dir-access";
    case kSmPasidDirNotPresent: return "sm-pasid-dir-not-present";
    case kSmPasidDirReserved: return "sm-pasid-dir-reserved";
    case kSmPasidEntryAccess: return "sm-pasid-entry-access";
    case kSmPasidEntryNotPresent: return "sm-pasid-entry-not-present";
    case kSmPasidEntryReserved: return "sm-pasid-entry-reserved";
    case kSmPasidEntryInvalid: return "sm-pasid-entry-invalid";
    case kSmSreClear: return "sm-sre-clear";
    case kSmFlAccess: return "sm-fl-access";
    case kSmFlNotPresent: return "sm-fl-not-present";
    case kSmFlReserved: return "sm-fl-reserved";
    case kSmFlBeyondMgawNested: return "sm-fl-beyond-mgaw-nested";
    case kSmFlWriteDeniedNested: return "sm-fl-write-denied-nested";
    case kSmSlAccess: return "sm-sl-access";
    case kSmSlPermission: return "sm-sl-permission";
    case kSmSlReserved: return "sm-sl-reserved";
    case kSmSlInvalidPointer: return "sm-sl-invalid-pointer";
    case kSmNonCanonical: return "sm-non-canonical";
    case kSmUserDenied: return "sm-user-denied";
    case kSmExecDenied: return "sm-exec-denied";
    case kSmBeyondMaxAddress: return "sm-beyond-max-address";
    case kSmSlBeyondMax: return "sm-sl-beyond-max";
    case kSmWriteDenied: return "sm-write-denied";
    case kSmReadDenied: return "sm-read-denied";
    case kSmInterruptAddress: return "sm-interrupt-address";
    default: return "unknown";
  }
}

std::string_view DescriptorTypeName(uint8_t type) {
  switch (type) {
    case kDescContextCache: return "cc-inv";
    case kDescIotlb: return "iotlb-inv";
    case kDescDeviceTlb: return "dev-tlb-inv";
    case kDescIec: return "iec-inv";
    case kDescWait: return "inv-wait";
    case kDescPasidIotlb: return "p-iotlb-inv";
    case kDescPasidCache: return "pasid-cache-inv";
    case kDescPasidDeviceTlb: return "p-dev-tlb-inv";
    case kDescPageGroupResponse: return "page-group-response";
    default: return "unknown";
  }
}

// ---------------------------------------------------------------------------------------------
// Table dump: root/context (and PASID) entries through the model's decoders, then the full
// translation pipeline for one IOVA on throw-away caches; every table read is listed. Guest memory
// is only read (trace::DumpMemory discards A/D updates).

std::string VtdIommu::DumpTables(const trace::DumpRequest& req) {
  TranslationState state;
  {
    absl::MutexLock l(&mu_);
    state = translation_;
  }
  trace::DumpWriter out;
  const uint16_t rid = req.rid;
  const bool scalable = RtaddrMode(state.rtaddr) == TranslationTableMode::kScalable;
  out.Line(absl::StrFormat("vtd dump rid=%02x:%02x.%x translation=%s rtaddr=0x%x mode=%s", rid >> 8, (rid >> 3) & 0x1f,
                           rid & 7, state.enabled ? "on" : "off", state.rtaddr, scalable ? "scalable" : "legacy"));
  trace::DumpMemory mem(memory_);
  Decoded<ContextEntry> c = ReadContextEntry(mem, profile_, state.rtaddr, rid);
  if (!c.ok()) {
    out.Line(absl::StrFormat("context: fault reason=0x%02x %s", c.fault.reason, FaultReasonName(c.fault.reason)));
  } else if (c.entry->scalable) {
    const ContextEntry& e = *c.entry;
    out.Line(absl::StrFormat(
        "context: raw=%016x:%016x:%016x:%016x pasid-dir=0x%x pdts=%d pasid-enable=%d pre=%d dte=%d rid-pasid=%d fpd=%d",
        e.raw[3], e.raw[2], e.raw[1], e.raw[0], e.pasid_dir, e.pdts, e.pasid_enable, e.pre, e.dte, e.rid_pasid, e.fpd));
    const uint32_t pasid = req.pasid.value_or(e.rid_pasid);
    Decoded<PasidEntry> p = ReadPasidEntry(mem, profile_, e, pasid);
    if (!p.ok()) {
      out.Line(absl::StrFormat("pasid %d: fault reason=0x%02x %s", pasid, p.fault.reason, FaultReasonName(p.fault.reason)));
    } else {
      const PasidEntry& pe = *p.entry;
      out.Line(absl::StrFormat("pasid %d: raw=%016x:%016x:%016x:%016x pgtt=%d did=%d flptptr=0x%x flpm=%d slptptr=0x%x "
                               "aw=%d sre=%d wpe=%d ssade=%d fpd=%d",
                               pasid, pe.raw[3], pe.raw[2], pe.raw[1], pe.raw[0], pe.pgtt, pe.did, pe.flptptr, pe.flpm,
                               pe.slptptr, pe.aw, pe.sre, pe.wpe, pe.ssade, pe.fpd));
    }
  } else {
    const ContextEntry& e = *c.entry;
    out.Line(absl::StrFormat("context: raw=%016x:%016x tt=%d aw=%d did=%d slptptr=0x%x fpd=%d", e.raw[1], e.raw[0],
                             e.tt, e.aw, e.did, e.slptptr, e.fpd));
  }
  out.Line("table reads:");
  mem.Print(out);
  if (req.iova) {
    // The model's own pipeline on empty caches: the same walk a DMA would do, nothing written.
    ContextCache contexts(1);
    PasidCache pasids(1);
    Iotlb iotlb(1);
    TranslationCaches caches{contexts, pasids, iotlb};
    trace::DumpMemory walk_mem(memory_);
    const TranslateRequest t{rid, req.pasid, *req.iova, kDmaRead, RequestKind::kUntranslated};
    TranslateOutcome o = TranslateDma(walk_mem, profile_, state, caches, t);
    if (o.ok) {
      out.Line(absl::StrFormat("walk iova=0x%x: output=0x%x page-size=0x%x perms=%s", *req.iova, o.output, o.page_size,
                               trace::Access("", o.perms).text));
    } else {
      out.Line(absl::StrFormat("walk iova=0x%x: fault reason=0x%02x %s", *req.iova, o.fault.reason,
                               FaultReasonName(o.fault.reason)));
    }
    out.Line("walk reads (root, context, pasid, page-table entries in order):");
    walk_mem.Print(out);
  }
  return out.Finish();
}

}  // namespace ionest::vtd
