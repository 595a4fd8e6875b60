#include "iommu/vtd/vtd_iommu.h"

#include <algorithm>
#include <cstring>

#include "absl/strings/str_format.h"
#include "iommu/vtd/events.h"
#include "iommu/vtd/register_map.h"
#include "iommu/vtd/vtd_trace.h"

namespace ionest::vtd {

// ---------------------------------------------------------------------------------------------
// Per-requester DMA space.

class VtdIommu::Space final : public DmaSpace {
 public:
  Space(VtdIommu& iommu, uint16_t rid) : DmaSpace(iommu.memory_), iommu_(iommu), rid_(rid) {}
  Translation Translate(uint64_t iova, uint64_t len, uint32_t access, const DmaAttrs& attrs) override {
    return iommu_.TranslateFor(rid_, iova, len, access, attrs);
  }
  AtsTranslation AtsTranslate(uint64_t iova, uint32_t access, const DmaAttrs& attrs) override {
    return iommu_.AtsTranslateFor(rid_, iova, access, attrs);
  }
  bool AllowTranslatedRequest() override { return iommu_.AllowTranslatedFor(rid_); }
  absl::Status SendPageRequest(const PageRequest& request) override {
    PageRequest r = request;
    r.rid = rid_;  // the requester id is the space's, whatever the device claims
    return iommu_.PageRequestFor(r, std::nullopt);
  }

 private:
  VtdIommu& iommu_;
  const uint16_t rid_;
};

class VtdIommu::QueueHandler final : public InvalidationHandler {
 public:
  explicit QueueHandler(VtdIommu& iommu) : iommu_(iommu) {}
  IqeiCode Execute(const InvDescriptor& d, Outbox& out) override ABSL_NO_THREAD_SAFETY_ANALYSIS {
    return iommu_.ExecuteDescriptor(d, out);
  }
  IqeiCode Flush(Outbox& out) override ABSL_NO_THREAD_SAFETY_ANALYSIS { return iommu_.FlushInvalidations(out); }

