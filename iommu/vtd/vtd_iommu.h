// The emulated Intel VT-d remapping unit (one DRHD): register window (IoDevice), DMA remapping
// (DmaSpaceProvider, one DmaSpace per requester id), interrupt remapping (MsiSink in front of the
// CPU's MsiSink), queued and register-based invalidation, fault recording and page requests.
//
// Construct with guest memory (the IOMMU reads its tables through PhysMemory), the CPU interrupt
// sink and a profile; no KVM needed (tests and fuzzers drive it directly).
//
// Thread safety: every public method may be called concurrently from any thread (vCPU MMIO, device
// DMA). One internal mutex serialises model state; interrupts, DmaClient callbacks and listener
// notifications are delivered after it is released, never under it.
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "devices/io_bus.h"
#include "iommu/dma_space.h"
#include "iommu/iotlb.h"
#include "iommu/msi.h"
#include "iommu/vtd/caps.h"
#include "iommu/vtd/context_cache.h"
#include "iommu/vtd/descriptors.h"
#include "iommu/vtd/entry_observer.h"
#include "iommu/vtd/faults.h"
#include "iommu/vtd/interrupt_remap.h"
#include "iommu/vtd/invalidation_queue.h"
#include "iommu/vtd/page_request.h"
#include "iommu/vtd/registers.h"
#include "iommu/trace.h"
#include "iommu/vtd/translate.h"
#include "vmm/guest_memory.h"

namespace ionest::vtd {

// Observer of guest programming (e.g. a nesting backend). Called without the IOMMU lock, on the
// thread that triggered the event (usually a vCPU writing IQT); may call back into VtdIommu.
class VtdListener {
 public:
  virtual ~VtdListener() = default;
  // A context entry became valid, changed, or became invalid (nullopt), observed at a
  // context-cache invalidation (queued or register-based).
  virtual void OnContextEntry(uint16_t rid, const std::optional<ContextEntry>& entry) {}
  // Same for PASID entries, observed at PASID-cache (and context-cache) invalidations.
  virtual void OnPasidEntry(uint16_t rid, uint32_t pasid, const std::optional<PasidEntry>& entry) {}
  // A present but malformed context (pasid nullopt) or PASID entry seen at an invalidation: the
  // architected fault hardware would report when a request meets it. Reported once per entry.
  virtual void OnEntryFault(uint16_t rid, std::optional<uint32_t> pasid, const TableFault& fault) {}
  // Every invalidation descriptor executed (register-based invalidations are reported as the
  // equivalent context-cache / IOTLB descriptor).
  virtual void OnInvalidation(const InvDescriptor& descriptor) {}
  // A page group response the guest issued (QI type 9), after it was routed to the device.
  virtual void OnPageResponse(const PageResponse& response) {}
  // Invalidation forwarding (issue 9): the descriptors executed since the last call, in queue
  // order (wait descriptors excluded), handed over before a wait descriptor completes and when the
  // queue drains, so a host-side backend can forward them in one call before the guest sees the
  // wait's status. Returns the index in `batch` of the first descriptor the host refused: the
  // model then reports IQE with IQH at that descriptor (§6.5.2.10) and the wait does not complete.
  // Register-based invalidations arrive as one-descriptor batches; their result is ignored.
  virtual std::optional<size_t> OnInvalidationBatch(std::span<const InvDescriptor> batch) { return std::nullopt; }
  // GCMD.TE changed (§10.4.4): with translation off, DMA is untranslated (guest-physical).
  virtual void OnTranslationEnable(bool enabled) {}
  // Platform reset: every entry and queue of the guest is gone (no per-entry notifications follow).
  virtual void OnReset() {}
};

struct VtdStats {
  uint64_t faults_recorded = 0;
  uint64_t faults_dropped = 0;      // PFO overflow
  uint64_t faults_suppressed = 0;   // FPD
  uint64_t descriptors = 0;
  uint64_t page_requests = 0;
  uint64_t page_request_overflows = 0;
  uint64_t interrupts_remapped = 0;
  uint64_t interrupts_blocked = 0;
  uint64_t wait_write_failures = 0;
  uint64_t forward_batches = 0;   // batches handed to listeners
  uint64_t forward_refusals = 0;  // batches a listener refused (IQE reported)
  uint64_t dma_drains = 0;          // waits / register invalidations that drained DMA in flight
  uint64_t dma_drain_timeouts = 0;  // drains that gave up at drain_timeout_ms (DMA still in flight)
  size_t context_cache = 0;
  size_t pasid_cache = 0;
  size_t iotlb = 0;
  size_t irte_cache = 0;
};

class VtdIommu final : public IoDevice, public MsiSink, public DmaSpaceProvider {
 public:
  static constexpr uint64_t kDefaultBase = 0xfed90000;
  static constexpr uint32_t kVersion = 0x10;  // VER_REG: 1.0 (§11.4.1)

