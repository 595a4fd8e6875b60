// PCI root complex: root bus 0 with a host bridge at 00:00.0, configuration access through ECAM
// (an MMIO IoDevice) and the legacy 0xCF8/0xCFC ports, plus optional firmware-style BAR assignment.
// Only bus 0 exists; other buses read all-ones. Functions at fn > 0 set the multi-function bit of
// the function 0 in the same slot.
//
// Wiring (see devices/pci_layout.h): PciHost host(mmio_bus, pio_bus, msi_sink, dma_provider);
// host.Register(); host.AddDevice(devfn, dev); host.AssignResources();  // before vCPUs start
//
// Thread safety: AddDevice/AssignResources before vCPUs run (AddDevice is also safe later);
// configuration accesses concurrently from vCPU threads.
#pragma once

#include <array>
#include <cstdint>
#include <memory>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "devices/io_bus.h"
#include "devices/pci_device.h"
#include "devices/pci_layout.h"
#include "iommu/dma_space.h"
#include "iommu/msi.h"

namespace ionest {

// 00:00.0: class 06 00 00 (host bridge), no BARs.
class PciHostBridge final : public PciDevice {
 public:
  PciHostBridge();
};

struct PciWindows {
  uint64_t mmio32_base = pci_layout::kMmio32Base, mmio32_size = pci_layout::kMmio32Size;
  uint64_t mmio64_base = pci_layout::kMmio64Base, mmio64_size = pci_layout::kMmio64Size;
  uint64_t io_base = pci_layout::kIoBase, io_size = pci_layout::kIoSize;
};

class PciHost {
 public:
  PciHost(IoBus& mmio, IoBus& pio, MsiSink& msi, DmaSpaceProvider& dma);
  ~PciHost();

  // Registers ECAM at [ecam_base, +ecam_size) on the MMIO bus and 0xCF8/0xCFC on the PIO bus.
  absl::Status Register(uint64_t ecam_base = pci_layout::kEcamBase, uint64_t ecam_size = pci_layout::kEcamSize);
  // Plugs `device` (which must outlive the host) into bus 0 at devfn; attaches it with requester
  // ID devfn, the MSI sink and the provider's DmaSpace for that requester ID.
  absl::Status AddDevice(uint8_t devfn, PciDevice& device) ABSL_LOCKS_EXCLUDED(mu_);
  PciDevice* Find(uint16_t requester_id) const ABSL_LOCKS_EXCLUDED(mu_);

  // Assign every BAR from the windows (naturally aligned) and enable I/O + memory decoding, as
  // firmware would. Bus mastering stays off (drivers enable it).
  absl::Status AssignResources(const PciWindows& windows = {}) ABSL_LOCKS_EXCLUDED(mu_);

  // Configuration access by requester ID (bus << 8 | devfn). Absent functions read all-ones.
  void ConfigRead(uint16_t rid, uint32_t reg, uint8_t* data, size_t size) ABSL_LOCKS_EXCLUDED(mu_);
  void ConfigWrite(uint16_t rid, uint32_t reg, const uint8_t* data, size_t size) ABSL_LOCKS_EXCLUDED(mu_);

  IoDevice& ecam() { return ecam_; }
  IoDevice& config_address_port() { return address_port_; }
  IoDevice& config_data_port() { return data_port_; }
  PciHostBridge& host_bridge() { return bridge_; }

 private:
  class Ecam final : public IoDevice {
   public:
    explicit Ecam(PciHost& h) : h_(h) {}
    void IoRead(uint64_t offset, uint8_t* data, size_t size) override;
    void IoWrite(uint64_t offset, const uint8_t* data, size_t size) override;

   private:
    PciHost& h_;
  };
  class AddressPort final : public IoDevice {
   public:
    explicit AddressPort(PciHost& h) : h_(h) {}
    void IoRead(uint64_t offset, uint8_t* data, size_t size) override;
    void IoWrite(uint64_t offset, const uint8_t* data, size_t size) override;

   private:
    PciHost& h_;
  };
  class DataPort final : public IoDevice {
   public:
    explicit DataPort(PciHost& h) : h_(h) {}
    void IoRead(uint64_t offset, uint8_t* data, size_t size) override;
    void IoWrite(uint64_t offset, const uint8_t* data, size_t size) override;

   private:
    PciHost& h_;
  };
  // For a data-port access: the target (rid, register), or nullopt if mechanism #1 is disabled.
  std::optional<std::pair<uint16_t, uint32_t>> DecodeDataPort(uint64_t offset) const ABSL_LOCKS_EXCLUDED(mu_);

  IoBus& mmio_;
  IoBus& pio_;
  MsiSink& msi_;
  DmaSpaceProvider& dma_;
  Ecam ecam_{*this};
  AddressPort address_port_{*this};
  DataPort data_port_{*this};
  PciHostBridge bridge_;
  mutable absl::Mutex mu_;
  std::array<PciDevice*, 256> devices_ ABSL_GUARDED_BY(mu_){};  // bus 0, by devfn
  uint32_t config_address_ ABSL_GUARDED_BY(mu_) = 0;
  std::optional<uint64_t> ecam_base_;
};

}  // namespace ionest
