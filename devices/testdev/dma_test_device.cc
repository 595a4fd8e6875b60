#include "devices/testdev/dma_test_device.h"

#include <algorithm>
#include <array>
#include <cstring>

#include "absl/strings/str_format.h"
#include "devices/pci_regs.h"

namespace ionest {

using namespace dmatest;

namespace {

struct RegDef {
  uint32_t offset;
  uint64_t rw;    // guest-writable bits
  uint64_t rw1c;  // write-1-to-clear bits
};
// Every register not listed reads 0 and ignores writes; listed registers without rw/rw1c are RO.
constexpr std::array<RegDef, 22> kRegs = {{
    {kRegId, 0, 0},
    {kRegMaxLen, 0, 0},
    {kRegSrc, ~0ull, 0},
    {kRegDst, ~0ull, 0},
    {kRegLen, ~0ull, 0},
    {kRegPasid, kPasidRegMask, 0},
    {kRegPattern, ~0ull, 0},
    {kRegCtrl, kCtrlMask, 0},
    {kRegDoorbell, 0, 0},  // command register: acted on, never stored
    {kRegStatus, 0, kStatusDone | kStatusError},
    {kRegFaultAddr, 0, 0},
    {kRegFaultInfo, 0, 0},
    {kRegResult, 0, 0},
    {kRegPageRequests, 0, 0},
    {kRegAtsRequests, 0, 0},
    {kRegAtcHits, 0, 0},
    {kRegAtcInvalidations, 0, 0},
    {kRegBytesDone, 0, 0},
    {kRegAtcCtrl, 0, 0},  // command register
    {kRegIrqCount, 0, 0},
    {kRegStalls, 0, 0},
    {kRegStallPeak, 0, 0},
}};

const RegDef* FindReg(uint32_t offset) {
  for (const RegDef& d : kRegs)
    if (d.offset == offset) return &d;
  return nullptr;
}

constexpr uint64_t kFnvBasis = 0xcbf29ce484222325ull;
constexpr uint64_t kFnvPrime = 0x100000001b3ull;
constexpr uint64_t kPage = 4096;

uint64_t FaultInfoOf(const DmaFault& f, bool via_ats) {
  return uint64_t{f.reason & 0xffu} << kFaultReasonShift |
         uint64_t{static_cast<uint32_t>(f.kind) + 1} << kFaultKindShift | (f.recorded ? kFaultRecorded : 0) |
         uint64_t{f.access & 0xfu} << kFaultAccessShift | (via_ats ? kFaultViaAts : 0);
}

bool Recoverable(DmaFaultKind k) { return k == DmaFaultKind::kNotPresent || k == DmaFaultKind::kPermission; }

// PCIe 6.0 §6.6.2: a function must complete an FLR within 100 ms. The FLR waits at most this long
// for the worker to leave an aborted job (it has stopped issuing requests by then regardless).
constexpr absl::Duration kFlrQuiesceTimeout = absl::Milliseconds(100);

}  // namespace

DmaTestDevice::DmaTestDevice(std::string name, DmaTestDeviceOptions options)
    : PciDevice(std::move(name), PciIdentity{kVendorId, kDeviceId, kClassCode, 1, kVendorId, kDeviceId}),
      options_(options),
      atc_(options.atc_entries) {
  init_status_ = [&]() -> absl::Status {
    absl::StatusOr<CapOffsets> caps = AddDmaTestCapabilities(config(), options_.caps);
    if (!caps.ok()) return caps.status();
    caps_ = *caps;
    absl::StatusOr<PciBar*> bar0 = AddBar(0, PciBarKind::kMmio64, kBar0Size);
    if (!bar0.ok()) return bar0.status();
    if (absl::Status s = (*bar0)->AddRegion(0, kBar0Size, &regs_io_, "dmatest-regs"); !s.ok()) return s;
    absl::StatusOr<PciBar*> bar2 = AddBar(2, PciBarKind::kMmio64, kBar2Size);
    if (!bar2.ok()) return bar2.status();
    return AddMsix(kNumVectors, 2, kMsixTableOffset, kMsixPbaOffset);
  }();
  {
    absl::MutexLock l(&mu_);
    ResetRegsLocked();
  }
  if (!options_.synchronous) worker_ = std::thread([this] { WorkerLoop(); });
}

DmaTestDevice::~DmaTestDevice() {
  {
    absl::MutexLock l(&mu_);
    shutdown_ = true;
    cv_.SignalAll();
  }
  if (worker_.joinable()) worker_.join();
  if (attached() && dma().client() == this) dma().SetClient(nullptr);
}

// ---- BAR0 -----------------------------------------------------------------------------------

void DmaTestDevice::ResetRegsLocked() {
  std::fill(std::begin(regs_), std::end(regs_), 0);
  std::memset(sram_, 0, sizeof(sram_));
  SetRegLocked(kRegId, kIdValue);
  SetRegLocked(kRegMaxLen, options_.max_job_length);
}

void DmaTestDevice::RegsIo::IoRead(uint64_t offset, uint8_t* data, size_t size) {
  for (size_t i = 0; i < size;) {
    const uint64_t off = offset + i;
    if (off >= kSramOffset) {
      absl::MutexLock l(&d_.mu_);
      data[i++] = off < kSramOffset + kSramSize ? d_.sram_[off - kSramOffset] : 0xff;
      continue;
    }
    const size_t n = std::min<size_t>(size - i, 8 - off % 8);
    const uint64_t v = d_.ReadRegister(off & ~7ull) >> (8 * (off % 8));
    for (size_t b = 0; b < n; ++b) data[i + b] = static_cast<uint8_t>(v >> (8 * b));
    i += n;
  }
}

void DmaTestDevice::RegsIo::IoWrite(uint64_t offset, const uint8_t* data, size_t size) {
  for (size_t i = 0; i < size;) {
    const uint64_t off = offset + i;
    if (off >= kSramOffset) {
      absl::MutexLock l(&d_.mu_);
      if (off < kSramOffset + kSramSize) d_.sram_[off - kSramOffset] = data[i];
      ++i;
      continue;
    }
    const size_t n = std::min<size_t>(size - i, 8 - off % 8);
    uint64_t v = 0;
    for (size_t b = 0; b < n; ++b) v |= uint64_t{data[i + b]} << (8 * (off % 8 + b));
    // Byte mask of the bytes written within the 64-bit slot.
    const uint64_t mask = (n == 8 ? ~0ull : ((1ull << (8 * n)) - 1)) << (8 * (off % 8));
    d_.WriteRegister(off & ~7ull, v, mask);
    i += n;
  }
}

uint64_t DmaTestDevice::ReadRegister(uint64_t offset) {
  if (offset % 8 != 0 || offset >= kRegCount) return 0;
  absl::MutexLock l(&mu_);
  return regs_[offset / 8];
}

void DmaTestDevice::WriteRegister(uint64_t offset, uint64_t value, uint64_t mask) {
  const RegDef* def = offset % 8 == 0 && offset < kRegCount ? FindReg(static_cast<uint32_t>(offset)) : nullptr;
  if (!def) return;
  bool flush_atc = false;
  bool run_now = false;
  std::optional<Job> job;
  {
    absl::MutexLock l(&mu_);
    uint64_t& r = regs_[offset / 8];
    const uint64_t old = r;
    r = (r & ~(mask & def->rw)) | (value & mask & def->rw);
    r &= ~(value & mask & def->rw1c);
    if (offset == kRegStatus && (old & kStatusError) && !(r & kStatusError))
      r &= ~(uint64_t{0xff} << kStatusErrorShift);
    if (offset == kRegDoorbell && (mask & 0xff)) {
      if ((value & 0xff) == kDoorbellStart && !busy_ && !in_flr_) {
        Doorbell();
        if (options_.synchronous) {
          job = std::move(queued_);
          queued_.reset();
          ++running_;
          run_now = true;
        }
      } else if ((value & 0xff) == kDoorbellAbort && busy_) {
        abort_ = true;
        cv_.SignalAll();
      }
    }
    if (offset == kRegAtcCtrl && (value & mask & 1)) flush_atc = true;
  }
  if (flush_atc) atc_.Clear();
  if (run_now && job) RunJob(*job);
}

void DmaTestDevice::Doorbell() {
  Job j;
  const uint64_t ctrl = regs_[kRegCtrl / 8];
  j.op = static_cast<uint32_t>(ctrl & kCtrlOpMask);
  j.ctrl = ctrl;
  j.src = regs_[kRegSrc / 8];
  j.dst = regs_[kRegDst / 8];
  j.len = regs_[kRegLen / 8];
  j.pattern = regs_[kRegPattern / 8];
  const uint64_t p = regs_[kRegPasid / 8];
  if (p & kPasidValid) j.pasid = static_cast<uint32_t>(p & kPasidMask);
  j.exec = p & kPasidExec;
  j.priv = p & kPasidPriv;
  j.epoch = epoch_.load();
  uint64_t& st = regs_[kRegStatus / 8];
  st = (st & ~(kStatusDone | kStatusError | uint64_t{0xff} << kStatusErrorShift)) | kStatusBusy;
  SetRegLocked(kRegFaultAddr, 0);
  SetRegLocked(kRegFaultInfo, 0);
  SetRegLocked(kRegResult, 0);
  SetRegLocked(kRegBytesDone, 0);
  SetRegLocked(kRegStallPeak, 0);
  busy_ = true;
  abort_ = false;
  queued_ = j;
  cv_.SignalAll();
}

bool DmaTestDevice::WaitIdle(absl::Duration timeout) {
  const absl::Time deadline = absl::Now() + timeout;
  absl::MutexLock l(&mu_);
  while (busy_ || irqs_in_flight_ > 0)
    if (cv_.WaitWithDeadline(&mu_, deadline)) return !busy_ && irqs_in_flight_ == 0;
  return true;
}

void DmaTestDevice::AddStat(uint32_t reg, uint64_t n) {
  absl::MutexLock l(&mu_);
  regs_[reg / 8] += n;
}

void DmaTestDevice::AddJobStat(const Job& job, uint32_t reg, uint64_t n) {
  absl::MutexLock l(&mu_);
  if (!Stale(job)) regs_[reg / 8] += n;
}

bool DmaTestDevice::AbortRequested(const Job& job) {
  absl::MutexLock l(&mu_);
  return abort_ || shutdown_ || Stale(job);
}

// ---- Jobs -----------------------------------------------------------------------------------

void DmaTestDevice::WorkerLoop() {
  absl::MutexLock l(&mu_);
  for (;;) {
    while (!queued_ && !shutdown_) cv_.Wait(&mu_);
    if (shutdown_) return;
    Job job = *queued_;
    queued_.reset();
    ++running_;
    mu_.Unlock();
    RunJob(job);
    mu_.Lock();
  }
}

void DmaTestDevice::RunJob(const Job& job) {
  {
    absl::MutexLock l(&mu_);
    early_stall_answers_.clear();  // answers to an earlier job's abandoned stalls
  }
  uint64_t result = 0;
  const JobEnd end = Execute(job, &result);
  bool irq = false;
  {
    absl::MutexLock l(&mu_);
    if (Stale(job)) {
      // An FLR reset the registers after this job started: it leaves no trace (§6.6.2).
      --running_;
      cv_.SignalAll();
      return;
    }
    uint64_t& st = regs_[kRegStatus / 8];
    const uint64_t jobs = ((st >> kStatusJobsShift) + 1) & 0xffffffffull;
    st = jobs << kStatusJobsShift | (end.error == kErrNone ? kStatusDone : kStatusError) |
         uint64_t{end.error} << kStatusErrorShift;
    SetRegLocked(kRegFaultAddr, end.fault_addr);
    SetRegLocked(kRegFaultInfo, end.fault_info);
    SetRegLocked(kRegResult, result);
    busy_ = false;
    abort_ = false;
    irq = job.ctrl & kCtrlIrq;
    if (irq) ++irqs_in_flight_;  // WaitIdle also waits for the interrupt
    cv_.SignalAll();
  }
  bool sent = false;
  if (irq) {
    // MSI after the status is visible, as a driver's interrupt handler expects. The MSI is a
    // memory write of the function: fenced by an FLR like its DMA.
    const unsigned vector = static_cast<unsigned>(job.ctrl >> kCtrlVectorShift) & 0xff;
    absl::ReaderMutexLock gate(&gate_);
    sent = !Stale(job) && SignalVector(vector) == PciIrqResult::kSent;
  }
  absl::MutexLock l(&mu_);
  if (irq) {
    if (sent && !Stale(job)) regs_[kRegIrqCount / 8] += 1;
    --irqs_in_flight_;
  }
  --running_;
  cv_.SignalAll();
}

uint16_t DmaTestDevice::PasidControl() const {
  return const_cast<DmaTestDevice*>(this)->config().Get16(caps_.pasid + pasid::kControl);
}

bool DmaTestDevice::AtsEnabled() const {
  return const_cast<DmaTestDevice*>(this)->config().Get16(caps_.ats + ats::kControl) & ats::kControlEnable;
}

bool DmaTestDevice::PriUsable() const {
  PciConfigSpace& c = const_cast<DmaTestDevice*>(this)->config();
  return (c.Get16(caps_.pri + pri::kControl) & pri::kControlEnable) &&
         !(c.Get16(caps_.pri + pri::kStatus) & pri::kStatusResponseFailure) &&
         c.Get32(caps_.pri + pri::kAllocation) > 0;
}

DmaTestDevice::JobEnd DmaTestDevice::Execute(const Job& job, uint64_t* result) {
  if (job.op > kOpCompare) return {kErrBadOp};
  if (job.op == kOpNop || job.len == 0) return {};
  const bool uses_src = job.op == kOpRead || job.op == kOpCopy || job.op == kOpCompare;
  const bool uses_dst = job.op != kOpRead;
  if (job.len > options_.max_job_length || (uses_src && job.src + job.len < job.src) ||
      (uses_dst && job.dst + job.len < job.dst))
    return {kErrBadLength};
  if (!attached() || !bus_master_enabled()) return {kErrBusMaster};
  const uint16_t pctl = PasidControl();
  if ((job.pasid && !(pctl & pasid::kControlEnable)) || (job.exec && !(pctl & pasid::kControlExec)) ||
      (job.priv && !(pctl & pasid::kControlPriv)) || ((job.exec || job.priv) && !job.pasid))
    return {kErrPasidDisabled};
  if ((job.ctrl & kCtrlUseAts) && !AtsEnabled()) return {kErrAtsDisabled};

  std::array<uint8_t, kSramSize> sram;
  if (job.op == kOpWrite) {
    absl::MutexLock l(&mu_);
    std::memcpy(sram.data(), sram_, kSramSize);
  }
  std::array<uint8_t, kPage> a, b;
  uint64_t fnv = kFnvBasis;
  uint32_t page_requests = 0;
  for (uint64_t pos = 0; pos < job.len;) {
    if (AbortRequested(job)) return {kErrAborted};
    if (!bus_master_enabled()) return {kErrBusMaster};
    uint64_t n = std::min<uint64_t>(job.len - pos, kPage);
    if (uses_src) n = std::min(n, kPage - (job.src + pos) % kPage);
    if (uses_dst) n = std::min(n, kPage - (job.dst + pos) % kPage);
    JobEnd e;
    switch (job.op) {
      case kOpRead:
        e = Transfer(job, job.src + pos, a.data(), n, kDmaRead, job.src + job.len, &page_requests);
        if (e.error) return e;
        for (uint64_t i = 0; i < n; ++i) fnv = (fnv ^ a[i]) * kFnvPrime;
        *result = fnv;
        if (pos < kSramSize) {
          absl::MutexLock l(&mu_);
          if (!Stale(job)) std::memcpy(sram_ + pos, a.data(), std::min<uint64_t>(n, kSramSize - pos));
        }
        break;
      case kOpWrite:
      case kOpFill:
        for (uint64_t i = 0; i < n; ++i)
          a[i] = job.op == kOpWrite ? sram[(pos + i) % kSramSize]
                                    : static_cast<uint8_t>(job.pattern >> (8 * ((pos + i) % 8)));
        e = Transfer(job, job.dst + pos, a.data(), n, kDmaWrite, job.dst + job.len, &page_requests);
        if (e.error) return e;
        break;
      case kOpCopy:
        e = Transfer(job, job.src + pos, a.data(), n, kDmaRead, job.src + job.len, &page_requests);
        if (e.error) return e;
        e = Transfer(job, job.dst + pos, a.data(), n, kDmaWrite, job.dst + job.len, &page_requests);
        if (e.error) return e;
        break;
      case kOpCompare:
        e = Transfer(job, job.src + pos, a.data(), n, kDmaRead, job.src + job.len, &page_requests);
        if (e.error) return e;
        e = Transfer(job, job.dst + pos, b.data(), n, kDmaRead, job.dst + job.len, &page_requests);
        if (e.error) return e;
        for (uint64_t i = 0; i < n; ++i) {
          if (a[i] != b[i]) {
            *result = 1ull << 63 | (pos + i);
            absl::MutexLock l(&mu_);
            if (!Stale(job)) SetRegLocked(kRegBytesDone, pos + i);
            return {};
          }
        }
        break;
    }
    pos += n;
    absl::MutexLock l(&mu_);
    if (!Stale(job)) SetRegLocked(kRegBytesDone, pos);
  }
  return {};
}

DmaTestDevice::JobEnd DmaTestDevice::Transfer(const Job& job, uint64_t addr, uint8_t* buf, size_t len,
                                              uint32_t access, uint64_t range_end, uint32_t* page_requests) {
  const bool via_ats = job.ctrl & kCtrlUseAts;
  uint32_t requests_for_page = 0;
  uint32_t stall_retries = 0;
  for (;;) {
    DmaFault fault;
    uint8_t error = kErrNone;
    const bool ok = via_ats ? TryTranslated(job, addr, buf, len, access, &fault, &error)
                            : TryUntranslated(job, addr, buf, len, access, &fault, &error);
    if (ok) return {};
    uint64_t info = FaultInfoOf(fault, via_ats);
    if (error != kErrNone) return {error, fault.iova, info};
    if (fault.kind == DmaFaultKind::kStalled) {
      // IHI0070 §3.12.2: the IOMMU holds the access until software answers with CMD_RESUME (retry
      // or abort) or CMD_STALL_TERM (§4.7.2-4.7.3); a retried access may stall again (e.g. a write
      // to a page the OS first mapped read-only), a bounded number of times.
      if (stall_retries >= options_.max_stall_retries_per_access) {
        dma().AbandonStall(static_cast<uint16_t>(fault.reason));
        return {kErrRetryExhausted, fault.iova, info};
      }
      ++stall_retries;
      std::optional<PageResponseCode> code;
      const uint8_t e = AwaitStalls(job, fault, range_end, access, &code);
      if (code) info |= uint64_t{static_cast<uint8_t>(*code) & 0xfu} << kFaultResponseShift;
      if (e != kErrNone) return {e, fault.iova, info};
      continue;
    }
    // PCIe 6.0 §10.4: a device with PRI enabled asks the host to make the page resident.
    if (!Recoverable(fault.kind) || (job.ctrl & kCtrlNoPri) ||
        !(config().Get16(caps_.pri + pri::kControl) & pri::kControlEnable))
      return {kErrTranslation, fault.iova, info};
    if (!PriUsable()) return {kErrPriUnavailable, fault.iova, info};
    if (requests_for_page >= options_.max_retries_per_page || *page_requests >= options_.max_page_requests_per_job)
      return {kErrRetryExhausted, fault.iova, info};
    // A Success response that did not make the page usable (e.g. the IOMMU's automatic response
    // while its page request queue overflowed, VT-d 4.1 §7.5.1) is retried after a backoff with a
    // smaller group, so several devices sharing a full queue converge.
    if (requests_for_page > 0 &&
        !SleepAbortable(job, std::min(options_.min_retry_backoff * (1 << std::min(requests_for_page - 1, 20u)),
                                      options_.max_retry_backoff)))
      return {kErrAborted, fault.iova, info};
    // PCIe 6.0 §10.5.2.5: no more outstanding requests than the Outstanding Page Request Allocation.
    uint64_t budget = std::min<uint64_t>(config().Get32(caps_.pri + pri::kAllocation), options_.max_group_requests);
    budget = std::min<uint64_t>(budget, options_.max_page_requests_per_job - *page_requests);
    budget = std::max<uint64_t>(budget >> requests_for_page, 1);
    ++requests_for_page;
    std::optional<PageResponseCode> code;
    uint32_t sent = 0;
    const uint8_t e = RequestPages(job, fault.iova & ~(kPage - 1), range_end, fault.access ? fault.access : access,
                                   static_cast<uint32_t>(budget), &code, &sent);
    *page_requests += sent;
    if (code) info |= uint64_t{static_cast<uint8_t>(*code) & 0xfu} << kFaultResponseShift;
    if (e != kErrNone) return {e, fault.iova, info};
  }
}

uint32_t DmaTestDevice::RequestBits(const Job& job, uint32_t access) {
  return access | (job.exec && access == kDmaRead ? uint32_t{kDmaExec} : 0u) | (job.priv ? uint32_t{kDmaPriv} : 0u);
}

uint8_t DmaTestDevice::AwaitStalls(const Job& job, const DmaFault& stalled, uint64_t range_end, uint32_t access,
                                   std::optional<PageResponseCode>* code) {
  const uint16_t first = static_cast<uint16_t>(stalled.reason);
  // Registers a held access, taking its answer if it came first.
  auto hold = [this](uint16_t stag) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    PendingStall p{stag, std::nullopt};
    if (auto it = early_stall_answers_.find(stag); it != early_stall_answers_.end()) {
      p.code = it->second;
      early_stall_answers_.erase(it);
    }
    stalls_.push_back(p);
  };
  {
    absl::MutexLock l(&mu_);
    stalls_.clear();
    hold(first);
  }
  // Look-ahead (§3.12.2 bounds the transactions held at once by IDR5.STALL_MAX, not by stream):
  // the following pages of the range are requested too, so up to max_stalls_in_flight are held
  // and answered concurrently. A page that translates needs nothing; a fault that is not a stall
  // (e.g. STALL_MAX reached) ends the look-ahead: the in-order pass meets that page again.
  const uint32_t request = RequestBits(job, access);
  uint32_t held = 1;
  for (uint64_t page = (stalled.iova & ~(kPage - 1)) + kPage;
       held < options_.max_stalls_in_flight && page > stalled.iova && page < range_end; page += kPage) {
    Translation t;
    {
      absl::ReaderMutexLock gate(&gate_);  // fenced by an FLR (see the header)
      if (AbortRequested(job)) break;        // a guest abort, FLR or shutdown: no new stalls
      t = dma().Translate(page, 1, request, DmaAttrs{job.pasid});
    }
    if (!t.fault) continue;
    if (t.fault->kind != DmaFaultKind::kStalled) break;
    absl::MutexLock l(&mu_);
    hold(static_cast<uint16_t>(t.fault->reason));
    ++held;
  }
  AddJobStat(job, kRegStalls, held);
  std::vector<uint16_t> unanswered;
  bool ended = false;  // abort, FLR or shutdown
  {
    absl::MutexLock l(&mu_);
    if (!Stale(job)) regs_[kRegStallPeak / 8] = std::max<uint64_t>(regs_[kRegStallPeak / 8], held);
    const absl::Time deadline =
        absl::Now() + options_.stall_response_timeout + options_.stall_response_time_per_stall * held;
    auto answered = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      return std::all_of(stalls_.begin(), stalls_.end(), [](const PendingStall& s) { return s.code.has_value(); });
    };
    while (!answered() && !abort_ && !shutdown_ && !Stale(job))
      if (cv_.WaitWithDeadline(&mu_, deadline)) break;
    // Empty only if a later job (after an FLR that outlived its quiesce wait) took stalls_ over;
    // this job is stale then and ends below.
    *code = stalls_.empty() ? std::nullopt : stalls_.front().code;
    for (const PendingStall& s : stalls_)
      if (!s.code) unanswered.push_back(s.stag);
    stalls_.clear();
    ended = abort_ || shutdown_ || Stale(job);
  }
  // The device no longer waits for these: the IOMMU frees their slots (a real device would hit its
  // completion timeout; a guest that never answers must not hold STALL_MAX slots forever).
  for (uint16_t stag : unanswered) dma().AbandonStall(stag);
  if (ended) return kErrAborted;
  if (!*code) return kErrPageTimeout;
  // RESUME Action retry (§4.7.2) → the access is retried; abort or STALL_TERM → it fails.
  return **code == PageResponseCode::kSuccess ? kErrNone : kErrTranslation;
}

