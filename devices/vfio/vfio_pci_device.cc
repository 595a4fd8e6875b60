#include "devices/vfio/vfio_pci_device.h"

#include <linux/vfio.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <bit>
#include <cerrno>
#include <cstring>
#include <optional>
#include <utility>

#include "absl/base/internal/raw_logging.h"
#include "absl/strings/str_format.h"
#include "devices/pci_express_caps.h"
#include "devices/pci_regs.h"

namespace ionest::vfio {

static_assert(kConfigRegion == VFIO_PCI_CONFIG_REGION_INDEX && kIrqMsi == VFIO_PCI_MSI_IRQ_INDEX &&
              kIrqMsix == VFIO_PCI_MSIX_IRQ_INDEX && kNumBarRegions == VFIO_PCI_ROM_REGION_INDEX);

namespace {

using namespace ::ionest::pci;

constexpr size_t kConventionalConfigSize = 256;
constexpr size_t kConfigSize = kConfigSpaceSize;
constexpr uint16_t kCommandForwarded = kCommandIo | kCommandMemory | kCommandBusMaster;
constexpr uint32_t kNoIrq = UINT32_MAX;
// DEVCAP2 bits passed to the guest (PCIe 6.0 §7.5.3.15): completion timeout ranges and disable,
// End-End TLP prefix support and count. Capabilities whose DEVCTL2 enables ionest does not forward
// (LTR, OBFF, 10-bit tags, atomics...) stay hidden.
constexpr uint32_t kDevCap2Kept = 0xF | pcie::kDevCap2CompletionTimeoutDisable | pcie::kDevCap2EndEndTlpPrefix |
                                  0x3u << pcie::kDevCap2MaxEndEndPrefixesShift;

// The host function's config bytes, little-endian; bytes beyond the buffer read 0.
class HostConfig {
 public:
  explicit HostConfig(const std::vector<uint8_t>& b) : b_(b) {}
  uint32_t Get(uint32_t off, size_t size) const {
    uint32_t v = 0;
    for (size_t i = 0; i < size && i < 4; ++i)
      if (off + i < b_.size()) v |= uint32_t{b_[off + i]} << (8 * i);
    return v;
  }
  uint8_t Get8(uint32_t off) const { return static_cast<uint8_t>(Get(off, 1)); }
  uint16_t Get16(uint32_t off) const { return static_cast<uint16_t>(Get(off, 2)); }
  uint32_t Get32(uint32_t off) const { return Get(off, 4); }

  // Capability list walk (PCIe 6.0 §7.5.1.1.10), bounded against loops.
  std::optional<uint16_t> FindCap(uint8_t id) const {
    if (b_.size() < kConventionalConfigSize || !(Get16(kStatus) & kStatusCapList)) return std::nullopt;
    uint16_t off = Get8(kCapabilitiesPointer) & 0xFC;
    for (int n = 0; off >= kHeaderEnd && n < 48; ++n) {
      if (Get8(off) == id) return off;
      off = Get8(off + 1) & 0xFC;
    }
    return std::nullopt;
  }
  // Every capability with this id, in list order (same bounded walk).
  std::vector<uint16_t> FindCaps(uint8_t id) const {
    std::vector<uint16_t> out;
    if (b_.size() < kConventionalConfigSize || !(Get16(kStatus) & kStatusCapList)) return out;
    uint16_t off = Get8(kCapabilitiesPointer) & 0xFC;
    for (int n = 0; off >= kHeaderEnd && n < 48; ++n) {
      if (Get8(off) == id) out.push_back(off);
      off = Get8(off + 1) & 0xFC;
    }
    return out;
  }
  // Extended capability list walk (§7.6.3), bounded against loops.
  std::optional<uint16_t> FindExtCap(uint16_t id) const {
    if (b_.size() < kConfigSize) return std::nullopt;
    uint16_t off = kExtCapStart;
    for (size_t n = 0; off >= kExtCapStart && n < (kConfigSize - kExtCapStart) / 4; ++n) {
      const uint32_t hdr = Get32(off);
      if (hdr == 0 || hdr == 0xFFFFFFFF) break;
      if ((hdr & 0xFFFF) == id) return off;
      off = static_cast<uint16_t>((hdr >> 20) & 0xFFC);
    }
    return std::nullopt;
  }

