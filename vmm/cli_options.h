// Command-line parsing for the `ionest` executable (pure; unit-tested).
#pragma once

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "vmm/machine.h"

namespace ionest {

struct CliOptions {
  MachineOptions machine;
  bool help = false;
};

// Accepts --name=value and --name value; booleans (--console, --help, --no-default-cmdline,
// --clear-simd-crypto) take no value.
absl::StatusOr<CliOptions> ParseCli(const std::vector<std::string>& args);

std::string CliUsage();

}  // namespace ionest
