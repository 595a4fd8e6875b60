// A PCI function for framework tests: BAR0 32-bit MMIO (4 KiB, a scratch register block),
// BAR1 I/O (32 bytes), BAR2 64-bit MMIO (16 KiB; MSI-X table at 0, PBA at 0x2000), MSI with 4
// vectors, a PCIe capability and ATS/PASID/PRI extended capabilities. Test-only.
#pragma once

#include <array>
#include <cstring>

#include "absl/synchronization/mutex.h"
#include "devices/pci_device.h"
#include "devices/pci_express_caps.h"

namespace ionest::testing {

class ScratchRegs final : public IoDevice {
 public:
  void IoRead(uint64_t offset, uint8_t* data, size_t size) override {
    absl::MutexLock l(&mu_);
    for (size_t i = 0; i < size && offset + i < regs_.size(); ++i) data[i] = regs_[offset + i];
  }
  void IoWrite(uint64_t offset, const uint8_t* data, size_t size) override {
    absl::MutexLock l(&mu_);
    for (size_t i = 0; i < size && offset + i < regs_.size(); ++i) regs_[offset + i] = data[i];
  }

 private:
  absl::Mutex mu_;
  std::array<uint8_t, 64> regs_{};
};

class TestPciDevice final : public PciDevice {
 public:
  TestPciDevice() : PciDevice("test-dev", PciIdentity{.vendor_id = 0x1234, .device_id = 0x5678, .class_code = 0xFF0000}) {
    Check(AddBar(0, PciBarKind::kMmio32, 4096).status());
    Check(bar(0)->AddRegion(0, 64, &scratch_mmio, "scratch"));
    Check(AddBar(1, PciBarKind::kIo, 32).status());
    Check(bar(1)->AddRegion(0, 32, &scratch_io, "scratch-io"));
    Check(AddBar(2, PciBarKind::kMmio64, 16384, /*prefetchable=*/true).status());
    Check(AddPcieCapability(config(), PcieCapConfig{}).status());
    Check(AddMsi(4));
    Check(AddMsix(8, 2, 0x0, 0x2000));
    Check(AddAtsCapability(config(), AtsCapConfig{}).status());
    Check(AddPasidCapability(config(), PasidCapConfig{}).status());
    Check(AddPriCapability(config(), PriCapConfig{}).status());
  }
  int config_writes = 0;
  ScratchRegs scratch_mmio, scratch_io;
  void FunctionLevelReset() { ResetFunction(); }

 protected:
  void OnConfigWrite(uint64_t, size_t) override { ++config_writes; }

 private:
  static void Check(const absl::Status& s) {
    if (!s.ok()) std::abort();
  }
};

}  // namespace ionest::testing