 private:
  const std::vector<uint8_t>& b_;
};

// Does the access [off, off+size) touch the register [reg, reg+len)?
bool Touches(uint64_t off, uint64_t end, uint32_t reg, uint32_t len) { return off < reg + len && reg < end; }

template <typename T>
bool VolatileLoad(const uint8_t* p, uint8_t* data) {
  if (reinterpret_cast<uintptr_t>(p) % sizeof(T) != 0) return false;
  const T v = *reinterpret_cast<const volatile T*>(p);
  std::memcpy(data, &v, sizeof(T));
  return true;
}

template <typename T>
bool VolatileStore(uint8_t* p, const uint8_t* data) {
  if (reinterpret_cast<uintptr_t>(p) % sizeof(T) != 0) return false;
  T v;
  std::memcpy(&v, data, sizeof(T));
  *reinterpret_cast<volatile T*>(p) = v;
  return true;
}

// One access of the guest's size where it is naturally aligned; otherwise a plain copy (the
// guest's access was split or unaligned anyway).
void MappedLoad(const uint8_t* p, uint8_t* data, size_t size) {
  bool done = false;
  switch (size) {
    case 1: done = VolatileLoad<uint8_t>(p, data); break;
    case 2: done = VolatileLoad<uint16_t>(p, data); break;
    case 4: done = VolatileLoad<uint32_t>(p, data); break;
    case 8: done = VolatileLoad<uint64_t>(p, data); break;
    default: break;
  }
  if (!done) std::memcpy(data, p, size);
}

void MappedStore(uint8_t* p, const uint8_t* data, size_t size) {
  bool done = false;
  switch (size) {
    case 1: done = VolatileStore<uint8_t>(p, data); break;
    case 2: done = VolatileStore<uint16_t>(p, data); break;
    case 4: done = VolatileStore<uint32_t>(p, data); break;
    case 8: done = VolatileStore<uint64_t>(p, data); break;
    default: break;
  }
  if (!done) std::memcpy(p, data, size);
}

absl::Status Prefixed(const std::string& name, const absl::Status& s) {
  return absl::Status(s.code(), absl::StrFormat("%s: %s", name, s.message()));
}

bool ReadCounter(int fd) {
  uint64_t count;
  ssize_t n;
  do {
    n = read(fd, &count, sizeof(count));
  } while (n < 0 && errno == EINTR);
  return n == sizeof(count);
}

}  // namespace

// ---- BAR forwarding -------------------------------------------------------------------------

class VfioPciDevice::BarWindow final : public IoDevice {
 public:
  BarWindow(VfioPciDevice& dev, uint32_t index, uint64_t base, uint64_t len, std::vector<Mapping> maps)
      : dev_(dev), index_(index), base_(base), len_(len), maps_(std::move(maps)) {}

  void IoRead(uint64_t offset, uint8_t* data, size_t size) override {
    if (offset >= len_ || size == 0) return;  // the bus pre-filled all-ones
    size = static_cast<size_t>(std::min<uint64_t>(size, len_ - offset));
    const uint64_t at = base_ + offset;
    if (const Mapping* m = Covering(at, size)) {
      absl::ReaderMutexLock l(&dev_.decode_mu_);
      if (dev_.host_memory_enabled_) {
        MappedLoad(m->ptr + (at - m->offset), data, size);
        return;
      }
    }
    if (absl::Status s = dev_.ops_->RegionRead(index_, at, data, size); !s.ok()) {
      std::memset(data, 0xFF, size);
      NoteError("read", at, size, s);
    }
  }

  void IoWrite(uint64_t offset, const uint8_t* data, size_t size) override {
    if (offset >= len_ || size == 0) return;
    size = static_cast<size_t>(std::min<uint64_t>(size, len_ - offset));
    const uint64_t at = base_ + offset;
    if (const Mapping* m = Covering(at, size)) {
      absl::ReaderMutexLock l(&dev_.decode_mu_);
      if (dev_.host_memory_enabled_) {
        MappedStore(m->ptr + (at - m->offset), data, size);
        return;
      }
    }
    if (absl::Status s = dev_.ops_->RegionWrite(index_, at, data, size); !s.ok()) NoteError("write", at, size, s);
  }

 private:
  const Mapping* Covering(uint64_t at, size_t size) const {
    for (const Mapping& m : maps_)
      if (at >= m.offset && at - m.offset < m.size && size <= m.size - (at - m.offset)) return &m;
    return nullptr;
  }
  void NoteError(const char* what, uint64_t at, size_t size, const absl::Status& s) {
    dev_.bar_errors_.fetch_add(1, std::memory_order_relaxed);
    if (!dev_.bar_error_logged_.exchange(true))
      ABSL_RAW_LOG(WARNING, "%s: BAR%u %s at %#llx (%zu bytes) failed: %s (further BAR errors are only counted)",
                   dev_.name().c_str(), index_, what, static_cast<unsigned long long>(at), size,
                   s.ToString().c_str());
  }

  VfioPciDevice& dev_;
  const uint32_t index_;
  const uint64_t base_;  // within the region
  const uint64_t len_;
  const std::vector<Mapping> maps_;
};

// ---- Interrupt forwarding -------------------------------------------------------------------

// Owns the per-vector eventfds registered with VFIO_DEVICE_SET_IRQS and, when started, a thread
// that waits on them (epoll) and turns each host interrupt into SignalVector(v).
class VfioPciDevice::IrqForwarder {
 public:
  IrqForwarder(VfioPciDevice& dev, std::vector<int> fds) : dev_(dev), fds_(std::move(fds)) {}
  ~IrqForwarder() {
    Stop();
    for (int fd : fds_) close(fd);
    if (stop_fd_ >= 0) close(stop_fd_);
    if (epoll_fd_ >= 0) close(epoll_fd_);
  }
  IrqForwarder(const IrqForwarder&) = delete;
  IrqForwarder& operator=(const IrqForwarder&) = delete;

