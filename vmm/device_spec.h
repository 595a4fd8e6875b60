// `--device KIND[,key=value...]`: extra PCI test functions the machine plugs in behind the
// configured IOMMU (pure parsing; unit-tested in device_spec_test.cc).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"

namespace ionest {

enum class TestDeviceKind { kDmaTest, kPciEpfTest, kVfio };

struct TestDeviceSpec {
  TestDeviceKind kind = TestDeviceKind::kDmaTest;
  // Largest DMA job / transfer the guest may program (caps host buffers). 0 = the model's default.
  uint64_t max_len = 0;
  // dmatest only: PASID capability width (1..20) and PRI outstanding page request capacity.
  uint8_t pasid_bits = 20;
  uint32_t pri_capacity = 32;
  // addr=SS.F: slot (2..31) and function (0..7) on bus 0; default 00:(2+i).0 for the i-th --device.
  // A function > 0 shares its slot with function 0 (multi-function device, one IOMMU group).
  std::optional<uint8_t> devfn;
  // vfio only: a host function passed through (exactly one of the two).
  std::string vfio_path;  // path=/dev/vfio/devices/vfioN
  std::string vfio_host;  // host=DDDD:BB:DD.F (cdev found through sysfs)
};

// "dmatest", "dmatest,max-len=1M,pasid-bits=16,pri-capacity=8", "pci-epf-test,max-len=64K",
// "vfio,path=/dev/vfio/devices/vfio0", "vfio,host=0000:00:02.0".
absl::StatusOr<TestDeviceSpec> ParseTestDeviceSpec(std::string_view text);
const char* TestDeviceKindName(TestDeviceKind kind);

}  // namespace ionest
