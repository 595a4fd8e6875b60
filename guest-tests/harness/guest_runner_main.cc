// ionest_guest_runner: boots one guest test suite under ionest and reports
// its KTAP results. Exit 0 pass, 1 fail, 2 usage, 77 skipped (no KVM / no
// VMM / no kernel). See guest_runner.h and guest-tests/README in the repo.
#include <cstdlib>
#include <iostream>
#include <string>

#include "absl/strings/numbers.h"
#include "guest-tests/harness/guest_runner.h"

namespace {

constexpr char kUsage[] =
    "usage: ionest_guest_runner --vmm PATH --kernel PATH --initrd PATH [--name N] [--cpus N]\n"
    "         [--memory M] [--timeout S] [--grace S] [--disk-mib N] [--disk-check] [--cmdline-extra STR]...\n"
    "         [--log FILE] [--summary FILE] [--work-dir DIR] [--no-kvm-check] [--iommu auto|vtd|none]\n"
    "         [--vmm-arg ARG]... [--no-vtd-caps]\n";

bool ParseInt(const std::string& s, int& out) { return absl::SimpleAtoi(s, &out) && out >= 0; }

}  // namespace

int main(int argc, char** argv) {
  ionest::guest::RunnerOptions o;
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    auto value = [&](std::string& dst) {
      if (i + 1 >= argc) return false;
      dst = argv[++i];
      return true;
    };
    std::string v;
    bool ok = true;
    if (arg == "--vmm") ok = value(o.vmm);
    else if (arg == "--kernel") ok = value(o.kernel);
    else if (arg == "--initrd") ok = value(o.initrd);
    else if (arg == "--name") ok = value(o.name);
    else if (arg == "--memory") ok = value(o.memory);
    else if (arg == "--cmdline-extra") {  // repeatable: appended with a space
      ok = value(v);
      if (ok && !v.empty()) o.cmdline_extra += (o.cmdline_extra.empty() ? "" : " ") + v;
    }
    else if (arg == "--no-vtd-caps") o.vtd_caps = false;
    else if (arg == "--log") ok = value(o.log_path);
    else if (arg == "--summary") ok = value(o.summary_path);
    else if (arg == "--work-dir") ok = value(o.work_dir);
    else if (arg == "--vmm-arg") ok = value(v) && (o.vmm_args.push_back(v), true);
    else if (arg == "--cpus") ok = value(v) && ParseInt(v, o.cpus) && o.cpus > 0;
    else if (arg == "--timeout") ok = value(v) && ParseInt(v, o.timeout_s) && o.timeout_s > 0;
    else if (arg == "--iommu") ok = value(o.iommu) && (o.iommu == "auto" || o.iommu == "vtd" || o.iommu == "none");
    else if (arg == "--grace") ok = value(v) && ParseInt(v, o.grace_s);
    else if (arg == "--disk-mib") ok = value(v) && ParseInt(v, o.disk_mib);
    else if (arg == "--disk-check") o.disk_check = true;
    else if (arg == "--no-kvm-check") o.kvm_check = false;
    else ok = false;
    if (!ok) {
      std::cerr << "ionest_guest_runner: bad argument near '" << arg << "'\n" << kUsage;
      return ionest::guest::kExitUsage;
    }
  }
  if (o.disk_check && o.disk_mib == 0) {
    std::cerr << "ionest_guest_runner: --disk-check needs --disk-mib\n";
    return ionest::guest::kExitUsage;
  }
  return ionest::guest::RunGuestSuite(o);
}
