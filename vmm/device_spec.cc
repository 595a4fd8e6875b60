#include "vmm/device_spec.h"

#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "vmm/memory_layout.h"

namespace ionest {
namespace {

// Upper bound for max-len: the device allocates bounce buffers of this size per job.
constexpr uint64_t kMaxJobLengthCap = 64ull << 20;

}  // namespace

const char* TestDeviceKindName(TestDeviceKind kind) {
  switch (kind) {
    case TestDeviceKind::kDmaTest:
      return "dmatest";
    case TestDeviceKind::kPciEpfTest:
      return "pci-epf-test";
    case TestDeviceKind::kVfio:
      return "vfio";
  }
  return "?";
}

absl::StatusOr<TestDeviceSpec> ParseTestDeviceSpec(std::string_view text) {
  const std::string whole(text);
  std::vector<std::string> parts = absl::StrSplit(whole, ',');
  TestDeviceSpec spec;
  if (parts[0] == "dmatest") {
    spec.kind = TestDeviceKind::kDmaTest;
  } else if (parts[0] == "pci-epf-test") {
    spec.kind = TestDeviceKind::kPciEpfTest;
  } else if (parts[0] == "vfio") {
    spec.kind = TestDeviceKind::kVfio;
  } else {
    return absl::InvalidArgumentError(
        absl::StrFormat("--device: unknown kind '%s' (dmatest, pci-epf-test or vfio)", parts[0]));
  }
  for (size_t i = 1; i < parts.size(); ++i) {
    std::vector<std::string> kv = absl::StrSplit(parts[i], absl::MaxSplits('=', 1));
    if (kv.size() != 2 || kv[1].empty()) {
      return absl::InvalidArgumentError(absl::StrFormat("--device %s: '%s' is not key=value", parts[0], parts[i]));
    }
    const std::string& key = kv[0];
    const std::string& value = kv[1];
    if (key == "addr") {
      // "SS.F" in hex, as lspci prints the slot and function.
      std::vector<std::string> sf = absl::StrSplit(value, '.');
      uint32_t slot = 0, fn = 0;
      if (sf.size() != 2 || sf[0].empty() || sf[0].size() > 2 || sf[1].size() != 1 ||
          !absl::SimpleHexAtoi(sf[0], &slot) || !absl::SimpleHexAtoi(sf[1], &fn) || slot < 2 || slot > 31 ||
          fn > 7) {
        return absl::InvalidArgumentError(
            absl::StrFormat("--device %s: addr=%s must be SS.F with slot 02..1f (00 and 01 are taken) and function 0..7",
                            parts[0], value));
      }
      spec.devfn = static_cast<uint8_t>(slot << 3 | fn);
    } else if (spec.kind == TestDeviceKind::kVfio) {
      if (key == "path") {
        if (value[0] != '/') return absl::InvalidArgumentError("--device vfio: path= must be absolute (/dev/vfio/devices/vfioN)");
        spec.vfio_path = value;
      } else if (key == "host") {
        spec.vfio_host = value;  // syntax checked when the device is located (vfio_locate.cc)
      } else {
        return absl::InvalidArgumentError(absl::StrFormat("--device vfio: unknown option '%s' (path= or host=)", key));
      }
    } else if (key == "max-len") {
      auto len = ParseMemorySize(value);
      if (!len.ok()) return len.status();
      if (*len < 4096 || *len > kMaxJobLengthCap) {
        return absl::InvalidArgumentError(absl::StrFormat("--device: max-len must be 4K..%dM", kMaxJobLengthCap >> 20));
      }
      spec.max_len = *len;
    } else if (key == "pasid-bits" && spec.kind == TestDeviceKind::kDmaTest) {
      uint32_t bits = 0;
      // PCIe 6.0 §7.8.8.2: Max PASID Width is 5 bits, at most 20.
      if (!absl::SimpleAtoi(value, &bits) || bits < 1 || bits > 20) {
        return absl::InvalidArgumentError("--device dmatest: pasid-bits must be 1..20");
      }
      spec.pasid_bits = static_cast<uint8_t>(bits);
    } else if (key == "pri-capacity" && spec.kind == TestDeviceKind::kDmaTest) {
      uint32_t cap = 0;
      // Linux caps the outstanding page request allocation at 2048 (drivers/pci/ats.c).
      if (!absl::SimpleAtoi(value, &cap) || cap < 1 || cap > 2048) {
        return absl::InvalidArgumentError("--device dmatest: pri-capacity must be 1..2048");
      }
      spec.pri_capacity = cap;
    } else {
      return absl::InvalidArgumentError(absl::StrFormat("--device %s: unknown option '%s'", parts[0], key));
    }
  }
  if (spec.kind == TestDeviceKind::kVfio && spec.vfio_path.empty() == spec.vfio_host.empty()) {
    return absl::InvalidArgumentError(
        "--device vfio needs exactly one of path=/dev/vfio/devices/vfioN or host=DDDD:BB:DD.F");
  }
  return spec;
}

}  // namespace ionest
