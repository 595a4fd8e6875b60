// Why the machine stopped, and the ionest exit status for each (documented in `ionest --help`).
#pragma once

namespace ionest {

enum class StopReason {
  kNone,
  kPowerOff,    // guest ACPI S5 (poweroff)                -> exit 0
  kHostError,   // VMM/KVM error, bad arguments            -> exit 1
  kReset,       // guest reset (i8042 0xFE / ACPI reset)   -> exit 2
  kGuestCrash,  // triple fault, unhandled emulation failure, KVM internal error -> exit 3
  kTimeout,     // --timeout expired                       -> exit 4
  kUserQuit,    // console escape (Ctrl-A x)               -> exit 5
};

inline int ExitStatusFor(StopReason r) {
  switch (r) {
    case StopReason::kPowerOff: return 0;
    case StopReason::kHostError: return 1;
    case StopReason::kReset: return 2;
    case StopReason::kGuestCrash: return 3;
    case StopReason::kTimeout: return 4;
    case StopReason::kUserQuit: return 5;
    case StopReason::kNone: return 1;
  }
  return 1;
}

inline const char* StopReasonName(StopReason r) {
  switch (r) {
    case StopReason::kPowerOff: return "poweroff";
    case StopReason::kHostError: return "host error";
    case StopReason::kReset: return "reset";
    case StopReason::kGuestCrash: return "guest crash";
    case StopReason::kTimeout: return "timeout";
    case StopReason::kUserQuit: return "user quit";
    case StopReason::kNone: return "none";
  }
  return "?";
}

}  // namespace ionest