bool DmaTestDevice::SleepAbortable(const Job& job, absl::Duration d) {
  const absl::Time deadline = absl::Now() + d;
  absl::MutexLock l(&mu_);
  while (!abort_ && !shutdown_ && !Stale(job))
    if (cv_.WaitWithDeadline(&mu_, deadline)) break;
  return !abort_ && !shutdown_ && !Stale(job);
}

bool DmaTestDevice::TryUntranslated(const Job& job, uint64_t addr, uint8_t* buf, size_t len, uint32_t access,
                                    DmaFault* fault, uint8_t* error) {
  const DmaAttrs attrs{job.pasid};
  const uint32_t request = RequestBits(job, access);
  DmaSpace& space = dma();
  size_t done = 0;
  for (int rounds = 0; done < len; ++rounds) {
    absl::ReaderMutexLock gate(&gate_);  // fenced by an FLR (see the header)
    if (Stale(job)) {
      *fault = {DmaFaultKind::kBlocked, addr + done, request, job.pasid, 0, false};
      *error = kErrAborted;
      return false;
    }
    // In flight from the Translate to the last copy of this round: an IOMMU invalidation that
    // drains (VT-d DRD/DWD) completes only after the copies below.
    const DmaSpace::InFlight in_flight = space.BeginDma();
    Translation t = space.Translate(addr + done, len - done, request, attrs);
    bool progressed = false;
    for (const DmaRegion& r : t.regions) {
      if (done >= len) break;
      if (r.iova != addr + done || r.len == 0) break;  // defensive: regions must be a contiguous prefix
      const size_t n = std::min<uint64_t>(r.len, len - done);
      if ((r.perms & access) != access) {
        *fault = {DmaFaultKind::kPermission, r.iova, request, job.pasid, 0, false};
        return false;
      }
      absl::Status s = space.AccessRegion(in_flight, r, 0, buf + done, n, access);
      if (!s.ok()) {
        *fault = {DmaFaultKind::kBadAddress, r.iova, request, job.pasid, 0, false};
        *error = kErrMemory;
        return false;
      }
      done += n;
      progressed = true;
    }
    if (t.fault && done < len) {
      *fault = *t.fault;
      return false;
    }
    if (!progressed || rounds > 64) {
      *fault = {DmaFaultKind::kBlocked, addr + done, request, job.pasid, 0, false};
      *error = kErrTranslation;
      return false;
    }
  }
  return true;
}

