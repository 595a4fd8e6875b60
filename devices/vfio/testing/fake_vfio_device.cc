#include "devices/vfio/testing/fake_vfio_device.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>

#include "absl/strings/str_format.h"
#include "devices/vfio/vfio_cdev.h"

namespace ionest::vfio::testing {
namespace {

constexpr uint32_t kFlagRead = 1u << 0;   // VFIO_REGION_INFO_FLAG_READ
constexpr uint32_t kFlagWrite = 1u << 1;  // VFIO_REGION_INFO_FLAG_WRITE
constexpr uint32_t kFlagMmap = 1u << 2;   // VFIO_REGION_INFO_FLAG_MMAP
constexpr uint32_t kDevicePci = 1u << 1;  // VFIO_DEVICE_FLAGS_PCI
constexpr uint32_t kIrqEventfd = 1u << 0, kIrqMaskable = 1u << 1, kIrqAutomasked = 1u << 2, kIrqNoresize = 1u << 3;

uint32_t Get(const std::array<uint8_t, 4096>& b, uint32_t off, size_t size) {
  uint32_t v = 0;
  for (size_t i = 0; i < size && i < 4; ++i)
    if (off + i < b.size()) v |= uint32_t{b[off + i]} << (8 * i);
  return v;
}

void Put(std::array<uint8_t, 4096>& b, uint32_t off, uint32_t v, size_t size) {
  for (size_t i = 0; i < size && i < 4; ++i)
    if (off + i < b.size()) b[off + i] = static_cast<uint8_t>(v >> (8 * i));
}

}  // namespace

uint32_t FakeVfioDevice::ConfigWrite::Value() const {
  uint32_t v = 0;
  for (size_t i = 0; i < data.size() && i < 4; ++i) v |= uint32_t{data[i]} << (8 * i);
  return v;
}

FakeVfioDevice::FakeVfioDevice(std::string name) : name_(std::move(name)) {
  absl::MutexLock l(&mu_);
  info_ = DeviceInfo{kDevicePci, 9, 5};
}

FakeVfioDevice::~FakeVfioDevice() {
  absl::MutexLock l(&mu_);
  for (auto& [v, fd] : irq_fds_) close(fd);
  irq_fds_.clear();
}

std::unique_ptr<FakeVfioDevice> FakeVfioDevice::Typical(const FakeDeviceSpec& s) {
  auto d = std::make_unique<FakeVfioDevice>();
  d->SetDeviceInfo(DeviceInfo{kDevicePci | (s.can_reset ? 1u : 0u), 9, 5});
  // Type 0 header (PCIe 6.0 §7.5.1). vfio-pci has enabled memory decoding on the host.
  d->SetConfig(0x00, s.vendor_id, 2);
  d->SetConfig(0x02, s.device_id, 2);
  d->SetConfig(0x04, 0x0002, 2);
  d->SetConfig(0x08, s.revision, 1);
  d->SetConfig(0x09, s.class_code, 3);
  d->SetConfig(0x0E, 0x00, 1);
  d->SetConfig(0x10, static_cast<uint32_t>(kFakeBar0HostAddress) | 0x4, 4);  // 64-bit
  d->SetConfig(0x14, static_cast<uint32_t>(kFakeBar0HostAddress >> 32), 4);
  d->SetConfig(0x18, static_cast<uint32_t>(kFakeBar2HostAddress) | 0x4 | 0x8, 4);  // 64-bit prefetchable
  d->SetConfig(0x1C, static_cast<uint32_t>(kFakeBar2HostAddress >> 32), 4);
  if (s.io_bar_size) d->SetConfig(0x20, 0xE000 | 0x1, 4);
  d->SetConfig(0x2C, s.subsystem_vendor_id, 2);
  d->SetConfig(0x2E, s.subsystem_id, 2);
  d->SetConfig(0x3D, 1, 1);  // INTA#
  // Capability list.
  std::vector<uint16_t> caps;
  if (s.pcie) caps.push_back(kFakePcieCap);
  if (s.msi_vectors) caps.push_back(kFakeMsiCap);
  if (s.msix_vectors) caps.push_back(kFakeMsixCap);
  if (s.virtio_caps) caps.insert(caps.end(), {kFakeVirtioCommonCap, kFakeVirtioNotifyCap});
  if (!caps.empty()) {
    d->SetConfig(0x06, 0x0010, 2);  // Status.CAP_LIST
    d->SetConfig(0x34, caps[0], 1);
  }
  for (size_t i = 0; i < caps.size(); ++i) {
    const uint16_t o = caps[i];
    d->SetConfig(o + 1, i + 1 < caps.size() ? caps[i + 1] : 0, 1);
    if (o == kFakePcieCap) {
      d->SetConfig(o, 0x10, 1);
      d->SetConfig(o + 2, 0x2 | uint32_t{s.pcie_type} << 4, 2);
      d->SetConfig(o + 4, s.devcap, 4);
      d->SetConfig(o + 8, 0x2810, 2);
      d->SetConfig(o + 0x24, s.devcap2, 4);
    } else if (o == kFakeVirtioCommonCap) {
      d->SetConfig(o, 0x09, 1);
      d->SetConfig(o + 2, 16 | 1u << 8 | 4u << 16, 4);  // cap_len 16, COMMON_CFG, BAR4
      d->SetConfig(o + 8, 0x0000, 4);                    // offset
      d->SetConfig(o + 12, 0x1000, 4);                   // length
    } else if (o == kFakeVirtioNotifyCap) {
      d->SetConfig(o, 0x09, 1);
      d->SetConfig(o + 2, 20 | 2u << 8 | 4u << 16, 4);  // cap_len 20, NOTIFY_CFG, BAR4
      d->SetConfig(o + 8, 0x3000, 4);
      d->SetConfig(o + 12, 0x1000, 4);
      d->SetConfig(o + 16, 4, 4);  // notify_off_multiplier
    } else if (o == kFakeMsiCap) {
      unsigned mmc = 0;
      while ((1u << mmc) < s.msi_vectors && mmc < 5) ++mmc;
      d->SetConfig(o, 0x05, 1);
      d->SetConfig(o + 2, 0x0180 | mmc << 1, 2);  // 64-bit, per-vector masking
    } else {
      d->SetConfig(o, 0x11, 1);
      d->SetConfig(o + 2, s.msix_vectors - 1, 2);
      d->SetConfig(o + 4, kFakeMsixTableOffset | 2, 4);
      d->SetConfig(o + 8, kFakeMsixPbaOffset | 2, 4);
    }
  }
  // Extended capabilities (§7.6.3): ATS, PASID, PRI.
  if (s.pcie) {
    std::vector<std::pair<uint16_t, uint16_t>> ext;  // (offset, id)
    if (s.ats) ext.emplace_back(kFakeAtsCap, 0x000F);
    if (s.pasid) ext.emplace_back(kFakePasidCap, 0x001B);
    if (s.pri) ext.emplace_back(kFakePriCap, 0x0013);
    for (size_t i = 0; i < ext.size(); ++i) {
      const auto [o, id] = ext[i];
      const uint32_t next = i + 1 < ext.size() ? ext[i + 1].first : 0;
      d->SetConfig(o, id | 1u << 16 | next << 20, 4);
      if (id == 0x000F) {
        d->SetConfig(o + 4, s.ats_cap, 2);
        d->SetConfig(o + 6, 0, 2);
        d->SetConfigReadOnly(o, 8);  // vfio-pci: ATS read-only
      } else if (id == 0x001B) {
        d->SetConfig(o + 4, s.pasid_cap, 2);
      } else {
        d->SetConfig(o + 6, 0x8100, 2);  // PRG response PASID required, Stopped
        d->SetConfig(o + 8, s.pri_capacity, 4);
        d->SetConfigReadOnly(o, 16);  // vfio-pci: PRI read-only
      }
    }
    if (s.pasid && s.hide_pasid) d->HideExtCap(0x001B);
  }
  d->SetUnfilteredAvailable(s.unfiltered_config);
  // Regions.
  for (uint32_t i = 0; i < 9; ++i) d->SetRegion(RegionInfo{i, 0, 0, {}});
  RegionInfo bar0{0, kFlagRead | kFlagWrite | (s.bar0_mmap ? kFlagMmap : 0), s.bar0_size, {}};
  if (s.bar0_mmap) bar0.mmap_areas.push_back({0, s.bar0_size});
  d->SetRegion(bar0);
  RegionInfo bar2{2, kFlagRead | kFlagWrite | (s.bar2_mmap ? kFlagMmap : 0), s.bar2_size, {}};
  if (s.bar2_mmap && s.bar2_msix_mappable) {
    bar2.mmap_areas.push_back({0, s.bar2_size});
  } else if (s.bar2_mmap && s.bar2_size > 0x1000) {
    bar2.mmap_areas.push_back({0x1000, s.bar2_size - 0x1000});
  }
  d->SetRegion(bar2);
  if (s.io_bar_size) d->SetRegion(RegionInfo{4, kFlagRead | kFlagWrite, s.io_bar_size, {}});
  d->SetRegion(RegionInfo{kConfigRegion, kFlagRead | kFlagWrite, s.pcie ? 4096u : 256u, {}});
  // Interrupts.
  d->SetIrq(IrqInfo{kIrqIntx, kIrqEventfd | kIrqMaskable | kIrqAutomasked, 1});
  d->SetIrq(IrqInfo{kIrqMsi, kIrqEventfd | kIrqNoresize, s.msi_vectors});
  d->SetIrq(IrqInfo{kIrqMsix, kIrqEventfd | kIrqNoresize, s.msix_vectors});
  d->SetIrq(IrqInfo{3, kIrqEventfd, 1});  // ERR
  d->SetIrq(IrqInfo{4, kIrqEventfd, 1});  // REQ
  return d;
}

// ---- Setup ------------------------------------------------------------------------------------

void FakeVfioDevice::SetDeviceInfo(const DeviceInfo& info) {
  absl::MutexLock l(&mu_);
  info_ = info;
}

void FakeVfioDevice::SetRegion(const RegionInfo& info) {
  absl::MutexLock l(&mu_);
  regions_[info.index] = info;
  if (info.index < kNumBarRegions) bars_[info.index].assign(info.size, 0);
}

void FakeVfioDevice::SetIrq(const IrqInfo& info) {
  absl::MutexLock l(&mu_);
  irqs_[info.index] = info;
}

void FakeVfioDevice::SetConfig(uint32_t offset, uint32_t value, size_t size) {
  absl::MutexLock l(&mu_);
  Put(config_, offset, value, size);
}

uint32_t FakeVfioDevice::GetConfig(uint32_t offset, size_t size) const {
  absl::MutexLock l(&mu_);
  return Get(config_, offset, size);
}

void FakeVfioDevice::HideExtCap(uint16_t id) {
  absl::MutexLock l(&mu_);
  hidden_.push_back(id);
}

void FakeVfioDevice::SetConfigReadOnly(uint32_t offset, uint32_t len) {
  absl::MutexLock l(&mu_);
  read_only_.emplace_back(offset, len);
}

void FakeVfioDevice::SetUnfilteredAvailable(bool available) {
  absl::MutexLock l(&mu_);
  unfiltered_ = available;
}

void FakeVfioDevice::InjectError(FakeOp op, absl::Status status, int times) {
  absl::MutexLock l(&mu_);
  inject_[static_cast<size_t>(op)] = Injected{std::move(status), times};
}

void FakeVfioDevice::ClearErrors() {
  absl::MutexLock l(&mu_);
  for (Injected& i : inject_) i = Injected{};
}

absl::Status FakeVfioDevice::Injection(FakeOp op) {
  Injected& i = inject_[static_cast<size_t>(op)];
  if (i.times == 0 || i.status.ok()) return absl::OkStatus();
  if (i.times > 0) --i.times;
  return i.status;
}

// vfio-pci's view of the config space (vfio_ecap_init): hidden extended capabilities are skipped
// by the previous capability's Next pointer; a hidden first one keeps its place with ID/version 0.
std::array<uint8_t, 4096> FakeVfioDevice::VfioView() const {
  std::array<uint8_t, 4096> v = config_;
  uint32_t prev = 0;
  uint32_t off = 0x100;
  for (int n = 0; n < (4096 - 256) / 4 && off >= 0x100; ++n) {
    const uint32_t hdr = Get(v, off, 4);
    if (hdr == 0) break;
    const uint32_t next = (hdr >> 20) & 0xFFC;
    if (std::find(hidden_.begin(), hidden_.end(), hdr & 0xFFFF) != hidden_.end()) {
      if (prev) {
        Put(v, prev, (Get(v, prev, 4) & 0x000FFFFF) | next << 20, 4);
      } else {
        Put(v, off, hdr & 0xFFF00000, 4);
        prev = off;
      }
    } else {
      prev = off;
    }
    off = next;
  }
  return v;
}

// ---- Observation ------------------------------------------------------------------------------

std::vector<FakeVfioDevice::ConfigWrite> FakeVfioDevice::config_writes() const {
  absl::MutexLock l(&mu_);
  return config_writes_;
}
std::vector<FakeVfioDevice::IrqCall> FakeVfioDevice::set_irq_calls() const {
  absl::MutexLock l(&mu_);
  return irq_calls_;
}
std::vector<uint32_t> FakeVfioDevice::disable_irq_calls() const {
  absl::MutexLock l(&mu_);
  return disable_calls_;
}
int FakeVfioDevice::reset_calls() const {
  absl::MutexLock l(&mu_);
  return resets_;
}
uint64_t FakeVfioDevice::region_reads(uint32_t index) const {
  absl::MutexLock l(&mu_);
  auto it = reads_.find(index);
  return it == reads_.end() ? 0 : it->second;
}
uint64_t FakeVfioDevice::region_writes(uint32_t index) const {
  absl::MutexLock l(&mu_);
  auto it = writes_.find(index);
  return it == writes_.end() ? 0 : it->second;
}
int FakeVfioDevice::mmap_calls() const {
  absl::MutexLock l(&mu_);
  return mmaps_;
}
int FakeVfioDevice::live_mappings() const {
  absl::MutexLock l(&mu_);
  int n = 0;
  for (const auto& [p, count] : live_maps_) n += static_cast<int>(count);
  return n;
}
std::optional<uint32_t> FakeVfioDevice::enabled_irq_index() const {
  absl::MutexLock l(&mu_);
  return irq_index_;
}
size_t FakeVfioDevice::registered_vectors(uint32_t index) const {
  absl::MutexLock l(&mu_);
  return irq_index_ == index ? irq_fds_.size() : 0;
}

uint64_t FakeVfioDevice::BarPeek(uint32_t index, uint64_t offset, size_t size) const {
  absl::MutexLock l(&mu_);
  if (index >= kNumBarRegions) return 0;
  const std::vector<uint8_t>& b = bars_[index];
  uint64_t v = 0;
  for (size_t i = 0; i < size && i < 8; ++i)
    if (offset + i < b.size()) v |= uint64_t{b[offset + i]} << (8 * i);
  return v;
}

void FakeVfioDevice::BarPoke(uint32_t index, uint64_t offset, uint64_t value, size_t size) {
  absl::MutexLock l(&mu_);
  if (index >= kNumBarRegions) return;
  std::vector<uint8_t>& b = bars_[index];
  for (size_t i = 0; i < size && i < 8; ++i)
    if (offset + i < b.size()) b[offset + i] = static_cast<uint8_t>(value >> (8 * i));
}

bool FakeVfioDevice::FireInterrupt(uint32_t index, uint32_t v) {
  absl::MutexLock l(&mu_);
  if (irq_index_ != index) return false;
  auto it = irq_fds_.find(v);
  if (it == irq_fds_.end()) return false;
  const uint64_t one = 1;
  return write(it->second, &one, sizeof(one)) == sizeof(one);
}

// ---- VfioDeviceOps ----------------------------------------------------------------------------

absl::StatusOr<uint32_t> FakeVfioDevice::BindIommufd(int) { return 1; }
absl::Status FakeVfioDevice::AttachPt(uint32_t) { return absl::OkStatus(); }
absl::Status FakeVfioDevice::DetachPt() { return absl::OkStatus(); }
absl::Status FakeVfioDevice::UnmaskIntx() { return absl::OkStatus(); }

absl::Status FakeVfioDevice::AttachPasid(uint32_t pasid, uint32_t pt_id) {
  absl::MutexLock l(&mu_);
  pasid_calls_.push_back({true, pasid, pt_id});
  if (absl::Status s = Injection(FakeOp::kAttachPasid); !s.ok()) return s;
  if (!pasid_attach_) return NoPasidAttachError(PasidAttachWhat(name_, pasid, pt_id));
  pasids_[pasid] = pt_id;  // a second attach replaces, as iommufd_device_pasid_replace
  return absl::OkStatus();
}

absl::Status FakeVfioDevice::DetachPasid(uint32_t pasid) {
  absl::MutexLock l(&mu_);
  pasid_calls_.push_back({false, pasid, 0});
  if (absl::Status s = Injection(FakeOp::kDetachPasid); !s.ok()) return s;
  if (!pasid_attach_) return NoPasidAttachError(PasidDetachWhat(name_, pasid));
  pasids_.erase(pasid);
  return absl::OkStatus();
}

void FakeVfioDevice::SetPasidAttachSupported(bool supported) {
  absl::MutexLock l(&mu_);
  pasid_attach_ = supported;
}

std::vector<FakeVfioDevice::PasidCall> FakeVfioDevice::pasid_calls() const {
  absl::MutexLock l(&mu_);
  return pasid_calls_;
}

std::map<uint32_t, uint32_t> FakeVfioDevice::attached_pasids() const {
  absl::MutexLock l(&mu_);
  return pasids_;
}

absl::StatusOr<DeviceInfo> FakeVfioDevice::GetInfo() {
  absl::MutexLock l(&mu_);
  if (absl::Status s = Injection(FakeOp::kGetInfo); !s.ok()) return s;
  return info_;
}

absl::StatusOr<RegionInfo> FakeVfioDevice::GetRegionInfo(uint32_t index) {
  absl::MutexLock l(&mu_);
  if (absl::Status s = Injection(FakeOp::kGetRegionInfo); !s.ok()) return s;
  auto it = regions_.find(index);
  if (it == regions_.end())
    return absl::InvalidArgumentError(absl::StrFormat("VFIO_DEVICE_GET_REGION_INFO (region %u): EINVAL", index));
  return it->second;
}

absl::StatusOr<IrqInfo> FakeVfioDevice::GetIrqInfo(uint32_t index) {
  absl::MutexLock l(&mu_);
  if (absl::Status s = Injection(FakeOp::kGetIrqInfo); !s.ok()) return s;
  auto it = irqs_.find(index);
  if (it == irqs_.end())
    return absl::InvalidArgumentError(absl::StrFormat("VFIO_DEVICE_GET_IRQ_INFO (index %u): EINVAL", index));
  return it->second;
}

absl::Status FakeVfioDevice::RegionRead(uint32_t index, uint64_t offset, void* data, size_t len) {
  absl::MutexLock l(&mu_);
  ++reads_[index];
  if (absl::Status s = Injection(index == kConfigRegion ? FakeOp::kConfigRead : FakeOp::kBarRead); !s.ok()) return s;
  auto it = regions_.find(index);
  if (it == regions_.end() || !it->second.readable() || offset > it->second.size || len > it->second.size - offset)
    return absl::OutOfRangeError(absl::StrFormat("pread region %u [%#x, +%#x): EINVAL", index, offset, len));
  if (index == kConfigRegion) {
    const std::array<uint8_t, 4096> v = VfioView();
    if (offset > v.size() || len > v.size() - offset) return absl::OutOfRangeError("pread config: EINVAL");
    std::memcpy(data, v.data() + offset, len);
    return absl::OkStatus();
  }
  if (index >= kNumBarRegions) return absl::InvalidArgumentError("pread: no backing for region");
  std::memcpy(data, bars_[index].data() + offset, len);
  return absl::OkStatus();
}

absl::Status FakeVfioDevice::RegionWrite(uint32_t index, uint64_t offset, const void* data, size_t len) {
  absl::MutexLock l(&mu_);
  ++writes_[index];
  const auto* p = static_cast<const uint8_t*>(data);
  if (index == kConfigRegion) config_writes_.push_back(ConfigWrite{offset, std::vector<uint8_t>(p, p + len)});
  if (absl::Status s = Injection(index == kConfigRegion ? FakeOp::kConfigWrite : FakeOp::kBarWrite); !s.ok()) return s;
  auto it = regions_.find(index);
  if (it == regions_.end() || !it->second.writable() || offset > it->second.size || len > it->second.size - offset)
    return absl::OutOfRangeError(absl::StrFormat("pwrite region %u [%#x, +%#x): EINVAL", index, offset, len));
  if (index == kConfigRegion) {
    for (size_t i = 0; i < len; ++i) {
      const uint64_t off = offset + i;
      if (off >= config_.size()) break;
      const bool ro = std::any_of(read_only_.begin(), read_only_.end(),
                                  [&](const auto& r) { return off >= r.first && off - r.first < r.second; });
      if (!ro) config_[off] = p[i];
    }
    return absl::OkStatus();
  }
  if (index >= kNumBarRegions) return absl::InvalidArgumentError("pwrite: no backing for region");
  std::memcpy(bars_[index].data() + offset, p, len);
  return absl::OkStatus();
}

absl::StatusOr<void*> FakeVfioDevice::Mmap(uint32_t index, uint64_t offset, uint64_t len) {
  absl::MutexLock l(&mu_);
  ++mmaps_;
  if (absl::Status s = Injection(FakeOp::kMmap); !s.ok()) return s;
  auto it = regions_.find(index);
  bool inside = false;
  if (it != regions_.end() && index < kNumBarRegions && (it->second.flags & kFlagMmap)) {
    for (const MmapArea& a : it->second.mmap_areas)
      if (offset >= a.offset && offset - a.offset <= a.size && len <= a.size - (offset - a.offset)) inside = true;
  }
  if (!inside || len == 0)
    return absl::InvalidArgumentError(absl::StrFormat("mmap region %u [%#x, +%#x): EINVAL", index, offset, len));
  void* p = bars_[index].data() + offset;
  ++live_maps_[p];
  return p;
}

void FakeVfioDevice::Unmap(void* addr, uint64_t) {
  absl::MutexLock l(&mu_);
  auto it = live_maps_.find(addr);
  if (it == live_maps_.end()) return;
  if (--it->second == 0) live_maps_.erase(it);
}

void FakeVfioDevice::CloseIrqFdsLocked(uint32_t index) {
  for (auto& [v, fd] : irq_fds_) close(fd);
  irq_fds_.clear();
  irq_index_.reset();
}

absl::Status FakeVfioDevice::SetIrqEventfds(uint32_t index, uint32_t start, std::span<const int> fds) {
  absl::MutexLock l(&mu_);
  irq_calls_.push_back(IrqCall{index, start, std::vector<int>(fds.begin(), fds.end())});
  if (absl::Status s = Injection(FakeOp::kSetIrqs); !s.ok()) return s;
  auto it = irqs_.find(index);
  if (it == irqs_.end() || fds.empty() || start > it->second.count || fds.size() > it->second.count - start)
    return absl::InvalidArgumentError(
        absl::StrFormat("VFIO_DEVICE_SET_IRQS (index %u, start %u, count %u): EINVAL", index, start, fds.size()));
  if (irq_index_ && *irq_index_ != index)
    return absl::InvalidArgumentError(
        absl::StrFormat("VFIO_DEVICE_SET_IRQS (index %u): EINVAL, index %u is enabled", index, *irq_index_));
  // Take a reference to every eventfd first (the kernel's eventfd_ctx_fdget), all or nothing.
  std::vector<int> dups;
  for (int fd : fds) {
    if (fd < 0) {
      dups.push_back(-1);
      continue;
    }
    const int dup = fcntl(fd, F_DUPFD_CLOEXEC, 0);
    if (dup < 0) {
      for (int d : dups)
        if (d >= 0) close(d);
      return absl::InvalidArgumentError(absl::StrFormat("VFIO_DEVICE_SET_IRQS: fd %d: EBADF", fd));
    }
    dups.push_back(dup);
  }
  for (size_t i = 0; i < dups.size(); ++i) {
    const uint32_t v = start + static_cast<uint32_t>(i);
    if (auto old = irq_fds_.find(v); old != irq_fds_.end()) {
      close(old->second);
      irq_fds_.erase(old);
    }
    if (dups[i] >= 0) irq_fds_[v] = dups[i];
  }
  irq_index_ = index;
  return absl::OkStatus();
}

absl::Status FakeVfioDevice::DisableIrqs(uint32_t index) {
  absl::MutexLock l(&mu_);
  disable_calls_.push_back(index);
  if (absl::Status s = Injection(FakeOp::kDisableIrqs); !s.ok()) return s;
  if (irq_index_ == index) CloseIrqFdsLocked(index);
  return absl::OkStatus();
}

absl::Status FakeVfioDevice::Reset() {
  absl::MutexLock l(&mu_);
  ++resets_;
  if (absl::Status s = Injection(FakeOp::kReset); !s.ok()) return s;
  if (!info_.can_reset()) return absl::InvalidArgumentError("VFIO_DEVICE_RESET: EINVAL (no reset method)");
  return absl::OkStatus();
}

absl::StatusOr<std::vector<uint8_t>> FakeVfioDevice::ReadUnfilteredConfig() {
  absl::MutexLock l(&mu_);
  if (absl::Status s = Injection(FakeOp::kUnfilteredConfig); !s.ok()) return s;
  if (!unfiltered_) return absl::NotFoundError("no sysfs config for the fake device");
  return std::vector<uint8_t>(config_.begin(), config_.end());
}

}  // namespace ionest::vfio::testing
