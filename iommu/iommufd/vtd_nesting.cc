#include "iommu/iommufd/vtd_nesting.h"

#include <poll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>

#include "absl/base/internal/raw_logging.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "iommu/vtd/descriptors.h"
#include "iommu/vtd/fault_reasons.h"

namespace ionest::iommufd {

using vtd::InvDescriptor;

namespace {

constexpr uint32_t kHwInfoTypeIntelVtd = 1;  // IOMMU_HW_INFO_TYPE_INTEL_VTD
// The kernel hands out whole groups only; a group larger than this would stall the read.
constexpr size_t kFaultsPerRead = 1024;

uint32_t AccessFromPerm(uint32_t perm) {
  uint32_t access = 0;
  if (perm & kPermRead) access |= kDmaRead;
  if (perm & kPermWrite) access |= kDmaWrite;
  if (perm & kPermExec) access |= kDmaExec;
  if (perm & kPermPriv) access |= kDmaPriv;
  return access;
}

// The host invalidation a guest IOTLB descriptor asks for (§6.5.2.3 / §6.5.2.4). AM masks the low
// ADDR bits: the range is the 2^AM-page block containing ADDR, aligned to its size (as the model's
// IOTLB invalidates it). Without PSI, or with AM > MAMV (undefined; the model executes it as
// domain/PASID-selective), everything.
VtdS1Invalidation EntryFor(const InvDescriptor& d, bool page_selective, const vtd::VtdProfile& profile) {
  const uint8_t am = d.inv_am();
  if (!page_selective || !profile.psi || am > profile.mamv || am >= 52) return {0, UINT64_MAX, false};
  const uint64_t npages = uint64_t{1} << am;
  return {d.inv_addr() & ~((npages << 12) - 1), npages, d.inv_ih()};
}

}  // namespace

absl::StatusOr<std::unique_ptr<VtdNestingBackend>> VtdNestingBackend::Create(
    IommufdOps& ops, vtd::VtdIommu& iommu, PhysMemory& guest, const HostIommuInfo& host,
    std::vector<NestedDevice*> devices, VtdNestingOptions options) {
  if (devices.empty()) return absl::InvalidArgumentError("vtd nesting: no passthrough device");
  if (host.type != kHwInfoTypeIntelVtd) {
    return absl::FailedPreconditionError(absl::StrFormat(
        "vtd nesting: the host IOMMU of %s is not Intel VT-d (IOMMU_GET_HW_INFO type %u): a guest VT-d first stage "
        "can only be nested on a VT-d host; run without --iommu=vtd for this device",
        devices[0]->name(), host.type));
  }
  if (!HostNesting(host.vtd_ecap)) {
    return absl::FailedPreconditionError(absl::StrFormat(
        "vtd nesting: the host VT-d of %s does not support nested translation (ECAP 0x%x has no NEST bit): "
        "use a host whose IOMMU has it, or run without --iommu=vtd for this device",
        devices[0]->name(), host.vtd_ecap));
  }
  BindingEnv env{iommu.profile(), {}, HostFs5lp(host.vtd_cap)};
  auto backend = std::unique_ptr<VtdNestingBackend>(new VtdNestingBackend(ops, iommu, guest, env, std::move(options)));
  VtdNestingBackend& b = *backend;

  HwptAllocRequest parent;
  parent.dev_id = devices[0]->dev_id();
  parent.pt_id = b.options_.ioas_id;
  parent.nest_parent = true;
  absl::StatusOr<uint32_t> id = ops.AllocHwpt(parent);
  if (!id.ok()) {
    return absl::Status(id.status().code(),
                        absl::StrCat("vtd nesting: allocating the nest-parent stage 2 over guest RAM for ",
                                     devices[0]->name(), ": ", id.status().message()));
  }
  b.nest_parent_ = *id;
  if (b.options_.fault_queue) {
    absl::StatusOr<FaultQueue> q = ops.AllocFaultQueue();
    if (q.ok()) {
      b.fault_id_ = q->id;
      b.fault_fd_ = q->fd;
    } else {
      ABSL_RAW_LOG(WARNING, "vtd nesting: no host fault queue (%s): page requests of passthrough devices are not "
                   "forwarded to the guest", std::string(q.status().message()).c_str());
    }
  }
  {
    absl::MutexLock l(&b.mu_);
    for (NestedDevice* dev : devices) {
      if (absl::Status s = dev->Attach(b.nest_parent_); !s.ok()) {
        return absl::Status(s.code(), absl::StrCat("vtd nesting: attaching ", dev->name(), " to the nest parent: ",
                                                   s.message()));
      }
      Device d;
      d.dev = dev;
      Bound identity;
      identity.binding.kind = BindingKind::kIdentity;
      identity.pt_id = b.nest_parent_;
      d.bound.emplace(kNoPasid, std::move(identity));
      b.devices_.push_back(std::move(d));
    }
  }
  b.stop_fd_ = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (b.stop_fd_ < 0) return absl::InternalError("vtd nesting: eventfd failed");
  for (NestedDevice* dev : devices) iommu.ForRequester(dev->rid()).SetClient(&b.client_);
  iommu.AddListener(&b);
  b.registered_ = true;
  if (b.fault_fd_ >= 0 && b.options_.reader_thread) b.reader_ = std::thread([&b] { b.ReaderLoop(); });
  return backend;
}

VtdNestingBackend::~VtdNestingBackend() {
  if (registered_) {
    iommu_.RemoveListener(this);
    absl::MutexLock l(&mu_);
    for (Device& d : devices_) iommu_.ForRequester(d.dev->rid()).SetClient(nullptr);
  }
  if (reader_.joinable()) {
    uint64_t one = 1;
    if (write(stop_fd_, &one, sizeof(one)) < 0) ABSL_RAW_LOG(WARNING, "vtd nesting: waking the reader failed");
    reader_.join();
  }
  absl::MutexLock l(&mu_);
  AnswerOutstanding(0, std::nullopt);
  for (Device& d : devices_) {
    // Back to the plain IOAS so every HWPT this backend made can be destroyed.
    if (absl::Status s = d.dev->Attach(options_.ioas_id); !s.ok()) {
      ABSL_RAW_LOG(WARNING, "vtd nesting: re-attaching %s to the IOAS: %s", d.dev->name().c_str(),
                   std::string(s.message()).c_str());
    }
    for (auto& [pasid, b] : d.bound) {
      if (pasid != kNoPasid && b.pt_id != 0) (void)d.dev->DetachPasid(pasid);
      Release(b);
    }
    d.bound.clear();
  }
  if (nest_parent_ != 0) {
    if (absl::Status s = ops_.Destroy(nest_parent_); !s.ok()) {
      ABSL_RAW_LOG(WARNING, "vtd nesting: destroying the nest parent: %s", std::string(s.message()).c_str());
    }
  }
  // The open fault fd holds a reference to the queue (Linux 6.12 fault.c): close it first.
  if (fault_fd_ >= 0) close(fault_fd_);
  if (fault_id_) (void)ops_.Destroy(*fault_id_);
  if (stop_fd_ >= 0) close(stop_fd_);
}

VtdNestingBackend::Device* VtdNestingBackend::Find(uint16_t rid) {
  for (Device& d : devices_) {
    if (d.dev->rid() == rid) return &d;
  }
  return nullptr;
}

// ---------------------------------------------------------------------------------------------
// Binding.

void VtdNestingBackend::OnContextEntry(uint16_t rid, const std::optional<vtd::ContextEntry>& entry) {
  absl::MutexLock l(&mu_);
  Device* d = Find(rid);
  if (!d) return;
  d->ctx = entry;
  Rebind(*d);
}

void VtdNestingBackend::OnPasidEntry(uint16_t rid, uint32_t pasid, const std::optional<vtd::PasidEntry>& entry) {
  absl::MutexLock l(&mu_);
  Device* d = Find(rid);
  if (!d) return;
  if (entry) {
    if (!d->pasids.count(pasid) && d->pasids.size() >= options_.max_pasid_bindings) {
      ABSL_RAW_LOG(WARNING, "vtd nesting: %s: more than %zu PASID entries; PASID %u stays blocked",
                   d->dev->name().c_str(), options_.max_pasid_bindings, pasid);
      return;
    }
    d->pasids[pasid] = *entry;
  } else {
    d->pasids.erase(pasid);
  }
  Rebind(*d);
}

void VtdNestingBackend::OnEntryFault(uint16_t rid, std::optional<uint32_t> pasid, const vtd::TableFault& fault) {
  absl::MutexLock l(&mu_);
  if (Find(rid)) GuestFault(rid, pasid.value_or(kNoPasid), fault);
}

void VtdNestingBackend::OnTranslationEnable(bool enabled) {
  absl::MutexLock l(&mu_);
  translation_enabled_ = enabled;
  RebindAll();
}

void VtdNestingBackend::OnReset() {
  absl::MutexLock l(&mu_);
  AnswerOutstanding(0, std::nullopt);
  translation_enabled_ = false;
  for (Device& d : devices_) {
    d.ctx.reset();
    d.pasids.clear();
  }
  RebindAll();
}

void VtdNestingBackend::RebindAll() {
  for (Device& d : devices_) Rebind(d);
}

void VtdNestingBackend::Rebind(Device& d) {
  const std::optional<vtd::ContextEntry>& ctx = d.ctx;
  std::optional<uint32_t> rid_pasid;
  std::optional<vtd::PasidEntry> rid_entry;
  if (ctx && ctx->scalable) {
    rid_pasid = ctx->rid_pasid;
    if (auto it = d.pasids.find(ctx->rid_pasid); it != d.pasids.end()) rid_entry = it->second;
  }
  Apply(d, kNoPasid, BindRequester(env_, translation_enabled_, ctx, rid_entry));
  const bool pasids_enabled = translation_enabled_ && ctx && ctx->scalable && ctx->pasid_enable;
  // Requests with PASID: every valid entry except the RID_PASID one (that serves requests without).
  for (const auto& [pasid, entry] : d.pasids) {
    if (pasid == rid_pasid || !pasids_enabled) continue;
    Apply(d, pasid, BindPasid(env_, true, entry));
  }
  std::vector<uint32_t> gone;
  for (const auto& [pasid, b] : d.bound) {
    if (pasid == kNoPasid) continue;
    if (!pasids_enabled || pasid == rid_pasid || !d.pasids.count(pasid)) gone.push_back(pasid);
  }
  for (uint32_t pasid : gone) Apply(d, pasid, GuestBinding{});
}

void VtdNestingBackend::GuestFault(uint16_t rid, uint32_t pasid, const vtd::TableFault& fault) {
  vtd::FaultInfo info;
  info.reason = fault.reason;
  info.sid = rid;
  info.type = vtd::FaultRequestType::kRead;
  if (pasid != kNoPasid) info.pasid = pasid;
  iommu_.RecordExternalFault(info, fault);
  ++stats_.guest_faults;
}

absl::StatusOr<VtdNestingBackend::Bound> VtdNestingBackend::Materialize(Device& d, const GuestBinding& want) {
  Bound b;
  b.binding = want;
  switch (want.kind) {
    case BindingKind::kBlocked:
      return b;
    case BindingKind::kIdentity:
      b.pt_id = nest_parent_;
      return b;
    case BindingKind::kNested: {
      HwptAllocRequest req;
      req.dev_id = d.dev->dev_id();
      req.pt_id = nest_parent_;
      req.vtd_s1 = want.stage1;
      if (d.dev->pri() && fault_id_) req.fault_id = *fault_id_;
      absl::StatusOr<uint32_t> id = ops_.AllocHwpt(req);
      if (!id.ok()) return id.status();
      b.pt_id = b.owned_hwpt = *id;
      return b;
    }
    case BindingKind::kShadow: {
      absl::StatusOr<std::unique_ptr<ShadowDomain>> shadow =
          ShadowDomain::Create(ops_, guest_, options_.ram, want.stage2, options_.shadow_limits);
      if (!shadow.ok()) return shadow.status();
      // Filled by Apply once the device is attached (the host then knows its reserved ranges).
      b.pt_id = (*shadow)->ioas_id();
      b.shadow = std::move(*shadow);
      return b;
    }
  }
  return absl::InternalError("unknown binding kind");
}

absl::Status VtdNestingBackend::AttachTo(Device& d, uint32_t pasid, uint32_t pt_id) {
  if (pasid == kNoPasid) return pt_id ? d.dev->Attach(pt_id) : d.dev->Detach();
  return pt_id ? d.dev->AttachPasid(pasid, pt_id) : d.dev->DetachPasid(pasid);
}

void VtdNestingBackend::Release(Bound& b) {
  b.shadow.reset();  // unmaps and destroys its IOAS
  if (b.owned_hwpt != 0) {
    if (absl::Status s = ops_.Destroy(b.owned_hwpt); !s.ok()) {
      ABSL_RAW_LOG(WARNING, "vtd nesting: destroying HWPT %u: %s", b.owned_hwpt, std::string(s.message()).c_str());
    }
    b.owned_hwpt = 0;
  }
  b.pt_id = 0;
}

void VtdNestingBackend::Apply(Device& d, uint32_t pasid, GuestBinding want) {
  auto it = d.bound.find(pasid);
  const bool had = it != d.bound.end();
  if (had && it->second.binding == want) return;
  if (!had && want.kind == BindingKind::kBlocked && !want.fault) return;  // nothing attached there
  const uint16_t rid = d.dev->rid();
  if (want.fault) GuestFault(rid, pasid, *want.fault);
  if (!want.note.empty()) {
    ABSL_RAW_LOG(WARNING, "vtd nesting: %s PASID %d: %s", d.dev->name().c_str(),
                 pasid == kNoPasid ? -1 : static_cast<int>(pasid), want.note.c_str());
  }
  absl::StatusOr<Bound> next = Materialize(d, want);
  const uint32_t old_pt = had ? it->second.pt_id : 0;
  if (!next.ok()) {
    ++stats_.bind_failures;
    ABSL_RAW_LOG(WARNING, "vtd nesting: %s: binding %s for PASID %d failed: %s", d.dev->name().c_str(),
                 BindingKindName(want.kind), pasid == kNoPasid ? -1 : static_cast<int>(pasid),
                 std::string(next.status().message()).c_str());
    GuestFault(rid, pasid, vtd::TableFault{vtd::kSmPasidEntryInvalid, false, false});
    next = Bound{};
  }
  absl::Status attached = next->pt_id == 0 && old_pt == 0 ? absl::OkStatus() : AttachTo(d, pasid, next->pt_id);
  if (absl::Status s = attached; !s.ok()) {
    if (s.code() == absl::StatusCode::kFailedPrecondition && pasid != kNoPasid) {
      ++stats_.pasid_attach_unsupported;
      if (!d.pasid_attach_unsupported_logged) {
        d.pasid_attach_unsupported_logged = true;
        ABSL_RAW_LOG(WARNING, "vtd nesting: %s: %s; DMA with PASID %u (and later PASIDs) stays blocked",
                     d.dev->name().c_str(), std::string(s.message()).c_str(), pasid);
      }
    } else {
      ++stats_.bind_failures;
      ABSL_RAW_LOG(WARNING, "vtd nesting: %s: attaching %s (object %u) for PASID %d: %s", d.dev->name().c_str(),
                   BindingKindName(next->binding.kind), next->pt_id, pasid == kNoPasid ? -1 : static_cast<int>(pasid),
                   std::string(s.message()).c_str());
      if (next->binding.kind != BindingKind::kBlocked) {
        GuestFault(rid, pasid, vtd::TableFault{vtd::kSmPasidEntryInvalid, false, false});
      }
    }
    Release(*next);
    next = Bound{};
    if (had && it->second.pt_id != 0) (void)AttachTo(d, pasid, 0);  // never leave the old tables reachable
  }
  if (next->shadow) {
    ++stats_.shadow_syncs;
    if (absl::Status s = next->shadow->SyncAll(); !s.ok()) {
      ++stats_.bind_failures;
      ABSL_RAW_LOG(WARNING, "vtd nesting: %s: filling the shadow of the guest's second-stage table: %s",
                   d.dev->name().c_str(), std::string(s.message()).c_str());
      GuestFault(rid, pasid, vtd::TableFault{vtd::kSmPasidEntryInvalid, false, false});
      (void)AttachTo(d, pasid, 0);
      Release(*next);
      next = Bound{};
    }
  }
  next->binding = want;  // what the guest asked for: not retried until the guest changes it
  ++stats_.binds;
  if (had) {
    // Faults pending on the old translation can no longer be served by it.
    if (it->second.binding.kind == BindingKind::kNested) AnswerOutstanding(d.dev->dev_id(), pasid);
    Release(it->second);
    d.bound.erase(it);
  }
  if (want.kind == BindingKind::kBlocked && !want.fault && pasid != kNoPasid) return;  // nothing to track
  d.bound.emplace(pasid, std::move(*next));
}

std::optional<VtdNestingBackend::BindingView> VtdNestingBackend::binding(uint16_t rid,
                                                                         std::optional<uint32_t> pasid) const {
  absl::MutexLock l(&mu_);
  for (const Device& d : devices_) {
    if (d.dev->rid() != rid) continue;
    auto it = d.bound.find(pasid.value_or(kNoPasid));
    if (it == d.bound.end()) return std::nullopt;
    const Bound& b = it->second;
    return BindingView{b.pt_id ? b.binding.kind : BindingKind::kBlocked, b.pt_id};
  }
  return std::nullopt;
}

// ---------------------------------------------------------------------------------------------
// Invalidations.

std::optional<size_t> VtdNestingBackend::OnInvalidationBatch(std::span<const InvDescriptor> batch) {
  absl::MutexLock l(&mu_);
  struct HostCall {
    std::vector<VtdS1Invalidation> entries;
    std::vector<size_t> origin;  // batch index of each entry
  };
  std::map<uint32_t, HostCall> calls;
  std::optional<size_t> refused;
  auto refuse = [&refused](size_t i) {
    if (!refused || i < *refused) refused = i;
  };
  for (size_t i = 0; i < batch.size(); ++i) {
    const InvDescriptor& d = batch[i];
    const uint8_t type = d.type();
    if (type != vtd::kDescIotlb && type != vtd::kDescPasidIotlb) continue;
    // §6.5.2.3 IOTLB: 1 global, 2 domain, 3 page; §6.5.2.4 PASID-IOTLB: 2 PASID, 3 page-in-PASID.
    const bool global = type == vtd::kDescIotlb && d.granularity() == 1;
    const bool page = d.granularity() == 3;
    bool touched = false;
    for (Device& dev : devices_) {
      for (auto& [key, b] : dev.bound) {
        if (b.owned_hwpt == 0 && !b.shadow) continue;  // nothing of the guest's tables on the host
        if (!global && b.binding.did != d.did()) continue;
        if (type == vtd::kDescPasidIotlb) {
          // Requests without PASID are translated through the RID_PASID entry (§9.4).
          uint32_t pasid = key;
          if (key == kNoPasid) pasid = dev.ctx && dev.ctx->scalable ? dev.ctx->rid_pasid : kNoPasid;
          if (pasid != d.pasid()) continue;
        }
        touched = true;
        if (b.binding.kind == BindingKind::kNested) {
          HostCall& c = calls[b.owned_hwpt];
          c.entries.push_back(EntryFor(d, page, env_.profile));
          c.origin.push_back(i);
        } else if (b.shadow) {
          const VtdS1Invalidation e = EntryFor(d, page, env_.profile);
          const uint64_t size = e.npages == UINT64_MAX || e.npages > (uint64_t{1} << 52) ? 0 : e.npages << 12;
          ++stats_.shadow_syncs;
          if (absl::Status s = b.shadow->Sync(e.addr, size); !s.ok()) {
            ABSL_RAW_LOG(WARNING, "vtd nesting: %s: shadow replay of [0x%llx, +0x%llx): %s", dev.dev->name().c_str(),
                         static_cast<unsigned long long>(e.addr), static_cast<unsigned long long>(size),
                         std::string(s.message()).c_str());
            refuse(i);
          }
        }
      }
    }
    if (touched) ++stats_.forwarded_descriptors;
  }
  for (auto& [hwpt, c] : calls) {
    ++stats_.invalidate_calls;
    stats_.invalidate_entries += c.entries.size();
    InvalidateResult r = ops_.InvalidateVtdS1(hwpt, c.entries);
    if (!r.status.ok()) {
      ABSL_RAW_LOG(WARNING, "vtd nesting: %s (entry %u of %zu)", std::string(r.status.message()).c_str(), r.done,
                   c.entries.size());
      refuse(c.origin[std::min<size_t>(r.done, c.origin.size() - 1)]);
    }
  }
  if (refused) ++stats_.invalidate_refusals;
  return refused;
}

void VtdNestingBackend::HandleDeviceTlbInvalidate() {
  // IOMMU_HWPT_INVALIDATE invalidates the device TLB of ATS-enabled devices on the host, and the
  // guest's device-TLB descriptor always follows its IOTLB descriptor in the same batch.
  absl::MutexLock l(&mu_);
  ++stats_.device_tlb_invalidations;
}

// ---------------------------------------------------------------------------------------------
// Page faults.

size_t VtdNestingBackend::PumpFaults() {
  std::vector<PageRequest> inject;
  size_t read = 0;
  {
    absl::MutexLock l(&mu_);
    if (fault_fd_ < 0) return 0;
    absl::StatusOr<std::vector<HostPageFault>> faults = ops_.ReadFaults(fault_fd_, kFaultsPerRead);
    if (!faults.ok()) {
      ABSL_RAW_LOG(WARNING, "vtd nesting: reading the fault queue: %s", std::string(faults.status().message()).c_str());
      return 0;
    }
    read = faults->size();
    stats_.host_faults += read;
    std::vector<HostPageResponse> refuse;
    for (const HostPageFault& f : *faults) {
      Device* dev = nullptr;
      for (Device& d : devices_) {
        if (d.dev->dev_id() == f.dev_id) dev = &d;
      }
      if (!dev || (f.last && outstanding_.size() >= options_.max_outstanding_groups)) {
        if (f.last) {
          refuse.push_back({f.cookie, HostResponseCode::kInvalid});
          ++stats_.auto_invalid;
        }
        continue;
      }
      PageRequest r;
      r.rid = dev->dev->rid();
      if (f.pasid_valid) r.pasid = f.pasid;
      r.addr = f.addr & ~uint64_t{0xfff};
      r.access = AccessFromPerm(f.perm);
      r.last = f.last;
      r.group_index = static_cast<uint16_t>(f.grpid & 0x1ff);
      // Registered before injection: an overflow answers synchronously (§7.5.1).
      if (f.last) outstanding_.emplace(GroupKey{r.rid, r.pasid.value_or(kNoPasid), r.group_index}, Group{f.cookie, f.dev_id});
      inject.push_back(r);
    }
    if (!refuse.empty()) Respond(std::move(refuse));
  }
  for (const PageRequest& r : inject) {
    absl::Status s = iommu_.InjectPageRequest(r);
    absl::MutexLock l(&mu_);
    if (s.ok()) {
      ++stats_.injected;
      continue;
    }
    ABSL_RAW_LOG(WARNING, "vtd nesting: injecting a page request of RID %04x: %s", r.rid,
                 std::string(s.message()).c_str());
    if (!r.last) continue;
    auto it = outstanding_.find(GroupKey{r.rid, r.pasid.value_or(kNoPasid), r.group_index});
    if (it != outstanding_.end()) {
      Respond({{it->second.cookie, HostResponseCode::kInvalid}});
      outstanding_.erase(it);
      ++stats_.auto_invalid;
    }
  }
  return read;
}

void VtdNestingBackend::HandlePageResponse(const PageResponse& response) {
  absl::MutexLock l(&mu_);
  auto it = outstanding_.find(GroupKey{response.rid, response.pasid.value_or(kNoPasid), response.group_index});
  if (it == outstanding_.end()) {
    ++stats_.unknown_responses;  // a response to a group the host never sent: nothing to answer
    return;
  }
  // PCIe §10.4.2.1: Success → retry; Invalid Request and Response Failure → the request fails
  // (iommufd has no code for "disable PRI"; the device sees the request refused).
  HostResponseCode code =
      response.code == PageResponseCode::kSuccess ? HostResponseCode::kSuccess : HostResponseCode::kInvalid;
  Respond({{it->second.cookie, code}});
  outstanding_.erase(it);
}

void VtdNestingBackend::Respond(std::vector<HostPageResponse> responses) {
  if (fault_fd_ < 0 || responses.empty()) return;
  absl::Status s = ops_.WriteResponses(fault_fd_, responses);
  if (s.ok()) {
    stats_.responses += responses.size();
    return;
  }
  ABSL_RAW_LOG(WARNING, "vtd nesting: answering %zu page request group(s): %s; writing them one by one",
               responses.size(), std::string(s.message()).c_str());
  // The kernel stops at the first response it refuses (iommufd_fault_fops_write: an unknown cookie,
  // e.g. one it answered itself when the device's HWPT was replaced) and never takes the ones after
  // it: a short write. Each group whose answer is dropped keeps its device's page requests waiting
  // until the VM exits, so every response is written again on its own; those already taken are
  // refused (logged) and change nothing.
  for (const HostPageResponse& r : responses) {
    if (absl::Status one = ops_.WriteResponses(fault_fd_, {&r, 1}); one.ok()) {
      ++stats_.responses;
    } else {
      ABSL_RAW_LOG(WARNING, "vtd nesting: answering page request group cookie %u: %s", r.cookie,
                   std::string(one.message()).c_str());
    }
  }
}

void VtdNestingBackend::AnswerOutstanding(uint32_t dev_id, std::optional<uint32_t> pasid) {
  std::vector<HostPageResponse> answers;
  for (auto it = outstanding_.begin(); it != outstanding_.end();) {
    const bool all = dev_id == 0 && !pasid;
    const bool match = all || (it->second.dev_id == dev_id && (!pasid || it->first.pasid == *pasid));
    if (!match) {
      ++it;
      continue;
    }
    answers.push_back({it->second.cookie, HostResponseCode::kInvalid});
    it = outstanding_.erase(it);
  }
  stats_.auto_invalid += answers.size();
  Respond(std::move(answers));
}

void VtdNestingBackend::AnswerAllOutstanding() {
  absl::MutexLock l(&mu_);
  AnswerOutstanding(0, std::nullopt);
}

void VtdNestingBackend::ReaderLoop() {
  for (;;) {
    pollfd fds[2] = {{fault_fd_, POLLIN, 0}, {stop_fd_, POLLIN, 0}};
    int n = poll(fds, 2, -1);
    if (n < 0) {
      if (errno == EINTR) continue;
      ABSL_RAW_LOG(WARNING, "vtd nesting: poll on the fault queue failed (errno %d); fault forwarding stops", errno);
      return;
    }
    if (fds[1].revents) return;
    if (fds[0].revents & (POLLERR | POLLNVAL)) {
      ABSL_RAW_LOG(WARNING, "vtd nesting: the fault queue fd reported an error; fault forwarding stops");
      return;
    }
    if ((fds[0].revents & POLLIN) && PumpFaults() == 0) {
      poll(nullptr, 0, 1);  // readable but nothing whole to read yet: do not spin
    }
  }
}

size_t VtdNestingBackend::outstanding_groups() const {
  absl::MutexLock l(&mu_);
  return outstanding_.size();
}

VtdNestingStats VtdNestingBackend::stats() const {
  absl::MutexLock l(&mu_);
  return stats_;
}

std::string VtdNestingBackend::Describe() const {
  absl::MutexLock l(&mu_);
  std::string s = absl::StrFormat("vtd nesting: nest parent HWPT %u over IOAS %u, fault queue %s", nest_parent_,
                                  options_.ioas_id, fault_id_ ? absl::StrCat(*fault_id_) : "none");
  for (const Device& d : devices_) {
    absl::StrAppendFormat(&s, "; %s rid %02x:%02x.%x dev %u%s", d.dev->name(), d.dev->rid() >> 8,
                          (d.dev->rid() >> 3) & 0x1f, d.dev->rid() & 7, d.dev->dev_id(), d.dev->pri() ? " pri" : "");
  }
  return s;
}

}  // namespace ionest::iommufd