bool DmaTestDevice::TryTranslated(const Job& job, uint64_t addr, uint8_t* buf, size_t len, uint32_t access,
                                  DmaFault* fault, uint8_t* error) {
  const DmaAttrs attrs{job.pasid};
  const uint32_t request = RequestBits(job, access);
  const uint32_t needed = request & (kDmaRead | kDmaWrite | kDmaExec);
  DmaSpace& space = dma();
  bool translated = false;
  for (int attempt = 0; attempt < 4; ++attempt) {
    absl::ReaderMutexLock gate(&gate_);  // fenced by an FLR (see the header)
    if (Stale(job)) {
      *fault = {DmaFaultKind::kBlocked, addr, request, job.pasid, 0, false};
      *error = kErrAborted;
      return false;
    }
    {
      // Held shared across the access: an invalidation completes only after it (§10.3.1).
      absl::ReaderMutexLock access_lock(&atc_.access_lock());
      std::optional<AtcEntry> e = atc_.Lookup(job.pasid, job.priv, addr);
      if (e && (e->perms & needed) == needed) {
        const uint64_t gpa = e->gpa + (addr - e->iova);
        absl::Status s = access == kDmaWrite ? space.WriteTranslated(gpa, buf, len) : space.ReadTranslated(gpa, buf, len);
        if (!s.ok()) {
          *fault = {DmaFaultKind::kBlocked, addr, request, job.pasid, 0, false};
          *error = kErrTranslatedRejected;
        }
        if (!translated && s.ok()) {
          absl::MutexLock l(&mu_);  // mu_ may be taken under the access lock, never the reverse
          if (!Stale(job)) regs_[kRegAtcHits / 8] += 1;
        }
        return s.ok();
      }
    }
    // ATS Translation Request (§10.2.2) for the page.
    const uint64_t page = addr & ~(kPage - 1);
    const uint64_t generation = atc_.generation();
    AtsTranslation t = space.AtsTranslate(page, request, attrs);
    AddJobStat(job, kRegAtsRequests);
    translated = true;
    if (!t.success || (t.perms & needed) != needed) {
      *fault = {t.success ? DmaFaultKind::kPermission : DmaFaultKind::kNotPresent, addr, request, job.pasid, 0, false};
      return false;
    }
    const bool well_formed = t.size >= kPage && (t.size & (t.size - 1)) == 0 && t.iova % t.size == 0 &&
                             t.gpa % t.size == 0 && page >= t.iova && page - t.iova < t.size;
    if (!well_formed) {
      *fault = {DmaFaultKind::kInvalidEntry, addr, request, job.pasid, 0, false};
      *error = kErrBadCompletion;
      return false;
    }
    atc_.Insert({job.pasid, job.priv, t.iova, t.size, t.gpa, t.perms}, generation);
  }
  // Invalidations kept racing with our translation requests.
  *fault = {DmaFaultKind::kNotPresent, addr, request, job.pasid, 0, false};
  *error = kErrRetryExhausted;
  return false;
}

