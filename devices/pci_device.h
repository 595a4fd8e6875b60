// Base class for PCI(e) functions: type 0 config header, BARs mapped on the machine's buses when
// the guest enables decoding, MSI/MSI-X, PCIe capabilities, and the function's DmaSpace.
//
// Life cycle: a subclass constructor builds the config space (AddBar, AddMsi/AddMsix, capability
// builders); PciHost::AddDevice then calls Attach() with the function's requester ID, MSI sink,
// DMA space and buses. After that, guest config accesses arrive through ConfigRead/ConfigWrite.
//
// Thread safety: ConfigRead/ConfigWrite may be called concurrently from vCPU threads;
// SignalVector from any thread. Subclass hooks (OnConfigWrite) run on the calling vCPU thread with
// no PciDevice lock held. Setup methods (Add*) must only be called before Attach.
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "devices/io_bus.h"
#include "devices/pci_bar.h"
#include "devices/pci_config_space.h"
#include "devices/pci_interrupts.h"
#include "devices/pci_msi.h"
#include "devices/pci_msix.h"
#include "iommu/dma_space.h"
#include "iommu/msi.h"

namespace ionest {

struct PciIdentity {
  uint16_t vendor_id = 0;
  uint16_t device_id = 0;
  uint32_t class_code = 0;  // base class 23:16, subclass 15:8, prog-if 7:0
  uint8_t revision = 0;
  uint16_t subsystem_vendor_id = 0;
  uint16_t subsystem_id = 0;
};

// What the host bridge hands a function when it is plugged in.
struct PciAttachment {
  uint16_t requester_id = 0;  // bus << 8 | devfn
  MsiSink* msi = nullptr;
  DmaSpace* dma = nullptr;
  IoBus* mmio = nullptr;  // memory BARs are registered here while decoding is enabled
  IoBus* pio = nullptr;   // I/O BARs
};

class PciDevice {
 public:
  PciDevice(std::string name, const PciIdentity& id);
  virtual ~PciDevice();
  PciDevice(const PciDevice&) = delete;
  PciDevice& operator=(const PciDevice&) = delete;

  // Guest configuration access (any offset/size; outside 4 KiB reads all-ones).
  void ConfigRead(uint64_t offset, uint8_t* data, size_t size);
  void ConfigWrite(uint64_t offset, const uint8_t* data, size_t size);

  // Called once by the host bridge (also re-evaluates BAR mappings).
  void Attach(const PciAttachment& attachment) ABSL_LOCKS_EXCLUDED(map_mu_);
  bool attached() const { return attached_; }
  uint16_t requester_id() const { return attachment_.requester_id; }
  // The function's DMA address space (valid after Attach).
  DmaSpace& dma();
  bool bus_master_enabled() const { return config_.Get16(pci::kCommand) & pci::kCommandBusMaster; }

  // Raise interrupt `vector`: through MSI-X if enabled, else MSI. (No INTx.)
  PciIrqResult SignalVector(unsigned vector);

  const std::string& name() const { return name_; }
  PciConfigSpace& config() { return config_; }
  PciBar* bar(unsigned index) { return index < bars_.size() ? bars_[index].get() : nullptr; }
  PciMsi* msi() { return msi_.get(); }
  PciMsix* msix() { return msix_.get(); }
  const PciMsix* msix() const { return msix_.get(); }
  // Address a BAR is currently mapped at, if decoding is enabled and it is mapped.
  std::optional<uint64_t> BarMappedAt(unsigned index) const ABSL_LOCKS_EXCLUDED(map_mu_);
  // Guest BAR programmings that could not be mapped (overlap, wrap, beyond 64 KiB I/O space).
  uint64_t bar_map_failures() const ABSL_LOCKS_EXCLUDED(map_mu_);

 protected:
  // Setup (before Attach). `size` is a power of two, >= 16 (memory) or >= 4 (I/O, <= 256).
  // A 64-bit BAR occupies index and index+1.
  absl::StatusOr<PciBar*> AddBar(unsigned index, PciBarKind kind, uint64_t size, bool prefetchable = false);
  absl::Status AddMsi(unsigned vectors);
  // Table and PBA go into memory BAR `bar` (already added) at the given offsets.
  absl::Status AddMsix(unsigned vectors, unsigned bar, uint32_t table_offset, uint32_t pba_offset);
  // Same with the table and the PBA in different memory BARs (both already added; PCIe 6.0
  // §7.7.2.4-7.7.2.5 allow any BIR for each).
  absl::Status AddMsix(unsigned vectors, unsigned table_bar, uint32_t table_offset, unsigned pba_bar,
                       uint32_t pba_offset);

  // Called once at the end of Attach, before any guest access: dma() is valid (e.g. to register
  // the function as the DmaSpace's DmaClient, which must happen before concurrent use).
  virtual void OnAttach() {}
  // Called after every guest config write, after the framework processed it (BARs, MSI masks).
  virtual void OnConfigWrite(uint64_t offset, size_t size) {}
  // Called from ConfigRead before the bytes are copied, so a subclass can refresh dynamic fields.
  virtual void OnConfigRead(uint64_t offset, size_t size) {}

  // Function Level Reset of the type 0 header and the interrupt capabilities (PCIe 6.0 §6.6.2):
  // Command 0, Status RW1C bits clear, Cache Line Size and Interrupt Line 0, BAR address bits 0
  // (type bits kept), MSI disabled with message fields 0, MSI-X disabled and unmasked at the
  // function level with every table entry masked and address/data 0, PBA clear; then the BAR
  // mappings are re-evaluated so nothing stays decoded. The device model resets everything else
  // (its own state, PCI Express/ATS/PASID/PRI capability registers) and must have stopped issuing
  // requests first. Safe after Attach from the thread of a guest config write.
  void ResetFunction() ABSL_LOCKS_EXCLUDED(map_mu_);

 private:
  struct BarMapping {
    uint64_t base = 0;
  };
  void UpdateBarMappings() ABSL_LOCKS_EXCLUDED(map_mu_);
  // Address the guest programmed into a BAR (nullopt for unused indices / upper halves).
  std::optional<uint64_t> ProgrammedAddress(unsigned index) const;

  const std::string name_;
  PciConfigSpace config_;
  std::array<std::unique_ptr<PciBar>, pci::kNumBars> bars_;
  std::unique_ptr<PciMsi> msi_;
  std::unique_ptr<PciMsix> msix_;
  PciAttachment attachment_;
  bool attached_ = false;
  mutable absl::Mutex map_mu_;
  std::array<std::optional<BarMapping>, pci::kNumBars> mapped_ ABSL_GUARDED_BY(map_mu_);
  uint64_t map_failures_ ABSL_GUARDED_BY(map_mu_) = 0;
};

}  // namespace ionest
