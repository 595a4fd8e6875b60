// Boot-timing observer: watches the guest console byte stream and records wall time to the first
// console byte and to the init marker line (kInitMarker, printed by the guest's /init).
// Thread safety: OnConsoleByte may be called from any vCPU thread (internal lock); Report any time.
#pragma once

#include <chrono>
#include <optional>
#include <string>
#include <string_view>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"

namespace ionest {

inline constexpr std::string_view kInitMarker = "ionest-init-start";

class BootTiming {
 public:
  using Clock = std::chrono::steady_clock;
  explicit BootTiming(Clock::time_point start = Clock::now()) : start_(start) {}

  void OnConsoleByte(uint8_t byte, Clock::time_point now = Clock::now()) ABSL_LOCKS_EXCLUDED(mu_);

  std::optional<double> first_byte_seconds() const ABSL_LOCKS_EXCLUDED(mu_);
  std::optional<double> init_seconds() const ABSL_LOCKS_EXCLUDED(mu_);
  // "first console byte 1.23 s, /init 98.7 s" (or "not seen").
  std::string Report() const ABSL_LOCKS_EXCLUDED(mu_);

 private:
  const Clock::time_point start_;
  mutable absl::Mutex mu_;
  std::optional<double> first_byte_ ABSL_GUARDED_BY(mu_);
  std::optional<double> init_ ABSL_GUARDED_BY(mu_);
  std::string recent_ ABSL_GUARDED_BY(mu_);  // last bytes, up to kInitMarker.size()
};

}  // namespace ionest