// ---- PRI ------------------------------------------------------------------------------------

uint8_t DmaTestDevice::RequestPages(const Job& job, uint64_t addr, uint64_t range_end, uint32_t access,
                                    uint32_t max_requests, std::optional<PageResponseCode>* code, uint32_t* sent) {
  PageRequest request;
  request.rid = requester_id();
  request.pasid = job.pasid;
  request.access = access & (kDmaRead | kDmaWrite | kDmaExec | kDmaPriv);
  // The group: the faulting page, then pages ATS reports missing (Translation Completion with
  // R=W=0, PCIe 6.0 §10.2.3), scanning at most 2 x max_requests pages.
  std::vector<uint64_t> pages{addr};
  if (max_requests > 1 && AtsEnabled()) {
    const uint32_t needed = request.access & (kDmaRead | kDmaWrite | kDmaExec);
    uint64_t scanned = 0;
    for (uint64_t p = addr + kPage; p > addr && p < range_end && pages.size() < max_requests &&
                                    scanned < 2ull * max_requests;
         p += kPage, ++scanned) {
      AtsTranslation t;
      {
        absl::ReaderMutexLock gate(&gate_);  // fenced by an FLR (see the header)
        if (Stale(job)) break;
        t = dma().AtsTranslate(p, request.access, DmaAttrs{job.pasid});
      }
      AddJobStat(job, kRegAtsRequests);
      if (!t.success || (t.perms & needed) != needed) pages.push_back(p);
    }
  }
  {
    absl::MutexLock l(&mu_);
    if (Stale(job)) return kErrAborted;
    request.group_index = next_group_;
    next_group_ = (next_group_ + 1) & 0x1ff;  // 9-bit PRG index (§10.4.1)
    pending_ = PendingPageRequest{request.group_index, job.pasid, std::nullopt, false};
    UpdatePriStopped();
  }
  absl::Status status;
  // PCIe 6.0 §10.4.1: requests of one group share the PRG index; the last carries LPIG.
  for (size_t i = 0; i < pages.size() && status.ok(); ++i) {
    request.addr = pages[i];
    request.last = i + 1 == pages.size();
    absl::ReaderMutexLock gate(&gate_);  // fenced by an FLR (see the header)
    if (Stale(job)) {
      status = absl::AbortedError("function level reset");
      break;
    }
    status = dma().SendPageRequest(request);
    if (status.ok()) ++*sent;
  }
  AddJobStat(job, kRegPageRequests, *sent);
  absl::MutexLock l(&mu_);
  if (!status.ok()) {
    pending_.reset();
    UpdatePriStopped();
    return Stale(job) ? kErrAborted : kErrPriUnavailable;
  }
  const absl::Time deadline =
      absl::Now() + options_.page_response_timeout + options_.page_response_time_per_request * pages.size();
  while (!pending_->code && !pending_->cancelled && !abort_ && !shutdown_ && !Stale(job))
    if (cv_.WaitWithDeadline(&mu_, deadline)) break;
  *code = pending_->code;
  const bool cancelled = pending_->cancelled;
  pending_.reset();
  UpdatePriStopped();
  if (Stale(job)) return kErrAborted;
  if (cancelled) return kErrPriUnavailable;
  if (!*code) return (abort_ || shutdown_) ? kErrAborted : kErrPageTimeout;
  switch (**code) {
    case PageResponseCode::kSuccess:
      return kErrNone;
    case PageResponseCode::kInvalidRequest:
      return kErrPageInvalid;
    default:
      // Response Failure: PRI stops issuing requests until software clears RF (§10.4.2.1).
      config().UpdateBits(caps_.pri + pri::kStatus, 2, pri::kStatusResponseFailure, 0);
      return kErrPageFailure;
  }
}

