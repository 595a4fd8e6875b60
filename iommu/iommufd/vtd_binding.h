// Binding rules of the VT-d nesting backend (issue 9): what host object a passthrough device's
// translation for one PASID (or for requests without PASID) must be bound to, given the guest's
// VT-d state. Pure functions of decoded guest entries, so every rule is unit-tested and fuzzed
// without a host.
//
//   guest state                                        host binding
//   GCMD.TE=0 (translation off, §10.4.4)               kIdentity: the nest parent (IOVA = GPA)
//   legacy context TT=10b / PASID entry PGTT=100b      kIdentity (pass-through, §9.3 / §9.6)
//   PASID entry PGTT=001b (first stage)                kNested: IOMMU_HWPT_DATA_VTD_S1 on the nest parent
//   legacy TT=00b/01b, PGTT=010b (second stage only)   kShadow: an IOAS following the guest's table
//   PGTT=011b (the guest nests itself)                 kBlocked (not supported for passthrough; logged)
//   no entry / translation blocked                     kBlocked (DMA aborted by the host, as on hardware)
//
// Guest-controlled values are checked before they can reach the host: a first-stage or
// second-stage pointer outside guest RAM and a 5-level first stage the host cannot walk become
// the architected fault (returned in `fault`, recorded in the guest's fault log by the caller).
// Thread safety: pure functions.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>

#include "iommu/iommufd/iommufd_backend.h"
#include "iommu/iommufd/iommufd_ops.h"
#include "iommu/second_stage.h"
#include "iommu/vtd/caps.h"
#include "iommu/vtd/decode_result.h"
#include "iommu/vtd/pasid.h"
#include "iommu/vtd/root_context.h"

namespace ionest::iommufd {

enum class BindingKind : uint8_t { kBlocked, kIdentity, kNested, kShadow };
const char* BindingKindName(BindingKind kind);

struct GuestBinding {
  BindingKind kind = BindingKind::kBlocked;
  uint16_t did = 0;              // the guest's domain id (kNested, kShadow): selects invalidations
  VtdStage1 stage1;              // kNested
  SecondStageConfig stage2;      // kShadow
  std::optional<vtd::TableFault> fault;  // kBlocked because the guest programmed something invalid
  std::string note;              // kBlocked by policy: why (for the log)
  bool operator==(const GuestBinding& o) const;
};

// What the rules need besides the entries.
struct BindingEnv {
  vtd::VtdProfile profile;
  std::span<const RamRange> ram;  // guest RAM: table pointers must point into it
  bool host_fs5lp = false;        // host CAP.FS5LP: 5-level first-stage tables
};

// Requests without PASID: translation enable, the requester's context entry and, in scalable
// mode, the PASID entry at the context's RID_PASID.
GuestBinding BindRequester(const BindingEnv& env, bool translation_enabled, const std::optional<vtd::ContextEntry>& ctx,
                           const std::optional<vtd::PasidEntry>& rid_pasid_entry);
// Requests with PASID `entry.pasid` (scalable mode, context with PASID enabled).
GuestBinding BindPasid(const BindingEnv& env, bool translation_enabled, const std::optional<vtd::PasidEntry>& entry);

// True if [gpa, gpa+len) lies inside one guest RAM range.
bool InGuestRam(std::span<const RamRange> ram, uint64_t gpa, uint64_t len);

// Host CAP_REG.FS5LP (VT-d §11.4.2, bit 60).
inline bool HostFs5lp(uint64_t vtd_cap) { return (vtd_cap >> 60) & 1; }
// Host ECAP_REG.NEST (VT-d §11.4.3, bit 26).
inline bool HostNesting(uint64_t vtd_ecap) { return (vtd_ecap >> 26) & 1; }

}  // namespace ionest::iommufd