  const std::vector<int>& fds() const { return fds_; }

  absl::Status StartThread() {
    stop_fd_ = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    epoll_fd_ = epoll_create1(EPOLL_CLOEXEC);
    if (stop_fd_ < 0 || epoll_fd_ < 0) return absl::ErrnoToStatus(errno, "creating the interrupt forwarder's fds");
    for (uint32_t v = 0; v <= fds_.size(); ++v) {
      epoll_event ev{};
      ev.events = EPOLLIN;
      ev.data.u32 = v < fds_.size() ? v : kStop;
      if (epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, v < fds_.size() ? fds_[v] : stop_fd_, &ev) != 0)
        return absl::ErrnoToStatus(errno, "epoll_ctl on an interrupt eventfd");
    }
    thread_ = std::thread([this] { Loop(); });
    return absl::OkStatus();
  }

  // Wakes the thread and joins it (it never blocks on anything but epoll_wait and SignalVector).
  void Stop() {
    if (!thread_.joinable()) return;
    const uint64_t one = 1;
    while (write(stop_fd_, &one, sizeof(one)) < 0 && errno == EINTR) {
    }
    thread_.join();
  }

  // Vectors whose eventfd fired since the last read (non-blocking).
  void Collect(std::vector<unsigned>* fired) {
    for (unsigned v = 0; v < fds_.size(); ++v)
      if (ReadCounter(fds_[v])) fired->push_back(v);
  }

 private:
  static constexpr uint32_t kStop = UINT32_MAX;

  void Loop() {
    std::array<epoll_event, 64> events;
    for (;;) {
      const int n = epoll_wait(epoll_fd_, events.data(), static_cast<int>(events.size()), -1);
      if (n < 0) {
        if (errno == EINTR) continue;
        ABSL_RAW_LOG(ERROR, "%s: epoll_wait on interrupt eventfds: %s; host interrupts are no longer forwarded",
                     dev_.name().c_str(), std::strerror(errno));
        return;
      }
      for (int i = 0; i < n; ++i) {
        const uint32_t v = events[i].data.u32;
        if (v == kStop) return;
        if (v < fds_.size() && ReadCounter(fds_[v])) {
          dev_.SignalVector(v);  // applies the guest's masking (pending bits) and message
          dev_.forwarded_.fetch_add(1, std::memory_order_relaxed);
        }
      }
    }
  }

  VfioPciDevice& dev_;
  const std::vector<int> fds_;
  int stop_fd_ = -1;
  int epoll_fd_ = -1;
  std::thread thread_;
};

// ---- Creation -------------------------------------------------------------------------------

VfioPciDevice::VfioPciDevice(std::string name, const PciIdentity& id, std::unique_ptr<VfioDeviceOps> ops)
    : PciDevice(std::move(name), id), ops_(std::move(ops)) {}

absl::StatusOr<std::unique_ptr<VfioPciDevice>> VfioPciDevice::Create(std::string name,
                                                                     std::unique_ptr<VfioDeviceOps> ops) {
  return Create(std::move(name), std::move(ops), VfioPciOptions{});
}