void DmaTestDevice::OnPageResponse(const PageResponse& response) {
  absl::MutexLock l(&mu_);
  if (response.stall) {
    // The answer to a held access (CMD_RESUME / CMD_STALL_TERM). One for a stall of an earlier job
    // the device abandoned is dropped when the next job starts.
    for (PendingStall& p : stalls_) {
      if (p.stag == response.group_index && !p.code) {
        p.code = response.code;
        cv_.SignalAll();
        return;
      }
    }
    // Not (yet) registered: kept for the worker, bounded (STAGs are not reused for 64 Ki stalls).
    if (running_ > 0 && early_stall_answers_.size() < 4096) early_stall_answers_[response.group_index] = response.code;
    return;
  }
  if (config().Get16(caps_.pri + pri::kStatus) & pri::kStatusResponseFailure) return;  // ignored after RF
  // With "PRG Response PASID Required" the response carries the request's PASID (§10.5.2.3).
  if (pending_ && !pending_->code && !pending_->cancelled && pending_->group == response.group_index && pending_->pasid == response.pasid) {
    pending_->code = response.code;
    cv_.SignalAll();
    return;
  }
  config().UpdateBits(caps_.pri + pri::kStatus, 2, pri::kStatusUprgi, 0);
}

void DmaTestDevice::UpdatePriStopped() {
  const bool enabled = config().Get16(caps_.pri + pri::kControl) & pri::kControlEnable;
  // A group cancelled by PRI Reset or FLR is no longer outstanding (§10.5.2.2-10.5.2.3).
  const bool stopped = !enabled && !(pending_ && !pending_->cancelled);
  config().UpdateBits(caps_.pri + pri::kStatus, 2, stopped ? pri::kStatusStopped : 0,
                      stopped ? 0 : pri::kStatusStopped);
}

