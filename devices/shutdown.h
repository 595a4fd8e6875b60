// Machine-level power events raised by devices (ACPI S5, keyboard-controller reset).
#pragma once

#include <functional>

namespace ionest {

enum class ShutdownKind { kPowerOff, kReset };

// Called from the vCPU thread that performed the triggering write. The VMM should stop its vCPUs
// asynchronously (it must not block waiting for the calling vCPU thread to exit).
using ShutdownFn = std::function<void(ShutdownKind)>;

}  // namespace ionest
