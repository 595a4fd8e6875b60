#include "iommu/vtd/caps.h"

#include <functional>
#include <map>
#include <set>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"
#include "iommu/profile_options.h"

namespace ionest::vtd {

uint64_t VtdProfile::Cap() const {
  // CAP_REG fields, §11.4.2.
  uint64_t sagaw = aw == 39 ? 0b00010 : aw == 48 ? 0b00100 : 0b01100;  // 3-, 4-, 4+5-level
  uint64_t cap = 0;
  cap |= uint64_t{nd} & 7;                              // ND 2:0
  cap |= uint64_t{rwbf} << 4;                           // RWBF
  cap |= uint64_t{caching_mode} << 7;                   // CM
  cap |= sagaw << 8;                                    // SAGAW 12:8
  cap |= uint64_t{aw - 1} << 16;                        // MGAW 21:16
  cap |= uint64_t{kFaultRecordOffset / 16} << 24;       // FRO 33:24
  cap |= uint64_t{sl_large_pages ? 0b0011u : 0u} << 34;  // SLLPS 37:34: 2 MiB, 1 GiB
  cap |= uint64_t{psi} << 39;                           // PSI
  cap |= uint64_t{nfr - 1} << 40;                       // NFR 47:40
  cap |= uint64_t{mamv & 0x3f} << 48;                   // MAMV 53:48
  cap |= uint64_t{dwd} << 54;                           // DWD
  cap |= uint64_t{drd} << 55;                           // DRD
  cap |= uint64_t{first_stage && fl1gp} << 56;          // FL1GP
  cap |= uint64_t{fl5lp()} << 60;                       // FL5LP
  return cap;
}

uint64_t VtdProfile::Ecap() const {
  // ECAP_REG fields, §11.4.3.
  uint64_t e = 0;
  e |= uint64_t{coherent} << 0;                            // C
  e |= uint64_t{qi} << 1;                                  // QI
  e |= uint64_t{ats} << 2;                                 // DT
  e |= uint64_t{ir} << 3;                                  // IR
  e |= uint64_t{ir && eim} << 4;                           // EIM
  e |= uint64_t{pt} << 6;                                  // PT
  e |= uint64_t{kIotlbRegOffset / 16} << 8;                // IRO 17:8
  e |= uint64_t{15} << 20;                                 // MHMV 23:20
  e |= uint64_t{scalable_mode && nesting} << 26;           // NEST
  e |= uint64_t{pasid() && prs} << 29;                     // PRS
  e |= uint64_t{pasid() && srs} << 31;                     // SRS
  e |= uint64_t{pasid() && eafs} << 34;                    // EAFS
  if (pasid()) e |= uint64_t{pasid_bits - 1} << 35;        // PSS 39:35
  e |= uint64_t{pasid()} << 40;                            // PASID
  e |= uint64_t{pasid() && prs} << 42;                     // PDS
  e |= uint64_t{scalable_mode} << 43;                      // SMTS
  e |= uint64_t{scalable_mode && second_stage && slads} << 45;  // SLADS
  e |= uint64_t{scalable_mode && second_stage} << 46;     // SLTS
  e |= uint64_t{scalable_mode && first_stage} << 47;      // FLTS
  e |= uint64_t{scalable_mode && smpwc} << 48;            // SMPWC
  return e;
}

uint32_t VtdProfile::window_size() const {
  uint32_t end = std::max(kIotlbRegOffset + 16, kFaultRecordOffset + nfr * 16);
  return (end + 0xfff) & ~0xfffu;
}

namespace {

// Options left at their default that conflict with an explicit choice are dropped silently
// (e.g. "flts=off" turns nesting off); explicit conflicts are errors.
absl::Status Validate(VtdProfile& p, const std::set<std::string>& given) {
  if (!given.contains("nest") && !(p.first_stage && p.second_stage)) p.nesting = false;
  if (!given.contains("prs") && p.pasid_bits == 0) p.prs = false;
  if (!given.contains("eim") && !p.ir) p.eim = false;
  if (!given.contains("ir") && !p.qi) p.ir = false, p.eim = given.contains("eim") && p.eim;
  auto err = [](absl::string_view m) { return absl::InvalidArgumentError(absl::StrCat("vtd profile: ", m)); };
  if (p.aw != 39 && p.aw != 48 && p.aw != 57) return err("aw must be 39, 48 or 57");
  if (p.scalable_mode && !p.qi) return err("sm=on requires qi=on (scalable mode needs queued invalidation)");
  if (p.scalable_mode && !p.first_stage && !p.second_stage) return err("sm=on requires flts=on or slts=on");
  if (p.scalable_mode && p.first_stage && p.aw == 39) return err("flts=on requires aw=48 or aw=57");
  if (p.nesting && p.scalable_mode && !(p.first_stage && p.second_stage)) return err("nest=on requires flts=on and slts=on");
  if (p.prs && p.scalable_mode && p.pasid_bits == 0) return err("prs=on requires pasid-bits > 0");
  if (p.ir && !p.qi) return err("ir=on requires qi=on");
  if (p.eim && !p.ir) return err("eim=on requires ir=on");
  if (p.iotlb_entries == 0 || p.context_cache_entries == 0 || p.pasid_cache_entries == 0 || p.irte_cache_entries == 0)
    return err("cache sizes must be > 0");
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<VtdProfile> ParseVtdProfile(std::string_view options_in) {
  absl::string_view options(options_in.data(), options_in.size());
  VtdProfile p;
  auto b = [](bool* f) { return BoolProfileOption("vtd", f); };
  auto u = [](uint32_t* f, uint32_t lo, uint32_t hi) { return UintProfileOption("vtd", f, lo, hi); };
  const std::map<std::string, ProfileSetter> setters = {
      {"sm", b(&p.scalable_mode)},
      {"flts", b(&p.first_stage)},
      {"slts", b(&p.second_stage)},
      {"nest", b(&p.nesting)},
      {"pasid-bits", u(&p.pasid_bits, 0, 20)},
      {"prs", b(&p.prs)},
      {"ats", b(&p.ats)},
      {"aw", u(&p.aw, 39, 57)},
      {"cm", b(&p.caching_mode)},
      {"qi", b(&p.qi)},
      {"ir", b(&p.ir)},
      {"eim", b(&p.eim)},
      {"pt", b(&p.pt)},
      {"c", b(&p.coherent)},
      {"psi", b(&p.psi)},
      {"fl1gp", b(&p.fl1gp)},
      {"sllps", b(&p.sl_large_pages)},
      {"rwbf", b(&p.rwbf)},
      {"drd", b(&p.drd)},
      {"dwd", b(&p.dwd)},
      {"drain-timeout-ms", u(&p.drain_timeout_ms, 1, 60000)},
      {"srs", b(&p.srs)},
      {"eafs", b(&p.eafs)},
      {"smpwc", b(&p.smpwc)},
      {"slads", b(&p.slads)},
      {"nfr", u(&p.nfr, 1, 256)},
      {"nd", u(&p.nd, 0, 6)},
      {"mamv", u(&p.mamv, 0, 63)},
      {"iotlb-entries", u(&p.iotlb_entries, 1, 1u << 20)},
      {"context-cache-entries", u(&p.context_cache_entries, 1, 1u << 16)},
      {"pasid-cache-entries", u(&p.pasid_cache_entries, 1, 1u << 20)},
      {"irte-cache-entries", u(&p.irte_cache_entries, 1, 1u << 16)},
  };
  absl::StatusOr<std::set<std::string>> given = ApplyProfileOptions("vtd", options, setters);
  if (!given.ok()) return given.status();
  if (absl::Status s = Validate(p, *given); !s.ok()) return s;
  return p;
}

std::string VtdProfile::ToString() const {
  return absl::StrFormat(
      "sm=%d,flts=%d,slts=%d,nest=%d,pasid-bits=%u,prs=%d,ats=%d,aw=%u,cm=%d,qi=%d,ir=%d,eim=%d,pt=%d,nfr=%u "
      "(CAP=%#x ECAP=%#x)",
      scalable_mode, first_stage, second_stage, nesting, pasid_bits, prs, ats, aw, caching_mode, qi, ir, eim, pt, nfr,
      Cap(), Ecap());
}

}  // namespace ionest::vtd
