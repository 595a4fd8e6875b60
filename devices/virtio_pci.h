// Virtio over PCI, modern interface only (virtio 1.2 §4.1): vendor 0x1AF4, device 0x1040 + type,
// vendor-specific capabilities for common/notify/ISR/device configuration in BAR 4 (64-bit MMIO,
// 16 KiB) and the PCI configuration access capability, MSI-X (one vector per queue + config) in
// BAR 1. No legacy interface and no INTx: drivers must use MSI-X.
//
// BAR 4 layout: common 0x0000 (0x3C), ISR 0x1000, device config 0x2000, notify 0x3000
// (queue q at 0x3000 + 4*q; notify_off_multiplier 4).
//
// Threading: register accesses arrive on vCPU threads and are serialized by the transport lock.
// A notify write processes that queue synchronously on the writing vCPU thread (the device's
// ProcessQueue runs under the lock, including its disk I/O), then raises the queue's MSI-X vector.
// Queues are processed only after DRIVER_OK and while bus mastering is enabled.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "devices/io_bus.h"
#include "devices/pci_device.h"
#include "devices/virtio_device.h"
#include "devices/virtqueue.h"

namespace ionest {

class VirtioPciDevice final : public PciDevice {
 public:
  static constexpr uint16_t kVendorId = 0x1AF4;
  static constexpr uint16_t kDeviceIdBase = 0x1040;
  static constexpr uint16_t kNoVector = 0xFFFF;
  // BAR 4 layout.
  static constexpr unsigned kMsixBar = 1;
  static constexpr unsigned kVirtioBar = 4;
  static constexpr uint64_t kVirtioBarSize = 0x4000;
  static constexpr uint64_t kCommonOffset = 0x0000, kCommonSize = 0x3C;
  static constexpr uint64_t kIsrOffset = 0x1000, kIsrSize = 1;
  static constexpr uint64_t kDeviceCfgOffset = 0x2000, kDeviceCfgMax = 0x1000;
  static constexpr uint64_t kNotifyOffset = 0x3000, kNotifyMultiplier = 4;
  // Device status bits (§2.1).
  static constexpr uint8_t kStatusAcknowledge = 1, kStatusDriver = 2, kStatusDriverOk = 4, kStatusFeaturesOk = 8,
                           kStatusNeedsReset = 64, kStatusFailed = 128;

  struct Options {
    // Refuse FEATURES_OK unless the driver accepts VIRTIO_F_ACCESS_PLATFORM (its DMA then goes
    // through the DMA API / IOMMU, matching what the device's DmaSpace translates).
    bool require_access_platform = true;
  };

  // `device` must outlive this object. PCI class code as appropriate for the device type.
  static absl::StatusOr<std::unique_ptr<VirtioPciDevice>> Create(std::string name, VirtioDevice& device,
                                                                 uint32_t class_code, Options options);

  // Raise a configuration-change interrupt (e.g. after capacity changes).
  void NotifyConfigChange() ABSL_LOCKS_EXCLUDED(mu_);
  // Device-initiated notification: process `queue` now, as a driver notify would (same conditions)
  // and raise its interrupt if used buffers were added. Any thread, except from inside this
  // device's VirtioDevice callbacks (the transport lock is held there: use HasPendingWork).
  void Kick(unsigned queue) ABSL_LOCKS_EXCLUDED(mu_);
  uint8_t status() const ABSL_LOCKS_EXCLUDED(mu_);
  uint64_t driver_features() const ABSL_LOCKS_EXCLUDED(mu_);

 private:
  struct Queue {
    uint16_t size = 0;
    uint16_t msix_vector = kNoVector;
    bool enabled = false;
    uint64_t desc = 0, driver = 0, device = 0;
    std::optional<SplitVirtqueue> vq;
  };
  // MMIO regions in BAR 4.
  class Region final : public IoDevice {
   public:
    enum Kind { kCommon, kIsr, kDeviceCfg, kNotify };
    Region(VirtioPciDevice& d, Kind k) : d_(d), kind_(k) {}
    void IoRead(uint64_t offset, uint8_t* data, size_t size) override;
    void IoWrite(uint64_t offset, const uint8_t* data, size_t size) override;

   private:
    VirtioPciDevice& d_;
    const Kind kind_;
  };

  VirtioPciDevice(std::string name, VirtioDevice& device, uint32_t class_code, Options options);
  absl::Status Build();
  void OnConfigRead(uint64_t offset, size_t size) override;
  void OnConfigWrite(uint64_t offset, size_t size) override;

  // Common configuration as a byte image for the selected queue.
  void CommonImage(uint8_t* image) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void CommonWrite(uint64_t offset, const uint8_t* data, size_t size) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void WriteStatus(uint8_t status) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void EnableQueue(unsigned q) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void Notify(unsigned q) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void RunQueue(unsigned q) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void ResetLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void SetNeedsReset() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void SignalConfigLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  uint16_t ValidVector(uint16_t v) const;
  uint64_t offered_features() const;

  VirtioDevice& device_;
  const Options options_;
  Region common_{*this, Region::kCommon}, isr_region_{*this, Region::kIsr}, device_cfg_{*this, Region::kDeviceCfg},
      notify_{*this, Region::kNotify};
  uint16_t pci_cfg_cap_ = 0;  // VIRTIO_PCI_CAP_PCI_CFG offset
  mutable absl::Mutex mu_;
  uint32_t device_feature_select_ ABSL_GUARDED_BY(mu_) = 0;
  uint32_t driver_feature_select_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t driver_features_ ABSL_GUARDED_BY(mu_) = 0;
  uint16_t config_msix_vector_ ABSL_GUARDED_BY(mu_) = kNoVector;
  uint8_t status_ ABSL_GUARDED_BY(mu_) = 0;
  uint8_t config_generation_ ABSL_GUARDED_BY(mu_) = 0;
  uint16_t queue_select_ ABSL_GUARDED_BY(mu_) = 0;
  uint8_t isr_ ABSL_GUARDED_BY(mu_) = 0;
  std::vector<Queue> queues_ ABSL_GUARDED_BY(mu_);
};

}  // namespace ionest
