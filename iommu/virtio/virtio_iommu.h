// virtio-iommu device (virtio 1.2 §5.13) and the DmaSpaceProvider it programs.
//
// VirtioDevice half: requestq (ATTACH, DETACH, MAP, UNMAP, PROBE) and eventq (fault reports);
// features INPUT_RANGE, DOMAIN_RANGE, MAP_UNMAP, PROBE, MMIO, BYPASS_CONFIG (never the deprecated
// F_BYPASS, §5.13.3.2). Every request is validated against §5.13.6 with the status codes the spec
// names; caps on domains and mappings answer S_NOMEM past them.
//
// DmaSpaceProvider half: ForRequester(rid) translates endpoint `rid` (PCI requester id) through the
// domain it is attached to: MAP ranges (IOTLB in front of an interval map), bypass domains and, for
// unattached endpoints, identity when config.bypass is 1 or blocked when 0 (§5.13.6). A blocked
// access is reported as VIRTIO_IOMMU_FAULT on the eventq (§5.13.6.9): faults wait in a bounded
// pending list until the driver supplies buffers (overflow: dropped and counted).
//
// Endpoints translated by someone else (passthrough functions, whose DMA the host IOMMU translates)
// get a VirtioIommuHost with SetEndpointHost: the device then forwards every change of their
// translation to it (§5.13.6.3-6: ATTACH, DETACH, MAP, UNMAP, bypass, reset) before it changes its
// own state, and keeps its state unchanged when the host refuses. The device's mapping tree stays
// the authority; the host only mirrors it.
//
// Threading: VirtioDevice callbacks run under the transport lock (vCPU). Translate runs on any
// thread: the hit path takes mu_ shared plus the IOTLB's reader lock (as VT-d's). Request handling
// takes mu_ exclusively. A fault is queued under events_mu_; the event notifier (wired to
// VirtioPciDevice::Kick(kEventQueue)) is then called with no lock of this device held. Lock order:
// transport lock -> mu_ -> events_mu_ (never the other way).
#pragma once

#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "iommu/trace.h"
#include "devices/virtio_device.h"
#include "iommu/dma_space.h"
#include "iommu/iotlb.h"

