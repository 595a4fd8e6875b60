// "ionest-dmatest": a PCIe function that performs DMA jobs programmed through BAR0 (register map in
// dma_test_device_regs.h), for testing the IOMMU from machine tests and from guests (e.g. through
// vfio-pci). It has PCIe, ATS, PASID, PRI and MSI-X capabilities, a device TLB (ATC) filled by ATS
// translation requests, and resolves translation faults with page requests when PRI is enabled.
// It reaches memory only through the DmaSpace of its requester ID.
//
// Threading: BAR/config accesses may come concurrently from vCPU threads; they never block on DMA.
// A doorbell hands the job to the device's worker thread (or, with `synchronous`, runs it on the
// calling thread — for tests and fuzzers; PRI waits are then bounded by the response timeout).
// Page-response waits are bounded (page_response_timeout) and interrupted by abort/destruction.
//
// Stalls (SMMUv3 stall model, IHI0070 §3.12.2): an access the IOMMU holds (DmaFaultKind::kStalled,
// DmaFault::reason = STAG) waits on the worker thread, with no lock held, for the IOMMU's answer
// (DmaClient::OnPageResponse with PageResponse::stall, from the guest's CMD_RESUME / STALL_TERM,
// §4.7.2-4.7.3): retry the access, or end the job with kErrTranslation. Like a DMA engine with
// several transactions outstanding, the device keeps up to max_stalls_in_flight held at once: when
// an access stalls it issues look-ahead translations for the following pages of the job's range
// (data still moves in order afterwards), so the guest sees many faults in flight. The wait is
// bounded (stall_response_timeout + N x stall_response_time_per_stall): then, or on abort/FLR/
// destruction, the job ends and every stall still held is abandoned (DmaSpace::AbandonStall).
// DmaClient callbacks (page responses, ATC invalidations) may arrive on any thread.
//
// Function Level Reset (PCIe 6.0 §6.6.2; DEVCAP.FLR advertised unless caps.flr is false): a guest
// config write setting DEVCTL.Initiate FLR runs the reset on that vCPU thread before the write
// returns. Every request the device issues (memory access, ATS translation request, page request,
// MSI) is made under `gate_` (shared) and only while the job's epoch is current; the FLR bumps the
// epoch under `gate_` (exclusive), so once the write returns no request of the old job is in flight
// or will be issued. It then waits (bounded by the 100 ms an FLR may take) for the worker to drop
// the job, drops the ATC and page request state, and restores BAR0, the capabilities and the type 0
// header to their reset values. DEVSTA.Transactions Pending always reads 0: each emulated request
// completes before the call that issued it returns.
#pragma once

#include <atomic>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "devices/pci_device.h"
#include "devices/testdev/dma_test_device_atc.h"
#include "devices/testdev/dma_test_device_caps.h"
#include "devices/testdev/dma_test_device_regs.h"
#include "iommu/dma_space.h"

namespace ionest {

struct DmaTestDeviceOptions {
  dmatest::CapOptions caps;
  uint64_t max_job_length = 16ull << 20;
  size_t atc_entries = 64;
  // A page request group of N requests is answered within page_response_timeout + N x
  // page_response_time_per_request (software resolves the pages one by one).
  absl::Duration page_response_timeout = absl::Seconds(5);
  absl::Duration page_response_time_per_request = absl::Milliseconds(50);
  uint32_t max_page_requests_per_job = 1u << 16;
  // Page request groups sent for one faulting page before giving up; each retry halves the group
  // size and first waits min_retry_backoff, doubling up to max_retry_backoff (defaults: ~17 s in
  // all, time for a slow guest to drain an overflowed page request queue and clear PRO).
  uint32_t max_retries_per_page = 12;
  absl::Duration min_retry_backoff = absl::Milliseconds(20);
  absl::Duration max_retry_backoff = absl::Seconds(4);
  // Largest page request group (further capped by the PRI Outstanding Page Request Allocation).
  uint32_t max_group_requests = 2048;
  // Stalled accesses (see the header comment): N held at once are answered within
  // stall_response_timeout + N x stall_response_time_per_stall; RESUME retries per access at most
  // max_stall_retries_per_access (then kErrRetryExhausted).
  uint32_t max_stalls_in_flight = 32;
  absl::Duration stall_response_timeout = absl::Seconds(5);
  absl::Duration stall_response_time_per_stall = absl::Milliseconds(100);
  uint32_t max_stall_retries_per_access = 8;
  bool synchronous = false;           // run jobs on the doorbell thread
};

class DmaTestDevice final : public PciDevice, public DmaClient {
 public:
  explicit DmaTestDevice(std::string name = "ionest-dmatest", DmaTestDeviceOptions options = {});
  ~DmaTestDevice() override;