 private:
  VtdIommu& iommu_;
};

// ---------------------------------------------------------------------------------------------

VtdIommu::VtdIommu(PhysMemory& memory, MsiSink& cpu, VtdProfile profile)
    : memory_(memory),
      cpu_(cpu),
      profile_(profile),
      regs_(profile_.window_size(), VtdRegisterDefs(profile_, kVersion)),
      faults_(regs_, profile_.fault_record_offset(), profile_.nfr),
      queue_(regs_, faults_, profile_.scalable_mode, profile_.mamv),
      prq_(regs_),
      context_cache_(profile_.context_cache_entries),
      pasid_cache_(profile_.pasid_cache_entries),
      iotlb_(profile_.iotlb_entries),
      remapper_(profile_.irte_cache_entries) {}

VtdIommu::~VtdIommu() = default;

DmaSpace& VtdIommu::ForRequester(uint16_t rid) {
  absl::MutexLock l(&spaces_mu_);
  auto& slot = spaces_[rid];
  if (!slot) slot = std::make_unique<Space>(*this, rid);
  return *slot;
}

DmaClient* VtdIommu::ClientOf(uint16_t rid) {
  absl::MutexLock l(&spaces_mu_);
  auto it = spaces_.find(rid);
  return it == spaces_.end() ? nullptr : it->second->client();
}

void VtdIommu::AddListener(VtdListener* listener) {
  absl::MutexLock l(&mu_);
  if (listeners_.empty()) {
    // Start from the current state so the first invalidation reports only real changes.
    observer_.Clear();
  }
  listeners_.push_back(listener);
}

void VtdIommu::RemoveListener(VtdListener* listener) {
  absl::MutexLock l(&mu_);
  listeners_.erase(std::remove(listeners_.begin(), listeners_.end(), listener), listeners_.end());
}

void VtdIommu::Reset() {
  std::vector<VtdListener*> listeners;
  {
    absl::MutexLock l(&mu_);
    ResetLocked();
    listeners = listeners_;
  }
  for (VtdListener* l : listeners) l->OnReset();
}

void VtdIommu::ResetLocked() {
  forward_batch_.clear();
  regs_.Reset();
  faults_.Reset();
  queue_.SetEnabled(false);
  context_cache_.InvalidateAll();
  pasid_cache_.InvalidateAll();
  iotlb_.InvalidateAll();
  remapper_.InvalidateAll();
  observer_.Clear();
  translation_ = {};
  irt_ = {};
}

VtdStats VtdIommu::stats() const {
  absl::MutexLock l(&mu_);
  VtdStats s = stats_;
  s.faults_recorded = faults_.recorded();
  s.faults_dropped = faults_.dropped();
  s.descriptors = queue_.processed();
  s.page_requests = prq_.queued();
  s.page_request_overflows = prq_.overflows();
  s.context_cache = context_cache_.size();
  s.pasid_cache = pasid_cache_.size();
  s.iotlb = iotlb_.size();
  s.irte_cache = remapper_.cache_size();
  return s;
}

// The IOMMU's own event interrupts are never remapped (§5.1.6): straight to the CPU.
void VtdIommu::Deliver(Outbox& out) { out.Deliver(cpu_, "vtd"); }

void VtdIommu::DeliverUnlocked(Outbox& out) { out.DeliverUnlocked(mu_, cpu_, "vtd"); }

// ---------------------------------------------------------------------------------------------
// Register window.

void VtdIommu::IoRead(uint64_t offset, uint8_t* data, size_t size) {
  size_t done = 0;
  while (done < size) {
    uint32_t n = static_cast<uint32_t>(std::min<size_t>(8, size - done));
    uint64_t v = ReadRegister(offset + done, n);
    std::memcpy(data + done, &v, n);
    done += n;
  }
}

void VtdIommu::IoWrite(uint64_t offset, const uint8_t* data, size_t size) {
  size_t done = 0;
  while (done < size) {
    uint32_t n = static_cast<uint32_t>(std::min<size_t>(8, size - done));
    uint64_t v = 0;
    std::memcpy(&v, data + done, n);
    WriteRegister(offset + done, v, n);
    done += n;
  }
}

uint64_t VtdIommu::ReadRegister(uint64_t offset, uint32_t size) {
  absl::MutexLock l(&mu_);
  return regs_.Read(offset, size);
}

void VtdIommu::WriteRegister(uint64_t offset, uint64_t value, uint32_t size) {
  Outbox out;
  {
    absl::MutexLock l(&mu_);
    for (const WriteEffect& e : regs_.Write(offset, size, value)) HandleWrite(e, out);
  }
  Deliver(out);
}

void VtdIommu::HandleWrite(const WriteEffect& e, Outbox& out) {
  switch (e.reg) {
    case kGcmdReg:
      HandleGcmd(static_cast<uint32_t>(e.written), out);
      return;
    case kFstsReg: {
      bool iqe_cleared = (e.old_value & kFstsIqe) && !(e.new_value & kFstsIqe);
      faults_.OnStatusWrite();
      if (iqe_cleared) ProcessQueue(out);  // §6.5.2.10: fetching resumes once IQE is cleared
      return;
    }
    case kFectlReg:
      OnEventControlWrite(regs_, kFaultEvent, out);
      return;
    case kIectlReg:
      OnEventControlWrite(regs_, kInvalidationEvent, out);
      return;
    case kPectlReg:
      OnEventControlWrite(regs_, kPageRequestEvent, out);
      return;
    case kIcsReg:
      if (!(e.new_value & kIcsIwc)) ClearPendingEvent(regs_, kInvalidationEvent);
      return;
    case kPrsReg:
      prq_.OnStatusWrite();
      return;
    case kIqtReg:
      ProcessQueue(out);
      return;
    case kCcmdReg:
      if (e.new_value & (1ull << 63)) RegisterContextInvalidation(out);
      return;
    default:
      break;
  }
  if (e.reg == profile_.iotlb_offset()) {
    if (e.new_value & (1ull << 63)) RegisterIotlbInvalidation(out);
  } else if (e.reg >= profile_.fault_record_offset() &&
             e.reg < profile_.fault_record_offset() + 16 * profile_.nfr) {
    faults_.OnStatusWrite();  // an FRCD.F was cleared
  }
}

void VtdIommu::HandleGcmd(uint32_t v, Outbox& out) {
  // §11.4.4: TE, QIE, IRE, CFI are levels; SRTP, SIRTP, WBF are one-shot commands.
  uint32_t gsts = static_cast<uint32_t>(regs_.Get(kGstsReg));
  auto set = [&gsts](uint32_t bit, bool on) { gsts = on ? (gsts | bit) : (gsts & ~bit); };
  if (v & kGcmdSrtp) {
    translation_.rtaddr = regs_.Get(kRtaddrReg);  // §10.4.6: latched by SRTP
    set(kGcmdSrtp, true);                          // RTPS
  }
  if (v & kGcmdSirtp) {
    if (profile_.ir) {
      irt_ = IrtConfig::FromIrta(regs_.Get(kIrtaReg));
      set(kGcmdSirtp, true);  // IRTPS
    }
  }
  // WBF: nothing is write-buffered; WBFS stays clear.
  const bool was_enabled = translation_.enabled;
  translation_.enabled = v & kGcmdTe;
  set(kGcmdTe, translation_.enabled);
  if (was_enabled != translation_.enabled) {
    const bool enabled = translation_.enabled;
    for (VtdListener* l : listeners_) out.calls.push_back([l, enabled] { l->OnTranslationEnable(enabled); });
  }
  bool qie = profile_.qi && (v & kGcmdQie);
  if (qie != queue_.enabled()) queue_.SetEnabled(qie);
  set(kGcmdQie, qie);
  set(kGcmdIre, profile_.ir && (v & kGcmdIre));
  set(kGcmdCfi, profile_.ir && (v & kGcmdCfi));
  regs_.Set(kGstsReg, gsts);
  if (qie) ProcessQueue(out);
}

// ---------------------------------------------------------------------------------------------
// Invalidation.

void VtdIommu::ProcessQueue(Outbox& out) {
  if (queue_busy_) {  // another thread is processing: it will look again
    queue_rekick_ = true;
    return;
  }
  queue_busy_ = true;
  QueueHandler handler(*this);
  int rounds = 0;
  do {
    queue_rekick_ = false;
    queue_.Process(memory_, handler, out);
  } while (queue_rekick_ && ++rounds < 4);
  queue_busy_ = false;
}

void VtdIommu::NotifyInvalidation(const InvDescriptor& d, Outbox& out) {
  if (listeners_.empty()) return;
  for (VtdListener* l : listeners_) out.calls.push_back([l, d] { l->OnInvalidation(d); });
  if (d.type() == kDescWait) return;  // a wait ends a batch; it is not part of one
  std::optional<uint64_t> head;
  if (queue_busy_) head = queue_.current_head();
  forward_batch_.push_back({d, head});
}

IqeiCode VtdIommu::FlushInvalidations(Outbox& out) {
  DeliverUnlocked(out);
  if (drain_pending_) {
    // §6.5.5: DMA that used a translation invalidated so far must reach memory before the wait's
    // status write / interrupt (or IVT/ICC clearing). Waited for with mu_ dropped: in-flight DMA
    // may need it (Translate). During queue processing queue_busy_ keeps other threads out of the
    // queue meanwhile; Process re-checks IQH/IQE after Flush as it does for listeners.
    drain_pending_ = false;
    ++stats_.dma_drains;
    mu_.Unlock();
    const bool drained = DrainDma();
    mu_.Lock();
    if (!drained) ++stats_.dma_drain_timeouts;
  }
  if (forward_batch_.empty()) return kIqeiNone;
  std::vector<ForwardedDescriptor> batch;
  std::swap(batch, forward_batch_);
  std::vector<InvDescriptor> descriptors;
  descriptors.reserve(batch.size());
  for (const ForwardedDescriptor& f : batch) descriptors.push_back(f.descriptor);
  std::vector<VtdListener*> listeners = listeners_;
  ++stats_.forward_batches;
  mu_.Unlock();
  std::optional<size_t> refused;
  for (VtdListener* l : listeners) {
    std::optional<size_t> r = l->OnInvalidationBatch(descriptors);
    if (r && *r < descriptors.size() && (!refused || *r < *refused)) refused = r;
  }
  mu_.Lock();
  if (!refused || !batch[*refused].head || !queue_.enabled()) return kIqeiNone;
  ++stats_.forward_refusals;
  // The descriptor the host refused is reported as invalid (IQEI 4); the guest sees IQE at it.
  regs_.Set(kIqhReg, *batch[*refused].head);
  return kIqeiReservedField;
}

bool VtdIommu::DrainDma() {
  std::vector<DmaSpace*> spaces;
  {
    absl::MutexLock l(&spaces_mu_);
    spaces.reserve(spaces_.size());
    for (auto& [rid, space] : spaces_) spaces.push_back(space.get());  // spaces live as long as this
  }
  // One bound for the whole drain: a device that never finishes its DMA cannot hold the vCPU
  // longer than drain_timeout_ms; the wait then completes anyway (counted in dma_drain_timeouts).
  const absl::Time deadline = absl::Now() + absl::Milliseconds(profile_.drain_timeout_ms);
  bool drained = true;
  for (DmaSpace* space : spaces) drained = space->drain().Drain(deadline) && drained;
  return drained;
}

void VtdIommu::RecordExternalFault(const FaultInfo& info, const TableFault& fault) {
  Outbox out;
  {
    absl::MutexLock l(&mu_);
    RecordFault(fault, info, out);
  }
  Deliver(out);
}

void VtdIommu::InvalidateContexts(uint8_t g, uint16_t did, uint16_t sid, uint8_t fm, Outbox& out) {
  // §6.5.2.1 / §6.5.1.1; PASID-cache entries under the dropped contexts go too (over-invalidation
  // is always allowed).
  uint16_t mask = 0;
  if (g == 1) {
    context_cache_.InvalidateAll();
    pasid_cache_.InvalidateAll();
  } else if (g == 2) {
    context_cache_.InvalidateDomain(did);
    pasid_cache_.InvalidateAll();
  } else {
    mask = SidMaskForFm(fm);
    context_cache_.InvalidateDevice(sid, mask);
    for (uint32_t low = 0; low < 8; ++low) {
      if ((low & ~mask & 7) == low) pasid_cache_.InvalidateRequester((sid & mask) | low);
    }
  }
  if (listeners_.empty()) return;
  for (ContextChange& c : observer_.ScanContexts(memory_, profile_, translation_.rtaddr, sid, mask)) NotifyChange(c, out);
  for (PasidChange& c : observer_.ScanPasids(memory_, profile_, std::nullopt)) NotifyChange(c, out);
}

void VtdIommu::InvalidatePasids(uint8_t g, uint16_t did, uint32_t pasid, Outbox& out) {
  // §6.5.2.2: 0 domain-selective, 1 PASID-selective, 3 global.
  std::optional<uint32_t> scope;
  if (g == 0) {
    pasid_cache_.InvalidateDomain(did);
  } else if (g == 1) {
    pasid_cache_.InvalidatePasid(did, pasid);
    scope = pasid;
  } else {
    pasid_cache_.InvalidateAll();
  }
  if (listeners_.empty()) return;
  for (PasidChange& c : observer_.ScanPasids(memory_, profile_, scope)) NotifyChange(c, out);
}

void VtdIommu::NotifyChange(const ContextChange& c, Outbox& out) {
  for (VtdListener* l : listeners_) {
    if (c.fault) {
      out.calls.push_back([l, c] { l->OnEntryFault(c.rid, std::nullopt, *c.fault); });
    } else {
      out.calls.push_back([l, c] { l->OnContextEntry(c.rid, c.entry); });
    }
  }
}

void VtdIommu::NotifyChange(const PasidChange& c, Outbox& out) {
  for (VtdListener* l : listeners_) {
    if (c.fault) {
      out.calls.push_back([l, c] { l->OnEntryFault(c.rid, c.pasid, *c.fault); });
    } else {
      out.calls.push_back([l, c] { l->OnPasidEntry(c.rid, c.pasid, c.entry); });
    }
  }
}

void VtdIommu::RespondToDevice(uint16_t rid, const PageResponse& response, Outbox& out) {
  DmaClient* client = ClientOf(rid);
  if (client) out.calls.push_back([client, response] { client->OnPageResponse(response); });
}

IqeiCode VtdIommu::ExecuteDescriptor(const InvDescriptor& d, Outbox& out) {
  switch (d.type()) {
    case kDescContextCache:
    case kDescIotlb:
    case kDescPasidIotlb:
    case kDescPasidCache:
      // Everything that can take a translation away drains (over-draining is harmless; the
      // descriptors' DR/DW hints are not needed to decide). Device-TLB invalidations are the
      // device's own fence (its ATC access lock, PCIe §10.3.1).
      if (profile_.drains()) drain_pending_ = true;
      break;
    default:
      break;
  }
  switch (d.type()) {
    case kDescContextCache:
      InvalidateContexts(d.granularity(), d.did(), d.cc_sid(), d.cc_fm(), out);
      break;
    case kDescIotlb:  // §6.5.2.3: 1 global, 2 domain, 3 page-selective (within domain)
      if (d.granularity() == 1) {
        iotlb_.InvalidateAll();
      } else if (d.granularity() == 2 || !profile_.psi || d.inv_am() > profile_.mamv) {
        iotlb_.InvalidateDomain(d.did());
      } else {
        iotlb_.InvalidatePages(d.did(), std::nullopt, d.inv_addr(), d.inv_am(), d.inv_ih());
      }
      break;
    case kDescDeviceTlb:
    case kDescPasidDeviceTlb: {  // §6.5.2.5 / §6.5.2.6: forwarded to the device's ATC
      const bool pasid_based = d.type() == kDescPasidDeviceTlb;
      uint16_t sid = pasid_based ? d.pdev_sid() : d.dev_sid();
      AtcRange range = DeviceTlbRange(d.qw[1], pasid_based ? d.pdev_size_bit() : d.dev_size_bit());
      std::optional<uint32_t> pasid;
      if (pasid_based) pasid = d.pasid();
      if (range.size == 0) range = {0, ~uint64_t{0}};
      if (DmaClient* client = ClientOf(sid)) {
        out.calls.push_back([client, pasid, range] { client->OnDeviceTlbInvalidate(pasid, range.addr, range.size); });
      }
      break;
    }
    case kDescIec:  // §6.5.2.7
      if (d.iec_index_selective()) {
        remapper_.InvalidateIndex(d.iec_index(), d.iec_im());
      } else {
        remapper_.InvalidateAll();
      }
      break;
    case kDescWait:  // §6.5.2.8
      if (d.wait_sw()) {
        uint32_t data = d.wait_data();
        if (!memory_.Write(d.wait_addr(), &data, sizeof(data)).ok()) {
          ++stats_.wait_write_failures;  // the guest's problem: nothing to write to
        }
      }
      if (d.wait_if() && !(regs_.Get(kIcsReg) & kIcsIwc)) {
        regs_.SetBits(kIcsReg, kIcsIwc);
        RaiseEvent(regs_, kInvalidationEvent, out);
      }
      break;
    case kDescPasidIotlb:  // §6.5.2.4: 2 PASID-selective, 3 page-selective within PASID
      if (d.granularity() == 2 || !profile_.psi || d.inv_am() > profile_.mamv) {
        iotlb_.InvalidatePasid(d.did(), d.pasid());
      } else {
        iotlb_.InvalidatePages(d.did(), d.pasid(), d.inv_addr(), d.inv_am(), d.inv_ih());
      }
      break;
    case kDescPasidCache:
      InvalidatePasids(d.granularity(), d.did(), d.pasid(), out);
      break;
    case kDescPageGroupResponse: {  // §6.5.2.9 → PCIe PRG response to the device
      PageResponse r;
      r.rid = d.pgr_rid();
      if (d.pgr_pasid_present()) r.pasid = d.pasid();
      r.group_index = d.pgr_index();
      // Response codes: 0 success, 1 invalid request, anything else a failure (Linux sends 2).
      r.code = d.pgr_code() == 0   ? PageResponseCode::kSuccess
               : d.pgr_code() == 1 ? PageResponseCode::kInvalidRequest
                                   : PageResponseCode::kResponseFailure;
      RespondToDevice(r.rid, r, out);
      for (VtdListener* l : listeners_) out.calls.push_back([l, r] { l->OnPageResponse(r); });
      if (trace::On(trace::kPageRequest)) {
        trace::Emit(trace::kPageRequest, "vtd", "page-response",
                    {trace::Rid("rid", r.rid), trace::OptDec("pasid", r.pasid), trace::Dec("group", r.group_index),
                     trace::Dec("code", d.pgr_code()), trace::Str("result", trace::ResponseCodeName(r.code))});
      }
      break;
    }
    default:
      return kIqeiInvalidType;  // ValidateDescriptor filtered these already
  }
  if (trace::On(trace::kCommand)) {
    trace::Emit(trace::kCommand, "vtd", "qi",
                {trace::Hex("head", queue_busy_ ? queue_.current_head() : 0), trace::Dec("type", d.type()),
                 trace::Str("name", DescriptorTypeName(d.type())), trace::Dec("g", d.granularity()),
                 trace::Dec("did", d.did()), trace::Hex("qw0", d.qw[0]), trace::Hex("qw1", d.qw[1])});
  }
  NotifyInvalidation(d, out);
  return kIqeiNone;
}

void VtdIommu::RegisterContextInvalidation(Outbox& out) {
  // §11.4.7 CCMD: ICC 63, CIRG 62:61, CAIG 60:59, FM 33:32, SID 31:16, DID 15:0.
  uint64_t v = regs_.Get(kCcmdReg);
  uint8_t g = (v >> 61) & 3;
  uint8_t actual = g;
  if (g != 0) {
    InvalidateContexts(g, v & 0xffff, (v >> 16) & 0xffff, (v >> 32) & 3, out);
    if (profile_.drains()) drain_pending_ = true;
    InvDescriptor d;
    d.qw[0] = kDescContextCache | (uint64_t{g} << 4) | ((v & 0xffff) << 16) | (((v >> 16) & 0xffff) << 32) |
              (((v >> 32) & 3) << 48);
    NotifyInvalidation(d, out);
    if (!queue_busy_) FlushInvalidations(out);
  }
  regs_.Set(kCcmdReg, (v & ~(1ull << 63) & ~(3ull << 59)) | (uint64_t{actual} << 59));
}

void VtdIommu::RegisterIotlbInvalidation(Outbox& out) {
  // §11.4.8.1 IOTLB_REG: IVT 63, IIRG 61:60, IAIG 58:57, DR 49, DW 48, DID 47:32; IVA: ADDR, IH, AM.
  uint64_t v = regs_.Get(profile_.iotlb_offset());
  uint64_t iva = regs_.Get(profile_.iva_offset());
  uint8_t g = (v >> 60) & 3;
  uint16_t did = (v >> 32) & 0xffff;
  uint8_t am = iva & 0x3f;
  uint8_t actual = g;
  if (g == 3 && (!profile_.psi || am > profile_.mamv)) actual = 2;  // falls back to domain-selective
  if (actual == 1) {
    iotlb_.InvalidateAll();
  } else if (actual == 2) {
    iotlb_.InvalidateDomain(did);
  } else if (actual == 3) {
    iotlb_.InvalidatePages(did, std::nullopt, iva & ~uint64_t{0xfff}, am, iva & (1u << 6));
  }
  if (actual != 0) {
    if (profile_.drains()) drain_pending_ = true;  // IOTLB_REG.DR/DW (bits 49/48) hint it; we always drain
    InvDescriptor d;
    d.qw[0] = kDescIotlb | (uint64_t{actual} << 4) | (uint64_t{did} << 16);
    d.qw[1] = iva & ~uint64_t{0xf80};
    NotifyInvalidation(d, out);
    if (!queue_busy_) FlushInvalidations(out);
  }
  regs_.Set(profile_.iotlb_offset(), (v & ~(1ull << 63) & ~(3ull << 57)) | (uint64_t{actual} << 57));
}

// ---------------------------------------------------------------------------------------------
// DMA remapping.

bool VtdIommu::RecordFault(const TableFault& fault, const FaultInfo& info, Outbox& out) {
  const bool suppressed = fault.qualified && fault.fpd;  // §7.2.1: FPD suppresses qualified faults
  const bool recorded = !suppressed && faults_.Record(info, out);
  if (suppressed) ++stats_.faults_suppressed;
  if (trace::On(trace::kFault)) {
    static constexpr std::string_view kType[] = {"write", "read", "page-request"};
    trace::Emit(trace::kFault, "vtd", "fault",
                {trace::Rid("rid", info.sid), trace::OptDec("pasid", info.pasid), trace::Hex("addr", info.addr),
                 trace::Str("type", kType[static_cast<int>(info.type)]), trace::Dec("exec", info.exec),
                 trace::Dec("priv", info.priv), trace::Dec("at", info.at), trace::Hex("reason", info.reason),
                 trace::Str("name", FaultReasonName(info.reason)),
                 trace::Str("result", suppressed ? "suppressed-fpd" : recorded ? "recorded" : "overflow")});
  }
  return recorded;
}

Translation VtdIommu::TranslateFor(uint16_t rid, uint64_t iova, uint64_t len, uint32_t access,
                                   const DmaAttrs& attrs) {
  constexpr int kMaxRegions = 64;  // callers loop for longer ranges
  Translation t;
  {
    // Fast path under a shared lock: every page served from the caches (vCPUs run in parallel).
    absl::ReaderMutexLock l(&mu_);
    uint64_t done = 0;
    bool complete = true;
    while (done < len && static_cast<int>(t.regions.size()) < kMaxRegions) {
      const uint64_t addr = iova + done;
      if (addr < iova) break;
      std::optional<TranslateOutcome> o = TranslateCached(
          translation_, context_cache_, pasid_cache_, iotlb_, {rid, attrs.pasid, addr, access, RequestKind::kUntranslated});
      if (!o) {
        complete = false;
        break;
      }
      const uint64_t page_end = (addr & ~(o->page_size - 1)) + o->page_size;
      uint64_t n = std::min(len - done, page_end - addr);
      if (n == 0) n = len - done;
      t.regions.push_back({addr, o->output, n, o->perms});
      done += n;
    }
    if (complete) return t;
    t.regions.clear();
  }
  Outbox out;
  {
    absl::MutexLock l(&mu_);
    TranslationCaches caches{context_cache_, pasid_cache_, iotlb_};
    uint64_t done = 0;
    while (done < len && static_cast<int>(t.regions.size()) < kMaxRegions) {
      const uint64_t addr = iova + done;
      if (addr < iova) break;  // wrapped
      TranslateRequest req{rid, attrs.pasid, addr, access, RequestKind::kUntranslated};
      TranslateOutcome o = TranslateDma(memory_, profile_, translation_, caches, req);
      if (!o.ok) {
        FaultInfo fi;
        fi.reason = o.fault.reason;
        fi.sid = rid;
        fi.addr = addr;
        fi.type = (access & kDmaWrite) ? FaultRequestType::kWrite : FaultRequestType::kRead;
        fi.exec = access & kDmaExec;
        fi.priv = access & kDmaPriv;
        fi.pasid = attrs.pasid;
        bool recorded = RecordFault(o.fault, fi, out);
        t.fault = DmaFault{o.dma_kind, addr, access, attrs.pasid, o.fault.reason, recorded};
        break;
      }
      const uint64_t page_end = (addr & ~(o.page_size - 1)) + o.page_size;
      uint64_t n = std::min(len - done, page_end - addr);
      if (n == 0) n = len - done;  // page_end wrapped to 0
      t.regions.push_back({addr, o.output, n, o.perms});
      done += n;
    }
  }
  Deliver(out);
  return t;
}

AtsTranslation VtdIommu::AtsTranslateFor(uint16_t rid, uint64_t iova, uint32_t access, const DmaAttrs& attrs) {
  AtsTranslation a;
  Outbox out;
  {
    absl::MutexLock l(&mu_);
    if (!profile_.ats) return a;  // ECAP.DT = 0: translation requests are unsupported
    TranslationCaches caches{context_cache_, pasid_cache_, iotlb_};
    TranslateRequest req{rid, attrs.pasid, iova, access, RequestKind::kTranslationRequest};
    TranslateOutcome o = TranslateDma(memory_, profile_, translation_, caches, req);
    if (o.ok) {
      uint64_t size = std::min<uint64_t>(o.page_size, kPage1G);
      a = {true, iova & ~(size - 1), o.output & ~(size - 1), size, o.perms};
    } else if (o.fault.qualified) {
      // §4.2.3: translation faults of translation requests are reported to the device in the
      // completion (R=W=0), not recorded.
      a = {true, iova & ~uint64_t{0xfff}, 0, 4096, 0};
    } else {
      FaultInfo fi;
      fi.reason = o.fault.reason;
      fi.sid = rid;
      fi.addr = iova;
      fi.type = (access & kDmaWrite) ? FaultRequestType::kWrite : FaultRequestType::kRead;
      fi.at = 1;
      fi.pasid = attrs.pasid;
      RecordFault(o.fault, fi, out);
    }
  }
  Deliver(out);
  return a;
}

bool VtdIommu::AllowTranslatedFor(uint16_t rid) {
  absl::MutexLock l(&mu_);
  if (!translation_.enabled) return true;  // translated requests pass through with remapping off
  Decoded<ContextEntry> c = LookupContext(memory_, profile_, translation_, context_cache_, rid);
  return c.ok() && c.entry->device_tlb();
}

// ---------------------------------------------------------------------------------------------
// Page requests (§7.5.1).

absl::Status VtdIommu::InjectPageRequest(const PageRequest& request,
                                         std::optional<std::array<uint64_t, 2>> private_data) {
  return PageRequestFor(request, private_data);
}

absl::Status VtdIommu::PageRequestFor(const PageRequest& req, std::optional<std::array<uint64_t, 2>> private_data) {
  if (!profile_.pasid() || !profile_.prs) {
    return absl::FailedPreconditionError("vtd: page requests need a profile with prs=on");
  }
  Outbox out;
  {
    absl::MutexLock l(&mu_);
    PageResponse auto_response{req.rid, req.pasid, req.group_index, PageResponseCode::kResponseFailure};
    FaultInfo fi;
    fi.sid = req.rid;
    fi.addr = req.addr;
    fi.type = FaultRequestType::kPageRequest;
    fi.pasid = req.pasid;
    std::optional<TableFault> fault;
    if (!translation_.enabled || RtaddrMode(translation_.rtaddr) != TranslationTableMode::kScalable) {
      fault = TableFault{kSmTtmLegacyPageRequest, false, false};
    } else {
      Decoded<ContextEntry> c = LookupContext(memory_, profile_, translation_, context_cache_, req.rid);
      if (!c.ok()) {
        fault = c.fault;
      } else if (!c.entry->pre) {
        fault = TableFault{kSmPreClear, false, c.entry->fpd};
      } else if (req.pasid && !c.entry->pasid_enable) {
        fault = TableFault{kSmPasidDisabled, false, c.entry->fpd};
      }
    }
    if (trace::On(trace::kPageRequest)) {
      trace::Emit(trace::kPageRequest, "vtd", "page-request",
                  {trace::Rid("rid", req.rid), trace::OptDec("pasid", req.pasid), trace::Hex("addr", req.addr),
                   trace::Access("access", req.access), trace::Dec("group", req.group_index & 0x1ff),
                   trace::Dec("last", req.last), trace::Str("result", fault ? "fault" : "queue")});
    }
    if (fault) {
      fi.reason = fault->reason;
      RecordFault(*fault, fi, out);
      if (req.last) RespondToDevice(req.rid, auto_response, out);
    } else {
      PageRequestDescriptor d;
      d.rid = req.rid;
      d.pasid = req.pasid;
      d.addr = req.addr;
      d.read = req.access & kDmaRead;
      d.write = req.access & kDmaWrite;
      d.exec = req.access & kDmaExec;
      d.priv = req.access & kDmaPriv;
      d.last = req.last;
      d.group_index = req.group_index & 0x1ff;
      d.private_data = private_data;
      switch (prq_.Enqueue(memory_, d, out)) {
        case PageRequestOutcome::kQueued:
          break;
        case PageRequestOutcome::kOverflow:
          // §7.5.1: on overflow hardware answers the last request of a group with Success; the
          // device retries the access (and faults again if the page is still missing).
          if (trace::On(trace::kPageRequest)) {
            trace::Emit(trace::kPageRequest, "vtd", "prq-overflow",
                        {trace::Rid("rid", req.rid), trace::Dec("group", d.group_index), trace::Dec("last", req.last)});
          }
          auto_response.code = PageResponseCode::kSuccess;
          if (req.last) RespondToDevice(req.rid, auto_response, out);
          break;
        case PageRequestOutcome::kWriteFailed:
          if (req.last) RespondToDevice(req.rid, auto_response, out);
          break;
      }
    }
  }
  Deliver(out);
  return absl::OkStatus();
}

// ---------------------------------------------------------------------------------------------
// Interrupt remapping (§5.1).

absl::Status VtdIommu::SendMsi(const MsiMessage& msi) {
  std::optional<MsiMessage> deliver;
  Outbox out;
  {
    absl::MutexLock l(&mu_);
    if (!(regs_.Get(kGstsReg) & kGcmdIre)) {
      deliver = msi;  // remapping disabled: interrupts pass through
      if (trace::On(trace::kInterrupt)) {
        trace::Emit(trace::kInterrupt, "vtd", "ir",
                    {trace::Rid("sid", msi.requester_id), trace::Hex("addr", msi.address), trace::Hex("data", msi.data),
                     trace::Str("result", "passthrough-ire-off")});
      }
    } else {
      bool compat_ok = regs_.Get(kGstsReg) & kGcmdCfi;
      RemapResult r = remapper_.Remap(memory_, irt_, compat_ok, msi);
      if (trace::On(trace::kInterrupt)) {
        trace::Emit(trace::kInterrupt, "vtd", "ir",
                    {trace::Rid("sid", msi.requester_id), trace::Hex("addr", msi.address), trace::Hex("data", msi.data),
                     trace::Dec("index", r.index), trace::Str("result", r.message ? "remapped" : "blocked"),
                     trace::Hex("out_addr", r.message ? r.message->address : 0),
                     trace::Hex("out_data", r.message ? r.message->data : 0), trace::Hex("reason", r.fault.reason),
                     trace::Str("name", r.message ? "" : FaultReasonName(r.fault.reason))});
      }
      if (r.message) {
        deliver = r.message;
        ++stats_.interrupts_remapped;
      } else {
        ++stats_.interrupts_blocked;
        FaultInfo fi;
        fi.reason = r.fault.reason;
        fi.sid = msi.requester_id;
        fi.addr = uint64_t{r.index} << 48;  // FRCD.FI[63:48] = interrupt index (§11.4.14)
        fi.type = FaultRequestType::kWrite;
        RecordFault(r.fault, fi, out);
      }
    }
  }
  Deliver(out);
  if (deliver) return cpu_.SendMsi(*deliver);
  return absl::OkStatus();
}

}  // namespace ionest::vtd