namespace ionest {

// The host side of endpoints whose DMA does not go through ForRequester (a passthrough function
// behind a host IOMMU: iommu/iommufd/viommu_forwarding.h). Called with the device's mu_ held, in
// the order the device changes its state; never called back into the device.
//
// The returned status decides the guest's answer (§5.13.6.2): kResourceExhausted -> S_NOMEM,
// kOutOfRange -> S_RANGE, kInvalidArgument -> S_INVAL, anything else -> S_DEVERR. On failure the
// implementation leaves the host as it was before the call (the endpoint on its previous target, no
// new mapping), so the device's state, which it leaves unchanged too, still matches.
class VirtioIommuHost {
 public:
  struct Mapping {
    uint64_t virt_start = 0, virt_end = 0;  // inclusive, as in the MAP request (§5.13.6.5)
    uint64_t phys_start = 0;
    uint32_t flags = 0;  // VIRTIO_IOMMU_MAP_F_*
    bool operator==(const Mapping&) const = default;
  };
  virtual ~VirtioIommuHost() = default;
  // `endpoint` now translates through the paging domain `domain` (§5.13.6.3). `replay` is non-null
  // when `domain` had no host endpoint so far: the host creates the domain's address space holding
  // these mappings (ascending) before the endpoint moves to it.
  virtual absl::Status AttachDomain(uint32_t endpoint, uint32_t domain, const std::vector<Mapping>* replay) = 0;
  // `endpoint` is in a bypass domain, or unattached with config.bypass = 1: identity over guest RAM
  // (`identity` true); or unattached with bypass = 0: every access blocked (§5.13.6.3, §5.13.4.2).
  virtual absl::Status AttachUntranslated(uint32_t endpoint, bool identity) = 0;
  // MAP into a domain that has host endpoints (§5.13.6.5), before the device records it.
  virtual absl::Status Map(uint32_t domain, const Mapping& mapping) = 0;
  // UNMAP of a domain that has host endpoints (§5.13.6.6): exactly the mappings the device removes,
  // which all lie in [virt_start, virt_end] (first removed start .. last removed end).
  virtual absl::Status Unmap(uint32_t domain, uint64_t virt_start, uint64_t virt_end) = 0;
  // `domain` has no host endpoint any more (they moved elsewhere first): release its address space.
  virtual void ReleaseDomain(uint32_t domain) = 0;
  // IOVA ranges (inclusive) `endpoint` can never have mapped on the host (e.g. the host IOMMU
  // driver's MSI window): PROBE reports them as RESV_MEM_T_RESERVED (§5.13.6.8.1), clipped to the
  // input range and around the device's own regions, as many as probe_size holds. Default: none.
  struct Reserved {
    uint64_t start = 0, end = 0;
  };
  virtual std::vector<Reserved> ReservedIova(uint32_t endpoint) { return {}; }
};

class VirtioIommu final : public VirtioDevice, public DmaSpaceProvider {
 public:
  static constexpr uint16_t kDeviceType = 23;      // §5.13.1
  static constexpr uint32_t kPciClass = 0x088000;  // base system peripheral, other
  static constexpr unsigned kRequestQueue = 0, kEventQueue = 1;  // §5.13.2
  // Feature bits (§5.13.3).
  static constexpr uint64_t kFInputRange = 1ull << 0, kFDomainRange = 1ull << 1, kFMapUnmap = 1ull << 2,
                            kFBypass = 1ull << 3, kFProbe = 1ull << 4, kFMmio = 1ull << 5,
                            kFBypassConfig = 1ull << 6;
  // Request types and status codes (§5.13.6).
  static constexpr uint8_t kTAttach = 1, kTDetach = 2, kTMap = 3, kTUnmap = 4, kTProbe = 5;
  static constexpr uint8_t kSOk = 0, kSIoErr = 1, kSUnsupp = 2, kSDevErr = 3, kSInval = 4, kSRange = 5,
                           kSNoEnt = 6, kSFault = 7, kSNoMem = 8;
  static constexpr uint32_t kAttachFBypass = 1u << 0;                                  // §5.13.6.3
  static constexpr uint32_t kMapFRead = 1u << 0, kMapFWrite = 1u << 1, kMapFMmio = 1u << 2;  // §5.13.6.5
  // PROBE properties (§5.13.6.8).
  static constexpr uint16_t kProbeTResvMem = 1;
  static constexpr uint8_t kResvMemTReserved = 0, kResvMemTMsi = 1;
  static constexpr uint32_t kResvMemPropertySize = 24;  // header + subtype/reserved + start + end
  // Fault reports (§5.13.6.9).
  static constexpr uint8_t kFaultRUnknown = 0, kFaultRDomain = 1, kFaultRMapping = 2;
  static constexpr uint32_t kFaultFRead = 1u << 0, kFaultFWrite = 1u << 1, kFaultFAddress = 1u << 8;
  static constexpr uint32_t kFaultSize = 24;
  // struct virtio_iommu_config (§5.13.4).
  static constexpr uint32_t kConfigSize = 40;
  static constexpr uint64_t kCfgPageSizeMask = 0, kCfgInputStart = 8, kCfgInputEnd = 16, kCfgDomainStart = 24,
                            kCfgDomainEnd = 28, kCfgProbeSize = 32, kCfgBypass = 36;
  // Readable sizes of the requests (head + fields, §5.13.6.3-7); every tail is 4 bytes.
  static constexpr uint32_t kAttachSize = 20, kDetachSize = 20, kMapSize = 36, kUnmapSize = 28, kProbeSize = 72;

  struct EndpointRange {
    uint32_t first = 0, last = 0;  // inclusive
  };
  struct ReservedRegion {
    uint64_t start = 0, end = 0;  // inclusive
    uint8_t subtype = kResvMemTReserved;
  };
  struct Options {
    // Reset value of config.bypass (§5.13.4.2: restored on system reset, kept on device reset).
    bool boot_bypass = false;
    // Granule 4 KiB (the IOTLB's smallest page); 2 MiB / 1 GiB are hints (§5.13.6).
    uint64_t page_size_mask = (1ull << 12) | (1ull << 21) | (1ull << 30);
    uint64_t input_start = 0, input_end = (1ull << 48) - 1;  // input_range
    uint32_t domain_start = 0, domain_end = 0xFFFF;          // domain_range
    uint32_t probe_size = 512;  // 0: PROBE not offered
    // What a guest can make the device store (S_NOMEM past it).
    uint32_t max_domains = 1024;  // at most 65535 (IOTLB tags)
    uint32_t max_mappings = 65536;
    uint32_t max_pending_faults = 64;
    size_t iotlb_entries = Iotlb::kDefaultCapacity;
    uint16_t queue_size = 256;
    // Endpoint IDs this device manages (= PCI requester ids behind it; exclude its own).
    std::vector<EndpointRange> endpoints = {{0, 0xFFFF}};
    // RESV_MEM properties of every endpoint: MAP over them is refused. Default: x86 MSI window.
    std::vector<ReservedRegion> reserved = {{0xFEE00000, 0xFEEFFFFF, kResvMemTMsi}};
  };

