#include "tests/passthrough/loopback_host.h"

#include <fcntl.h>
#include <linux/iommufd.h>
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
#include "iommu/first_stage.h"
#include "iommu/iommufd/iommufd_kernel.h"
#include "iommu/walk_types.h"

namespace ionest::passthrough_test {

using iommufd_testing::FakeIommufd;

namespace {
constexpr uint32_t kNumRegions = 9;  // BAR0-5, ROM, config, VGA
constexpr uint32_t kNumIrqs = 5;     // INTx, MSI, MSI-X, ERR, REQ
constexpr uint64_t kConfigRegionSize = 4096;
constexpr uint32_t kDevIdBase = 0x100;  // iommufd device IDs handed out by the loopback
}  // namespace

// ---- HostIommu ------------------------------------------------------------------------------

namespace {

// Guest-physical memory as the host IOMMU reaches it through one IOAS (the nest parent's): the
// first-stage table walk of a nested HWPT reads (and A/D-updates) the guest's tables here.
class IoasMemory final : public PhysMemory {
 public:
  explicit IoasMemory(std::vector<FakeIommufd::Mapping> maps) : maps_(std::move(maps)) {}
  absl::Status Read(uint64_t gpa, void* dst, size_t len) const override {
    uint8_t* p = Find(gpa, len);
    if (!p) return absl::OutOfRangeError(absl::StrFormat("IOVA [%#x, +%#x) not mapped", gpa, len));
    std::memcpy(dst, p, len);
    return absl::OkStatus();
  }
  absl::Status Write(uint64_t gpa, const void* src, size_t len) override {
    uint8_t* p = Find(gpa, len, /*write=*/true);
    if (!p) return absl::OutOfRangeError(absl::StrFormat("IOVA [%#x, +%#x) not mapped writeable", gpa, len));
    std::memcpy(p, src, len);
    return absl::OkStatus();
  }
  absl::StatusOr<bool> CompareExchange64(uint64_t gpa, uint64_t* expected, uint64_t desired) override {
    if (gpa % 8) return absl::InvalidArgumentError("unaligned compare-exchange");
    uint8_t* p = Find(gpa, 8, /*write=*/true);
    if (!p) return absl::OutOfRangeError(absl::StrFormat("IOVA %#x not mapped writeable", gpa));
    return __atomic_compare_exchange_n(reinterpret_cast<uint64_t*>(p), expected, desired, false, __ATOMIC_SEQ_CST,
                                       __ATOMIC_SEQ_CST);
  }

 private:
  uint8_t* Find(uint64_t gpa, uint64_t len, bool write = false) const {
    for (const FakeIommufd::Mapping& m : maps_) {
      if (gpa >= m.iova && len <= m.len && gpa - m.iova <= m.len - len && (!write || m.writeable))
        return static_cast<uint8_t*>(m.va) + (gpa - m.iova);
    }
    return nullptr;
  }
  std::vector<FakeIommufd::Mapping> maps_;
};

uint32_t PermOf(uint32_t access) {
  uint32_t perm = 0;
  if (access & kDmaRead) perm |= iommufd::kPermRead;
  if (access & kDmaWrite) perm |= iommufd::kPermWrite;
  if (access & kDmaExec) perm |= iommufd::kPermExec;
  if (access & kDmaPriv) perm |= iommufd::kPermPriv;
  return perm;
}

}  // namespace

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
    absl::Status s;
    {
      absl::MutexLock l(&h_.mu_);
      // The kernel refuses to destroy an IOAS or HWPT a device (or one of its PASIDs) is attached to.
      bool attached = h_.attached_ == object_id;
      for (const auto& [pasid, pt] : h_.pasid_attached_) attached |= pt == object_id;
      if (attached)
        return iommufd::IommufdErrno(EBUSY, absl::StrFormat("IOMMU_DESTROY id %u (device attached)", object_id));
      s = h_.fake_.Destroy(object_id);
      if (s.ok()) h_.iotlb_.erase(object_id);
    }
    h_.DeliverResponses();  // a destroyed fault queue answers its groups Invalid
    return s;
  }
  absl::StatusOr<uint32_t> AllocHwpt(const iommufd::HwptAllocRequest& request) override {
    absl::MutexLock l(&h_.mu_);
    return h_.fake_.AllocHwpt(request);
  }
  iommufd::InvalidateResult InvalidateVtdS1(uint32_t hwpt_id,
                                            std::span<const iommufd::VtdS1Invalidation> entries) override {
    absl::MutexLock l(&h_.mu_);
    iommufd::InvalidateResult r = h_.fake_.InvalidateVtdS1(hwpt_id, entries);
    if (!h_.ignore_s1_invalidations_) {
      for (uint32_t i = 0; i < r.done && i < entries.size(); ++i)
        h_.DropCachedLocked(hwpt_id, entries[i].addr, entries[i].npages);
    }
    return r;
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
    absl::Status s;
    {
      absl::MutexLock l(&h_.mu_);
      s = h_.fake_.WriteResponses(fault_fd, responses);
    }
    h_.DeliverResponses();
    return s;
  }

 private:
  HostIommu& h_;
};

