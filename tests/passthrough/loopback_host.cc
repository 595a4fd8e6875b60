#include "tests/passthrough/loopback_host.h"

#include <fcntl.h>
#include <linux/vfio.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "devices/pci_express_caps.h"
#include "devices/pci_msi.h"
#include "devices/pci_msix.h"
#include "devices/pci_regs.h"
#include "devices/vfio/vfio_cdev.h"
#include "iommu/iommufd/iommufd_kernel.h"

namespace ionest::passthrough_test {

using iommufd_testing::FakeIommufd;

namespace {
constexpr uint32_t kNumRegions = 9;  // BAR0-5, ROM, config, VGA
constexpr uint32_t kNumIrqs = 5;     // INTx, MSI, MSI-X, ERR, REQ
constexpr uint64_t kConfigRegionSize = 4096;
constexpr uint32_t kDevIdBase = 0x100;  // iommufd device IDs handed out by the loopback
}  // namespace

// ---- HostIommu ------------------------------------------------------------------------------

// IommufdOps forwarding to the fake under the HostIommu's lock.
class HostIommu::Ops final : public iommufd::IommufdOps {
 public:
  explicit Ops(HostIommu& h) : h_(h) {}
  int fd() const override { return -1; }
  absl::StatusOr<uint32_t> AllocIoas() override {
    absl::MutexLock l(&h_.mu_);
    absl::StatusOr<uint32_t> id = h_.fake_.AllocIoas();
    if (id.ok()) h_.fake_.AddReserved(*id, kMsiWindow);  // the host VT-d driver's MSI window
    return id;
  }
  absl::Status MapFixed(uint32_t ioas_id, uint64_t iova, void* va, uint64_t len, bool writeable) override {
    absl::MutexLock l(&h_.mu_);
    return h_.fake_.MapFixed(ioas_id, iova, va, len, writeable);
  }
  absl::Status Unmap(uint32_t ioas_id, uint64_t iova, uint64_t len) override {
    absl::MutexLock l(&h_.mu_);
    return h_.fake_.Unmap(ioas_id, iova, len);
  }
  absl::StatusOr<std::vector<iommufd::IovaRange>> AllowedIovaRanges(uint32_t ioas_id) override {
    absl::MutexLock l(&h_.mu_);
    return h_.fake_.AllowedIovaRanges(ioas_id);
  }
  absl::StatusOr<iommufd::HostIommuInfo> GetHwInfo(uint32_t dev_id) override {
    absl::MutexLock l(&h_.mu_);
    return h_.fake_.GetHwInfo(dev_id);
  }
  absl::Status Destroy(uint32_t object_id) override {
    absl::MutexLock l(&h_.mu_);
    // The kernel refuses to destroy an IOAS a device is still attached to.
    if (h_.attached_ == object_id)
      return iommufd::IommufdErrno(EBUSY, absl::StrFormat("IOMMU_DESTROY id %u (device attached)", object_id));
    return h_.fake_.Destroy(object_id);
  }
  absl::StatusOr<uint32_t> AllocHwpt(const iommufd::HwptAllocRequest& request) override {
    absl::MutexLock l(&h_.mu_);
    return h_.fake_.AllocHwpt(request);
  }
  iommufd::InvalidateResult InvalidateVtdS1(uint32_t hwpt_id,
                                            std::span<const iommufd::VtdS1Invalidation> entries) override {
    absl::MutexLock l(&h_.mu_);
    return h_.fake_.InvalidateVtdS1(hwpt_id, entries);
  }
  absl::StatusOr<iommufd::FaultQueue> AllocFaultQueue() override {
    absl::MutexLock l(&h_.mu_);
    return h_.fake_.AllocFaultQueue();
  }
  absl::StatusOr<std::vector<iommufd::HostPageFault>> ReadFaults(int fault_fd, size_t max) override {
    absl::MutexLock l(&h_.mu_);
    return h_.fake_.ReadFaults(fault_fd, max);
  }
  absl::Status WriteResponses(int fault_fd, std::span<const iommufd::HostPageResponse> responses) override {
    absl::MutexLock l(&h_.mu_);
    return h_.fake_.WriteResponses(fault_fd, responses);
  }

