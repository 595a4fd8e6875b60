#include "vmm/machine_options.h"

namespace ionest {

absl::StatusOr<SyscallWorkaroundMode> ParseSyscallWorkaroundMode(const std::string& text) {
  if (text == "auto") return SyscallWorkaroundMode::kAuto;
  if (text == "on") return SyscallWorkaroundMode::kOn;
  if (text == "off") return SyscallWorkaroundMode::kOff;
  return absl::InvalidArgumentError("--syscall-workaround must be auto, on or off");
}

}  // namespace ionest