std::unique_ptr<iommufd::IommufdOps> HostIommu::NewOps() {
  absl::MutexLock l(&mu_);
  if (!listening_) {
    listening_ = true;
    // The host IOMMU driver turns each answered group into the PRG response to the device
    // (iommufd_fault_fops_write → iommu_page_response → intel_page_response): its requester,
    // PASID and group index. Queued under mu_, delivered without it (DeliverResponses).
    fake_.SetResponseListener([this](const iommufd::HostPageFault& f, iommufd::HostResponseCode code)
                                  ABSL_NO_THREAD_SAFETY_ANALYSIS {
      PageResponse r;
      r.rid = kOuterDevfn;
      if (f.pasid_valid) r.pasid = f.pasid;
      r.group_index = static_cast<uint16_t>(f.grpid & 0x1ff);
      r.code = code == iommufd::HostResponseCode::kSuccess ? PageResponseCode::kSuccess
                                                            : PageResponseCode::kInvalidRequest;
      to_device_.push_back(r);
    });
  }
  return std::make_unique<Ops>(*this);
}

void HostIommu::Attach(std::optional<uint32_t> pt) {
  absl::MutexLock l(&mu_);
  attached_ = pt;
}

void HostIommu::AttachPasid(uint32_t pasid, std::optional<uint32_t> pt) {
  absl::MutexLock l(&mu_);
  if (pt) {
    pasid_attached_[pasid] = *pt;
  } else {
    pasid_attached_.erase(pasid);
  }
}

bool HostIommu::Attachable(uint32_t id) {
  absl::MutexLock l(&mu_);
  return fake_.ioas_exists(id) || fake_.hwpts().count(id) != 0;
}

void HostIommu::SetIgnoreS1Invalidations(bool ignore) {
  absl::MutexLock l(&mu_);
  ignore_s1_invalidations_ = ignore;
}

void HostIommu::SetResponseSink(std::function<void(const PageResponse&)> sink) {
  absl::MutexLock l(&mu_);
  sink_ = std::move(sink);
}

std::optional<uint32_t> HostIommu::AttachedLocked(std::optional<uint32_t> pasid) {
  if (!pasid) return attached_;
  auto it = pasid_attached_.find(*pasid);
  if (it == pasid_attached_.end()) return std::nullopt;
  return it->second;
}

std::optional<uint32_t> HostIommu::IoasOfLocked(uint32_t pt) {
  if (fake_.ioas_exists(pt)) return pt;
  auto h = fake_.hwpts().find(pt);
  if (h == fake_.hwpts().end() || h->second.kind == FakeIommufd::HwptKind::kNested) return std::nullopt;
  return h->second.request.pt_id;
}

