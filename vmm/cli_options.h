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
  bool print_vtd_caps = false;  // print VtdCapsLine() and exit (no kernel needed)
};

// Accepts --name=value and --name value; booleans (--console, --help, --no-default-cmdline,
// --clear-simd-crypto) take no value.
absl::StatusOr<CliOptions> ParseCli(const std::vector<std::string>& args);

std::string CliUsage();

// "cap=0x%016x ecap=0x%016x": the CAP/ECAP reset values (VT-d §11.4.2/§11.4.3) of the machine's
// --vtd-profile. Error unless --iommu=vtd.
absl::StatusOr<std::string> VtdCapsLine(const MachineOptions& machine);

}  // namespace ionest
