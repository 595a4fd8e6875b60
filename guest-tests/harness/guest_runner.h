// Boots one guest suite under the ionest VMM, streams its console to stdout
// and a log file, parses the guest's KTAP and decides pass/fail/skip.
// Not thread-safe (owns the process's stdout while running).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "guest-tests/harness/ktap_parser.h"

namespace ionest::guest {

struct RunnerOptions {
  std::string name = "guest";
  std::string vmm;     // ionest binary
  std::string kernel;  // vmlinux or bzImage
  std::string initrd;  // uncompressed cpio
  std::string cmdline_extra;
  std::string memory = "256";
  int cpus = 1;
  int timeout_s = 600;      // passed to the VMM; the harness kills it grace_s later
  int grace_s = 30;         // also: wait this long for VMM exit after power-off/panic
  int disk_mib = 0;         // 0: no disk
  bool disk_check = false;  // verify the guest wrote its pattern to the image
  bool kvm_check = true;
  std::string log_path;      // console + VMM stderr
  std::string summary_path;  // "passed N\nfailed N\nskipped N\n"
  std::string work_dir = ".";
  std::vector<std::string> vmm_args;  // extra VMM arguments
  // "vtd": pass --iommu=vtd; "none": pass nothing; "auto": --iommu=vtd if
  // `<vmm> --help` mentions --iommu.
  std::string iommu = "none";
  // With VT-d: ask `<vmm> --iommu=vtd [--vtd-profile P] --print-vtd-caps` for the expected
  // registers and append "ionest.vtd_cap=0x.. ionest.vtd_ecap=0x.." to the guest command line
  // ("ionest.vtd_caps=unavailable" if the VMM cannot print them).
  bool vtd_caps = true;
};

struct VtdCaps {
  uint64_t cap = 0;
  uint64_t ecap = 0;
};
// Parses "cap=0x... ecap=0x..." (the first line of `ionest --print-vtd-caps`).
std::optional<VtdCaps> ParseVtdCaps(std::string_view output);

// Output (stdout+stderr, within 10 s) and exit status of `argv`; nullopt if it cannot run.
struct CommandResult {
  std::string output;
  bool exited_ok = false;
};
std::optional<CommandResult> RunCommand(const std::vector<std::string>& argv);

// The `--print-vtd-caps` command for these options (keeps a --vtd-profile from vmm_args).
std::vector<std::string> PrintVtdCapsCommand(const RunnerOptions& o);

// True if `<vmm> --help` (stdout+stderr, within 10 s) contains `flag`.
bool VmmHelpMentions(const std::string& vmm, const std::string& flag);

// Exit codes, also used by CTest (SKIP_RETURN_CODE 77).
inline constexpr int kExitPass = 0;
inline constexpr int kExitFail = 1;
inline constexpr int kExitUsage = 2;
inline constexpr int kExitSkip = 77;

int RunGuestSuite(const RunnerOptions& options);

// "N passed, N failed[, N skipped]".
std::string FormatCounts(int passed, int failed, int skipped);

}  // namespace ionest::guest
