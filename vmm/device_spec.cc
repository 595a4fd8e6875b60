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
  return kind == TestDeviceKind::kDmaTest ? "dmatest" : "pci-epf-test";
}

absl::StatusOr<TestDeviceSpec> ParseTestDeviceSpec(std::string_view text) {
  const std::string whole(text);
  std::vector<std::string> parts = absl::StrSplit(whole, ',');
  TestDeviceSpec spec;
  if (parts[0] == "dmatest") {
    spec.kind = TestDeviceKind::kDmaTest;
  } else if (parts[0] == "pci-epf-test") {
    spec.kind = TestDeviceKind::kPciEpfTest;
  } else {
    return absl::InvalidArgumentError(
        absl::StrFormat("--device: unknown kind '%s' (dmatest or pci-epf-test)", parts[0]));
  }
  for (size_t i = 1; i < parts.size(); ++i) {
    std::vector<std::string> kv = absl::StrSplit(parts[i], absl::MaxSplits('=', 1));
    if (kv.size() != 2 || kv[1].empty()) {
      return absl::InvalidArgumentError(absl::StrFormat("--device %s: '%s' is not key=value", parts[0], parts[i]));
    }
    const std::string& key = kv[0];
    const std::string& value = kv[1];
    if (key == "max-len") {
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
  return spec;
}

}  // namespace ionest
