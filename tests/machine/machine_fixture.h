// A machine without vCPUs for machine-level tests: guest RAM, the MMIO/PIO buses, the VT-d model
// at its DRHD base, the PCI root complex (ECAM) with an ionest-dmatest device behind the IOMMU,
// a recording CPU MsiSink, and a Linux-like VT-d driver. Everything is wired as in the VMM:
// the device's DmaSpace and MSI sink come from the IOMMU (PciHost with VtdIommu as provider).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "devices/io_bus.h"
#include "devices/pci_host.h"
#include "devices/testdev/dma_test_device.h"
#include "iommu/testing/table_builder.h"
#include "iommu/vtd/testing/linux_vtd_driver.h"
#include "iommu/vtd/testing/vtd_builders.h"
#include "iommu/vtd/vtd_iommu.h"
#include "vmm/guest_memory.h"

namespace ionest::machine_test {

// The Linux-like VT-d driver of iommu/vtd/testing, here driving the model through MMIO.
using vtd::InvDescriptor;
using vtd::testing::BootOptions;
using vtd::testing::FaultRecord;
using vtd::testing::LinuxVtdDriver;
using vtd::testing::PageAllocator;
using vtd::testing::PageRequestSeen;
using vtd::testing::QiResult;

struct MachineOptions {
  std::string profile;  // VtdProfile option string
  uint8_t devfn = 0x18;  // 00:03.0
  DmaTestDeviceOptions device;
};

class TestMachine {
 public:
  static constexpr uint64_t kRamSize = 64ull << 20;
  static constexpr uint64_t kTablePool = 32ull << 20;  // [32 MiB, 64 MiB): IOMMU structures
  static constexpr uint64_t kDataBase = 1ull << 20;    // [1 MiB, 32 MiB): DMA buffers

  static absl::StatusOr<std::unique_ptr<TestMachine>> Create(const MachineOptions& options = {});
  ~TestMachine();

  GuestMemory& memory() { return *memory_; }
  vtd::VtdIommu& iommu() { return *iommu_; }
  DmaTestDevice& device() { return *device_; }
  LinuxVtdDriver& driver() { return *driver_; }
  vtd::testing::RecordingMsiSink& cpu() { return cpu_; }
  iommu_testing::PageAllocator& alloc() { return *alloc_; }
  IoBus& mmio() { return mmio_; }
  uint16_t rid() const { return rid_; }

  // Guest configuration accesses to the test device through the host bridge.
  uint32_t ConfigRead(uint16_t reg, size_t size);
  void ConfigWrite(uint16_t reg, uint32_t value, size_t size);
  // What Linux does at probe: bus mastering; PASID (exec/priv) before ATS (STU 0); PRI reset,
  // allocation and enable (drivers/pci/ats.c).
  void EnableBusMaster();
  void EnablePasid(bool exec = false, bool priv = false);
  void EnableAts();
  void EnablePri(uint32_t requests = 32);
  // MSI-X vector `v` of the test device: message address/data; enables MSI-X.
  void ProgramMsix(unsigned v, uint64_t address, uint32_t data);

  // Device BAR0 registers through the MMIO bus (as the guest would).
  uint64_t DevRead(uint32_t reg);
  void DevWrite(uint32_t reg, uint64_t value);
  struct JobResult {
    uint64_t status = 0;
    uint8_t error = 0;
    uint64_t fault_addr = 0;
    uint64_t fault_info = 0;
    bool done() const { return error == 0 && (status & dmatest::kStatusDone); }
  };
  // Starts a job (non-blocking).
  void StartJob(uint32_t op, uint64_t src, uint64_t dst, uint64_t len, uint64_t ctrl = 0,
                std::optional<uint32_t> pasid = std::nullopt, uint64_t pasid_flags = 0);
  JobResult WaitJob(absl::Duration timeout = absl::Seconds(20));
  JobResult RunJob(uint32_t op, uint64_t src, uint64_t dst, uint64_t len, uint64_t ctrl = 0,
                   std::optional<uint32_t> pasid = std::nullopt, uint64_t pasid_flags = 0) {
    StartJob(op, src, dst, len, ctrl, pasid, pasid_flags);
    return WaitJob();
  }

  // Guest RAM helpers.
  void Fill(uint64_t gpa, uint8_t value, size_t len);
  std::vector<uint8_t> Bytes(uint64_t gpa, size_t len);

 private:
  TestMachine() = default;
  std::unique_ptr<GuestMemory> memory_;
  std::unique_ptr<iommu_testing::PageAllocator> alloc_;
  vtd::testing::RecordingMsiSink cpu_;
  IoBus mmio_{"mmio"};
  IoBus pio_{"pio"};
  std::unique_ptr<vtd::VtdIommu> iommu_;
  std::unique_ptr<PciHost> host_;
  std::unique_ptr<DmaTestDevice> device_;
  std::unique_ptr<LinuxVtdDriver> driver_;
  uint16_t rid_ = 0;
  uint64_t bar0_ = 0;
};

}  // namespace ionest::machine_test