HostIommu::Result HostIommu::ThroughIoasLocked(uint32_t ioas, uint64_t addr, uint64_t len_limit, uint32_t perms) {
  Result r;
  for (const FakeIommufd::Mapping& m : fake_.mappings()) {
    if (m.ioas_id != ioas || addr < m.iova || addr - m.iova >= m.len) continue;
    const uint64_t off = addr - m.iova;
    r.ok = true;
    r.va = reinterpret_cast<uint64_t>(m.va) + off;
    r.len = std::min(m.len - off, len_limit);
    r.perms = perms & (kDmaRead | (m.writeable ? uint32_t{kDmaWrite} : 0u));
    return r;
  }
  r.kind = DmaFaultKind::kNotPresent;
  return r;
}

HostIommu::Result HostIommu::Translate(std::optional<uint32_t> pasid, uint64_t iova, uint32_t access) {
  absl::MutexLock l(&mu_);
  Result blocked;
  blocked.kind = DmaFaultKind::kBlocked;
  std::optional<uint32_t> pt = AttachedLocked(pasid);
  if (!pt) return blocked;
  if (std::optional<uint32_t> ioas = IoasOfLocked(*pt)) return ThroughIoasLocked(*ioas, iova, UINT64_MAX, kDmaRwx);
  auto h = fake_.hwpts().find(*pt);
  if (h == fake_.hwpts().end() || !h->second.request.vtd_s1) return blocked;
  // Nested: the guest's first stage, its tables and output through the nest parent's IOAS.
  std::optional<uint32_t> parent_ioas = IoasOfLocked(h->second.request.pt_id);
  if (!parent_ioas) return blocked;
  const iommufd::VtdStage1& s1 = *h->second.request.vtd_s1;
  const bool priv = access & kDmaPriv;
  const uint32_t need = access & kDmaRwx;
  auto& cache = iotlb_[*pt];
  for (uint64_t size : {kPage4K, kPage2M, kPage1G}) {
    auto c = cache.find({priv, iova & ~(size - 1)});
    if (c != cache.end() && c->second.size == size && (need & ~c->second.perms) == 0) {
      ++stats_.iotlb_hits;
      const uint64_t off = iova & (size - 1);
      return SecondStageOfNestedLocked(*parent_ioas, c->second.output + off, size - off, c->second.perms);
    }
  }
  std::vector<FakeIommufd::Mapping> parent;
  for (const FakeIommufd::Mapping& m : fake_.mappings())
    if (m.ioas_id == *parent_ioas) parent.push_back(m);
  IoasMemory tables(std::move(parent));
  FirstStageConfig cfg;
  cfg.root = s1.pgtbl_addr;
  cfg.levels = s1.addr_width == 57 ? 5 : 4;
  cfg.sre = s1.sre;
  cfg.wpe = s1.wpe;
  cfg.eafe = s1.eafe;
  ++stats_.nested_walks;
  WalkResult w = WalkFirstStage(tables, cfg, iova, access);
  if (!w.ok) {
    Result f;
    f.kind = ToDmaFaultKind(w.fault.kind);
    if (f.kind == DmaFaultKind::kInvalidEntry || f.kind == DmaFaultKind::kBadAddress) f.kind = DmaFaultKind::kBlocked;
    return f;
  }
  cache[{priv, iova & ~(w.page_size - 1)}] = CachedTranslation{w.page_size, w.page_output(), w.perms};
  const uint64_t off = iova & (w.page_size - 1);
  return SecondStageOfNestedLocked(*parent_ioas, w.output, w.page_size - off, w.perms);
}

HostIommu::Result HostIommu::SecondStageOfNestedLocked(uint32_t ioas, uint64_t gpa, uint64_t len_limit,
                                                       uint32_t perms) {
  Result r = ThroughIoasLocked(ioas, gpa, len_limit, perms);
  // The nest parent maps all guest RAM, pinned: a miss there means the guest's first stage points
  // outside its RAM. The host records it as a non-recoverable DMA fault; no page request can fix it.
  if (!r.ok) r.kind = DmaFaultKind::kBlocked;
  return r;
}