  struct Fault {
    uint8_t reason = kFaultRUnknown;
    uint32_t flags = 0;
    uint32_t endpoint = 0;
    uint64_t address = 0;
    bool operator==(const Fault&) const = default;
  };
  struct Stats {
    uint64_t requests = 0;
    uint64_t status_counts[9] = {};  // by status code
    uint64_t unparsed = 0;           // returned with used length 0 (§5.13.6)
    uint64_t faults_reported = 0;    // written to the eventq
    uint64_t faults_dropped = 0;     // pending list full
    uint64_t faults_unreportable = 0;  // requester not managed by this device
    size_t faults_pending = 0;
    size_t domains = 0;
    size_t mappings = 0;
    uint64_t host_failures = 0;  // VirtioIommuHost refusals (answered S_NOMEM/S_RANGE/S_INVAL/S_DEVERR)
    IotlbStats iotlb;
  };

  // `memory` is what DMA reaches after translation. Validates the options.
  static absl::StatusOr<std::unique_ptr<VirtioIommu>> Create(PhysMemory& memory, Options options);
  ~VirtioIommu() override;

  // VirtioDevice (transport lock held).
  uint16_t device_type() const override { return kDeviceType; }
  uint64_t device_features() const override;
  unsigned num_queues() const override { return 2; }
  uint16_t max_queue_size() const override { return options_.queue_size; }
  uint32_t config_size() const override { return kConfigSize; }
  void ReadConfig(uint64_t offset, uint8_t* data, size_t size) override ABSL_LOCKS_EXCLUDED(mu_);
  void WriteConfig(uint64_t offset, const uint8_t* data, size_t size) override ABSL_LOCKS_EXCLUDED(mu_);
  void SetDriverFeatures(uint64_t features) override ABSL_LOCKS_EXCLUDED(mu_);
  absl::Status ProcessQueue(unsigned queue, SplitVirtqueue& vq) override ABSL_LOCKS_EXCLUDED(mu_, events_mu_);
  void Reset() override ABSL_LOCKS_EXCLUDED(mu_);
  bool HasPendingWork(unsigned queue) override ABSL_LOCKS_EXCLUDED(events_mu_);

  // DmaSpaceProvider: endpoint `rid`'s space (created on first use, lives as long as this). A rid
  // outside Options::endpoints is blocked (never translated, not reportable).
  DmaSpace& ForRequester(uint16_t rid) override ABSL_LOCKS_EXCLUDED(spaces_mu_);

  // Called with no lock of this device held after a fault was queued; the machine connects it to
  // VirtioPciDevice::Kick(kEventQueue). Not called from inside this device's own callbacks.
  void SetEventNotifier(std::function<void()> notify) ABSL_LOCKS_EXCLUDED(events_mu_);
  // System reset: device reset, bypass back to boot_bypass, pending faults dropped (§5.13.4.2).
  void SystemReset() ABSL_LOCKS_EXCLUDED(mu_, events_mu_);

  // Hands endpoint `endpoint`'s translation to `host` (nullptr: back to the device alone; the old
  // host releases the endpoint's domain space if it was its last endpoint there). The endpoint's
  // current state is forwarded at once (AttachUntranslated or AttachDomain); if the host refuses,
  // nothing is registered and its status returned. `host` must outlive the registration.
  absl::Status SetEndpointHost(uint32_t endpoint, VirtioIommuHost* host) ABSL_LOCKS_EXCLUDED(mu_);

  bool bypass() const ABSL_LOCKS_EXCLUDED(mu_);
  bool IsEndpoint(uint32_t endpoint) const;
  Stats stats() const ABSL_LOCKS_EXCLUDED(mu_, events_mu_);
  // `--dump-tables`: the endpoint's domain and its mappings (virtio_trace.cc), at most
  // trace::DumpWriter's line cap.
  std::string DumpTables(const trace::DumpRequest& request) const ABSL_LOCKS_EXCLUDED(mu_);
  const Options& options() const { return options_; }

 private:
  class Space;
  struct Mapping {
    uint64_t end;  // inclusive
    uint64_t phys;
    uint32_t flags;
  };
  struct Domain {
    uint32_t id = 0;
    uint16_t tag = 0;  // IOTLB domain tag
    bool bypass = false;
    uint32_t endpoints = 0;
    // Of `endpoints`, how many each VirtioIommuHost has (paging domains: the hosts MAP/UNMAP go to).
    std::vector<std::pair<VirtioIommuHost*, uint32_t>> hosts;
    std::map<uint64_t, Mapping> mappings;  // by virt_start, non-overlapping
  };
  struct Reply {
    uint8_t status = kSOk;
    uint32_t written = 0;  // used length; 0 = not parsed, nothing written
  };

