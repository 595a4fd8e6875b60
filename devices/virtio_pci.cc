#include "devices/virtio_pci.h"

#include <algorithm>
#include <cstring>

#include "absl/strings/str_format.h"
#include "devices/pci_express_caps.h"

namespace ionest {
namespace {

// struct virtio_pci_cap (virtio 1.2 §4.1.4).
constexpr uint8_t kCapLen = 16;
constexpr uint8_t kCapLenWithExtra = 20;  // notify (+multiplier) and PCI cfg (+data) capabilities
constexpr uint16_t kCapCfgType = 3, kCapBar = 4, kCapId = 5, kCapOffset = 8, kCapLength = 12, kCapExtra = 16;
enum : uint8_t { kCfgCommon = 1, kCfgNotify = 2, kCfgIsr = 3, kCfgDevice = 4, kCfgPci = 5 };

// Common configuration field offsets (§4.1.4.3).
enum : uint64_t {
  kDeviceFeatureSelect = 0x00, kDeviceFeature = 0x04, kDriverFeatureSelect = 0x08, kDriverFeature = 0x0C,
  kConfigMsixVector = 0x10, kNumQueues = 0x12, kDeviceStatus = 0x14, kConfigGeneration = 0x15,
  kQueueSelect = 0x16, kQueueSize = 0x18, kQueueMsixVector = 0x1A, kQueueEnable = 0x1C, kQueueNotifyOff = 0x1E,
  kQueueDesc = 0x20, kQueueDriver = 0x28, kQueueDevice = 0x30, kQueueNotifyData = 0x38, kQueueReset = 0x3A,
};

constexpr uint8_t kIsrQueue = 1, kIsrConfig = 2;

template <typename T>
void Put(uint8_t* image, uint64_t off, T v) {
  std::memcpy(image + off, &v, sizeof(T));
}
template <typename T>
T Take(const uint8_t* image, uint64_t off) {
  T v;
  std::memcpy(&v, image + off, sizeof(T));
  return v;
}
bool Touches(uint64_t offset, size_t size, uint64_t field, size_t field_size) {
  return offset < field + field_size && field < offset + size;
}

}  // namespace

absl::StatusOr<std::unique_ptr<VirtioPciDevice>> VirtioPciDevice::Create(std::string name, VirtioDevice& device,
                                                                         uint32_t class_code, Options options) {
  if (device.num_queues() == 0 || device.num_queues() > 64 || device.config_size() > kDeviceCfgMax ||
      device.max_queue_size() == 0 || (device.max_queue_size() & (device.max_queue_size() - 1)))
    return absl::InvalidArgumentError(absl::StrFormat("%s: unsupported virtio device geometry", name));
  std::unique_ptr<VirtioPciDevice> d(new VirtioPciDevice(std::move(name), device, class_code, options));
  if (absl::Status s = d->Build(); !s.ok()) return s;
  return d;
}

VirtioPciDevice::VirtioPciDevice(std::string name, VirtioDevice& device, uint32_t class_code, Options options)
    : PciDevice(std::move(name), PciIdentity{.vendor_id = kVendorId,
                                             .device_id = static_cast<uint16_t>(kDeviceIdBase + device.device_type()),
                                             .class_code = class_code,
                                             .revision = 1,  // modern-only device (§4.1.2.1)
                                             .subsystem_vendor_id = kVendorId,
                                             .subsystem_id = 0x1100}),
      device_(device),
      options_(options) {
  absl::MutexLock l(&mu_);
  queues_.resize(device_.num_queues());
  ResetLocked();
}

absl::Status VirtioPciDevice::Build() {
  absl::StatusOr<PciBar*> msix_bar = AddBar(kMsixBar, PciBarKind::kMmio32, 0x1000);
  if (!msix_bar.ok()) return msix_bar.status();
  absl::StatusOr<PciBar*> bar = AddBar(kVirtioBar, PciBarKind::kMmio64, kVirtioBarSize, /*prefetchable=*/true);
  if (!bar.ok()) return bar.status();
  if (absl::Status s = (*bar)->AddRegion(kCommonOffset, kCommonSize, &common_, "virtio-common"); !s.ok()) return s;
  if (absl::Status s = (*bar)->AddRegion(kIsrOffset, kIsrSize, &isr_region_, "virtio-isr"); !s.ok()) return s;
  const uint64_t cfg_size = std::max<uint64_t>(device_.config_size(), 4);
  if (absl::Status s = (*bar)->AddRegion(kDeviceCfgOffset, cfg_size, &device_cfg_, "virtio-device-cfg"); !s.ok())
    return s;
  const uint64_t notify_size = kNotifyMultiplier * device_.num_queues();
  if (absl::Status s = (*bar)->AddRegion(kNotifyOffset, notify_size, &notify_, "virtio-notify"); !s.ok()) return s;

  if (absl::Status s = AddPcieCapability(config(), PcieCapConfig{}).status(); !s.ok()) return s;
  if (absl::Status s = AddMsix(device_.num_queues() + 1, kMsixBar, 0x0, 0x800); !s.ok()) return s;
  // Vendor-specific capabilities (§4.1.4).
  auto add_cap = [&](uint8_t type, uint64_t offset, uint64_t length, uint8_t len) -> absl::StatusOr<uint16_t> {
    absl::StatusOr<uint16_t> off = config().AddCapability(pci::kCapIdVendor, len);
    if (!off.ok()) return off;
    config().Set8(*off + 2, len);  // cap_len
    config().Set8(*off + kCapCfgType, type);
    config().Set8(*off + kCapBar, type == kCfgPci ? 0 : kVirtioBar);
    config().Set8(*off + kCapId, 0);
    config().Set32(*off + kCapOffset, static_cast<uint32_t>(offset));
    config().Set32(*off + kCapLength, static_cast<uint32_t>(length));
    return off;
  };
  if (auto s = add_cap(kCfgCommon, kCommonOffset, kCommonSize, kCapLen); !s.ok()) return s.status();
  absl::StatusOr<uint16_t> notify = add_cap(kCfgNotify, kNotifyOffset, notify_size, kCapLenWithExtra);
  if (!notify.ok()) return notify.status();
  config().Set32(*notify + kCapExtra, kNotifyMultiplier);
  if (auto s = add_cap(kCfgIsr, kIsrOffset, kIsrSize, kCapLen); !s.ok()) return s.status();
  if (auto s = add_cap(kCfgDevice, kDeviceCfgOffset, cfg_size, kCapLen); !s.ok()) return s.status();
  // PCI configuration access capability (§4.1.4.9): bar, offset, length and data are driver-writable.
  absl::StatusOr<uint16_t> pci_cfg = add_cap(kCfgPci, 0, 0, kCapLenWithExtra);
  if (!pci_cfg.ok()) return pci_cfg.status();
  pci_cfg_cap_ = *pci_cfg;
  config().SetMasks(pci_cfg_cap_ + kCapBar, 1, 0xFF);
  config().SetMasks(pci_cfg_cap_ + kCapOffset, 4, 0xFFFFFFFF);
  config().SetMasks(pci_cfg_cap_ + kCapLength, 4, 0xFFFFFFFF);
  config().SetMasks(pci_cfg_cap_ + kCapExtra, 4, 0xFFFFFFFF);
  return absl::OkStatus();
}

uint64_t VirtioPciDevice::offered_features() const {
  return device_.device_features() | kVirtioFVersion1 | kVirtioFAccessPlatform | kVirtioFIndirectDesc;
}

uint16_t VirtioPciDevice::ValidVector(uint16_t v) const {
  // A vector beyond the MSI-X table cannot be mapped: read back NO_VECTOR (§4.1.5.1.2).
  return (v != kNoVector && msix() && v < msix()->vectors()) ? v : kNoVector;
}

void VirtioPciDevice::ResetLocked() {
  status_ = 0;
  device_feature_select_ = driver_feature_select_ = 0;
  driver_features_ = 0;
  config_msix_vector_ = kNoVector;
  queue_select_ = 0;
  isr_ = 0;
  for (Queue& q : queues_) q = Queue{.size = device_.max_queue_size()};
}

void VirtioPciDevice::CommonImage(uint8_t* image) const {
  std::memset(image, 0, kCommonSize);
  Put<uint32_t>(image, kDeviceFeatureSelect, device_feature_select_);
  const uint64_t feat = offered_features();
  Put<uint32_t>(image, kDeviceFeature,
                device_feature_select_ == 0 ? static_cast<uint32_t>(feat)
                : device_feature_select_ == 1 ? static_cast<uint32_t>(feat >> 32) : 0);
  Put<uint32_t>(image, kDriverFeatureSelect, driver_feature_select_);
  Put<uint32_t>(image, kDriverFeature,
                driver_feature_select_ == 0 ? static_cast<uint32_t>(driver_features_)
                : driver_feature_select_ == 1 ? static_cast<uint32_t>(driver_features_ >> 32) : 0);
  Put<uint16_t>(image, kConfigMsixVector, config_msix_vector_);
  Put<uint16_t>(image, kNumQueues, static_cast<uint16_t>(queues_.size()));
  Put<uint8_t>(image, kDeviceStatus, status_);
  Put<uint8_t>(image, kConfigGeneration, config_generation_);
  Put<uint16_t>(image, kQueueSelect, queue_select_);
  if (queue_select_ < queues_.size()) {
    const Queue& q = queues_[queue_select_];
    Put<uint16_t>(image, kQueueSize, q.size);
    Put<uint16_t>(image, kQueueMsixVector, q.msix_vector);
    Put<uint16_t>(image, kQueueEnable, q.enabled ? 1 : 0);
    Put<uint16_t>(image, kQueueNotifyOff, queue_select_);
    Put<uint64_t>(image, kQueueDesc, q.desc);
    Put<uint64_t>(image, kQueueDriver, q.driver);
    Put<uint64_t>(image, kQueueDevice, q.device);
    Put<uint16_t>(image, kQueueNotifyData, queue_select_);
  }
}

void VirtioPciDevice::CommonWrite(uint64_t offset, const uint8_t* data, size_t size) {
  if (offset >= kCommonSize) return;
  size = std::min<size_t>(size, kCommonSize - offset);
  uint8_t image[kCommonSize];
  CommonImage(image);
  std::memcpy(image + offset, data, size);
  auto touched = [&](uint64_t field, size_t n) { return Touches(offset, size, field, n); };
  if (touched(kDeviceFeatureSelect, 4)) device_feature_select_ = Take<uint32_t>(image, kDeviceFeatureSelect);
  if (touched(kDriverFeatureSelect, 4)) driver_feature_select_ = Take<uint32_t>(image, kDriverFeatureSelect);
  if (touched(kDriverFeature, 4) && !(status_ & kStatusFeaturesOk) && driver_feature_select_ < 2) {
    const unsigned shift = 32 * driver_feature_select_;
    driver_features_ = (driver_features_ & ~(uint64_t{0xFFFFFFFF} << shift)) |
                       uint64_t{Take<uint32_t>(image, kDriverFeature)} << shift;
  }
  if (touched(kConfigMsixVector, 2)) config_msix_vector_ = ValidVector(Take<uint16_t>(image, kConfigMsixVector));
  if (touched(kDeviceStatus, 1)) WriteStatus(Take<uint8_t>(image, kDeviceStatus));
  if (touched(kQueueSelect, 2)) queue_select_ = Take<uint16_t>(image, kQueueSelect);
  if (queue_select_ >= queues_.size()) return;
  Queue& q = queues_[queue_select_];
  if (touched(kQueueMsixVector, 2)) q.msix_vector = ValidVector(Take<uint16_t>(image, kQueueMsixVector));
  if (q.enabled) return;  // ring configuration is frozen while enabled (§4.1.4.3.2)
  if (touched(kQueueSize, 2)) q.size = Take<uint16_t>(image, kQueueSize);
  if (touched(kQueueDesc, 8)) q.desc = Take<uint64_t>(image, kQueueDesc);
  if (touched(kQueueDriver, 8)) q.driver = Take<uint64_t>(image, kQueueDriver);
  if (touched(kQueueDevice, 8)) q.device = Take<uint64_t>(image, kQueueDevice);
  if (touched(kQueueEnable, 2) && Take<uint16_t>(image, kQueueEnable) == 1) EnableQueue(queue_select_);
}

void VirtioPciDevice::WriteStatus(uint8_t v) {
  if (v == 0) {  // device reset (§2.1, §4.1.4.3.2)
    ResetLocked();
    device_.Reset();
    return;
  }
  const uint8_t sticky = status_ & kStatusNeedsReset;
  if ((v & kStatusFeaturesOk) && !(status_ & kStatusFeaturesOk)) {
    // Feature negotiation (§3.1.1): accept only a subset of what we offered, with VERSION_1.
    const bool ok = (driver_features_ & ~offered_features()) == 0 && (driver_features_ & kVirtioFVersion1) &&
                    (!options_.require_access_platform || (driver_features_ & kVirtioFAccessPlatform));
    if (ok) {
      device_.SetDriverFeatures(driver_features_);
    } else {
      v &= static_cast<uint8_t>(~kStatusFeaturesOk);
    }
  }
  status_ = v | sticky;
}

void VirtioPciDevice::EnableQueue(unsigned qi) {
  Queue& q = queues_[qi];
  if (q.size > device_.max_queue_size()) {
    SetNeedsReset();
    return;
  }
  absl::StatusOr<SplitVirtqueue> vq = SplitVirtqueue::Create(dma(), VirtqueueLayout{q.size, q.desc, q.driver, q.device});
  if (!vq.ok()) {
    SetNeedsReset();  // guest programmed an invalid ring
    return;
  }
  q.vq.emplace(*std::move(vq));
  q.enabled = true;
}

void VirtioPciDevice::SetNeedsReset() {
  if (status_ & kStatusNeedsReset) return;
  status_ |= kStatusNeedsReset;
  SignalConfigLocked();
}

void VirtioPciDevice::SignalConfigLocked() {
  isr_ |= kIsrConfig;
  if (config_msix_vector_ != kNoVector) SignalVector(config_msix_vector_);
}

void VirtioPciDevice::Notify(unsigned qi) {
  if (qi >= queues_.size()) return;
  RunQueue(qi);
  for (unsigned j = 0; j < queues_.size(); ++j)
    if (j != qi && device_.HasPendingWork(j)) RunQueue(j);
}

void VirtioPciDevice::Kick(unsigned qi) {
  absl::MutexLock l(&mu_);
  Notify(qi);
}

void VirtioPciDevice::RunQueue(unsigned qi) {
  Queue& q = queues_[qi];
  const bool running = (status_ & kStatusDriverOk) && (status_ & kStatusFeaturesOk) && !(status_ & kStatusNeedsReset);
  if (!running || !q.enabled || !q.vq || !bus_master_enabled()) return;
  if (!device_.ProcessQueue(qi, *q.vq).ok()) SetNeedsReset();
  if (q.vq->TakeNotification()) {
    isr_ |= kIsrQueue;
    if (q.msix_vector != kNoVector) SignalVector(q.msix_vector);
  }
}

void VirtioPciDevice::NotifyConfigChange() {
  absl::MutexLock l(&mu_);
  ++config_generation_;
  SignalConfigLocked();
}

uint8_t VirtioPciDevice::status() const {
  absl::MutexLock l(&mu_);
  return status_;
}

uint64_t VirtioPciDevice::driver_features() const {
  absl::MutexLock l(&mu_);
  return driver_features_;
}

void VirtioPciDevice::Region::IoRead(uint64_t offset, uint8_t* data, size_t size) {
  absl::MutexLock l(&d_.mu_);
  switch (kind_) {
    case kCommon: {
      uint8_t image[kCommonSize];
      d_.CommonImage(image);
      for (size_t i = 0; i < size && offset + i < kCommonSize; ++i) data[i] = image[offset + i];
      return;
    }
    case kIsr:
      if (offset == 0 && size >= 1) {
        data[0] = d_.isr_;
        d_.isr_ = 0;  // read-to-clear (§4.1.4.5)
      }
      return;
    case kDeviceCfg: {
      const uint64_t n = d_.device_.config_size();
      if (offset >= n) return;
      d_.device_.ReadConfig(offset, data, std::min<uint64_t>(size, n - offset));
      return;
    }
    case kNotify:
      return;  // write-only
  }
}

void VirtioPciDevice::Region::IoWrite(uint64_t offset, const uint8_t* data, size_t size) {
  absl::MutexLock l(&d_.mu_);
  switch (kind_) {
    case kCommon:
      d_.CommonWrite(offset, data, size);
      return;
    case kIsr:
      return;
    case kDeviceCfg: {
      const uint64_t n = d_.device_.config_size();
      if (offset >= n) return;
      d_.device_.WriteConfig(offset, data, std::min<uint64_t>(size, n - offset));
      return;
    }
    case kNotify:
      // The address selects the queue (queue_notify_off = index, §4.1.4.4).
      d_.Notify(static_cast<unsigned>(offset / kNotifyMultiplier));
      return;
  }
}

// VIRTIO_PCI_CAP_PCI_CFG window (§4.1.4.9.1): an access to pci_cfg_data reads/writes `length`
// bytes at `offset` in BAR `bar`.
void VirtioPciDevice::OnConfigRead(uint64_t offset, size_t size) {
  const uint64_t data_off = pci_cfg_cap_ + kCapExtra;
  if (!pci_cfg_cap_ || !Touches(offset, size, data_off, 4)) return;
  const uint8_t b = config().Get8(pci_cfg_cap_ + kCapBar);
  const uint32_t off = config().Get32(pci_cfg_cap_ + kCapOffset);
  const uint32_t len = config().Get32(pci_cfg_cap_ + kCapLength);
  PciBar* target = bar(b);
  if (!target || (len != 1 && len != 2 && len != 4) || off % len || off >= target->size()) return;
  uint8_t buf[4] = {0xFF, 0xFF, 0xFF, 0xFF};
  target->IoRead(off, buf, len);
  for (uint32_t i = 0; i < len; ++i) config().Set8(static_cast<uint32_t>(data_off + i), buf[i]);
}

void VirtioPciDevice::OnConfigWrite(uint64_t offset, size_t size) {
  const uint64_t data_off = pci_cfg_cap_ + kCapExtra;
  if (!pci_cfg_cap_ || !Touches(offset, size, data_off, 4)) return;
  const uint8_t b = config().Get8(pci_cfg_cap_ + kCapBar);
  const uint32_t off = config().Get32(pci_cfg_cap_ + kCapOffset);
  const uint32_t len = config().Get32(pci_cfg_cap_ + kCapLength);
  PciBar* target = bar(b);
  if (!target || (len != 1 && len != 2 && len != 4) || off % len || off >= target->size()) return;
  uint8_t buf[4];
  for (uint32_t i = 0; i < 4; ++i) buf[i] = config().Get8(static_cast<uint32_t>(data_off + i));
  target->IoWrite(off, buf, len);
}

}  // namespace ionest
