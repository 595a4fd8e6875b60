// A host PCI function passed through with VFIO (issue 8): the guest sees a virtualised copy of its
// configuration space, its BARs forwarded to the device, its interrupts forwarded from the device.
//
// Config space (PCIe 6.0 §7.5): vendor/device/class/revision/subsystem IDs copied from the host;
// BARs with the host's sizes and types, which the guest sizes and moves freely (ionest maps them on
// its MMIO bus; the host BAR addresses never change); the Command register emulated, its Memory,
// I/O and Bus Master Enable bits written through to the device; MSI and MSI-X capabilities emulated
// by ionest with the host's vector counts and (MSI-X) the host's table/PBA BAR and offsets; a PCI
// Express capability (type and DEVCAP from the host, FLR advertised when VFIO can reset the
// device; Initiate FLR → VFIO_DEVICE_RESET; an Endpoint or Legacy Endpoint is shown as a Root
// Complex Integrated Endpoint because ionest puts it on root bus 0 with no Root Port above it, as
// QEMU does for root-bus passthrough: otherwise Linux would not enable PASID, which needs End-End
// TLP prefix support on the path); the ATS, PRI and PASID extended capabilities with the
// host's values. ATS and PRI control writes are kept in the emulated copy and also written to the
// device through VFIO, where Linux's vfio-pci (6.12) drops them: the host IOMMU driver owns their
// enablement. PASID control stays emulated only: vfio-pci hides PASID and would pass a write
// through raw, letting the guest clear the PASID Enable the host's IOMMU driver set.
//
// BAR access: parts of a BAR that VFIO lets us mmap are accessed through the mapping with the
// guest's access size; the rest (and every I/O BAR) with pread/pwrite on the region. The MSI-X
// table and PBA are emulated (never forwarded).
//
// Interrupts: when the guest enables MSI-X (or MSI), every vector gets an eventfd registered with
// VFIO_DEVICE_SET_IRQS; a forwarding thread turns each host interrupt into SignalVector(v), which
// applies the guest's masking (pending bits) and sends the guest's message to the function's MSI
// sink: the emulated IOMMU's interrupt remapping when it is on, else KVM.
//
// Reset: Reset() (guest reset, FLR) resets the device through VFIO and the emulated state to its
// power-on values. Destruction disables the host interrupts, stops the thread, turns decoding off
// (the BARs leave the buses), unmaps the BARs; the VfioDeviceOps (and its fd) is released after
// that. Not virtualised: the expansion ROM (reads as absent) and INTx (Interrupt Pin 0).
//
// Host errors while forwarding (BAR accesses, config write-through) never reach the guest as
// anything but all-ones reads / dropped writes; they are counted and logged once per kind.
//
// Thread safety: as PciDevice. The forwarding thread calls only SignalVector.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "devices/pci_device.h"
#include "devices/vfio/vfio_device_ops.h"

namespace ionest::vfio {

struct VfioPciOptions {
  // Forward host interrupts on a dedicated thread (the normal mode). Tests and fuzzers may turn it
  // off and call ForwardPendingInterrupts() to forward on their own thread, deterministically.
  bool forwarding_thread = true;
};

class VfioPciDevice final : public PciDevice {
 public:
  // Reads the host function's config space and regions and builds the guest view. Fails with a
  // clear error if the device is not a PCI function or its layout cannot be virtualised.
  static absl::StatusOr<std::unique_ptr<VfioPciDevice>> Create(std::string name,
                                                               std::unique_ptr<VfioDeviceOps> ops);
  static absl::StatusOr<std::unique_ptr<VfioPciDevice>> Create(std::string name, std::unique_ptr<VfioDeviceOps> ops,
                                                               const VfioPciOptions& options);
  ~VfioPciDevice() override;

  // Device reset through VFIO + emulated config state back to reset values (BARs keep their
  // addresses only if `keep_bars`, as after an FLR; a guest reset clears them). Host interrupts are
  // disabled first. The emulated state is reset even when the host reset fails or the device has
  // no reset method (FailedPrecondition); the error is returned.
  absl::Status Reset(bool keep_bars = true);