  // Setup errors (capabilities/BARs not fitting) are host bugs; check after construction.
  absl::Status init_status() const { return init_status_; }

  // BAR0 register access as the guest sees it (for tests that skip the bus).
  uint64_t ReadReg(uint32_t offset) { return ReadRegister(offset); }
  void WriteReg(uint32_t offset, uint64_t value) { WriteRegister(offset, value, ~0ull); }
  // Waits until no job is running and its completion interrupt has been sent; false on timeout.
  bool WaitIdle(absl::Duration timeout) ABSL_LOCKS_EXCLUDED(mu_);

  const dmatest::CapOffsets& cap_offsets() const { return caps_; }
  dmatest::DeviceAtc& atc() { return atc_; }

  // DmaClient.
  void OnPageResponse(const PageResponse& response) override ABSL_LOCKS_EXCLUDED(mu_);
  void OnDeviceTlbInvalidate(std::optional<uint32_t> pasid, uint64_t addr, uint64_t size) override;

 protected:
  void OnAttach() override;  // registers as the DmaSpace's client
  void OnConfigWrite(uint64_t offset, size_t size) override;

 private:
  class RegsIo final : public IoDevice {
   public:
    explicit RegsIo(DmaTestDevice& d) : d_(d) {}
    void IoRead(uint64_t offset, uint8_t* data, size_t size) override;
    void IoWrite(uint64_t offset, const uint8_t* data, size_t size) override;

   private:
    DmaTestDevice& d_;
  };
  struct Job {
    uint32_t op = 0;
    uint64_t src = 0, dst = 0, len = 0, pattern = 0, ctrl = 0;
    std::optional<uint32_t> pasid;
    bool exec = false, priv = false;
    uint64_t epoch = 0;  // epoch_ when the doorbell rang; a later FLR makes the job stale
  };
  struct JobEnd {
    uint8_t error = dmatest::kErrNone;
    uint64_t fault_addr = 0;
    uint64_t fault_info = 0;
  };
  struct PendingStall {
    uint16_t stag = 0;
    std::optional<PageResponseCode> code;
  };
  struct PendingPageRequest {
    uint16_t group = 0;
    std::optional<uint32_t> pasid;
    std::optional<PageResponseCode> code;
    bool cancelled = false;  // PRI Reset while waiting
  };

  // 64-bit register slot at `offset` (8-aligned); `mask` selects the bytes written.
  uint64_t ReadRegister(uint64_t offset) ABSL_LOCKS_EXCLUDED(mu_);
  void WriteRegister(uint64_t offset, uint64_t value, uint64_t mask) ABSL_LOCKS_EXCLUDED(mu_);
  void Doorbell() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void WorkerLoop() ABSL_LOCKS_EXCLUDED(mu_);
  void RunJob(const Job& job) ABSL_LOCKS_EXCLUDED(mu_);
  JobEnd Execute(const Job& job, uint64_t* result) ABSL_LOCKS_EXCLUDED(mu_);
  // Moves [addr, addr+len) (within one 4 KiB page) between buf and memory, resolving faults with
  // PRI as allowed. `access` is kDmaRead or kDmaWrite.
  // `range_end` ends the job's range for this access: page requests may cover missing pages up to it.
  JobEnd Transfer(const Job& job, uint64_t addr, uint8_t* buf, size_t len, uint32_t access, uint64_t range_end,
                  uint32_t* page_requests) ABSL_LOCKS_EXCLUDED(mu_);
  // One attempt; on a fault fills *fault (and *via_ats) and returns false.
  bool TryUntranslated(const Job& job, uint64_t addr, uint8_t* buf, size_t len, uint32_t access, DmaFault* fault,
                       uint8_t* error);
  bool TryTranslated(const Job& job, uint64_t addr, uint8_t* buf, size_t len, uint32_t access, DmaFault* fault,
                     uint8_t* error);
  // Sends one page request group — `addr`'s page, then (with ATS enabled) further pages up to
  // `range_end` that ATS reports missing, at most `max_requests` — and waits for its response.
  // Returns kErrNone on Success; *sent = requests sent.
  uint8_t RequestPages(const Job& job, uint64_t addr, uint64_t range_end, uint32_t access, uint32_t max_requests,
                       std::optional<PageResponseCode>* code, uint32_t* sent) ABSL_LOCKS_EXCLUDED(mu_);
  // `stalled` held the access at [addr, addr+len): registers it, stalls the following pages up to
  // `range_end` (look-ahead, at most max_stalls_in_flight in all), waits for the answers, abandons
  // those still unanswered. Returns kErrNone when `stalled` was answered retry; *code = its answer.
  uint8_t AwaitStalls(const Job& job, const DmaFault& stalled, uint64_t range_end, uint32_t access,
                      std::optional<PageResponseCode>* code) ABSL_LOCKS_EXCLUDED(mu_, gate_);
  // DmaAccess bits of the job's request for `access` (exec/priv from the PASID register).
  static uint32_t RequestBits(const Job& job, uint32_t access);
  // Sleeps up to `d`; false when an abort, FLR or shutdown cut it short.
  bool SleepAbortable(const Job& job, absl::Duration d) ABSL_LOCKS_EXCLUDED(mu_);
  bool PriUsable() const;
  bool AtsEnabled() const;
  uint16_t PasidControl() const;
  void SetRegLocked(uint32_t reg, uint64_t v) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { regs_[reg / 8] = v; }
  // BAR0 registers and SRAM to their reset values.
  void ResetRegsLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void AddStat(uint32_t reg, uint64_t n = 1) ABSL_LOCKS_EXCLUDED(mu_);
  // AddStat on behalf of `job`: nothing once an FLR made the job stale.
  void AddJobStat(const Job& job, uint32_t reg, uint64_t n = 1) ABSL_LOCKS_EXCLUDED(mu_);
  bool AbortRequested(const Job& job) ABSL_LOCKS_EXCLUDED(mu_);
  // An FLR started after the job's doorbell: it must issue no further request or register update.
  // A job is stale once an FLR has begun (flr_pending_) and for good after its epoch bump.
  bool Stale(const Job& job) const { return flr_pending_.load() || job.epoch != epoch_.load(); }
  void UpdatePriStopped() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // DEVCTL.Initiate FLR was written as 1 (on the guest's vCPU thread).
  void FunctionLevelReset() ABSL_LOCKS_EXCLUDED(flr_mu_, gate_, mu_);

