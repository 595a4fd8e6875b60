// Per-mnemonic counters of emulation failures the VMM completed, for the exit summary.
// Thread safety: Add may be called concurrently from vCPU threads.
#pragma once

#include <cstdint>
#include <map>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"

namespace ionest {

class EmulationStats {
 public:
  void Add(const std::string& what) ABSL_LOCKS_EXCLUDED(mu_);
  std::map<std::string, uint64_t> Counts() const ABSL_LOCKS_EXCLUDED(mu_);
  // "int3 x12, wait x3" or "none".
  std::string Summary() const ABSL_LOCKS_EXCLUDED(mu_);

 private:
  mutable absl::Mutex mu_;
  std::map<std::string, uint64_t> counts_ ABSL_GUARDED_BY(mu_);
};

}  // namespace ionest
