#include "iommu/smmuv3/smmuv3_profile.h"

#include <map>

#include "absl/strings/str_format.h"
#include "iommu/profile_options.h"

namespace ionest::smmuv3 {

absl::StatusOr<Smmuv3Profile> ParseSmmuv3Profile(std::string_view options_in) {
  const absl::string_view options(options_in.data(), options_in.size());
  Smmuv3Profile p;
  uint32_t sid_bits = p.sid_bits, ssid_bits = p.ssid_bits, stall_max = p.max_stalls, oas = p.oas_bits;
  auto b = [](bool* f) { return BoolProfileOption("smmuv3", f); };
  auto u = [](uint32_t* f, uint32_t lo, uint32_t hi) { return UintProfileOption("smmuv3", f, lo, hi); };
  const std::map<std::string, ProfileSetter> setters = {
      {"s1", b(&p.stage1)},
      {"s2", b(&p.stage2)},
      {"st-2level", b(&p.two_level_stream_table)},
      {"cd-2level", b(&p.two_level_cd)},
      {"sid-bits", u(&sid_bits, 0, 16)},
      {"ssid-bits", u(&ssid_bits, 0, 20)},
      {"ats", b(&p.ats)},
      {"pri", b(&p.pri)},
      {"stall", b(&p.stall)},
      {"stall-max", u(&stall_max, 1, 65535)},
      {"asid16", b(&p.asid16)},
      {"vmid16", b(&p.vmid16)},
      {"oas", u(&oas, 32, 48)},
      {"httu-af", b(&p.hardware_af)},
      {"ril", b(&p.range_invalidation)},
      {"gran4k", b(&p.gran4k)},
      {"gran16k", b(&p.gran16k)},
      {"gran64k", b(&p.gran64k)},
  };
  absl::StatusOr<std::set<std::string>> given = ApplyProfileOptions("smmuv3", options, setters);
  if (!given.ok()) return given.status();
  p.sid_bits = static_cast<int>(sid_bits);
  p.ssid_bits = static_cast<int>(ssid_bits);
  p.max_stalls = static_cast<uint16_t>(stall_max);
  p.oas_bits = static_cast<int>(oas);
  if (absl::Status s = Smmuv3Iommu::Validate(p); !s.ok()) {
    return absl::InvalidArgumentError(absl::StrFormat("--smmuv3-profile '%s': %s", options, s.message()));
  }
  return p;
}

std::string Smmuv3ProfileString(const Smmuv3Profile& p) {
  return absl::StrFormat(
      "s1=%d,s2=%d,st-2level=%d,cd-2level=%d,sid-bits=%d,ssid-bits=%d,ats=%d,pri=%d,stall=%d,stall-max=%u,"
      "asid16=%d,vmid16=%d,oas=%d,httu-af=%d,ril=%d,gran4k=%d,gran16k=%d,gran64k=%d",
      p.stage1, p.stage2, p.two_level_stream_table, p.two_level_cd, p.sid_bits, p.ssid_bits, p.ats, p.pri, p.stall,
      p.max_stalls, p.asid16, p.vmid16, p.oas_bits, p.hardware_af, p.range_invalidation, p.gran4k, p.gran16k,
      p.gran64k);
}

}  // namespace ionest::smmuv3