  VtdIommu(PhysMemory& memory, MsiSink& cpu, VtdProfile profile);
  ~VtdIommu() override;

  const VtdProfile& profile() const { return profile_; }
  uint32_t mmio_size() const { return profile_.window_size(); }

  // IoDevice: the register window (offsets relative to the DRHD base). Accesses of 4 and 8 bytes
  // as the spec requires; other sizes are handled byte-wise.
  void IoRead(uint64_t offset, uint8_t* data, size_t size) override ABSL_LOCKS_EXCLUDED(mu_);
  void IoWrite(uint64_t offset, const uint8_t* data, size_t size) override ABSL_LOCKS_EXCLUDED(mu_);
  // Convenience for tests/fuzzers: same as IoRead/IoWrite with an integer.
  uint64_t ReadRegister(uint64_t offset, uint32_t size = 8) ABSL_LOCKS_EXCLUDED(mu_);
  void WriteRegister(uint64_t offset, uint64_t value, uint32_t size = 8) ABSL_LOCKS_EXCLUDED(mu_);

  // MsiSink: device and IOAPIC interrupts (remapped when GSTS.IRES=1, §5.1).
  absl::Status SendMsi(const MsiMessage& msi) override ABSL_LOCKS_EXCLUDED(mu_);

  // DmaSpaceProvider: the DmaSpace of requester `rid` (created on first use, lives as long as this).
  DmaSpace& ForRequester(uint16_t rid) override ABSL_LOCKS_EXCLUDED(spaces_mu_);

  // A page request from a device not modelled here (e.g. a passthrough device): queued exactly as
  // DmaSpace::SendPageRequest would. Responses go to the requester's DmaClient and listeners.
  absl::Status InjectPageRequest(const PageRequest& request,
                                 std::optional<std::array<uint64_t, 2>> private_data = std::nullopt)
      ABSL_LOCKS_EXCLUDED(mu_);

  // Records a fault for a requester whose DMA the model does not see (a passthrough device
  // translated by the host IOMMU): a guest entry that cannot be bound to the host is reported the
  // way hardware reports it when the device's DMA meets that entry (§7.1-7.3, FPD honoured).
  void RecordExternalFault(const FaultInfo& info, const TableFault& fault) ABSL_LOCKS_EXCLUDED(mu_);

  void AddListener(VtdListener* listener) ABSL_LOCKS_EXCLUDED(mu_);
  void RemoveListener(VtdListener* listener) ABSL_LOCKS_EXCLUDED(mu_);

  VtdStats stats() const ABSL_LOCKS_EXCLUDED(mu_);

  // `--dump-tables`: root/context/PASID entries of one requester and, with an IOVA, the walk the
  // model would do for it (vtd_trace.cc). Reads guest memory only; bounded output.
  std::string DumpTables(const trace::DumpRequest& request) ABSL_LOCKS_EXCLUDED(mu_);

  // Platform reset (guest reboot): registers to reset values, every cache emptied, translation and
  // remapping off. DmaSpaces, their clients and listeners stay attached.
  void Reset() ABSL_LOCKS_EXCLUDED(mu_);

 private:
  void ResetLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  class Space;
  class QueueHandler;
  friend class Space;
  friend class QueueHandler;

  Translation TranslateFor(uint16_t rid, uint64_t iova, uint64_t len, uint32_t access, const DmaAttrs& attrs)
      ABSL_LOCKS_EXCLUDED(mu_);
  AtsTranslation AtsTranslateFor(uint16_t rid, uint64_t iova, uint32_t access, const DmaAttrs& attrs)
      ABSL_LOCKS_EXCLUDED(mu_);
  bool AllowTranslatedFor(uint16_t rid) ABSL_LOCKS_EXCLUDED(mu_);
  absl::Status PageRequestFor(const PageRequest& request, std::optional<std::array<uint64_t, 2>> private_data)
      ABSL_LOCKS_EXCLUDED(mu_);