absl::StatusOr<std::unique_ptr<VfioPciDevice>> VfioPciDevice::Create(std::string name,
                                                                     std::unique_ptr<VfioDeviceOps> ops,
                                                                     const VfioPciOptions& options) {
  if (!ops) return absl::InvalidArgumentError(absl::StrFormat("%s: no VFIO device", name));
  absl::StatusOr<DeviceInfo> info = ops->GetInfo();
  if (!info.ok()) return Prefixed(name, info.status());
  if (!(info->flags & VFIO_DEVICE_FLAGS_PCI))
    return absl::FailedPreconditionError(absl::StrFormat(
        "%s: %s is not a PCI device (VFIO_DEVICE_FLAGS_PCI clear, flags %#x); only vfio-pci functions can be "
        "passed through",
        name, ops->name(), info->flags));
  if (info->num_regions <= kConfigRegion)
    return absl::FailedPreconditionError(
        absl::StrFormat("%s: %s has %u VFIO regions; a vfio-pci function has at least %u", name, ops->name(),
                        info->num_regions, kConfigRegion + 1));
  absl::StatusOr<RegionInfo> cfg = ops->GetRegionInfo(kConfigRegion);
  if (!cfg.ok()) return Prefixed(name, cfg.status());
  if (cfg->size < kConventionalConfigSize || !cfg->readable())
    return absl::FailedPreconditionError(absl::StrFormat(
        "%s: the config region of %s is %s%#x bytes; need a readable 256-byte PCI configuration space", name,
        ops->name(), cfg->readable() ? "" : "unreadable, ", cfg->size));

  // PCI config space: the 256-byte header area always, the extended space when the region has it.
  std::vector<uint8_t> host(kConfigSize, 0);
  if (absl::Status s = ops->RegionRead(kConfigRegion, 0, host.data(), kConventionalConfigSize); !s.ok())
    return Prefixed(name, s);
  if (cfg->size >= kConfigSize) {
    if (absl::Status s = ops->RegionRead(kConfigRegion, kConventionalConfigSize, host.data() + kConventionalConfigSize,
                                         kConfigSize - kConventionalConfigSize);
        !s.ok()) {
      ABSL_RAW_LOG(WARNING, "%s: reading the extended config space: %s; no extended capabilities", name.c_str(),
                   s.ToString().c_str());
      std::fill(host.begin() + kConventionalConfigSize, host.end(), 0);
    }
  }
  // The unfiltered config (sysfs): capabilities vfio-pci hides, PASID among them.
  std::vector<uint8_t> unfiltered;
  if (absl::StatusOr<std::vector<uint8_t>> u = ops->ReadUnfilteredConfig(); u.ok()) {
    unfiltered = *std::move(u);
    if (unfiltered.size() > kConfigSize) unfiltered.resize(kConfigSize);
  } else if (!absl::IsNotFound(u.status())) {
    ABSL_RAW_LOG(WARNING, "%s: reading the unfiltered config space: %s; capabilities hidden by vfio-pci (PASID) "
                 "stay hidden", name.c_str(), u.status().ToString().c_str());
  }

  const HostConfig hc(host);
  const uint16_t vendor = hc.Get16(kVendorId);
  if (vendor == 0xFFFF || vendor == 0)
    return absl::FailedPreconditionError(
        absl::StrFormat("%s: %s reads vendor ID %#06x: the function does not respond", name, ops->name(), vendor));
  // PCIe 6.0 §7.5.1.1.9: only type 0 (endpoint) headers; bridges cannot be passed through.
  if (const uint8_t type = hc.Get8(kHeaderType) & 0x7F; type != 0)
    return absl::FailedPreconditionError(absl::StrFormat(
        "%s: %s has header type %u; only type 0 functions (endpoints) can be passed through", name, ops->name(), type));
  const PciIdentity id{
      .vendor_id = vendor,
      .device_id = hc.Get16(kDeviceId),
      .class_code = hc.Get32(kRevisionId) >> 8,
      .revision = hc.Get8(kRevisionId),
      .subsystem_vendor_id = hc.Get16(kSubsystemVendorId),
      .subsystem_id = hc.Get16(kSubsystemId),
  };
  std::unique_ptr<VfioPciDevice> dev(new VfioPciDevice(std::move(name), id, std::move(ops)));
  dev->options_ = options;
  dev->can_reset_ = info->can_reset();
  {
    absl::MutexLock l(&dev->decode_mu_);
    dev->host_command_ = hc.Get16(kCommand);
    dev->host_memory_enabled_ = dev->host_command_ & kCommandMemory;
  }
  if (absl::Status s = dev->Init(host, unfiltered); !s.ok()) return Prefixed(dev->name(), s);
  return dev;
}