  VirtioIommu(PhysMemory& memory, Options options);
  Translation TranslateFor(uint32_t endpoint, uint64_t iova, uint64_t len, uint32_t access, const DmaAttrs& attrs)
      ABSL_LOCKS_EXCLUDED(mu_, events_mu_);
  // Queues a fault report (bounded) and notifies; returns whether it was queued.
  bool ReportFault(const Fault& fault) ABSL_LOCKS_EXCLUDED(mu_, events_mu_);

  Reply HandleRequest(SplitVirtqueue& vq, const VirtqChain& chain) ABSL_LOCKS_EXCLUDED(mu_);
  // Event trace (iommu/trace.h, virtio_trace.cc): a request with its status, a fault report.
  static void TraceRequest(uint8_t type, const uint8_t* req, uint8_t status);
  static void TraceFault(const Fault& fault, bool queued);
  uint8_t Attach(const uint8_t* req) ABSL_LOCKS_EXCLUDED(mu_);
  uint8_t Detach(const uint8_t* req) ABSL_LOCKS_EXCLUDED(mu_);
  uint8_t Map(const uint8_t* req) ABSL_LOCKS_EXCLUDED(mu_);
  uint8_t Unmap(const uint8_t* req) ABSL_LOCKS_EXCLUDED(mu_);
  absl::Status DeliverEvents(SplitVirtqueue& vq) ABSL_LOCKS_EXCLUDED(events_mu_);

  void DetachLocked(uint32_t endpoint) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Host forwarding (VirtioIommuHost): the host of `endpoint` or null; the guest status of a host
  // failure (counted, logged with `what`); moving `host`'s `endpoint` to what domain `to` (null:
  // unattached, config.bypass decides) means, before the device records it; the bookkeeping once it
  // did (count in `to`, release of the space `from` when its host's last endpoint left).
  VirtioIommuHost* HostOf(uint32_t endpoint) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  uint8_t HostFailure(const absl::Status& s, const char* what) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::Status HostMove(VirtioIommuHost& host, uint32_t endpoint, const Domain* to) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  static void HostJoined(VirtioIommuHost& host, Domain& to);
  static void HostLeft(VirtioIommuHost& host, Domain& from);
  // Every unattached host endpoint to config.bypass's meaning (after it changed); failures logged.
  void SyncUnattachedHostsLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Appends a host endpoint's reserved IOVA ranges to PROBE's `regions` (see ReservedIova).
  void AddHostReserved(std::vector<ReservedRegion>& regions, const std::vector<VirtioIommuHost::Reserved>& host) const;
  void DestroyDomainLocked(Domain* d) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void ResetLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void InvalidateRange(const Domain& d, uint64_t start, uint64_t end) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  bool InDomainRange(uint32_t domain) const;
  bool OverlapsReserved(uint64_t start, uint64_t end) const;

  PhysMemory& memory_;
  const Options options_;
  const uint64_t granule_;

  mutable absl::Mutex mu_;
  bool bypass_ ABSL_GUARDED_BY(mu_);
  uint64_t features_ ABSL_GUARDED_BY(mu_) = 0;  // negotiated
  absl::flat_hash_map<uint32_t, std::unique_ptr<Domain>> domains_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<uint32_t, Domain*> attached_ ABSL_GUARDED_BY(mu_);  // endpoint -> domain
  std::vector<uint16_t> free_tags_ ABSL_GUARDED_BY(mu_);
  size_t mappings_ ABSL_GUARDED_BY(mu_) = 0;
  absl::flat_hash_map<uint32_t, VirtioIommuHost*> hosts_ ABSL_GUARDED_BY(mu_);  // endpoint -> its host
  uint64_t host_failures_ ABSL_GUARDED_BY(mu_) = 0;
  Iotlb iotlb_;  // internally synchronised; inserts under mu_ shared, invalidations under mu_ exclusive

  mutable absl::Mutex events_mu_ ABSL_ACQUIRED_AFTER(mu_);
  std::deque<Fault> pending_ ABSL_GUARDED_BY(events_mu_);
  std::function<void()> notify_ ABSL_GUARDED_BY(events_mu_);
  Stats counters_ ABSL_GUARDED_BY(events_mu_);  // requests/status/fault counters

  mutable absl::Mutex spaces_mu_;
  absl::flat_hash_map<uint16_t, std::unique_ptr<DmaSpace>> spaces_ ABSL_GUARDED_BY(spaces_mu_);
};

}  // namespace ionest
