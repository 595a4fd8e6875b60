#include "vmm/emulation_stats.h"

#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"

namespace ionest {

void EmulationStats::Add(const std::string& what) {
  absl::MutexLock lock(&mu_);
  ++counts_[what];
}

std::map<std::string, uint64_t> EmulationStats::Counts() const {
  absl::MutexLock lock(&mu_);
  return counts_;
}

std::string EmulationStats::Summary() const {
  absl::MutexLock lock(&mu_);
  if (counts_.empty()) return "none";
  std::vector<std::string> parts;
  for (const auto& [k, v] : counts_) parts.push_back(absl::StrFormat("%s x%d", k, v));
  return absl::StrJoin(parts, ", ");
}

}  // namespace ionest
