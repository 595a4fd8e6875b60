// The VT-d nesting backend (issue 9): binds the guest's emulated VT-d state of passthrough devices
// to the host IOMMU through iommufd, forwards the guest's invalidations, and carries page faults
// between the host's fault queue and the guest's page request queue.
//
//  - Binding (vtd_binding.h decides): a nest-parent HWPT over the VM's IOAS (guest RAM at its
//    GPA) serves translation-off and pass-through; a guest first stage becomes a nested HWPT
//    (IOMMU_HWPT_DATA_VTD_S1) on it; second-stage-only and legacy tables become a shadow IOAS
//    (shadow_domain.h); anything else detaches the device (the host's blocking domain). Requests
//    without PASID bind at the RID (VFIO_DEVICE_ATTACH_IOMMUFD_PT); PASID > 0 through
//    VFIO_DEVICE_ATTACH_PASID where the host kernel has it (Linux 6.15+), else logged once and
//    left blocked. Invalid guest values become the architected fault in the guest's fault log;
//    a host refusal is logged as a status and reported to the guest as an invalid entry.
//  - Invalidations: each batch the VT-d model hands over (every descriptor up to a wait) is
//    turned into one IOMMU_HWPT_INVALIDATE per affected nested HWPT and shadow replays; a host
//    refusal maps to IQE at the refused descriptor. Device-TLB invalidations need no host call:
//    the host invalidates the device TLB of ATS-enabled devices as part of IOMMU_HWPT_INVALIDATE
//    (include/uapi/linux/iommufd.h, struct iommu_hwpt_vtd_s1_invalidate).
//  - Faults: one IOMMU_FAULT_QUEUE_ALLOC per VM; nested HWPTs of PRI-capable devices carry its
//    id. Each host fault is injected into the guest's page request queue as the guest sees the
//    requester (its RID, PASID, address, access, group index, last flag); the guest's page group
//    response (or the model's automatic one on queue overflow, §7.5.1) is written back with the
//    group's cookie. Outstanding groups are answered Invalid at unbind, guest reset and exit.
//
// Thread safety: VtdListener/DmaClient callbacks arrive from vCPU threads; PumpFaults from the
// reader thread (or a test). One mutex serialises the backend and its host calls; it is never held
// while calling into the VT-d model's page request path (which may call back synchronously).
// Lock order: backend mu_ before the model's lock (RecordExternalFault is called under mu_).
#pragma once

#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "iommu/dma_space.h"
#include "iommu/iommufd/host_device.h"
#include "iommu/iommufd/iommufd_backend.h"
#include "iommu/iommufd/iommufd_ops.h"
#include "iommu/iommufd/shadow_domain.h"
#include "iommu/iommufd/vtd_binding.h"
#include "iommu/vtd/vtd_iommu.h"

namespace ionest::iommufd {

// One passthrough device as the backend drives it: NestedDevice (host_device.h).

struct VtdNestingOptions {
  std::vector<RamRange> ram;
  uint32_t ioas_id = 0;                 // the VM's IOAS holding guest RAM (IommufdBackend)
  bool fault_queue = true;              // allocate the fault queue (PRI forwarding)
  bool reader_thread = true;            // poll the fault queue on a thread (tests pump by hand)
  size_t max_outstanding_groups = 4096; // beyond: answered Invalid at once
  size_t max_pasid_bindings = 1024;     // per device; beyond: blocked with a fault
  ShadowLimits shadow_limits;
};

struct VtdNestingStats {
  uint64_t binds = 0;               // host attachments changed
  uint64_t bind_failures = 0;       // host refused (logged, guest fault)
  uint64_t guest_faults = 0;        // faults recorded for invalid guest entries
  uint64_t pasid_attach_unsupported = 0;
  uint64_t invalidate_calls = 0;    // IOMMU_HWPT_INVALIDATE calls
  uint64_t invalidate_entries = 0;  // entries carried by them
  uint64_t forwarded_descriptors = 0;  // guest descriptors that produced host work
  uint64_t shadow_syncs = 0;
  uint64_t invalidate_refusals = 0;
  uint64_t host_faults = 0;         // records read from the fault queue
  uint64_t injected = 0;            // page requests injected into the guest
  uint64_t responses = 0;           // responses written to the host
  uint64_t unknown_responses = 0;   // guest responses to groups the host did not send
  uint64_t auto_invalid = 0;        // groups answered Invalid by the backend (unbind/reset/exit/cap)
  uint64_t device_tlb_invalidations = 0;
};

class VtdNestingBackend final : public vtd::VtdListener {
 public:
  // Allocates the nest parent and the fault queue, attaches every device to the nest parent
  // (translation is off at start), registers as listener of `iommu` and as DmaClient of each
  // device's requester. `devices`, `ops`, `iommu` and `guest` must outlive the backend.
  static absl::StatusOr<std::unique_ptr<VtdNestingBackend>> Create(IommufdOps& ops, vtd::VtdIommu& iommu,
                                                                   PhysMemory& guest, const HostIommuInfo& host,
                                                                   std::vector<NestedDevice*> devices,
                                                                   VtdNestingOptions options);
  // Unregisters, stops the reader, answers outstanding groups, re-attaches devices to the IOAS and
  // destroys every HWPT, shadow and the fault queue.
  ~VtdNestingBackend() override;

