// SMMUv3 event trace and table dump (iommu/trace.h): names of event records (§7.3) and commands
// (§4), the lines for events written and commands executed, and Smmuv3Iommu::DumpTables.
#include <string_view>

#include "absl/strings/str_format.h"
#include "iommu/smmuv3/smmuv3_iommu.h"
#include "iommu/trace.h"

namespace ionest::smmuv3 {
namespace {

std::string_view EventName(uint8_t type) {
  switch (type) {
    case kEvtUut: return "F_UUT";
    case kEvtBadStreamId: return "C_BAD_STREAMID";
    case kEvtSteFetch: return "F_STE_FETCH";
    case kEvtBadSte: return "C_BAD_STE";
    case kEvtBadAtsTreq: return "F_BAD_ATS_TREQ";
    case kEvtStreamDisabled: return "F_STREAM_DISABLED";
    case kEvtTranslForbidden: return "F_TRANSL_FORBIDDEN";
    case kEvtBadSubstreamId: return "C_BAD_SUBSTREAMID";
    case kEvtCdFetch: return "F_CD_FETCH";
    case kEvtBadCd: return "C_BAD_CD";
    case kEvtWalkEabt: return "F_WALK_EABT";
    case kEvtTranslation: return "F_TRANSLATION";
    case kEvtAddrSize: return "F_ADDR_SIZE";
    case kEvtAccess: return "F_ACCESS";
    case kEvtPermission: return "F_PERMISSION";
    case kEvtTlbConflict: return "F_TLB_CONFLICT";
    case kEvtCfgConflict: return "F_CFG_CONFLICT";
    default: return "unknown";
  }
}

std::string_view CommandName(uint8_t op) {
  switch (op) {
    case kCmdPrefetchConfig: return "CMD_PREFETCH_CONFIG";
    case kCmdPrefetchAddr: return "CMD_PREFETCH_ADDR";
    case kCmdCfgiSte: return "CMD_CFGI_STE";
    case kCmdCfgiSteRange: return "CMD_CFGI_STE_RANGE";
    case kCmdCfgiCd: return "CMD_CFGI_CD";
    case kCmdCfgiCdAll: return "CMD_CFGI_CD_ALL";
    case kCmdTlbiNhAll: return "CMD_TLBI_NH_ALL";
    case kCmdTlbiNhAsid: return "CMD_TLBI_NH_ASID";
    case kCmdTlbiNhVa: return "CMD_TLBI_NH_VA";
    case kCmdTlbiNhVaa: return "CMD_TLBI_NH_VAA";
    case kCmdTlbiEl3All: return "CMD_TLBI_EL3_ALL";
    case kCmdTlbiEl3Va: return "CMD_TLBI_EL3_VA";
    case kCmdTlbiEl2All: return "CMD_TLBI_EL2_ALL";
    case kCmdTlbiEl2Asid: return "CMD_TLBI_EL2_ASID";
    case kCmdTlbiEl2Va: return "CMD_TLBI_EL2_VA";
    case kCmdTlbiEl2Vaa: return "CMD_TLBI_EL2_VAA";
    case kCmdTlbiS12Vmall: return "CMD_TLBI_S12_VMALL";
    case kCmdTlbiS2Ipa: return "CMD_TLBI_S2_IPA";
    case kCmdTlbiNsnhAll: return "CMD_TLBI_NSNH_ALL";
    case kCmdAtcInv: return "CMD_ATC_INV";
    case kCmdPriResp: return "CMD_PRI_RESP";
    case kCmdResume: return "CMD_RESUME";
    case kCmdStallTerm: return "CMD_STALL_TERM";
    case kCmdSync: return "CMD_SYNC";
    default: return "unknown";
  }
}

std::string_view CerrorName(uint32_t error) {
  switch (error) {
    case kCerrorNone: return "ok";
    case kCerrorIll: return "CERROR_ILL";
    case kCerrorAbt: return "CERROR_ABT";
    case kCerrorAtcInvSync: return "CERROR_ATC_INV_SYNC";
    default: return "unknown";
  }
}

}  // namespace

void Smmuv3Iommu::TraceEvent(const Event& e, std::string_view result) const {
  trace::Emit(trace::kFault, "smmuv3", "event",
              {trace::Hex("sid", e.sid), trace::OptDec("ssid", e.ssid), trace::Hex("type", e.type),
               trace::Str("name", EventName(e.type)), trace::Hex("input", e.input), trace::Access("access", e.access),
               trace::Dec("s2", e.s2), trace::Hex("addr3", e.addr3),
               e.stag ? trace::Dec("stag", *e.stag) : trace::OptDec("stag", std::nullopt),
               trace::Str("result", result)});
  if (e.stag && result == "written") {
    trace::Emit(trace::kPageRequest, "smmuv3", "stall",
                {trace::Hex("sid", e.sid), trace::OptDec("ssid", e.ssid), trace::Dec("stag", *e.stag),
                 trace::Hex("input", e.input), trace::Access("access", e.access), trace::Str("name", EventName(e.type))});
  }
}

void Smmuv3Iommu::TraceCommand(uint32_t index, const uint64_t (&cmd)[2], uint32_t error) const {
  const uint8_t op = static_cast<uint8_t>(cmd[0] & 0xFF);
  trace::Emit(trace::kCommand, "smmuv3", "cmd",
              {trace::Dec("index", index), trace::Hex("op", op), trace::Str("name", CommandName(op)),
               trace::Hex("cmd0", cmd[0]), trace::Hex("cmd1", cmd[1]), trace::Str("result", CerrorName(error))});
}

// ---------------------------------------------------------------------------------------------
// Table dump: the STE and CD through the model's own fetchers (FetchSte/FetchCd, linear and
// 2-level tables), then the model's walk of one IOVA; every table read is listed; nothing is
// written to guest memory and no cache of the model changes.

std::string Smmuv3Iommu::DumpTables(const trace::DumpRequest& req) {
  StreamTable strtab;
  uint32_t cr0;
  {
    absl::MutexLock l(&mu_);
    strtab = strtab_;
    cr0 = cr0_;
  }
  trace::DumpWriter out;
  const uint32_t sid = req.rid;
  out.Line(absl::StrFormat("smmuv3 dump sid=0x%x smmuen=%d strtab_base=0x%x strtab_cfg=0x%x", sid,
                           (cr0 & kCr0SmmuEn) != 0, strtab.base, strtab.cfg));
  trace::DumpMemory mem(memory_);
  Fetched<SteConfig> ste = FetchSte(mem, caps_, strtab, sid);
  if (!ste.ok()) {
    out.Line(absl::StrFormat("ste: %s fetch=0x%x", EventName(ste.fault.event), ste.fault.fetch_addr));
    out.Line("table reads:");
    mem.Print(out);
    return out.Finish();
  }
  const SteConfig& s = *ste.config;
  out.Line(absl::StrFormat("ste: config=%d s1=%d s2=%d s1_context_ptr=0x%x s1_fmt=%d s1_cd_max=%d s1_dss=%d s1_stalld=%d "
                           "eats=%d vmid=%d s2ttb=0x%x s2s=%d",
                           s.config, s.s1, s.s2, s.s1_context_ptr, s.s1_fmt, s.s1_cd_max, s.s1_dss, s.s1_stall_disable,
                           s.eats, s.vmid, s.s2_config.ttb, s.s2_stall));
  std::optional<CdConfig> cd;
  if (s.s1) {
    Fetched<CdConfig> f = FetchCd(mem, caps_, s, req.pasid.value_or(0));
    if (!f.ok()) {
      out.Line(absl::StrFormat("cd %d: %s fetch=0x%x", req.pasid.value_or(0), EventName(f.fault.event),
                               f.fault.fetch_addr));
    } else {
      cd = *f.config;
      out.Line(absl::StrFormat("cd %d: asid=%d ttb0=0x%x t0sz=%d epd0=%d ttb1=0x%x t1sz=%d epd1=%d ips=%d ha=%d stall=%d",
                               req.pasid.value_or(0), cd->asid, cd->s1.ttbr[0].ttb, cd->s1.ttbr[0].tsz,
                               !cd->s1.ttbr[0].enabled, cd->s1.ttbr[1].ttb, cd->s1.ttbr[1].tsz, !cd->s1.ttbr[1].enabled,
                               cd->s1.oas_bits, cd->s1.hardware_af, cd->stall));
    }
  }
  out.Line("table reads:");
  mem.Print(out);
  if (req.iova && (!s.s1 || cd)) {
    const Context c = MakeContext(s, cd ? &*cd : nullptr, false);
    if (c.kind != Context::kTranslate) {
      out.Line(absl::StrFormat("walk iova=0x%x: %s", *req.iova, c.kind == Context::kBypass ? "bypass" : "abort"));
    } else {
      trace::DumpMemory walk_mem(memory_);
      WalkResult w;
      {
        absl::ReaderMutexLock l(&mu_);  // Walk's annotation; it reads no model state
        w = Walk(walk_mem, c, *req.iova, kDmaRead);
      }
      if (w.ok) {
        out.Line(absl::StrFormat("walk iova=0x%x: output=0x%x page-size=0x%x perms=%s", *req.iova, w.output,
                                 w.page_size, trace::Access("", w.perms).text));
      } else {
        out.Line(absl::StrFormat("walk iova=0x%x: fault %s level=%d", *req.iova, EventName(EventForWalkFault(w.fault)),
                                 w.fault.level));
      }
      out.Line("walk reads (descriptors in order):");
      walk_mem.Print(out);
    }
  }
  return out.Finish();
}

}  // namespace ionest::smmuv3