void DmaTestDevice::OnDeviceTlbInvalidate(std::optional<uint32_t> pasid, uint64_t addr, uint64_t size) {
  atc_.Invalidate(pasid, addr, size);
  AddStat(kRegAtcInvalidations);
}

void DmaTestDevice::OnAttach() { dma().SetClient(this); }

void DmaTestDevice::OnConfigWrite(uint64_t offset, size_t size) {
  auto touches = [&](uint16_t reg, size_t len) { return offset < uint64_t{reg} + len && offset + size > reg; };
  // DEVCTL.Initiate FLR is writable only when DEVCAP advertises FLR (§7.5.3.4).
  if (touches(caps_.pcie + pcie::kDevCtl, 2) &&
      (config().Get16(caps_.pcie + pcie::kDevCtl) & pcie::kDevCtlInitiateFlr)) {
    FunctionLevelReset();
    return;
  }
  if (touches(caps_.ats + ats::kControl, 2) && !AtsEnabled()) atc_.Clear();
  if (touches(caps_.pri + pri::kControl, 2)) {
    absl::MutexLock l(&mu_);
    // Reset (only while disabled) clears the credit and request state; it reads as 0 (§10.5.2.2).
    const uint16_t ctl = config().Get16(caps_.pri + pri::kControl);
    if ((ctl & pri::kControlReset) && !(ctl & pri::kControlEnable) && pending_) {
      pending_->cancelled = true;
      cv_.SignalAll();
    }
    config().UpdateBits(caps_.pri + pri::kControl, 2, 0, pri::kControlReset);
    UpdatePriStopped();
  }
}

