// `--device KIND[,key=value...]`: extra PCI test functions the machine plugs in behind the
// configured IOMMU (pure parsing; unit-tested in device_spec_test.cc).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"

namespace ionest {

enum class TestDeviceKind { kDmaTest, kPciEpfTest };

struct TestDeviceSpec {
  TestDeviceKind kind = TestDeviceKind::kDmaTest;
  // Largest DMA job / transfer the guest may program (caps host buffers). 0 = the model's default.
  uint64_t max_len = 0;
  // dmatest only: PASID capability width (1..20) and PRI outstanding page request capacity.
  uint8_t pasid_bits = 20;
  uint32_t pri_capacity = 32;
};

// "dmatest", "dmatest,max-len=1M,pasid-bits=16,pri-capacity=8", "pci-epf-test,max-len=64K".
absl::StatusOr<TestDeviceSpec> ParseTestDeviceSpec(std::string_view text);
const char* TestDeviceKindName(TestDeviceKind kind);

}  // namespace ionest
