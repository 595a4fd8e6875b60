// Checks that /dev/kvm exists and can create a VM, so guest tests can be
// reported as skipped (never passed) when it cannot. Thread-safe.
#pragma once

#include <string>

#include "absl/status/status.h"

namespace ionest::guest {

// OK if `device` opens read-write, reports KVM API version 12 and KVM_CREATE_VM
// succeeds; otherwise an error saying which step failed.
absl::Status ProbeKvm(const std::string& device = "/dev/kvm");

}  // namespace ionest::guest
