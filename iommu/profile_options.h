// "key=value,key=value" capability profiles of the IOMMU models (--vtd-profile, --smmuv3-profile):
// one parser, one error wording. Pure; any thread.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <set>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace ionest {

using ProfileSetter = std::function<absl::Status(absl::string_view key, absl::string_view value)>;

// on|off|true|false|1|0|yes|no. `model` names the option family in errors ("vtd", "smmuv3").
ProfileSetter BoolProfileOption(std::string model, bool* field);
// An integer in [lo, hi].
ProfileSetter UintProfileOption(std::string model, uint32_t* field, uint32_t lo, uint32_t hi);

// Applies every item of `options` through its setter; returns the keys given. Errors: an item that
// is not key=value, an unknown key (with the known ones), a bad value (from the setter).
absl::StatusOr<std::set<std::string>> ApplyProfileOptions(absl::string_view model, absl::string_view options,
                                                          const std::map<std::string, ProfileSetter>& setters);

}  // namespace ionest