void HostIommu::DropCachedLocked(uint32_t hwpt, uint64_t addr, uint64_t npages) {
  auto it = iotlb_.find(hwpt);
  if (it == iotlb_.end()) return;
  const bool all = npages == UINT64_MAX || npages > (uint64_t{1} << 52);
  const uint64_t last = all ? UINT64_MAX : addr + npages * kPage4K - 1;
  for (auto c = it->second.begin(); c != it->second.end();) {
    const uint64_t base = c->first.second;
    if (all || (base <= last && addr <= base + c->second.size - 1)) {
      c = it->second.erase(c);
      ++stats_.iotlb_invalidated;
    } else {
      ++c;
    }
  }
}

void HostIommu::OnPageRequest(const PageRequest& request) {
  {
    absl::MutexLock l(&mu_);
    ++stats_.page_requests;
    std::optional<uint32_t> pt = AttachedLocked(request.pasid);
    auto h = pt ? fake_.hwpts().find(*pt) : fake_.hwpts().end();
    const std::optional<uint32_t> fault_id =
        h != fake_.hwpts().end() && h->second.kind == FakeIommufd::HwptKind::kNested ? h->second.request.fault_id
                                                                                      : std::nullopt;
    const PartialKey key{request.pasid, request.group_index};
    if (!fault_id) {
      // No fault handler for the domain: the host driver answers the group Invalid itself
      // (Linux: intel_prq_report fails → handle_bad_prq_event with QI_RESP_INVALID).
      partial_.erase(key);
      if (request.last) {
        ++stats_.refused_groups;
        to_device_.push_back({kOuterDevfn, request.pasid, request.group_index, PageResponseCode::kInvalidRequest});
      }
    } else {
      iommufd::HostPageFault f;
      f.pasid_valid = request.pasid.has_value();
      f.pasid = request.pasid.value_or(0);
      f.dev_id = dev_id_;
      f.grpid = request.group_index;
      f.perm = PermOf(request.access);
      f.addr = request.addr;
      f.length = 4096;
      f.last = request.last;
      std::vector<iommufd::HostPageFault>& group = partial_[key];
      group.push_back(f);
      if (request.last) {
        // The whole group at once, one cookie (iopf_group: the partial list plus the last page).
        uint32_t cookie = 0;
        for (iommufd::HostPageFault& g : group) {
          g.cookie = cookie;
          cookie = fake_.InjectFault(*fault_id, g);
          ++stats_.faults_queued;
        }
        partial_.erase(key);
      }
    }
  }
  DeliverResponses();
}

void HostIommu::DeliverResponses() {
  std::vector<PageResponse> out;
  std::function<void(const PageResponse&)> sink;
  {
    absl::MutexLock l(&mu_);
    out.swap(to_device_);
    sink = sink_;
    stats_.responses_to_device += sink ? out.size() : 0;
  }
  if (!sink) return;
  for (const PageResponse& r : out) sink(r);
}

std::optional<FakeIommufd::Mapping> HostIommu::Lookup(uint64_t iova) {
  absl::MutexLock l(&mu_);
  if (!attached_ || !fake_.ioas_exists(*attached_)) return std::nullopt;
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
  // A VT-d host with nested translation (ECAP.NEST) and 20-bit PASIDs, as the test bed's outer
  // guest sees ionest's emulated VT-d.
  iommufd::HostIommuInfo info;
  info.type = IOMMU_HW_INFO_TYPE_INTEL_VTD;
  info.vtd_ecap = uint64_t{1} << 26;
  info.max_pasid_log2 = 20;
  fake_.SetHwInfo(dev_id, info);
  dev_id_ = dev_id;
}

size_t HostIommu::live_objects() {
  absl::MutexLock l(&mu_);
  return fake_.live_objects();
}

std::vector<FakeIommufd::Mapping> HostIommu::mappings() {
  absl::MutexLock l(&mu_);
  return fake_.mappings();
}