absl::Status VfioPciDevice::Init(const std::vector<uint8_t>& host_config, const std::vector<uint8_t>& unfiltered) {
  const HostConfig hc(host_config), uc(unfiltered);

  // BARs (PCIe 6.0 §7.5.1.2.1): kind from the host BAR's low bits, size from the VFIO region.
  std::array<std::optional<RegionInfo>, kNumBars> regions;
  for (unsigned i = 0; i < kNumBars; ++i) {
    absl::StatusOr<RegionInfo> ri = ops_->GetRegionInfo(i);
    if (!ri.ok()) return ri.status();
    if (ri->size == 0) continue;
    const uint32_t raw = hc.Get32(kBar0 + 4 * i);
    PciBarKind kind = PciBarKind::kMmio32;
    bool prefetchable = false;
    if (raw & kBarIoSpace) {
      kind = PciBarKind::kIo;
    } else {
      switch ((raw >> 1) & 0x3) {
        case 0:  // 32-bit
        case 1:  // "below 1 MiB" (PCI 2.x, reserved since): decode as 32-bit
          break;
        case 2:
          if (i + 1 >= kNumBars)
            return absl::FailedPreconditionError(
                absl::StrFormat("BAR%u is 64-bit but has no next BAR for its upper half", i));
          kind = PciBarKind::kMmio64;
          break;
        default:
          return absl::FailedPreconditionError(
              absl::StrFormat("BAR%u has the reserved memory type 11b (%#x)", i, raw));
      }
      prefetchable = raw & kBarPrefetchable;
    }
    if (!std::has_single_bit(ri->size))
      return absl::FailedPreconditionError(absl::StrFormat(
          "BAR%u: the VFIO region is %#x bytes, not a power of two, so it cannot be presented as a BAR", i, ri->size));
    if (absl::StatusOr<PciBar*> b = AddBar(i, kind, ri->size, prefetchable); !b.ok())
      return absl::FailedPreconditionError(absl::StrFormat("BAR%u (%s, %#x bytes): %s", i,
                                                           kind == PciBarKind::kIo ? "I/O" : "memory", ri->size,
                                                           b.status().message()));
    regions[i] = *std::move(ri);
    if (kind == PciBarKind::kMmio64) ++i;  // the upper half
  }

  // Extended capabilities, from the VFIO config region or, when vfio-pci hides them, the
  // unfiltered config.
  struct Found {
    uint16_t offset;
    const HostConfig* config;
  };
  auto find_ext = [&](uint16_t id) -> std::optional<Found> {
    if (std::optional<uint16_t> o = hc.FindExtCap(id)) return Found{*o, &hc};
    if (std::optional<uint16_t> o = uc.FindExtCap(id)) return Found{*o, &uc};
    return std::nullopt;
  };

  // PCI Express capability (§7.5.3).
  if (std::optional<uint16_t> po = hc.FindCap(kCapIdPcie)) {
    const uint16_t caps = hc.Get16(*po + pcie::kCaps);
    const unsigned type = (caps >> 4) & 0xF;
    if (type != 0x0 && type != 0x1 && type != 0x9)
      return absl::FailedPreconditionError(absl::StrFormat(
          "PCI Express device/port type %#x is not an endpoint; only endpoints can be passed through", type));
    PcieCapConfig pc;
    // Endpoints are shown as RC Integrated Endpoints: the function sits on root bus 0 without a
    // Root Port (see the header).
    pc.type = PcieDeviceType::kRcIntegratedEndpoint;
    pc.devcap = hc.Get32(*po + pcie::kDevCap) & ~pcie::kDevCapFlr;
    pc.devcap2 = (caps & 0xF) >= 2 ? hc.Get32(*po + pcie::kDevCap2) & kDevCap2Kept : 0;
    // PASID on an RCiEP needs End-End TLP prefixes (Linux: pci_enable_pasid needs eetlp_prefix).
    if (find_ext(kExtCapIdPasid)) pc.devcap2 |= pcie::kDevCap2EndEndTlpPrefix;
    pc.flr = can_reset_;  // FLR → VFIO_DEVICE_RESET
    absl::StatusOr<uint16_t> off = AddPcieCapability(config(), pc);
    if (!off.ok()) return off.status();
    pcie_ = *off;

    // ATS (§10.5.1), PRI (§10.5.2), PASID (§7.8.8): the host's capability values, emulated
    // control registers written through.
    if (std::optional<Found> f = find_ext(kExtCapIdAts)) {
      const uint16_t cap = f->config->Get16(f->offset + ats::kCap);
      absl::StatusOr<uint16_t> o =
          AddAtsCapability(config(), AtsCapConfig{.invalidate_queue_depth = static_cast<uint8_t>(cap & 0x1F),
                                                  .page_aligned_request = (cap & ats::kCapPageAlignedRequest) != 0,
                                                  .global_invalidate = (cap & ats::kCapGlobalInvalidate) != 0});
      if (!o.ok()) return o.status();
      ats_ = *o;
      host_ats_ = f->offset;
    }
    if (std::optional<Found> f = find_ext(kExtCapIdPri)) {
      absl::StatusOr<uint16_t> o = AddPriCapability(
          config(), PriCapConfig{.outstanding_capacity = f->config->Get32(f->offset + pri::kCapacity),
                                 .prg_response_pasid_required =
                                     (f->config->Get16(f->offset + pri::kStatus) & pri::kStatusPrgResponsePasidRequired) != 0});
      if (!o.ok()) return o.status();
      pri_ = *o;
      host_pri_ = f->offset;
    }
    if (std::optional<Found> f = find_ext(kExtCapIdPasid)) {
      const uint16_t cap = f->config->Get16(f->offset + pasid::kCap);
      absl::StatusOr<uint16_t> o = AddPasidCapability(
          config(), PasidCapConfig{.max_width = static_cast<uint8_t>(
                                       std::min<unsigned>((cap >> pasid::kCapMaxWidthShift) & 0x1F, 20)),
                                   .exec = (cap & pasid::kCapExec) != 0,
                                   .priv = (cap & pasid::kCapPriv) != 0});
      if (!o.ok()) return o.status();
      pasid_ = *o;
      host_pasid_ = f->offset;
    }
  }

  // MSI (§7.7.1): the host's Multiple Message Capable count.
  if (std::optional<uint16_t> mo = hc.FindCap(kCapIdMsi)) {
    const unsigned mmc = (hc.Get16(*mo + PciMsi::kControl) >> PciMsi::kControlMmcShift) & 0x7;
    host_msi_count_ = static_cast<uint16_t>(1u << std::min(mmc, 5u));  // 110b/111b are reserved
    if (absl::Status s = AddMsi(host_msi_count_); !s.ok()) return s;
  }

  // MSI-X (§7.7.2): the host's table size and table/PBA locations; both emulated.
  unsigned table_bir = kNumBars, pba_bir = kNumBars;
  uint64_t table_off = 0, table_end = 0, pba_off = 0, pba_end = 0;
  if (std::optional<uint16_t> mo = hc.FindCap(kCapIdMsix)) {
    const unsigned vectors = (hc.Get16(*mo + PciMsix::kControl) & 0x7FF) + 1;
    const uint32_t table = hc.Get32(*mo + PciMsix::kTable), pba = hc.Get32(*mo + PciMsix::kPba);
    table_bir = table & 0x7;
    pba_bir = pba & 0x7;
    table_off = table & ~0x7u;
    pba_off = pba & ~0x7u;
    if (absl::Status s = AddMsix(vectors, table_bir, static_cast<uint32_t>(table_off), pba_bir,
                                 static_cast<uint32_t>(pba_off));
        !s.ok())
      return absl::FailedPreconditionError(absl::StrFormat("MSI-X (%u vectors, table in BAR%u at %#x, PBA in BAR%u at "
                                                           "%#x) cannot be emulated: %s",
                                                           vectors, table_bir, table_off, pba_bir, pba_off,
                                                           s.message()));
    table_end = table_off + msix()->table_size_bytes();
    pba_end = pba_off + msix()->pba_size_bytes();
  }

  // Vendor-specific capabilities (PCI 3.0 §6.7, ID 09h; byte 2 is the length): the host's bytes,
  // read-only. A virtio function's structure locations live there (virtio 1.2 §4.1.4: common, notify,
  // ISR, device config in its BARs, which keep their offsets); without them a virtio driver finds no
  // modern interface ("leaving for legacy driver"). Guest writes are dropped, so virtio's
  // VIRTIO_PCI_CAP_PCI_CFG access window does nothing (Linux does not use it).
  for (uint16_t off : hc.FindCaps(kCapIdVendor)) {
    const uint8_t len = hc.Get8(off + 2);
    if (len < 3 || off + len > kConventionalConfigSize) {
      ABSL_RAW_LOG(WARNING, "%s: vendor-specific capability at %#x has length %u; not shown", name().c_str(), off, len);
      continue;
    }
    absl::StatusOr<uint16_t> o = config().AddCapability(kCapIdVendor, len);
    if (!o.ok())
      return absl::FailedPreconditionError(
          absl::StrFormat("vendor-specific capability at %#x (%u bytes): %s", off, len, o.status().message()));
    for (unsigned i = 2; i < len; ++i) config().Set8(*o + i, hc.Get8(off + i));
  }

  // BAR forwarding: every part of a BAR except the MSI-X table and PBA; mmapped where allowed.
  bool mmap_failure_logged = false;
  for (unsigned i = 0; i < kNumBars; ++i) {
    if (!regions[i]) continue;
    PciBar* b = bar(i);
    const uint64_t size = regions[i]->size;
    std::vector<Mapping> maps;
    if (!b->is_io() && (regions[i]->flags & VFIO_REGION_INFO_FLAG_MMAP)) {
      for (const MmapArea& a : regions[i]->mmap_areas) {
        if (a.size == 0 || a.offset > size || a.size > size - a.offset) continue;
        absl::StatusOr<void*> p = ops_->Mmap(i, a.offset, a.size);
        if (!p.ok()) {
          if (!mmap_failure_logged)
            ABSL_RAW_LOG(WARNING, "%s: mmap of BAR%u [%#llx, +%#llx): %s; using pread/pwrite", name().c_str(), i,
                         static_cast<unsigned long long>(a.offset), static_cast<unsigned long long>(a.size),
                         p.status().ToString().c_str());
          mmap_failure_logged = true;
          continue;
        }
        const Mapping m{i, a.offset, a.size, static_cast<uint8_t*>(*p)};
        mappings_.push_back(m);
        maps.push_back(m);
      }
    }
    std::vector<std::pair<uint64_t, uint64_t>> holes;
    if (table_bir == i) holes.emplace_back(table_off, table_end);
    if (pba_bir == i) holes.emplace_back(pba_off, pba_end);
    std::sort(holes.begin(), holes.end());
    auto add_window = [&](uint64_t base, uint64_t len) -> absl::Status {
      windows_.push_back(std::make_unique<BarWindow>(*this, i, base, len, maps));
      return b->AddRegion(base, len, windows_.back().get(), absl::StrFormat("vfio-bar%u", i));
    };
    uint64_t pos = 0;
    for (const auto& [start, end] : holes) {
      if (start > pos)
        if (absl::Status s = add_window(pos, start - pos); !s.ok()) return s;
      pos = std::max(pos, end);
    }
    if (pos < size)
      if (absl::Status s = add_window(pos, size - pos); !s.ok()) return s;
  }

  // Power-on values for Reset; and the host Command register in line with the guest's (0).
  power_on_.resize(kConfigSize);
  for (uint32_t off = 0; off < kConfigSize; off += 4) {
    const uint32_t v = config().Get32(off);
    for (uint32_t k = 0; k < 4; ++k) power_on_[off + k] = static_cast<uint8_t>(v >> (8 * k));
  }
  SyncCommand();
  return absl::OkStatus();
}