// ---- Function Level Reset (PCIe 6.0 §6.6.2) --------------------------------------------------

void DmaTestDevice::FunctionLevelReset() {
  absl::MutexLock flr(&flr_mu_);
  // Initiate Function Level Reset always reads 0 (§7.5.3.4).
  config().UpdateBits(caps_.pcie + pcie::kDevCtl, 2, 0, pcie::kDevCtlInitiateFlr);
  {
    // Fence: requests of the current job finish before the gate is ours; after the epoch bump the
    // job is stale and issues nothing more (§6.6.2: the function becomes quiescent). Drop a queued
    // job, cancel the pending page request group, wake every wait of the running job.
    flr_pending_.store(true);
    absl::WriterMutexLock gate(&gate_);
    absl::MutexLock l(&mu_);
    epoch_.fetch_add(1);
    flr_pending_.store(false);
    in_flr_ = true;
    queued_.reset();
    if (pending_) pending_->cancelled = true;
    cv_.SignalAll();
  }
  {
    // Bounded: a vCPU thread must not block for long; a stale job cannot touch state anyway.
    const absl::Time deadline = absl::Now() + kFlrQuiesceTimeout;
    absl::MutexLock l(&mu_);
    while (running_ > 0)
      if (cv_.WaitWithDeadline(&mu_, deadline)) break;
  }
  atc_.Clear();
  // Capability registers (device-specific; the type 0 header and MSI-X follow in ResetFunction):
  // DEVCTL/DEVSTA/DEVCTL2, ATS, PASID and PRI control back to 0, PRI allocation 0 and status errors
  // clear (Stopped is recomputed below: disabled and nothing outstanding).
  PciConfigSpace& c = config();
  ResetPcieCapabilityForFlr(c, caps_.pcie);
  c.Set16(caps_.ats + ats::kControl, 0);
  c.Set16(caps_.pasid + pasid::kControl, 0);
  c.Set16(caps_.pri + pri::kControl, 0);
  c.Set32(caps_.pri + pri::kAllocation, 0);
  c.UpdateBits(caps_.pri + pri::kStatus, 2, 0, pri::kStatusResponseFailure | pri::kStatusUprgi);
  ResetFunction();
  absl::MutexLock l(&mu_);
  ResetRegsLocked();
  busy_ = false;
  abort_ = false;
  UpdatePriStopped();
  in_flr_ = false;
  cv_.SignalAll();
}

}  // namespace ionest