  // The one fault epilogue (§7.1-7.3): records unless FPD suppresses a qualified fault.
  bool RecordFault(const TableFault& fault, const FaultInfo& info, Outbox& out) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void HandleWrite(const WriteEffect& e, Outbox& out) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void HandleGcmd(uint32_t value, Outbox& out) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void RegisterContextInvalidation(Outbox& out) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void RegisterIotlbInvalidation(Outbox& out) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void ProcessQueue(Outbox& out) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  IqeiCode ExecuteDescriptor(const InvDescriptor& d, Outbox& out) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void InvalidateContexts(uint8_t granularity, uint16_t did, uint16_t sid, uint8_t fm, Outbox& out)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void InvalidatePasids(uint8_t granularity, uint16_t did, uint32_t pasid, Outbox& out)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void NotifyInvalidation(const InvDescriptor& d, Outbox& out) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void NotifyChange(const ContextChange& c, Outbox& out) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void NotifyChange(const PasidChange& c, Outbox& out) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Delivers the outbox and hands the forward batch to listeners, lock dropped meanwhile.
  IqeiCode FlushInvalidations(Outbox& out) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void RespondToDevice(uint16_t rid, const PageResponse& response, Outbox& out);
  // Runs the outbox: CPU interrupts, then device/listener callbacks. Must not hold mu_.
  void Deliver(Outbox& out) ABSL_LOCKS_EXCLUDED(mu_);
  // Drops mu_ to deliver the outbox, then retakes it (used before wait descriptors).
  void DeliverUnlocked(Outbox& out) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Waits for the DMA in flight on every space (§6.5.5), at most drain_timeout_ms. Returns false at
  // the bound. Must not hold mu_: in-flight DMA translates (takes mu_) between Enter and Exit.
  bool DrainDma() ABSL_LOCKS_EXCLUDED(mu_, spaces_mu_);
  DmaClient* ClientOf(uint16_t rid) ABSL_LOCKS_EXCLUDED(spaces_mu_);

  PhysMemory& memory_;
  MsiSink& cpu_;
  const VtdProfile profile_;

  mutable absl::Mutex mu_;
  RegisterFile regs_ ABSL_GUARDED_BY(mu_);
  FaultRecorder faults_ ABSL_GUARDED_BY(mu_);
  InvalidationQueue queue_ ABSL_GUARDED_BY(mu_);
  PageRequestQueue prq_ ABSL_GUARDED_BY(mu_);
  ContextCache context_cache_ ABSL_GUARDED_BY(mu_);
  PasidCache pasid_cache_ ABSL_GUARDED_BY(mu_);
  Iotlb iotlb_;  // internally synchronised
  InterruptRemapper remapper_ ABSL_GUARDED_BY(mu_);
  EntryObserver observer_ ABSL_GUARDED_BY(mu_);
  TranslationState translation_ ABSL_GUARDED_BY(mu_);
  IrtConfig irt_ ABSL_GUARDED_BY(mu_);
  bool queue_busy_ ABSL_GUARDED_BY(mu_) = false;   // one thread processes the queue at a time
  bool queue_rekick_ ABSL_GUARDED_BY(mu_) = false;
  // An invalidation that can remove translations ran since the last drain (CAP.DRD/DWD on): the
  // next FlushInvalidations (before a wait descriptor, at the end of queue processing, after a
  // register-based invalidation) drains the DMA in flight before the guest can see completion.
  bool drain_pending_ ABSL_GUARDED_BY(mu_) = false;
  std::vector<VtdListener*> listeners_ ABSL_GUARDED_BY(mu_);
  struct ForwardedDescriptor {
    InvDescriptor descriptor;
    std::optional<uint64_t> head;  // IQH offset; nullopt for register-based invalidations
  };
  // Descriptors executed since the last flush (only while listeners exist; bounded by one queue's
  // worth, as Process is).
  std::vector<ForwardedDescriptor> forward_batch_ ABSL_GUARDED_BY(mu_);
  VtdStats stats_ ABSL_GUARDED_BY(mu_);

  mutable absl::Mutex spaces_mu_ ABSL_ACQUIRED_AFTER(mu_);
  absl::flat_hash_map<uint16_t, std::unique_ptr<DmaSpace>> spaces_ ABSL_GUARDED_BY(spaces_mu_);
};

}  // namespace ionest::vtd