  // vtd::VtdListener.
  void OnContextEntry(uint16_t rid, const std::optional<vtd::ContextEntry>& entry) override ABSL_LOCKS_EXCLUDED(mu_);
  void OnPasidEntry(uint16_t rid, uint32_t pasid, const std::optional<vtd::PasidEntry>& entry) override
      ABSL_LOCKS_EXCLUDED(mu_);
  void OnEntryFault(uint16_t rid, std::optional<uint32_t> pasid, const vtd::TableFault& fault) override
      ABSL_LOCKS_EXCLUDED(mu_);
  std::optional<size_t> OnInvalidationBatch(std::span<const vtd::InvDescriptor> batch) override
      ABSL_LOCKS_EXCLUDED(mu_);
  void OnTranslationEnable(bool enabled) override ABSL_LOCKS_EXCLUDED(mu_);
  void OnReset() override ABSL_LOCKS_EXCLUDED(mu_);
  // As DmaClient of the passthrough requesters (through client_): the guest's page group
  // responses and the model's automatic ones; device-TLB invalidations (covered by the host).
  void HandlePageResponse(const PageResponse& response) ABSL_LOCKS_EXCLUDED(mu_);
  void HandleDeviceTlbInvalidate() ABSL_LOCKS_EXCLUDED(mu_);

  // Reads every pending host fault and injects it into the guest. Returns the number read.
  size_t PumpFaults() ABSL_LOCKS_EXCLUDED(mu_);
  // Answers every outstanding group Invalid (guest reset, VMM exit).
  void AnswerAllOutstanding() ABSL_LOCKS_EXCLUDED(mu_);

  struct BindingView {
    BindingKind kind = BindingKind::kBlocked;
    uint32_t pt_id = 0;  // the host object attached (0: detached)
  };
  // The current host binding of (rid, pasid); nullopt pasid = requests without PASID.
  std::optional<BindingView> binding(uint16_t rid, std::optional<uint32_t> pasid) const ABSL_LOCKS_EXCLUDED(mu_);
  uint32_t nest_parent_id() const { return nest_parent_; }
  std::optional<uint32_t> fault_queue_id() const { return fault_id_; }
  size_t outstanding_groups() const ABSL_LOCKS_EXCLUDED(mu_);
  VtdNestingStats stats() const ABSL_LOCKS_EXCLUDED(mu_);
  std::string Describe() const ABSL_LOCKS_EXCLUDED(mu_);

 private:
  static constexpr uint32_t kNoPasid = 0xffffffffu;  // key for requests without PASID
  class Client final : public DmaClient {
   public:
    explicit Client(VtdNestingBackend& b) : b_(b) {}
    void OnPageResponse(const PageResponse& r) override { b_.HandlePageResponse(r); }
    void OnDeviceTlbInvalidate(std::optional<uint32_t>, uint64_t, uint64_t) override { b_.HandleDeviceTlbInvalidate(); }

   private:
    VtdNestingBackend& b_;
  };
  struct Bound {
    GuestBinding binding;  // what the guest asked for (kept when the host refused it)
    uint32_t pt_id = 0;      // attached object (nest parent, nested HWPT, shadow IOAS); 0 = detached
    uint32_t owned_hwpt = 0; // nested HWPT this binding allocated (destroyed when replaced)
    std::unique_ptr<ShadowDomain> shadow;
  };
  struct Device {
    NestedDevice* dev = nullptr;
    std::optional<vtd::ContextEntry> ctx;
    std::map<uint32_t, vtd::PasidEntry> pasids;  // the guest's valid PASID entries
    std::map<uint32_t, Bound> bound;             // key: PASID or kNoPasid
    bool pasid_attach_unsupported_logged = false;
  };
  struct GroupKey {
    uint16_t rid;
    uint32_t pasid;  // kNoPasid if none
    uint16_t index;
    auto operator<=>(const GroupKey&) const = default;
  };
  struct Group {
    uint32_t cookie = 0;
    uint32_t dev_id = 0;
  };

  VtdNestingBackend(IommufdOps& ops, vtd::VtdIommu& iommu, PhysMemory& guest, BindingEnv env, VtdNestingOptions options)
      : ops_(ops), iommu_(iommu), guest_(guest), options_(std::move(options)), env_(std::move(env)) {
    env_.ram = options_.ram;
  }

  Device* Find(uint16_t rid) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Recomputes and applies the binding of one device (all PASIDs) / every device.
  void Rebind(Device& d) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void RebindAll() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void Apply(Device& d, uint32_t pasid, GuestBinding want) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::StatusOr<Bound> Materialize(Device& d, const GuestBinding& want) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::Status AttachTo(Device& d, uint32_t pasid, uint32_t pt_id) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void Release(Bound& b) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void GuestFault(uint16_t rid, uint32_t pasid, const vtd::TableFault& fault) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Answers Invalid every outstanding group of `dev_id` for `pasid` (kNoPasid + all = every PASID).
  void AnswerOutstanding(uint32_t dev_id, std::optional<uint32_t> pasid) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void Respond(std::vector<HostPageResponse> responses) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void ReaderLoop();

  IommufdOps& ops_;
  vtd::VtdIommu& iommu_;
  PhysMemory& guest_;
  const VtdNestingOptions options_;
  BindingEnv env_;  // views options_.ram
  uint32_t nest_parent_ = 0;
  std::optional<uint32_t> fault_id_;
  int fault_fd_ = -1;
  int stop_fd_ = -1;  // eventfd waking the reader at destruction
  std::thread reader_;
  bool registered_ = false;  // listener and DmaClient registered with the model
  Client client_{*this};

  mutable absl::Mutex mu_;
  bool translation_enabled_ ABSL_GUARDED_BY(mu_) = false;
  std::vector<Device> devices_ ABSL_GUARDED_BY(mu_);
  std::multimap<GroupKey, Group> outstanding_ ABSL_GUARDED_BY(mu_);
  VtdNestingStats stats_ ABSL_GUARDED_BY(mu_);
};

}  // namespace ionest::iommufd
