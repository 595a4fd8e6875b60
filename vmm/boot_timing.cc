#include "vmm/boot_timing.h"

#include "absl/strings/str_format.h"

namespace ionest {

void BootTiming::OnConsoleByte(uint8_t byte, Clock::time_point now) {
  absl::MutexLock lock(&mu_);
  double t = std::chrono::duration<double>(now - start_).count();
  if (!first_byte_) first_byte_ = t;
  if (init_) return;
  // Rolling window of the last kInitMarker.size() bytes.
  recent_.push_back(static_cast<char>(byte));
  if (recent_.size() > kInitMarker.size()) recent_.erase(recent_.begin());
  if (recent_ == kInitMarker) init_ = t;
}

std::optional<double> BootTiming::first_byte_seconds() const {
  absl::MutexLock lock(&mu_);
  return first_byte_;
}

std::optional<double> BootTiming::init_seconds() const {
  absl::MutexLock lock(&mu_);
  return init_;
}

std::string BootTiming::Report() const {
  absl::MutexLock lock(&mu_);
  auto fmt = [](const std::optional<double>& v) { return v ? absl::StrFormat("%.2f s", *v) : std::string("not seen"); };
  return absl::StrFormat("first console byte %s, /init (%s) %s", fmt(first_byte_), kInitMarker, fmt(init_));
}

}  // namespace ionest