HostIommuStats HostIommu::stats() {
  absl::MutexLock l(&mu_);
  return stats_;
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
  const HostIommu::Result r = iommu_.Translate(attrs.pasid, iova, access);
  if (!r.ok || (access & ~r.perms & (kDmaRead | kDmaWrite))) {
    t.fault = DmaFault{r.ok ? DmaFaultKind::kPermission : r.kind, iova, access, attrs.pasid, 0, /*recorded=*/true};
    return t;
  }
  t.regions.push_back({iova, r.va + skew_, std::min(len, r.len), r.perms});
  return t;
}

AtsTranslation IoasDmaSpace::AtsTranslate(uint64_t iova, uint32_t access, const DmaAttrs& attrs) {
  AtsTranslation a;
  const uint64_t page = iova & ~(kPage4K - 1);
  const HostIommu::Result r = iommu_.Translate(attrs.pasid, page, access);
  if (!r.ok) return a;
  a.success = true;
  a.iova = page;
  a.gpa = (r.va + skew_) & ~(kPage4K - 1);
  a.perms = r.perms;
  return a;
}

absl::Status IoasDmaSpace::SendPageRequest(const PageRequest& request) {
  iommu_.OnPageRequest(request);
  return absl::OkStatus();
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
  w->iommu_.SetIgnoreS1Invalidations(options.ignore_s1_invalidations);
  w->pci_ = std::make_unique<PciHost>(w->mmio_, w->pio_, w->irqs_, w->provider_);
  if (absl::Status s = w->pci_->Register(); !s.ok()) return s;
  DmaTestDeviceOptions dopts;
  dopts.caps.pri_capacity = options.pri_capacity;
  w->device_ = std::make_unique<DmaTestDevice>("ionest-dmatest (outer)", dopts);
  if (!w->device_->init_status().ok()) return w->device_->init_status();
  if (absl::Status s = w->pci_->AddDevice(kOuterDevfn, *w->device_); !s.ok()) return s;
  // The host firmware/kernel: BARs assigned, memory decoding on.
  if (absl::Status s = w->pci_->AssignResources(); !s.ok()) return s;
  if (!w->device_->BarMappedAt(0)) return absl::InternalError("outer BAR0 not mapped after AssignResources");
  // The host's intel-iommu probe enables PASID on a scalable-mode IOMMU (pci_enable_pasid with
  // the function's exec/priv support); vfio-pci keeps the guest from changing it.
  const uint16_t pasid_cap = w->device_->cap_offsets().pasid;
  if (pasid_cap) {
    const uint16_t cap = static_cast<uint16_t>(w->ConfigRead(pasid_cap + pasid::kCap, 2));
    w->ConfigWrite(pasid_cap + pasid::kControl,
                   pasid::kControlEnable | (cap & pasid::kCapExec ? pasid::kControlExec : 0) |
                       (cap & pasid::kCapPriv ? pasid::kControlPriv : 0),
                   2);
  }
  // The host IOMMU driver's PRG responses reach the function as PCIe messages.
  LoopbackWorld* self = w.get();
  w->iommu_.SetResponseSink([self](const PageResponse& r) {
    if (DmaClient* c = self->dma_.client()) c->OnPageResponse(r);
  });
  return w;
}

LoopbackWorld::~LoopbackWorld() {
  iommu_.SetResponseSink(nullptr);
  device_.reset();
}

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
  while (!pasids_.empty()) DetachPasid(pasids_.begin()->first).IgnoreError();
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
  if (!world_.iommu_.Attachable(pt_id)) return vfio::VfioErrno(ENOENT, what);
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
  if (!world_.iommu_.Attachable(pt_id)) return vfio::VfioErrno(ENOENT, what);
  pasids_[pasid] = pt_id;
  world_.iommu_.AttachPasid(pasid, pt_id);
  return absl::OkStatus();
}

absl::Status LoopbackVfioDevice::DetachPasid(uint32_t pasid) {
  pasids_.erase(pasid);  // vfio's pasid_detach_ioas ignores a PASID that is not attached
  world_.iommu_.AttachPasid(pasid, std::nullopt);
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
