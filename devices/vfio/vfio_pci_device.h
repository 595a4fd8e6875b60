// A host PCI function passed through with VFIO (issue 8): the guest sees a virtualised copy of its
// configuration space, its BARs forwarded to the device, its interrupts forwarded from the device.
//
// Config space (PCIe 6.0 §7.5): vendor/device/class/revision/subsystem IDs copied from the host;
// BARs with the host's sizes and types, which the guest sizes and moves freely (ionest maps them on
// its MMIO bus; the host BAR addresses never change); the Command register emulated, its Memory,
// I/O and Bus Master Enable bits written through to the device; MSI and MSI-X capabilities emulated
// by ionest with the host's vector counts and (MSI-X) the host's table/PBA BAR and offsets; a PCI
// Express capability (type and DEVCAP from the host, FLR advertised when VFIO can reset the
// device; Initiate FLR → VFIO_DEVICE_RESET); the ATS, PRI and PASID extended capabilities with the
// host's values. Their control writes are kept in the emulated copy and also written to the device
// through VFIO: Linux's vfio-pci (6.12) drops writes to ATS/PRI control and hides PASID, because
// the host IOMMU driver owns their enablement (that is what such a write does on bare metal: the
// IOMMU driver, not the endpoint's driver, enables them).
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
// power-on values. Destruction disables the host interrupts, stops the thread, unmaps the BARs;
// the VfioDeviceOps (and its fd) is released after that.
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

class VfioPciDevice final : public PciDevice {
 public:
  // Reads the host function's config space and regions and builds the guest view. Fails with a
  // clear error if the device is not a PCI function or its layout cannot be virtualised.
  static absl::StatusOr<std::unique_ptr<VfioPciDevice>> Create(std::string name,
                                                               std::unique_ptr<VfioDeviceOps> ops);
  ~VfioPciDevice() override;

  // Device reset through VFIO + emulated config state back to reset values (BARs keep their
  // addresses only if `keep_bars`, as after an FLR; a guest reset clears them).
  absl::Status Reset(bool keep_bars = true);

  VfioDeviceOps& ops() { return *ops_; }
  // Host interrupts forwarded so far (all vectors), for tests and the exit log.
  uint64_t forwarded_interrupts() const { return forwarded_.load(); }
  // Offsets of the emulated extended capabilities (0 if the host function has none).
  uint16_t ats_offset() const { return ats_; }
  uint16_t pri_offset() const { return pri_; }
  uint16_t pasid_offset() const { return pasid_; }

 private:
  // Sub-range [base, base+len) of BAR `index`, forwarded to the device (mmapped where allowed).
  class BarWindow;
  class IrqForwarder;

  VfioPciDevice(std::string name, const PciIdentity& id, std::unique_ptr<VfioDeviceOps> ops);
  absl::Status Init(const std::vector<uint8_t>& host_config, const std::vector<uint8_t>& unfiltered);
  void OnConfigWrite(uint64_t offset, size_t size) override;
  void OnConfigRead(uint64_t offset, size_t size) override;
  // Re-evaluate which host interrupt index is enabled (MSI-X, MSI or none) after a config write.
  void UpdateInterrupts() ABSL_LOCKS_EXCLUDED(irq_mu_);

  std::unique_ptr<VfioDeviceOps> ops_;
  std::vector<std::unique_ptr<BarWindow>> windows_;
  uint16_t pcie_ = 0, ats_ = 0, pri_ = 0, pasid_ = 0;
  uint16_t host_ats_ = 0, host_pri_ = 0, host_pasid_ = 0;  // host config offsets (0: none)
  bool can_reset_ = false;
  absl::Mutex irq_mu_;
  uint32_t host_irq_index_ ABSL_GUARDED_BY(irq_mu_) = UINT32_MAX;  // enabled on the host, or none
  std::unique_ptr<IrqForwarder> forwarder_ ABSL_GUARDED_BY(irq_mu_);
  std::atomic<uint64_t> forwarded_{0};
};

}  // namespace ionest::vfio