  VfioDeviceOps& ops() { return *ops_; }
  // Host interrupts forwarded so far (all vectors), for tests and the exit log.
  uint64_t forwarded_interrupts() const { return forwarded_.load(); }
  // Reads every registered interrupt eventfd once (non-blocking) on the calling thread and
  // forwards those that fired, as the forwarding thread would; returns how many. For tests and
  // fuzzers (with forwarding_thread off); harmless alongside the thread.
  uint64_t ForwardPendingInterrupts() ABSL_LOCKS_EXCLUDED(irq_mu_);
  // Host errors so far: BAR accesses that failed (read as all-ones / dropped), and config
  // write-throughs (Command, ATS/PRI/PASID control) or interrupt set-ups the host refused.
  uint64_t bar_access_errors() const { return bar_errors_.load(); }
  uint64_t host_config_errors() const { return config_errors_.load(); }
  // Offsets of the emulated extended capabilities (0 if the host function has none).
  uint16_t ats_offset() const { return ats_; }
  uint16_t pri_offset() const { return pri_; }
  uint16_t pasid_offset() const { return pasid_; }
  // The host function has a PRI capability (it can send page requests through the host IOMMU).
  bool host_has_pri() const { return host_pri_ != 0; }

 private:
  // Sub-range [base, base+len) of BAR `index`, forwarded to the device (mmapped where allowed).
  class BarWindow;
  class IrqForwarder;

  // One mmapped mmap area of a BAR region.
  struct Mapping {
    uint32_t index = 0;
    uint64_t offset = 0;  // within the region
    uint64_t size = 0;
    uint8_t* ptr = nullptr;
  };

  VfioPciDevice(std::string name, const PciIdentity& id, std::unique_ptr<VfioDeviceOps> ops);
  absl::Status Init(const std::vector<uint8_t>& host_config, const std::vector<uint8_t>& unfiltered);
  void OnConfigWrite(uint64_t offset, size_t size) override;
  void OnConfigRead(uint64_t offset, size_t size) override;
  // Re-evaluate which host interrupt index is enabled (MSI-X, MSI or none) after a config write.
  void UpdateInterrupts() ABSL_LOCKS_EXCLUDED(irq_mu_);
  // Stops forwarding and disables the host interrupt index, if one is enabled.
  void StopInterruptsLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(irq_mu_);
  // Writes the guest's Memory/I/O/Bus Master Enable bits to the host Command register.
  void SyncCommand() ABSL_LOCKS_EXCLUDED(decode_mu_);
  void SyncCommandLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(decode_mu_);
  // Writes `size` bytes of the emulated config at `guest_off` to the host config at `host_off`.
  void WriteThrough(uint16_t guest_off, uint16_t host_off, size_t size, const char* what);
  void NoteConfigError(const char* what, const absl::Status& s);

  std::unique_ptr<VfioDeviceOps> ops_;
  VfioPciOptions options_;
  std::vector<Mapping> mappings_;  // unmapped by the destructor
  std::vector<std::unique_ptr<BarWindow>> windows_;
  uint16_t pcie_ = 0, ats_ = 0, pri_ = 0, pasid_ = 0;
  uint16_t host_ats_ = 0, host_pri_ = 0, host_pasid_ = 0;  // host config offsets (0: none)
  uint16_t host_msi_count_ = 0;                            // vectors of the host MSI capability
  bool can_reset_ = false;
  std::vector<uint8_t> power_on_;  // emulated config after Create, for Reset
  // Held shared by BAR accesses through the mappings, exclusively while the host's Memory decode
  // may turn off (Command write-through, reset): vfio-pci zaps the mappings then, and touching
  // them would raise SIGBUS.
  absl::Mutex decode_mu_;
  bool host_memory_enabled_ ABSL_GUARDED_BY(decode_mu_) = false;
  uint16_t host_command_ ABSL_GUARDED_BY(decode_mu_) = 0;  // last known host Command register
  absl::Mutex reset_mu_;  // one Reset at a time
  absl::Mutex irq_mu_;
  uint32_t host_irq_index_ ABSL_GUARDED_BY(irq_mu_) = UINT32_MAX;  // enabled on the host, or none
  unsigned host_irq_count_ ABSL_GUARDED_BY(irq_mu_) = 0;
  std::unique_ptr<IrqForwarder> forwarder_ ABSL_GUARDED_BY(irq_mu_);
  std::atomic<uint64_t> forwarded_{0};
  std::atomic<uint64_t> bar_errors_{0};
  std::atomic<uint64_t> config_errors_{0};
  std::atomic<bool> bar_error_logged_{false};
  std::atomic<bool> config_error_logged_{false};
};

}  // namespace ionest::vfio
