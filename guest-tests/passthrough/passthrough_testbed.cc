// The passthrough test bed (issue 8): runs inside a Linux guest of ionest that plays the host. That
// guest's kernel drives ionest's emulated VT-d and has ionest's dmatest functions bound to
// vfio-pci; this program is the "VMM" on top: ionest's own passthrough code (vmm/passthrough.h:
// /dev/iommu, IOAS over guest RAM, VFIO cdev, VfioPciDevice) against that real kernel, with an
// inner machine that has no vCPU (guest RAM, a PCI root complex, a recording interrupt sink) and a
// Linux-like driver that programs the passed-through device the way a guest driver would.
//
// Every check compares bytes the real device wrote (through the outer VT-d, translated by the
// IOAS the real iommufd built) with what the inner driver asked for; the program never computes an
// expected result from values it also produced on the device side.
//
//   ionest_passthrough_testbed --device vfio,host=0000:00:02.0 [--ram 8M]   KTAP cases (nested, 4 spaces)
//   ionest_passthrough_testbed --nesting --device vfio,host=BDF [--ram 8M]  the VT-d nesting cases (issue 9)
//   ionest_passthrough_testbed --open-only --device SPEC [--as-user UID]   exit 0 opened, 1 error (stderr)
#include <grp.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <optional>
#include <string>

#include "absl/strings/numbers.h"
#include "guest-tests/passthrough/testbed_cases.h"
#include "vmm/memory_layout.h"

namespace ionest::testbed {
namespace {

int Main(int argc, char** argv) {
  TestbedOptions o;
  bool open_only = false;
  bool nesting = false;
  std::optional<uid_t> as_user;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto value = [&]() -> std::string { return i + 1 < argc ? argv[++i] : ""; };
    if (a == "--device") {
      auto spec = ParseTestDeviceSpec(value());
      if (!spec.ok() || spec->kind != TestDeviceKind::kVfio) {
        std::fprintf(stderr, "--device: %s\n", spec.ok() ? "want vfio,..." : std::string(spec.status().message()).c_str());
        return 2;
      }
      o.devices.push_back(*spec);
    } else if (a == "--ram") {
      auto size = ParseMemorySize(value());
      if (!size.ok() || *size < (4ull << 20) || *size % 4096) {
        std::fprintf(stderr, "--ram: at least 4M, page aligned\n");
        return 2;
      }
      o.ram = *size;
    } else if (a == "--open-only") {
      open_only = true;
    } else if (a == "--nesting") {
      nesting = true;
    } else if (a == "--as-user") {
      uint32_t uid = 0;
      if (!absl::SimpleAtoi(value(), &uid)) return 2;
      as_user = uid;
    } else {
      std::fprintf(stderr,
                   "usage: %s --device vfio,host=BDF|path=CDEV [--ram 8M] [--nesting | --open-only [--as-user UID]]\n",
                   argv[0]);
      return 2;
    }
  }
  if (o.devices.empty()) {
    std::fprintf(stderr, "--device vfio,... is required\n");
    return 2;
  }
  if (open_only) {
    if (as_user) {
      // Drop root for the permission check (the cdev and /dev/iommu are root-only 0600).
      if (setgroups(0, nullptr) != 0 || setgid(*as_user) != 0 || setuid(*as_user) != 0) {
        std::fprintf(stderr, "ionest_passthrough_testbed: cannot drop to uid %u: %s\n", *as_user, strerror(errno));
        return 2;
      }
    }
    return OpenOnly(o, PassthroughHost::Real());
  }
  Ktap k(nesting ? kNestingCases : kTestbedCases,
         [](const std::string& line) { std::printf("%s\n", line.c_str()); std::fflush(stdout); });
  if (nesting) {
    RunNestingCases(o, PassthroughHost::Real(), k);
  } else {
    RunTestbedCases(o, PassthroughHost::Real(), k);
  }
  return k.failed() == 0 ? 0 : 1;
}

}  // namespace
}  // namespace ionest::testbed

int main(int argc, char** argv) {
  std::setvbuf(stdout, nullptr, _IOLBF, 0);
  return ionest::testbed::Main(argc, argv);
}
