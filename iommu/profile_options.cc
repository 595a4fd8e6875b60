#include "iommu/profile_options.h"

#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"

namespace ionest {

ProfileSetter BoolProfileOption(std::string model, bool* field) {
  return [model = std::move(model), field](absl::string_view key, absl::string_view v) {
    if (v == "on" || v == "true" || v == "1" || v == "yes") {
      *field = true;
    } else if (v == "off" || v == "false" || v == "0" || v == "no") {
      *field = false;
    } else {
      return absl::InvalidArgumentError(absl::StrFormat("%s option %s: '%s' is not on/off", model, key, v));
    }
    return absl::OkStatus();
  };
}

ProfileSetter UintProfileOption(std::string model, uint32_t* field, uint32_t lo, uint32_t hi) {
  return [model = std::move(model), field, lo, hi](absl::string_view key, absl::string_view v) {
    uint32_t n;
    if (!absl::SimpleAtoi(v, &n) || n < lo || n > hi) {
      return absl::InvalidArgumentError(
          absl::StrFormat("%s option %s: '%s' is not an integer in [%u, %u]", model, key, v, lo, hi));
    }
    *field = n;
    return absl::OkStatus();
  };
}

absl::StatusOr<std::set<std::string>> ApplyProfileOptions(absl::string_view model, absl::string_view options,
                                                          const std::map<std::string, ProfileSetter>& setters) {
  std::set<std::string> given;
  for (absl::string_view item : absl::StrSplit(options, ',', absl::SkipWhitespace())) {
    std::vector<absl::string_view> kv = absl::StrSplit(item, absl::MaxSplits('=', 1));
    if (kv.size() != 2 || kv[0].empty()) {
      return absl::InvalidArgumentError(absl::StrFormat("%s option '%s' is not key=value", model, item));
    }
    auto it = setters.find(std::string(kv[0]));
    if (it == setters.end()) {
      std::vector<std::string> keys;
      for (const auto& [k, _] : setters) keys.push_back(k);
      return absl::InvalidArgumentError(
          absl::StrFormat("unknown %s option '%s' (known: %s)", model, kv[0], absl::StrJoin(keys, " ")));
    }
    if (absl::Status s = it->second(kv[0], kv[1]); !s.ok()) return s;
    given.insert(it->first);
  }
  return given;
}

}  // namespace ionest
