#include "iommu/virtio/virtio_iommu.h"

#include <algorithm>
#include <bit>
#include <cstdio>
#include <cstring>
#include <utility>

#include "absl/strings/str_format.h"
#include "iommu/trace.h"

namespace ionest {
namespace {

template <typename T>
T Get(const uint8_t* p, size_t off) {
  T v;
  std::memcpy(&v, p + off, sizeof(T));
  return v;
}
template <typename T>
void Put(uint8_t* p, size_t off, T v) {
  std::memcpy(p + off, &v, sizeof(T));
}

constexpr uint32_t kTailSize = 4;  // struct virtio_iommu_req_tail
constexpr int kMaxRegions = 64;    // per Translate call; callers loop for the rest

// Device whose VirtioDevice callback runs on this thread (the transport lock is held there).
thread_local const VirtioIommu* t_in_callback = nullptr;

class CallbackScope {
 public:
  explicit CallbackScope(const VirtioIommu* d) : saved_(t_in_callback) { t_in_callback = d; }
  ~CallbackScope() { t_in_callback = saved_; }

 private:
  const VirtioIommu* saved_;
};

// DmaAccess rights of a MAP's flags (§5.13.6.5). No execute permission exists: execute requests
// are reads. MMIO is a memory type, not a right.
uint32_t RightsOf(uint32_t flags) {
  uint32_t r = 0;
  if (flags & VirtioIommu::kMapFRead) r |= kDmaRead | kDmaExec;
  if (flags & VirtioIommu::kMapFWrite) r |= kDmaWrite;
  return r;
}

}  // namespace

class VirtioIommu::Space final : public DmaSpace {
 public:
  Space(VirtioIommu& iommu, PhysMemory& memory, uint16_t rid) : DmaSpace(memory), iommu_(iommu), rid_(rid) {}
  Translation Translate(uint64_t iova, uint64_t len, uint32_t access, const DmaAttrs& attrs) override {
    return iommu_.TranslateFor(rid_, iova, len, access, attrs);
  }