VfioPciDevice::~VfioPciDevice() {
  {
    absl::MutexLock l(&irq_mu_);
    StopInterruptsLocked();
  }
  // Command 0: the BARs leave the buses before the windows and mappings behind them go away.
  ResetFunction();
  {
    absl::MutexLock l(&decode_mu_);
    host_memory_enabled_ = false;
  }
  for (const Mapping& m : mappings_) ops_->Unmap(m.ptr, m.size);
  mappings_.clear();
}

// ---- Config space ---------------------------------------------------------------------------

void VfioPciDevice::OnConfigRead(uint64_t, size_t) {}

void VfioPciDevice::OnConfigWrite(uint64_t offset, size_t size) {
  if (size == 0 || offset >= kConfigSize) return;
  const uint64_t end = std::min<uint64_t>(offset + std::min<uint64_t>(size, kConfigSize), kConfigSize);
  // Command (§7.5.1.1.3): decode and Bus Master Enable go to the device.
  if (Touches(offset, end, kCommand, 2)) SyncCommand();
  // MSI/MSI-X Enable (and MSI Multiple Message Enable) decide the host interrupt set-up.
  if ((msix() && Touches(offset, end, msix()->offset() + PciMsix::kControl, 2)) ||
      (msi() && Touches(offset, end, msi()->offset() + PciMsi::kControl, 2)))
    UpdateInterrupts();
  // ATS Control (§10.5.1.3): kept in the emulated copy and written to the device (vfio-pci 6.12
  // drops it: the host IOMMU driver owns ATS). PASID Control (§7.8.8.3) stays emulated only:
  // vfio-pci hides the capability and would pass a write through raw, letting the guest clear the
  // PASID Enable the host's IOMMU driver set at probe (Linux: pci_enable_pasid in intel-iommu).
  if (ats_ && Touches(offset, end, ats_ + ats::kControl, 2))
    WriteThrough(ats_ + ats::kControl, host_ats_ + ats::kControl, 2, "writing ATS Control");
  if (pri_) {
    if (Touches(offset, end, pri_ + pri::kControl, 2)) {
      const uint16_t ctl = config().Get16(pri_ + pri::kControl);
      WriteThrough(pri_ + pri::kControl, host_pri_ + pri::kControl, 2, "writing PRI Control");
      // §10.5.2.2: Reset always reads 0. §10.5.2.3: Stopped is meaningful while Enable is clear;
      // the emulated function has no page requests outstanding of its own, so it is set then.
      config().UpdateBits(pri_ + pri::kControl, 2, 0, pri::kControlReset);
      if (ctl & pri::kControlEnable) {
        config().UpdateBits(pri_ + pri::kStatus, 2, 0, pri::kStatusStopped);
      } else {
        config().UpdateBits(pri_ + pri::kStatus, 2, pri::kStatusStopped, 0);
      }
    }
    if (Touches(offset, end, pri_ + pri::kAllocation, 4))
      WriteThrough(pri_ + pri::kAllocation, host_pri_ + pri::kAllocation, 4, "writing the PRI allocation");
  }
  // Initiate Function Level Reset (§7.5.3.4, §6.6.2) → VFIO_DEVICE_RESET. The bit is writable only
  // when FLR is advertised (the host can reset); Reset() clears it again.
  if (pcie_ && Touches(offset, end, pcie_ + pcie::kDevCtl, 2) &&
      (config().Get16(pcie_ + pcie::kDevCtl) & pcie::kDevCtlInitiateFlr)) {
    if (absl::Status s = Reset(/*keep_bars=*/true); !s.ok())
      ABSL_RAW_LOG(WARNING, "%s: function level reset: %s", name().c_str(), s.ToString().c_str());
  }
}