 private:
  HostIommu& h_;
};

std::unique_ptr<iommufd::IommufdOps> HostIommu::NewOps() { return std::make_unique<Ops>(*this); }

void HostIommu::Attach(std::optional<uint32_t> ioas) {
  absl::MutexLock l(&mu_);
  attached_ = ioas;
}

std::optional<FakeIommufd::Mapping> HostIommu::Lookup(uint64_t iova) {
  absl::MutexLock l(&mu_);
  if (!attached_) return std::nullopt;
  for (const FakeIommufd::Mapping& m : fake_.mappings()) {
    if (m.ioas_id == *attached_ && iova >= m.iova && iova - m.iova < m.len) return m;
  }
  return std::nullopt;
}

bool HostIommu::IoasExists(uint32_t id) {
  absl::MutexLock l(&mu_);
  return fake_.ioas_exists(id);
}

void HostIommu::SetHwInfo(uint32_t dev_id) {
  absl::MutexLock l(&mu_);
  fake_.SetHwInfo(dev_id, iommufd::HostIommuInfo{});  // IOMMU_HW_INFO_TYPE_NONE
}

size_t HostIommu::live_objects() {
  absl::MutexLock l(&mu_);
  return fake_.live_objects();
}

std::vector<FakeIommufd::Mapping> HostIommu::mappings() {
  absl::MutexLock l(&mu_);
  return fake_.mappings();
}

// ---- HostVaMemory / IoasDmaSpace --------------------------------------------------------------

absl::Status HostVaMemory::Read(uint64_t va, void* dst, size_t len) const {
  if (iommu_.WithPinned(va, len, [&](uint8_t* p) { std::memcpy(dst, p, len); })) return absl::OkStatus();
  return absl::OutOfRangeError(absl::StrFormat("host VA [%#x, +%#x) is not pinned", va, len));
}

absl::Status HostVaMemory::Write(uint64_t va, const void* src, size_t len) {
  if (iommu_.WithPinned(va, len, [&](uint8_t* p) { std::memcpy(p, src, len); })) return absl::OkStatus();
  return absl::OutOfRangeError(absl::StrFormat("host VA [%#x, +%#x) is not pinned", va, len));
}

absl::StatusOr<bool> HostVaMemory::CompareExchange64(uint64_t va, uint64_t* expected, uint64_t desired) {
  if (va % 8) return absl::InvalidArgumentError("unaligned compare-exchange");
  bool swapped = false;
  if (!iommu_.WithPinned(va, 8, [&](uint8_t* p) {
        swapped = __atomic_compare_exchange_n(reinterpret_cast<uint64_t*>(p), expected, desired, false,
                                              __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST);
      }))
    return absl::OutOfRangeError(absl::StrFormat("host VA %#x is not pinned", va));
  return swapped;
}

Translation IoasDmaSpace::Translate(uint64_t iova, uint64_t len, uint32_t access, const DmaAttrs& attrs) {
  Translation t;
  std::optional<FakeIommufd::Mapping> m = iommu_.Lookup(iova);
  const uint32_t perms = m ? (kDmaRead | (m->writeable ? kDmaWrite : 0u)) : 0u;
  if (!m || (access & ~perms & (kDmaRead | kDmaWrite))) {
    t.fault = DmaFault{m ? DmaFaultKind::kPermission : DmaFaultKind::kNotPresent, iova, access, attrs.pasid, 0,
                       /*recorded=*/true};
    return t;
  }
  const uint64_t off = iova - m->iova;
  t.regions.push_back({iova, reinterpret_cast<uint64_t>(m->va) + off + skew_, std::min(len, m->len - off), perms});
  return t;
}

// ---- HostInterruptController --------------------------------------------------------------------

absl::Status HostInterruptController::SendMsi(const MsiMessage& msi) {
  absl::MutexLock l(&mu_);
  const uint64_t v = uint64_t{msi.data} - kHostMsiData;
  if (msi.address != kHostMsiAddress || msi.data < kHostMsiData || v >= fds_.size() || fds_[v] < 0) {
    ++stray_;
    return absl::OkStatus();
  }
  const uint64_t one = 1;
  if (write(fds_[v], &one, sizeof one) != sizeof one) ++stray_;
  return absl::OkStatus();
}

absl::Status HostInterruptController::Set(uint32_t start, const std::vector<int>& fds) {
  absl::MutexLock l(&mu_);
  if (fds_.size() < start + fds.size()) fds_.resize(start + fds.size(), -1);
  for (size_t i = 0; i < fds.size(); ++i) {
    int& slot = fds_[start + i];
    if (slot >= 0) close(slot);
    slot = -1;
    if (fds[i] < 0) continue;
    slot = fcntl(fds[i], F_DUPFD_CLOEXEC, 0);
    if (slot < 0) return vfio::VfioErrno(errno, "dup of an interrupt eventfd");
  }
  return absl::OkStatus();
}

void HostInterruptController::Clear() {
  absl::MutexLock l(&mu_);
  for (int fd : fds_)
    if (fd >= 0) close(fd);
  fds_.clear();
}

bool HostInterruptController::any() {
  absl::MutexLock l(&mu_);
  return std::any_of(fds_.begin(), fds_.end(), [](int fd) { return fd >= 0; });
}

uint64_t HostInterruptController::stray() {
  absl::MutexLock l(&mu_);
  return stray_;
}

// ---- LoopbackWorld --------------------------------------------------------------------------

LoopbackWorld::LoopbackWorld(const LoopbackOptions& options) : dma_(memory_, iommu_, options.translate_skew) {}

absl::StatusOr<std::unique_ptr<LoopbackWorld>> LoopbackWorld::Create(const LoopbackOptions& options) {
  std::unique_ptr<LoopbackWorld> w(new LoopbackWorld(options));
  w->pci_ = std::make_unique<PciHost>(w->mmio_, w->pio_, w->irqs_, w->provider_);
  if (absl::Status s = w->pci_->Register(); !s.ok()) return s;
  w->device_ = std::make_unique<DmaTestDevice>("ionest-dmatest (outer)");
  if (!w->device_->init_status().ok()) return w->device_->init_status();
  if (absl::Status s = w->pci_->AddDevice(kOuterDevfn, *w->device_); !s.ok()) return s;
  // The host firmware/kernel: BARs assigned, memory decoding on.
  if (absl::Status s = w->pci_->AssignResources(); !s.ok()) return s;
  if (!w->device_->BarMappedAt(0)) return absl::InternalError("outer BAR0 not mapped after AssignResources");
  return w;
}

LoopbackWorld::~LoopbackWorld() { device_.reset(); }

uint32_t LoopbackWorld::ConfigRead(uint16_t reg, size_t size) {
  uint8_t b[4] = {};
  pci_->ConfigRead(kOuterDevfn, reg, b, size);
  uint32_t v = 0;
  std::memcpy(&v, b, size);
  return v;
}

void LoopbackWorld::ConfigWrite(uint16_t reg, uint32_t value, size_t size) {
  uint8_t b[4];
  std::memcpy(b, &value, 4);
  pci_->ConfigWrite(kOuterDevfn, reg, b, size);
}

// ---- LoopbackVfioDevice (vfio-pci) ------------------------------------------------------------

LoopbackVfioDevice::LoopbackVfioDevice(LoopbackWorld& world)
    : world_(world), name_(absl::StrCat(kLoopbackCdev, " (", kLoopbackBdf, ")")) {
  world_.open_ = true;
  ++world_.opens_;
}

LoopbackVfioDevice::~LoopbackVfioDevice() {
  // vfio_pci_core_close_device: interrupts off, bus mastering off, reset; then unbind.
  DisableIrqs(vfio::kIrqMsix).IgnoreError();
  world_.ConfigWrite(pci::kCommand, world_.ConfigRead(pci::kCommand, 2) & ~pci::kCommandBusMaster, 2);
  Reset().IgnoreError();
  if (attached_) DetachPt().IgnoreError();
  world_.bound_ = false;
  world_.open_ = false;
}

absl::StatusOr<uint32_t> LoopbackVfioDevice::BindIommufd(int iommufd) {
  if (dev_id_)
    return vfio::VfioErrno(EINVAL, absl::StrFormat("VFIO_DEVICE_BIND_IOMMUFD (iommufd %d) on %s", iommufd, name_));
  dev_id_ = kDevIdBase + world_.opens_;
  world_.iommu_.SetHwInfo(*dev_id_);
  world_.bound_ = true;
  return *dev_id_;
}

absl::Status LoopbackVfioDevice::AttachPt(uint32_t pt_id) {
  const std::string what = absl::StrFormat("VFIO_DEVICE_ATTACH_IOMMUFD_PT (pt %u) on %s", pt_id, name_);
  if (!dev_id_) return vfio::VfioErrno(EINVAL, what);
  if (!world_.iommu_.IoasExists(pt_id)) return vfio::VfioErrno(ENOENT, what);
  world_.iommu_.Attach(pt_id);
  attached_ = pt_id;
  return absl::OkStatus();
}

absl::Status LoopbackVfioDevice::DetachPt() {
  if (!attached_) return vfio::VfioErrno(EINVAL, absl::StrCat("VFIO_DEVICE_DETACH_IOMMUFD_PT on ", name_));
  world_.iommu_.Attach(std::nullopt);  // the device's DMA is blocked from here
  attached_.reset();
  return absl::OkStatus();
}

absl::Status LoopbackVfioDevice::AttachPasid(uint32_t pasid, uint32_t pt_id) {
  const std::string what =
      absl::StrFormat("VFIO_DEVICE_ATTACH_IOMMUFD_PT (pasid %u, pt %u) on %s", pasid, pt_id, name_);
  if (!dev_id_) return vfio::VfioErrno(EINVAL, what);
  pasids_[pasid] = pt_id;  // recorded only; DMA is translated with the RID's IOAS whatever its PASID
  return absl::OkStatus();
}

absl::Status LoopbackVfioDevice::DetachPasid(uint32_t pasid) {
  pasids_.erase(pasid);  // vfio's pasid_detach_ioas ignores a PASID that is not attached
  return absl::OkStatus();
}

absl::StatusOr<vfio::DeviceInfo> LoopbackVfioDevice::GetInfo() {
  vfio::DeviceInfo info;
  info.flags = VFIO_DEVICE_FLAGS_PCI;
  const std::optional<uint16_t> pcie = world_.device().config().FindCapability(0x10);
  if (pcie && (world_.ConfigRead(*pcie + pcie::kDevCap, 4) & pcie::kDevCapFlr)) info.flags |= VFIO_DEVICE_FLAGS_RESET;
  info.num_regions = kNumRegions;
  info.num_irqs = kNumIrqs;
  return info;
}

absl::StatusOr<vfio::RegionInfo> LoopbackVfioDevice::GetRegionInfo(uint32_t index) {
  if (index >= kNumRegions)
    return vfio::VfioErrno(EINVAL, absl::StrFormat("VFIO_DEVICE_GET_REGION_INFO (index %u) on %s", index, name_));
  vfio::RegionInfo r;
  r.index = index;
  if (index == vfio::kConfigRegion) {
    r.flags = VFIO_REGION_INFO_FLAG_READ | VFIO_REGION_INFO_FLAG_WRITE;
    r.size = kConfigRegionSize;
  } else if (index < vfio::kNumBarRegions) {
    if (PciBar* bar = world_.device().bar(index)) {
      r.flags = VFIO_REGION_INFO_FLAG_READ | VFIO_REGION_INFO_FLAG_WRITE;  // no MMAP: pread/pwrite only
      r.size = bar->size();
    }
  }
  return r;  // ROM, VGA, upper halves of 64-bit BARs: size 0
}

absl::StatusOr<vfio::IrqInfo> LoopbackVfioDevice::GetIrqInfo(uint32_t index) {
  vfio::IrqInfo i;
  i.index = index;
  i.flags = VFIO_IRQ_INFO_EVENTFD;
  switch (index) {
    case vfio::kIrqIntx:
      i.flags |= VFIO_IRQ_INFO_MASKABLE | VFIO_IRQ_INFO_AUTOMASKED;
      i.count = world_.ConfigRead(pci::kInterruptPin, 1) ? 1 : 0;
      break;
    case vfio::kIrqMsi:
      i.flags |= VFIO_IRQ_INFO_NORESIZE;
      if (PciMsi* msi = world_.device().msi())
        i.count = 1u << ((world_.ConfigRead(msi->offset() + PciMsi::kControl, 2) >> PciMsi::kControlMmcShift) & 7);
      break;
    case vfio::kIrqMsix:
      i.flags |= VFIO_IRQ_INFO_NORESIZE;
      i.count = world_.device().msix() ? world_.device().msix()->vectors() : 0;
      break;
    case VFIO_PCI_ERR_IRQ_INDEX:
    case VFIO_PCI_REQ_IRQ_INDEX:
      i.count = 1;
      break;
    default:
      return vfio::VfioErrno(EINVAL, absl::StrFormat("VFIO_DEVICE_GET_IRQ_INFO (index %u) on %s", index, name_));
  }
  return i;
}

absl::Status LoopbackVfioDevice::BarAccess(bool write, uint32_t index, uint64_t offset, uint8_t* data, size_t len) {
  const std::string what =
      absl::StrFormat("%s of BAR%u [%#x, +%#x) on %s", write ? "pwrite" : "pread", index, offset, len, name_);
  PciBar* bar = world_.device().bar(index);
  if (!bar || offset > bar->size() || len > bar->size() - offset) return vfio::VfioErrno(EINVAL, what);
  // vfio-pci refuses BAR access while memory decoding is off (__vfio_pci_memory_enabled).
  const std::optional<uint64_t> base = world_.device().BarMappedAt(index);
  if (!base) return vfio::VfioErrno(EIO, what);
  IoBus& bus = bar->is_io() ? world_.pio_ : world_.mmio_;
  for (size_t done = 0; done < len;) {
    size_t n = 8;
    while (n > 1 && ((offset + done) % n || len - done < n)) n /= 2;
    const bool hit = write ? bus.Write(*base + offset + done, data + done, n) : bus.Read(*base + offset + done, data + done, n);
    if (!hit) return vfio::VfioErrno(EIO, what);
    done += n;
  }
  return absl::OkStatus();
}

absl::Status LoopbackVfioDevice::RegionRead(uint32_t index, uint64_t offset, void* data, size_t len) {
  uint8_t* p = static_cast<uint8_t*>(data);
  if (index < vfio::kNumBarRegions) return BarAccess(false, index, offset, p, len);
  if (index != vfio::kConfigRegion || offset > kConfigRegionSize || len > kConfigRegionSize - offset)
    return vfio::VfioErrno(EINVAL, absl::StrFormat("pread of region %u [%#x, +%#x) on %s", index, offset, len, name_));
  // Config space passed through raw, in naturally aligned pieces (vfio_config_do_rw).
  for (size_t done = 0; done < len;) {
    size_t n = 4;
    while (n > 1 && ((offset + done) % n || len - done < n)) n /= 2;
    world_.pci().ConfigRead(kOuterDevfn, static_cast<uint32_t>(offset + done), p + done, n);
    done += n;
  }
  return absl::OkStatus();
}

absl::Status LoopbackVfioDevice::RegionWrite(uint32_t index, uint64_t offset, const void* data, size_t len) {
  uint8_t* p = const_cast<uint8_t*>(static_cast<const uint8_t*>(data));
  if (index < vfio::kNumBarRegions) return BarAccess(true, index, offset, p, len);
  if (index != vfio::kConfigRegion || offset > kConfigRegionSize || len > kConfigRegionSize - offset)
    return vfio::VfioErrno(EINVAL, absl::StrFormat("pwrite of region %u [%#x, +%#x) on %s", index, offset, len, name_));
  for (size_t done = 0; done < len;) {
    size_t n = 4;
    while (n > 1 && ((offset + done) % n || len - done < n)) n /= 2;
    world_.pci().ConfigWrite(kOuterDevfn, static_cast<uint32_t>(offset + done), p + done, n);
    done += n;
  }
  return absl::OkStatus();
}

absl::StatusOr<void*> LoopbackVfioDevice::Mmap(uint32_t index, uint64_t offset, uint64_t len) {
  return vfio::VfioErrno(EINVAL, absl::StrFormat("mmap of region %u on %s (no MMAP flag)", index, name_));
}

absl::Status LoopbackVfioDevice::SetIrqEventfds(uint32_t index, uint32_t start, std::span<const int> fds) {
  const std::string what = absl::StrFormat("VFIO_DEVICE_SET_IRQS (index %u, start %u, count %u) on %s", index, start,
                                           fds.size(), name_);
  PciMsix* msix = world_.device().msix();
  if (index != vfio::kIrqMsix || !msix || start + fds.size() > msix->vectors()) return vfio::VfioErrno(EINVAL, what);
  // The host kernel's MSI-X set-up (pci_alloc_irq_vectors + vfio_msi_set_vector_signal): one message
  // per vector in the outer table, unmasked, MSI-X enabled.
  const uint32_t table = world_.ConfigRead(msix->offset() + PciMsix::kTable, 4);
  const std::optional<uint64_t> bar = world_.device().BarMappedAt(table & 7);
  if (!bar) return vfio::VfioErrno(EIO, what + ": MSI-X table BAR not decoded");
  if (absl::Status s = world_.irqs().Set(start, std::vector<int>(fds.begin(), fds.end())); !s.ok()) return s;
  for (size_t i = 0; i < fds.size(); ++i) {
    const uint32_t v = start + static_cast<uint32_t>(i);
    const uint32_t entry[4] = {static_cast<uint32_t>(kHostMsiAddress), static_cast<uint32_t>(kHostMsiAddress >> 32),
                               kHostMsiData + v, fds[i] < 0 ? 1u : 0u};
    for (int w = 0; w < 4; ++w)
      world_.mmio().Write(*bar + (table & ~7u) + v * 16 + w * 4, reinterpret_cast<const uint8_t*>(&entry[w]), 4);
  }
  world_.ConfigWrite(msix->offset() + PciMsix::kControl, PciMsix::kControlEnable, 2);
  return absl::OkStatus();
}

absl::Status LoopbackVfioDevice::DisableIrqs(uint32_t index) {
  if (index == vfio::kIrqMsix && world_.device().msix())
    world_.ConfigWrite(world_.device().msix()->offset() + PciMsix::kControl, 0, 2);
  world_.irqs().Clear();
  return absl::OkStatus();
}

absl::Status LoopbackVfioDevice::Reset() {
  // pci_save_state; pcie_flr; pci_restore_state (header: BARs and Command).
  const std::optional<uint16_t> pcie = world_.device().config().FindCapability(0x10);
  if (!pcie || !(world_.ConfigRead(*pcie + pcie::kDevCap, 4) & pcie::kDevCapFlr))
    return vfio::VfioErrno(ENOTTY, absl::StrCat("VFIO_DEVICE_RESET on ", name_));
  uint32_t bars[pci::kNumBars];
  for (unsigned i = 0; i < pci::kNumBars; ++i) bars[i] = world_.ConfigRead(pci::kBar0 + 4 * i, 4);
  const uint32_t command = world_.ConfigRead(pci::kCommand, 2);
  world_.ConfigWrite(*pcie + pcie::kDevCtl,
                     world_.ConfigRead(*pcie + pcie::kDevCtl, 2) | pcie::kDevCtlInitiateFlr, 2);
  for (unsigned i = 0; i < pci::kNumBars; ++i) world_.ConfigWrite(pci::kBar0 + 4 * i, bars[i], 4);
  world_.ConfigWrite(pci::kCommand, command, 2);
  return absl::OkStatus();
}

absl::StatusOr<std::vector<uint8_t>> LoopbackVfioDevice::ReadUnfilteredConfig() {
  std::vector<uint8_t> c(kConfigRegionSize);
  for (uint32_t off = 0; off < c.size(); off += 4) world_.pci().ConfigRead(kOuterDevfn, off, c.data() + off, 4);
  return c;
}

// ---- MakeLoopbackHost ------------------------------------------------------------------------

PassthroughHost MakeLoopbackHost(LoopbackWorld& world) {
  PassthroughHost h;
  h.locate = [](const vfio::VfioDeviceSpec& spec) -> absl::StatusOr<vfio::LocatedDevice> {
    if (spec.path == kLoopbackCdev || spec.host == kLoopbackBdf)
      return vfio::LocatedDevice{kLoopbackCdev, kLoopbackBdf, absl::StrCat("/sys/bus/pci/devices/", kLoopbackBdf)};
    return absl::NotFoundError(absl::StrFormat("no VFIO device %s on the loopback host (it has %s, %s)",
                                               spec.path.empty() ? spec.host : spec.path, kLoopbackCdev,
                                               kLoopbackBdf));
  };
  h.open_iommufd = [&world]() -> absl::StatusOr<std::unique_ptr<iommufd::IommufdOps>> {
    return world.iommu().NewOps();
  };
  h.open_device = [&world](const vfio::LocatedDevice& d) -> absl::StatusOr<std::unique_ptr<vfio::VfioDeviceOps>> {
    if (world.open())
      return vfio::VfioErrno(EBUSY, absl::StrFormat("opening %s (%s): device in use", d.cdev_path, d.bdf));
    return std::make_unique<LoopbackVfioDevice>(world);
  };
  h.explain_bind_error = [](const absl::Status& s, const vfio::LocatedDevice& d) {
    absl::Status out(s.code(), absl::StrFormat("%s (%s): %s", d.cdev_path, d.bdf, s.message()));
    s.ForEachPayload([&](absl::string_view url, const absl::Cord& payload) { out.SetPayload(url, payload); });
    return out;
  };
  return h;
}

}  // namespace ionest::passthrough_test