 private:
  VirtioIommu& iommu_;
  const uint16_t rid_;
};

absl::StatusOr<std::unique_ptr<VirtioIommu>> VirtioIommu::Create(PhysMemory& memory, Options o) {
  auto bad = [](const char* what) { return absl::InvalidArgumentError(absl::StrFormat("virtio-iommu: %s", what)); };
  // §5.13.4.2: at least one bit; the granule is the lowest. The IOTLB caches 4 KiB pages, so a
  // smaller granule would let two mappings share a cached page.
  if (o.page_size_mask == 0 || std::countr_zero(o.page_size_mask) < 12) return bad("page granule must be >= 4 KiB");
  if (o.input_start > o.input_end) return bad("empty input range");
  if (o.domain_start > o.domain_end) return bad("empty domain range");
  if (o.max_domains == 0 || o.max_domains > 65536) return bad("max_domains must be 1..65536");
  if (o.max_mappings == 0 || o.max_pending_faults == 0 || o.iotlb_entries == 0) return bad("zero limit");
  if (o.queue_size == 0 || o.queue_size > SplitVirtqueue::kMaxSize || !std::has_single_bit(o.queue_size))
    return bad("queue size must be a power of two <= 32768");
  if (o.endpoints.empty()) return bad("no endpoints");
  for (const EndpointRange& r : o.endpoints)
    if (r.first > r.last) return bad("empty endpoint range");
  int msi = 0;
  for (size_t i = 0; i < o.reserved.size(); ++i) {
    const ReservedRegion& r = o.reserved[i];
    if (r.start > r.end) return bad("empty reserved region");
    msi += r.subtype == kResvMemTMsi;
    // §5.13.6.8.1.2: no overlapping RESV_MEM properties, at most one MSI region.
    for (size_t j = 0; j < i; ++j)
      if (r.start <= o.reserved[j].end && o.reserved[j].start <= r.end) return bad("overlapping reserved regions");
  }
  if (msi > 1) return bad("more than one MSI region");
  if (o.probe_size > 0 && (o.probe_size > 65536 || o.probe_size < kResvMemPropertySize * o.reserved.size()))
    return bad("probe_size must hold the reserved regions and be <= 64 KiB");
  return std::unique_ptr<VirtioIommu>(new VirtioIommu(memory, std::move(o)));
}

VirtioIommu::VirtioIommu(PhysMemory& memory, Options options)
    : memory_(memory),
      options_(std::move(options)),
      granule_(uint64_t{1} << std::countr_zero(options_.page_size_mask)),
      iotlb_(options_.iotlb_entries) {
  absl::MutexLock l(&mu_);
  bypass_ = options_.boot_bypass;
  ResetLocked();
}

VirtioIommu::~VirtioIommu() = default;

uint64_t VirtioIommu::device_features() const {
  // §5.13.3.2: MAP_UNMAP offered; BYPASS_CONFIG instead of the deprecated F_BYPASS.
  return kFInputRange | kFDomainRange | kFMapUnmap | kFMmio | kFBypassConfig | (options_.probe_size ? kFProbe : 0);
}

bool VirtioIommu::IsEndpoint(uint32_t endpoint) const {
  for (const EndpointRange& r : options_.endpoints)
    if (endpoint >= r.first && endpoint <= r.last) return true;
  return false;
}

bool VirtioIommu::InDomainRange(uint32_t domain) const {
  return domain >= options_.domain_start && domain <= options_.domain_end;
}

bool VirtioIommu::OverlapsReserved(uint64_t start, uint64_t end) const {
  for (const ReservedRegion& r : options_.reserved)
    if (start <= r.end && r.start <= end) return true;
  return false;
}

bool VirtioIommu::bypass() const {
  absl::ReaderMutexLock l(&mu_);
  return bypass_;
}

// ---- Configuration (§5.13.4) ----

void VirtioIommu::ReadConfig(uint64_t offset, uint8_t* data, size_t size) {
  uint8_t cfg[kConfigSize] = {};
  Put<uint64_t>(cfg, kCfgPageSizeMask, options_.page_size_mask);
  Put<uint64_t>(cfg, kCfgInputStart, options_.input_start);
  Put<uint64_t>(cfg, kCfgInputEnd, options_.input_end);
  Put<uint32_t>(cfg, kCfgDomainStart, options_.domain_start);
  Put<uint32_t>(cfg, kCfgDomainEnd, options_.domain_end);
  Put<uint32_t>(cfg, kCfgProbeSize, options_.probe_size);
  {
    absl::ReaderMutexLock l(&mu_);
    cfg[kCfgBypass] = bypass_ ? 1 : 0;  // only 0 or 1 (§5.13.4.2)
  }
  for (size_t i = 0; i < size && offset + i < kConfigSize; ++i) data[i] = cfg[offset + i];
}

void VirtioIommu::WriteConfig(uint64_t offset, const uint8_t* data, size_t size) {
  // §5.13.4.1: with BYPASS_CONFIG negotiated the driver may write `bypass` (0 or 1), nothing else.
  if (offset > kCfgBypass || kCfgBypass - offset >= size) return;
  const uint8_t v = data[kCfgBypass - offset];
  absl::MutexLock l(&mu_);
  if (!(features_ & kFBypassConfig) || v > 1) return;
  if (bypass_ == (v == 1)) return;
  bypass_ = v == 1;  // takes effect for the next translation of every unattached endpoint
  SyncUnattachedHostsLocked();  // and at once for the host's
}

void VirtioIommu::SetDriverFeatures(uint64_t features) {
  absl::MutexLock l(&mu_);
  features_ = features;
}

// ---- Reset ----

void VirtioIommu::ResetLocked() {
  // §5.13.5: after reset no endpoint is attached (so every domain and mapping is gone). Host
  // endpoints move to the unattached state first, then their hosts release the domain spaces.
  for (auto& [ep, host] : hosts_) {
    if (absl::Status s = HostMove(*host, ep, nullptr); !s.ok()) (void)HostFailure(s, "reset");
  }
  for (auto& [ep, d] : attached_) {
    if (VirtioIommuHost* host = HostOf(ep)) HostLeft(*host, *d);
  }
  domains_.clear();
  attached_.clear();
  mappings_ = 0;
  free_tags_.clear();
  for (uint32_t t = options_.max_domains; t-- > 0;) free_tags_.push_back(static_cast<uint16_t>(t));
  iotlb_.InvalidateAll();
  features_ = 0;
}

void VirtioIommu::Reset() {
  // `bypass` keeps its value across a device reset (§5.13.4.2); pending faults stay for the next
  // driver (a DMA blocked before the driver loaded is still reported).
  absl::MutexLock l(&mu_);
  ResetLocked();
}

void VirtioIommu::SystemReset() {
  {
    absl::MutexLock l(&mu_);
    bypass_ = options_.boot_bypass;  // first: ResetLocked leaves host endpoints as it says
    ResetLocked();
  }
  absl::MutexLock l(&events_mu_);
  pending_.clear();
}

// ---- Translation (DmaSpaceProvider) ----

DmaSpace& VirtioIommu::ForRequester(uint16_t rid) {
  absl::MutexLock l(&spaces_mu_);
  auto& slot = spaces_[rid];
  if (!slot) slot = std::make_unique<Space>(*this, memory_, rid);
  return *slot;
}

Translation VirtioIommu::TranslateFor(uint32_t ep, uint64_t iova, uint64_t len, uint32_t access,
                                      const DmaAttrs& attrs) {
  Translation t;
  if (len == 0) return t;
  const uint32_t fault_flags = ((access & (kDmaRead | kDmaExec)) ? kFaultFRead : 0) |
                               ((access & kDmaWrite) ? kFaultFWrite : 0) | kFaultFAddress;
  std::optional<Fault> report;
  bool unreportable = false;
  auto identity = [&] { t.regions.push_back({iova, iova, len, kDmaRead | kDmaWrite | kDmaExec | kDmaPriv}); };
  {
    absl::ReaderMutexLock l(&mu_);
    auto it = attached_.find(ep);
    if (!IsEndpoint(ep)) {
      t.fault = DmaFault{DmaFaultKind::kBlocked, iova, access, attrs.pasid, kFaultRUnknown, false};
      unreportable = true;  // §5.13.6.9.2: only valid endpoint IDs are reported
    } else if (attrs.pasid) {
      // virtio-iommu 1.2 has no PASID: tagged requests never reach memory.
      t.fault = DmaFault{DmaFaultKind::kBlocked, iova, access, attrs.pasid, kFaultRUnknown, false};
      report = Fault{kFaultRUnknown, fault_flags, ep, iova};
    } else if (it == attached_.end()) {
      // §5.13.6: unattached endpoints bypass iff config.bypass is 1 (BYPASS_CONFIG is always
      // offered, so this holds whether or not the driver accepted it); otherwise no access.
      if (bypass_) {
        identity();
      } else {
        t.fault = DmaFault{DmaFaultKind::kBlocked, iova, access, attrs.pasid, kFaultRDomain, false};
        report = Fault{kFaultRDomain, fault_flags, ep, iova};
      }
    } else if (it->second->bypass) {
      identity();  // ATTACH_F_BYPASS domain (§5.13.6.3)
    } else {
      const Domain& d = *it->second;
      const uint32_t want = access & (kDmaRead | kDmaWrite | kDmaExec);
      uint64_t done = 0;
      while (done < len && static_cast<int>(t.regions.size()) < kMaxRegions) {
        const uint64_t addr = iova + done;
        if (addr < iova) break;  // wrapped
        if (std::optional<IotlbHit> hit = iotlb_.Lookup(d.tag, kNoPasid, addr, access)) {
          const uint64_t page_end = (addr & ~(hit->page_size - 1)) + hit->page_size;
          const uint64_t n = page_end == 0 ? len - done : std::min(len - done, page_end - addr);
          t.regions.push_back({addr, hit->output, n, hit->perms});
          done += n;
          continue;
        }
        const uint64_t generation = iotlb_.generation();
        auto m = d.mappings.upper_bound(addr);
        const bool found = m != d.mappings.begin() && (--m)->second.end >= addr;
        const uint32_t rights = found ? RightsOf(m->second.flags) : 0;
        if (!found || (want & ~rights)) {
          // §5.13.6.5.2: no access outside a mapping or beyond its flags.
          t.fault = DmaFault{found ? DmaFaultKind::kPermission : DmaFaultKind::kNotPresent, addr, access,
                             attrs.pasid, kFaultRMapping, false};
          report = Fault{kFaultRMapping, fault_flags, ep, addr};
          break;
        }
        const uint64_t start = m->first;
        const Mapping& map = m->second;
        const uint64_t out = map.phys + (addr - start);
        const uint64_t after = map.end - addr;  // bytes of the mapping past addr
        const uint64_t n = len - done - 1 <= after ? len - done : after + 1;
        t.regions.push_back({addr, out, n, rights});
        // Cache the largest IOTLB page the mapping covers with matching alignment.
        WalkResult w;
        for (uint64_t ps : {kPage1G, kPage2M, kPage4K}) {
          const uint64_t base = addr & ~(ps - 1);
          if (base >= start && base + (ps - 1) <= map.end && ((out ^ addr) & (ps - 1)) == 0) {
            w.page_size = ps;
            break;
          }
        }
        if (w.page_size) {
          w.ok = true;
          w.output = out;
          w.perms = w.user_perms = w.supervisor_perms = rights;
          iotlb_.Insert(d.tag, kNoPasid, addr, w, IotlbType::kSecondStage, generation);
        }
        done += n;
      }
    }
  }
  if (report) {
    t.fault->recorded = ReportFault(*report);
  } else if (unreportable) {
    absl::MutexLock l(&events_mu_);
    ++counters_.faults_unreportable;
  }
  return t;
}

// ---- Fault reporting (§5.13.6.9) ----

void VirtioIommu::SetEventNotifier(std::function<void()> notify) {
  absl::MutexLock l(&events_mu_);
  notify_ = std::move(notify);
}

bool VirtioIommu::ReportFault(const Fault& fault) {
  std::function<void()> notify;
  {
    absl::MutexLock l(&events_mu_);
    if (pending_.size() >= options_.max_pending_faults) {
      ++counters_.faults_dropped;  // §5.13.6.9: the device may drop events
      if (trace::On(trace::kFault)) TraceFault(fault, false);
      return false;
    }
    pending_.push_back(fault);
    if (trace::On(trace::kFault)) TraceFault(fault, true);
    // Inside our own callback the transport lock is held: HasPendingWork delivers it instead.
    if (t_in_callback != this) notify = notify_;
  }
  if (notify) notify();
  return true;
}

bool VirtioIommu::HasPendingWork(unsigned queue) {
  if (queue != kEventQueue) return false;
  absl::MutexLock l(&events_mu_);
  return !pending_.empty();
}

absl::Status VirtioIommu::DeliverEvents(SplitVirtqueue& vq) {
  for (unsigned i = 0; i < vq.layout().size; ++i) {
    Fault f;
    {
      absl::MutexLock l(&events_mu_);
      if (pending_.empty()) return absl::OkStatus();
      f = pending_.front();
    }
    absl::StatusOr<std::optional<VirtqChain>> next = vq.Pop();
    if (!next.ok()) return next.status();
    if (!next->has_value()) return absl::OkStatus();  // no buffer: the fault waits
    const VirtqChain& c = **next;
    uint8_t raw[kFaultSize] = {};  // reserved fields and undefined flags zero (§5.13.6.9.2)
    raw[0] = f.reason;
    Put<uint32_t>(raw, 4, f.flags);
    Put<uint32_t>(raw, 8, f.endpoint);
    Put<uint64_t>(raw, 16, f.address);
    // One buffer per report (§5.13.6.9.2): an unusable one is returned unwritten (used length 0,
    // which the driver treats as a failure) and the fault waits for the next.
    const bool usable = c.readable_bytes == 0 && c.writable_bytes >= kFaultSize &&
                        vq.WriteTo(c, 0, raw, kFaultSize).ok();
    if (absl::Status s = vq.Push(c.head, usable ? kFaultSize : 0); !s.ok()) return s;
    if (!usable) continue;
    absl::MutexLock l(&events_mu_);
    if (!pending_.empty() && pending_.front() == f) pending_.pop_front();  // SystemReset may have cleared it
    ++counters_.faults_reported;
  }
  return absl::OkStatus();
}

// ---- Requests (§5.13.6) ----

absl::Status VirtioIommu::ProcessQueue(unsigned queue, SplitVirtqueue& vq) {
  CallbackScope scope(this);
  if (queue == kEventQueue) return DeliverEvents(vq);
  if (queue != kRequestQueue) return absl::OkStatus();
  // Bounded per notify: one ring's worth; the driver notifies again for more.
  for (unsigned i = 0; i < vq.layout().size; ++i) {
    absl::StatusOr<std::optional<VirtqChain>> next = vq.Pop();
    if (!next.ok()) return next.status();  // malformed ring: DEVICE_NEEDS_RESET (§2.1.2)
    if (!next->has_value()) return absl::OkStatus();
    const Reply r = HandleRequest(vq, **next);
    {
      absl::MutexLock l(&events_mu_);
      ++counters_.requests;
      if (r.written) {
        ++counters_.status_counts[std::min<uint8_t>(r.status, 8)];
      } else {
        ++counters_.unparsed;
      }
    }
    if (absl::Status s = vq.Push((*next)->head, r.written); !s.ok()) return s;
  }
  return absl::OkStatus();
}

VirtioIommu::Reply VirtioIommu::HandleRequest(SplitVirtqueue& vq, const VirtqChain& c) {
  // The device-readable part holds head + fields, the device-writable part the tail (for PROBE,
  // properties then tail). A request whose type or tail cannot be found is returned unwritten
  // with used length 0 (§5.13.6, §5.13.6.2: unknown type; §5.13.6.7.2: PROBE not offered).
  uint8_t type = 0;
  if (c.readable_bytes == 0 || !vq.ReadFrom(c, 0, &type, 1).ok()) return {};
  uint32_t need = 0;
  switch (type) {
    case kTAttach: need = kAttachSize; break;
    case kTDetach: need = kDetachSize; break;
    case kTMap: need = kMapSize; break;
    case kTUnmap: need = kUnmapSize; break;
    case kTProbe:
      if (options_.probe_size == 0) return {};
      need = kProbeSize;
      break;
    default:
      return {};
  }
  if (c.writable_bytes < kTailSize) return {};
  // The tail follows the fixed fields; PROBE's follows probe_size bytes of properties, or ends a
  // shorter writable part (which is then rejected below).
  uint64_t tail = 0;
  if (type == kTProbe)
    tail = c.writable_bytes >= uint64_t{options_.probe_size} + kTailSize ? options_.probe_size
                                                                          : c.writable_bytes - kTailSize;
  uint8_t req[kProbeSize] = {};
  uint8_t status = kSOk;
  if (c.readable_bytes < need) {
    status = kSInval;  // too short for its type, but the tail is there
  } else if (!vq.ReadFrom(c, 0, req, need).ok()) {
    status = kSIoErr;
  } else {
    switch (type) {
      case kTAttach: status = Attach(req); break;
      case kTDetach: status = Detach(req); break;
      case kTMap: status = Map(req); break;
      case kTUnmap: status = Unmap(req); break;
      case kTProbe: {
        // §5.13.6.7.2: reserved ignored; unknown endpoint NOENT; a properties area smaller than
        // probe_size gets no property and S_INVAL; unused bytes are zero.
        const uint32_t ep = Get<uint32_t>(req, 4);
        bool negotiated;
        {
          absl::ReaderMutexLock l(&mu_);
          negotiated = features_ & kFProbe;
        }
        if (!negotiated) {
          status = kSUnsupp;
        } else if (!IsEndpoint(ep)) {
          status = kSNoEnt;
        } else if (tail < options_.probe_size) {
          status = kSInval;
        } else {
          std::vector<uint8_t> props(options_.probe_size, 0);
          size_t off = 0;
          std::vector<ReservedRegion> regions = options_.reserved;
          {
            absl::MutexLock l(&mu_);
            if (VirtioIommuHost* host = HostOf(ep)) AddHostReserved(regions, host->ReservedIova(ep));
          }
          for (const ReservedRegion& r : regions) {  // §5.13.6.8.1
            Put<uint16_t>(props.data(), off, kProbeTResvMem);
            Put<uint16_t>(props.data(), off + 2, kResvMemPropertySize - 4);  // length without header
            props[off + 4] = r.subtype;
            Put<uint64_t>(props.data(), off + 8, r.start);
            Put<uint64_t>(props.data(), off + 16, r.end);
            off += kResvMemPropertySize;
          }
          if (!vq.WriteTo(c, 0, props.data(), props.size()).ok()) status = kSIoErr;
        }
        break;
      }
    }
  }
  if (trace::On(trace::kRequest)) TraceRequest(type, req, status);
  const uint8_t raw[kTailSize] = {status, 0, 0, 0};  // tail reserved zero (§5.13.6.2)
  if (!vq.WriteTo(c, tail, raw, kTailSize).ok()) return {};
  return {status, static_cast<uint32_t>(tail + kTailSize)};
}

uint8_t VirtioIommu::Attach(const uint8_t* req) {
  const uint32_t domain = Get<uint32_t>(req, 4), ep = Get<uint32_t>(req, 8), flags = Get<uint32_t>(req, 12);
  const uint32_t reserved = Get<uint32_t>(req, 16);
  // §5.13.6.3.2, in this order: reserved != 0 -> INVAL (MUST); unknown flag -> INVAL (MUST; the
  // BYPASS flag exists only with BYPASS_CONFIG negotiated); unknown endpoint -> NOENT (MUST).
  if (reserved != 0) return kSInval;
  absl::MutexLock l(&mu_);
  const uint32_t known = (features_ & kFBypassConfig) ? kAttachFBypass : 0;
  if (flags & ~known) return kSInval;
  if (!IsEndpoint(ep)) return kSNoEnt;
  if (!InDomainRange(domain)) return kSRange;  // §5.13.6: outside domain_range
  const bool bypass = flags & kAttachFBypass;
  auto cur_it = attached_.find(ep);
  Domain* cur = cur_it == attached_.end() ? nullptr : cur_it->second;
  Domain* d = nullptr;
  if (auto it = domains_.find(domain); it != domains_.end()) {
    d = it->second.get();
    if (d->bypass != bypass) return kSInval;  // flag inconsistent with the existing domain
    if (cur == d) return kSOk;
  } else {
    // Creating the domain: the implicit DETACH may destroy the old one and free its slot.
    const size_t after_detach = domains_.size() - (cur && cur->endpoints == 1 ? 1 : 0);
    if (after_detach >= options_.max_domains) return kSNoMem;
  }
  VirtioIommuHost* host = HostOf(ep);
  if (host) {
    // The host moves first; on a refusal nothing changes here either (the endpoint stays where it
    // was, in the device and on the host).
    Domain fresh;  // what a new domain looks like to HostMove
    fresh.id = domain;
    fresh.bypass = bypass;
    if (absl::Status s = HostMove(*host, ep, d ? d : &fresh); !s.ok()) return HostFailure(s, "ATTACH");
  }
  if (cur) DetachLocked(ep);  // as DETACH followed by ATTACH
  if (!d) {
    auto nd = std::make_unique<Domain>();
    nd->id = domain;
    nd->bypass = bypass;
    nd->tag = free_tags_.back();
    free_tags_.pop_back();
    d = nd.get();
    domains_.emplace(domain, std::move(nd));
  }
  attached_[ep] = d;
  ++d->endpoints;
  if (host) HostJoined(*host, *d);
  return kSOk;
}

uint8_t VirtioIommu::Detach(const uint8_t* req) {
  const uint32_t domain = Get<uint32_t>(req, 4), ep = Get<uint32_t>(req, 8);
  // §5.13.6.4.2: reserved ignored; unknown endpoint -> NOENT (MUST); domain missing or endpoint
  // not attached to it -> INVAL (MAY).
  absl::MutexLock l(&mu_);
  if (!IsEndpoint(ep)) return kSNoEnt;
  if (!InDomainRange(domain)) return kSRange;
  auto it = attached_.find(ep);
  if (it == attached_.end() || it->second->id != domain) return kSInval;
  // A host endpoint becomes unattached on the host first (config.bypass decides, §5.13.6.4).
  if (VirtioIommuHost* host = HostOf(ep)) {
    if (absl::Status s = HostMove(*host, ep, nullptr); !s.ok()) return HostFailure(s, "DETACH");
  }
  DetachLocked(ep);
  return kSOk;
}

void VirtioIommu::DetachLocked(uint32_t ep) {
  auto it = attached_.find(ep);
  Domain* d = it->second;
  attached_.erase(it);
  if (VirtioIommuHost* host = HostOf(ep)) HostLeft(*host, *d);
  // §5.13.6.4: a domain without endpoints ceases to exist (its mappings with it).
  if (--d->endpoints == 0) DestroyDomainLocked(d);
}

void VirtioIommu::DestroyDomainLocked(Domain* d) {
  mappings_ -= d->mappings.size();
  iotlb_.InvalidateDomain(d->tag);
  free_tags_.push_back(d->tag);
  domains_.erase(d->id);
}

uint8_t VirtioIommu::Map(const uint8_t* req) {
  const uint32_t domain = Get<uint32_t>(req, 4);
  const uint64_t vs = Get<uint64_t>(req, 8), ve = Get<uint64_t>(req, 16), ps = Get<uint64_t>(req, 24);
  const uint32_t flags = Get<uint32_t>(req, 32);
  absl::MutexLock l(&mu_);
  if (!(features_ & kFMapUnmap)) return kSUnsupp;  // only with MAP_UNMAP negotiated (§5.13.6.5)
  // §5.13.6.5.2: unknown flag -> INVAL (MUST); MMIO exists only with F_MMIO negotiated.
  const uint32_t known = kMapFRead | kMapFWrite | ((features_ & kFMmio) ? kMapFMmio : 0);
  if (flags & ~known) return kSInval;
  if (!InDomainRange(domain)) return kSRange;
  if (ve < vs) return kSInval;  // §5.13.6.5.1: virt_end > virt_start
  // §5.13.6.5.2: virt_start, phys_start, virt_end + 1 aligned on the granule, else RANGE.
  if ((vs | ps | (ve + 1)) & (granule_ - 1)) return kSRange;
  if (vs < options_.input_start || ve > options_.input_end) return kSRange;  // §5.13.6: input_range
  if (ps + (ve - vs) < ps) return kSRange;  // phys_end beyond the 64-bit space
  if (OverlapsReserved(vs, ve)) return kSRange;  // §5.13.6.8.1.2: no MAP over RESV_MEM
  auto it = domains_.find(domain);
  if (it == domains_.end()) return kSNoEnt;
  Domain& d = *it->second;
  if (d.bypass) return kSInval;
  auto next = d.mappings.upper_bound(ve);  // first mapping starting after the range
  if (next != d.mappings.begin() && std::prev(next)->second.end >= vs) return kSInval;  // overlap
  if (mappings_ >= options_.max_mappings) return kSNoMem;
  // Hosts of the domain's endpoints map first; the device records the mapping only if all did.
  for (size_t i = 0; i < d.hosts.size(); ++i) {
    absl::Status s = d.hosts[i].first->Map(domain, {vs, ve, ps, flags});
    if (s.ok()) continue;
    for (size_t j = 0; j < i; ++j) {
      if (absl::Status u = d.hosts[j].first->Unmap(domain, vs, ve); !u.ok()) (void)HostFailure(u, "MAP rollback");
    }
    return HostFailure(s, "MAP");
  }
  d.mappings.emplace_hint(next, vs, Mapping{ve, ps, flags});
  ++mappings_;
  return kSOk;  // nothing to invalidate: faults are never cached
}

uint8_t VirtioIommu::Unmap(const uint8_t* req) {
  const uint32_t domain = Get<uint32_t>(req, 4);
  const uint64_t vs = Get<uint64_t>(req, 8), ve = Get<uint64_t>(req, 16);
  const uint32_t reserved = Get<uint32_t>(req, 24);
  absl::MutexLock l(&mu_);
  if (!(features_ & kFMapUnmap)) return kSUnsupp;
  // §5.13.6.6.2: reserved != 0 MAY be INVAL; then nothing is unmapped here.
  if (reserved != 0) return kSInval;
  if (!InDomainRange(domain)) return kSRange;
  if (ve < vs) return kSInval;
  if (vs < options_.input_start || ve > options_.input_end) return kSRange;
  auto it = domains_.find(domain);
  if (it == domains_.end()) return kSNoEnt;
  Domain& d = *it->second;
  if (d.bypass) return kSInval;
  // A mapping only partly inside the range would be split: RANGE and nothing removed.
  auto first = d.mappings.lower_bound(vs);
  if (first != d.mappings.begin() && std::prev(first)->second.end >= vs) return kSRange;
  auto last = d.mappings.upper_bound(ve);
  if (last != d.mappings.begin() && std::prev(last)->second.end > ve) return kSRange;
  if (first == last) return kSOk;  // nothing mapped in the range (example 1)
  // Every mapping in [first, last) lies inside [vs, ve]: remove them all. The hosts remove exactly
  // these first; if one refuses, nothing is removed here (the host then holds at most what the
  // device does).
  const uint64_t lo = first->first, hi = std::prev(last)->second.end;
  for (auto& [host, n] : d.hosts) {
    if (absl::Status s = host->Unmap(domain, lo, hi); !s.ok()) return HostFailure(s, "UNMAP");
  }
  mappings_ -= std::distance(first, last);
  d.mappings.erase(first, last);
  InvalidateRange(d, lo, hi);
  return kSOk;
}

// ---- Host endpoints (VirtioIommuHost) ----

void VirtioIommu::AddHostReserved(std::vector<ReservedRegion>& regions,
                                  const std::vector<VirtioIommuHost::Reserved>& host) const {
  // §5.13.6.8.1.2: properties do not overlap; only what the input range holds matters; PROBE
  // writes at most probe_size bytes of properties.
  const size_t own = regions.size();
  for (const VirtioIommuHost::Reserved& h : host) {
    std::vector<std::pair<uint64_t, uint64_t>> pieces;
    if (h.start > h.end || h.end < options_.input_start || h.start > options_.input_end) continue;
    pieces.push_back({std::max(h.start, options_.input_start), std::min(h.end, options_.input_end)});
    for (size_t i = 0; i < own; ++i) {
      std::vector<std::pair<uint64_t, uint64_t>> rest;
      for (auto [s, e] : pieces) {
        const ReservedRegion& r = regions[i];
        if (e < r.start || s > r.end) {
          rest.push_back({s, e});
          continue;
        }
        if (s < r.start) rest.push_back({s, r.start - 1});
        if (e > r.end) rest.push_back({r.end + 1, e});
      }
      pieces = std::move(rest);
    }
    for (auto [s, e] : pieces) {
      if ((regions.size() + 1) * kResvMemPropertySize > options_.probe_size) return;
      regions.push_back({s, e, kResvMemTReserved});
    }
  }
}

absl::Status VirtioIommu::SetEndpointHost(uint32_t ep, VirtioIommuHost* host) {
  if (!IsEndpoint(ep)) return absl::InvalidArgumentError(absl::StrFormat("virtio-iommu: %u is no endpoint", ep));
  absl::MutexLock l(&mu_);
  auto at = attached_.find(ep);
  Domain* d = at == attached_.end() ? nullptr : at->second;
  if (host) {
    if (absl::Status s = HostMove(*host, ep, d); !s.ok()) return s;
  }
  if (VirtioIommuHost* old = HostOf(ep); old && d) HostLeft(*old, *d);
  if (host) {
    hosts_[ep] = host;
    if (d) HostJoined(*host, *d);
  } else {
    hosts_.erase(ep);
  }
  return absl::OkStatus();
}

VirtioIommuHost* VirtioIommu::HostOf(uint32_t ep) const {
  auto it = hosts_.find(ep);
  return it == hosts_.end() ? nullptr : it->second;
}

absl::Status VirtioIommu::HostMove(VirtioIommuHost& host, uint32_t ep, const Domain* to) {
  // Unattached: identity or blocked as config.bypass says; a bypass domain: identity (§5.13.6.3).
  if (!to || to->bypass) return host.AttachUntranslated(ep, !to ? bypass_ : true);
  const bool fresh = std::none_of(to->hosts.begin(), to->hosts.end(), [&](const auto& h) { return h.first == &host; });
  if (!fresh) return host.AttachDomain(ep, to->id, nullptr);
  std::vector<VirtioIommuHost::Mapping> replay;
  replay.reserve(to->mappings.size());
  for (const auto& [start, m] : to->mappings) replay.push_back({start, m.end, m.phys, m.flags});
  return host.AttachDomain(ep, to->id, &replay);
}

void VirtioIommu::HostJoined(VirtioIommuHost& host, Domain& to) {
  for (auto& [h, n] : to.hosts) {
    if (h == &host) {
      ++n;
      return;
    }
  }
  to.hosts.emplace_back(&host, 1);
}

void VirtioIommu::HostLeft(VirtioIommuHost& host, Domain& from) {
  for (auto it = from.hosts.begin(); it != from.hosts.end(); ++it) {
    if (it->first != &host || --it->second != 0) continue;
    from.hosts.erase(it);
    if (!from.bypass) host.ReleaseDomain(from.id);  // its endpoints are elsewhere by now
    return;
  }
}

uint8_t VirtioIommu::HostFailure(const absl::Status& s, const char* what) {
  // A hostile guest can make the host refuse at will: the first few refusals and then every
  // 1024th are logged, all are counted (Stats::host_failures).
  if (++host_failures_ <= 16 || host_failures_ % 1024 == 0) {
    std::fprintf(stderr, "ionest: virtio-iommu: %s for a host endpoint refused (%llu so far): %s\n", what,
                 static_cast<unsigned long long>(host_failures_), s.ToString().c_str());
  }
  switch (s.code()) {
    case absl::StatusCode::kResourceExhausted: return kSNoMem;
    case absl::StatusCode::kOutOfRange: return kSRange;
    case absl::StatusCode::kInvalidArgument: return kSInval;
    default: return kSDevErr;
  }
}

void VirtioIommu::SyncUnattachedHostsLocked() {
  for (auto& [ep, host] : hosts_) {
    if (attached_.contains(ep)) continue;
    if (absl::Status s = HostMove(*host, ep, nullptr); !s.ok()) (void)HostFailure(s, "bypass change");
  }
}

void VirtioIommu::InvalidateRange(const Domain& d, uint64_t start, uint64_t end) {
  // One page-selective invalidation of the smallest aligned 2^am-page block holding the range
  // (neighbours in that block are merely re-walked).
  const uint64_t diff = (start ^ end) >> 12;
  const unsigned am = static_cast<unsigned>(std::bit_width(diff));
  if (am >= 52) {
    iotlb_.InvalidateDomain(d.tag);
  } else {
    iotlb_.InvalidatePages(d.tag, std::nullopt, start, am, false);
  }
}

VirtioIommu::Stats VirtioIommu::stats() const {
  Stats s;
  {
    absl::MutexLock l(&events_mu_);
    s = counters_;
    s.faults_pending = pending_.size();
  }
  {
    absl::ReaderMutexLock l(&mu_);
    s.domains = domains_.size();
    s.mappings = mappings_;
    s.host_failures = host_failures_;
  }
  s.iotlb = iotlb_.stats();
  return s;
}

}  // namespace ionest