  const DmaTestDeviceOptions options_;
  absl::Status init_status_;
  dmatest::CapOffsets caps_;
  RegsIo regs_io_{*this};
  dmatest::DeviceAtc atc_;

  absl::Mutex flr_mu_ ABSL_ACQUIRED_BEFORE(gate_);  // serializes FLRs
  // Held shared around each request the device issues, exclusively by an FLR to fence them. Never
  // held while waiting on cv_. Order: gate_ -> atc_.access_lock() -> mu_.
  absl::Mutex gate_ ABSL_ACQUIRED_BEFORE(mu_);
  // Incremented by each FLR with gate_ (exclusive) and mu_ held: stable under either lock.
  std::atomic<uint64_t> epoch_{0};
  // Set by an FLR before it waits for gate_ (exclusive), cleared after the epoch bump: the worker
  // stops taking gate_ for the old job at once, so the FLR is not starved by a job that re-takes
  // gate_ (shared) request after request.
  std::atomic<bool> flr_pending_{false};
  absl::Mutex mu_;
  absl::CondVar cv_;  // job queued / response arrived / abort / FLR / shutdown / job finished
  uint64_t regs_[dmatest::kRegCount / 8] ABSL_GUARDED_BY(mu_) = {};
  uint8_t sram_[dmatest::kSramSize] ABSL_GUARDED_BY(mu_) = {};
  std::optional<Job> queued_ ABSL_GUARDED_BY(mu_);
  bool busy_ ABSL_GUARDED_BY(mu_) = false;
  int running_ ABSL_GUARDED_BY(mu_) = 0;      // jobs inside RunJob (worker or synchronous doorbell)
  bool in_flr_ ABSL_GUARDED_BY(mu_) = false;  // doorbells are ignored while an FLR is in progress
  int irqs_in_flight_ ABSL_GUARDED_BY(mu_) = 0;  // completion MSIs being signalled
  bool abort_ ABSL_GUARDED_BY(mu_) = false;
  bool shutdown_ ABSL_GUARDED_BY(mu_) = false;
  std::optional<PendingPageRequest> pending_ ABSL_GUARDED_BY(mu_);
  std::vector<PendingStall> stalls_ ABSL_GUARDED_BY(mu_);  // held accesses of the running job
  // Answers that arrived before the device registered their stall (the guest may answer while the
  // worker is still between its Translate and the registration); emptied when a job starts.
  std::map<uint16_t, PageResponseCode> early_stall_answers_ ABSL_GUARDED_BY(mu_);
  uint16_t next_group_ ABSL_GUARDED_BY(mu_) = 0;
  std::thread worker_;
};

}  // namespace ionest