void VfioPciDevice::SyncCommand() {
  absl::MutexLock l(&decode_mu_);
  SyncCommandLocked();
}

void VfioPciDevice::SyncCommandLocked() {
  const uint16_t guest = config().Get16(kCommand) & kCommandForwarded;
  uint16_t host = host_command_;
  uint8_t b[2];
  if (absl::Status s = ops_->RegionRead(kConfigRegion, kCommand, b, 2); s.ok()) {
    host = static_cast<uint16_t>(b[0] | b[1] << 8);
  } else {
    NoteConfigError("reading the Command register", s);
  }
  const uint16_t want = static_cast<uint16_t>((host & ~kCommandForwarded) | guest);
  if (want != host) {
    b[0] = static_cast<uint8_t>(want);
    b[1] = static_cast<uint8_t>(want >> 8);
    if (absl::Status s = ops_->RegionWrite(kConfigRegion, kCommand, b, 2); !s.ok()) {
      NoteConfigError("writing the Command register", s);
      // Unknown outcome: use the mappings only if decoding was and stays on.
      host_memory_enabled_ = host_memory_enabled_ && (host & kCommandMemory) && (guest & kCommandMemory);
      return;
    }
  }
  host_command_ = want;
  host_memory_enabled_ = want & kCommandMemory;
}

void VfioPciDevice::WriteThrough(uint16_t guest_off, uint16_t host_off, size_t size, const char* what) {
  const uint32_t v = config().Get(guest_off, size);
  uint8_t b[4];
  for (size_t i = 0; i < 4; ++i) b[i] = static_cast<uint8_t>(v >> (8 * i));
  if (absl::Status s = ops_->RegionWrite(kConfigRegion, host_off, b, size); !s.ok()) NoteConfigError(what, s);
}

void VfioPciDevice::NoteConfigError(const char* what, const absl::Status& s) {
  config_errors_.fetch_add(1, std::memory_order_relaxed);
  if (!config_error_logged_.exchange(true))
    ABSL_RAW_LOG(WARNING, "%s: %s: %s (further host config errors are only counted)", name().c_str(), what,
                 s.ToString().c_str());
}

