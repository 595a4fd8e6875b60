// --smmuv3-profile "key=value,...": the SMMUv3's implementation choices (Smmuv3Profile, reported in
// SMMU_IDR0-5, IHI0070 §6.3.1-6.3.6) in the style of --vtd-profile. Pure; any thread.
//   s1, s2          stage 1 / stage 2 translation (IDR0.S1P, S2P); at least one
//   st-2level, cd-2level   2-level stream / CD tables (IDR0.ST_LEVEL, CD2L)
//   sid-bits, ssid-bits    StreamID / SubstreamID widths (IDR1.SIDSIZE 0..16, SSIDSIZE 0..20)
//   ats, pri, stall, stall-max   IDR0.ATS, PRI, STALL_MODEL 00 (with IDR5.STALL_MAX 1..65535)
//   asid16, vmid16, oas    IDR0.ASID16, VMID16, IDR5.OAS (32, 36, 40, 42, 44, 48)
//   httu-af, ril           hardware access flag (IDR0.HTTU 01), range invalidation (IDR3.RIL)
//   gran4k, gran16k, gran64k     IDR5.GRAN*
#pragma once

#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "iommu/smmuv3/smmuv3_iommu.h"

namespace ionest::smmuv3 {

// The default profile changed by `options`, validated (Smmuv3Iommu::Validate).
absl::StatusOr<Smmuv3Profile> ParseSmmuv3Profile(std::string_view options);
// The profile's choices as key=value (what ParseSmmuv3Profile reads back to the same profile).
std::string Smmuv3ProfileString(const Smmuv3Profile& profile);

}  // namespace ionest::smmuv3