// ---- Interrupts -----------------------------------------------------------------------------

void VfioPciDevice::UpdateInterrupts() {
  // Decided under irq_mu_ so that, of racing config writes, the last one to get here wins.
  absl::MutexLock l(&irq_mu_);
  uint32_t want = kNoIrq;
  unsigned count = 0;
  if (msix() && msix()->enabled()) {
    want = kIrqMsix;
    count = msix()->vectors();
  } else if (msi() && msi()->enabled()) {
    // Multiple Message Enable (§7.7.1.2), clamped to what the host function has.
    const unsigned mme = (config().Get16(msi()->offset() + PciMsi::kControl) >> PciMsi::kControlMmeShift) & 0x7;
    want = kIrqMsi;
    count = std::min<unsigned>(host_msi_count_, 1u << std::min(mme, 5u));
  }
  if (want == host_irq_index_ && count == host_irq_count_) return;
  StopInterruptsLocked();
  if (want == kNoIrq) return;
  std::vector<int> fds;
  for (unsigned v = 0; v < count; ++v) {
    const int fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (fd < 0) {
      NoteConfigError("creating interrupt eventfds", absl::ErrnoToStatus(errno, "eventfd"));
      for (int f : fds) close(f);
      return;
    }
    fds.push_back(fd);
  }
  auto fwd = std::make_unique<IrqForwarder>(*this, std::move(fds));  // owns the fds from here
  if (absl::Status s = ops_->SetIrqEventfds(want, 0, fwd->fds()); !s.ok()) {
    NoteConfigError(want == kIrqMsix ? "enabling MSI-X on the host" : "enabling MSI on the host", s);
    return;
  }
  if (options_.forwarding_thread) {
    if (absl::Status s = fwd->StartThread(); !s.ok()) {
      NoteConfigError("starting the interrupt forwarder", s);
      if (absl::Status d = ops_->DisableIrqs(want); !d.ok()) NoteConfigError("disabling host interrupts", d);
      return;
    }
  }
  forwarder_ = std::move(fwd);
  host_irq_index_ = want;
  host_irq_count_ = count;
}

void VfioPciDevice::StopInterruptsLocked() {
  if (!forwarder_) return;
  forwarder_->Stop();
  if (absl::Status s = ops_->DisableIrqs(host_irq_index_); !s.ok()) NoteConfigError("disabling host interrupts", s);
  forwarder_.reset();  // closes the eventfds
  host_irq_index_ = kNoIrq;
  host_irq_count_ = 0;
}

uint64_t VfioPciDevice::ForwardPendingInterrupts() {
  std::vector<unsigned> fired;
  {
    absl::MutexLock l(&irq_mu_);
    if (forwarder_) forwarder_->Collect(&fired);
  }
  for (unsigned v : fired) {  // outside irq_mu_
    SignalVector(v);
    forwarded_.fetch_add(1, std::memory_order_relaxed);
  }
  return fired.size();
}

// ---- Reset ----------------------------------------------------------------------------------

absl::Status VfioPciDevice::Reset(bool keep_bars) {
  absl::MutexLock reset_lock(&reset_mu_);
  {
    absl::MutexLock l(&irq_mu_);
    StopInterruptsLocked();
  }
  std::array<uint32_t, kNumBars> bars;
  for (unsigned i = 0; i < kNumBars; ++i) bars[i] = config().Get32(kBar0 + 4 * i);
  absl::Status status;
  {
    // vfio-pci zaps the BAR mappings while it resets; stay off them until Command is synced.
    absl::MutexLock l(&decode_mu_);
    host_memory_enabled_ = false;
    status = can_reset_ ? ops_->Reset()
                        : absl::FailedPreconditionError(absl::StrFormat(
                              "%s: %s has no reset method (VFIO_DEVICE_FLAGS_RESET clear)", name(), ops_->name()));
  }
  // The emulated function: header, MSI, MSI-X (PciDevice, §6.6.2), then the capabilities ionest
  // owns back to their power-on values.
  ResetFunction();
  if (keep_bars)
    for (unsigned i = 0; i < kNumBars; ++i) config().Set32(kBar0 + 4 * i, bars[i]);
  auto restore = [&](uint16_t off, uint16_t len) {
    for (uint32_t k = off; k < uint32_t{off} + len && k < power_on_.size(); ++k) config().Set8(k, power_on_[k]);
  };
  if (pcie_) {
    if (keep_bars) {
      ResetPcieCapabilityForFlr(config(), pcie_);  // §6.6.2: Max_Payload_Size, Aux Power PM kept
    } else {
      restore(pcie_, pcie::kCapSize);  // conventional reset: everything
    }
  }
  if (ats_) restore(ats_, ats::kCapSize);
  if (pri_) restore(pri_, pri::kCapSize);
  if (pasid_) restore(pasid_, pasid::kCapSize);
  SyncCommand();       // Command is 0: decoding and bus mastering off on the host too
  UpdateInterrupts();  // MSI/MSI-X are disabled: nothing to set up (reconciles racing writes)
  return status;
}

}  // namespace ionest::vfio
