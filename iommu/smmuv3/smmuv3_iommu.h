// The emulated Arm SMMUv3 (IHI0070): register window (two 64 KiB pages, §6), stream table and
// context descriptors (§3.3, §5), stage 1 / stage 2 / nested translation through the VMSAv8-64
// walker (iommu/vmsa_walk.h), the IOTLB (iommu/iotlb.h, tagged by VMID and ASID), the command
// queue (§4), the event queue (§7), the PRI queue (§8), global errors (§6.3.16) and MSIs.
//
// Construct with guest memory (the SMMU reads its tables and queues through PhysMemory, every
// access bounds-checked there), the MsiSink its own interrupts go to, and a profile. No KVM needed
// (tests, fuzzers and benchmarks drive it directly).
//
// Threads: MmioRead/MmioWrite from vCPU threads (MMIO exits); ForRequester and the DmaSpaces'
// Translate/Read/Write/SendPageRequest from any thread (device workers, vCPUs); Reset from the
// machine's reset path. One mutex (mu_) serialises the model; the translate hit path holds it
// shared. MSIs and DmaClient callbacks are collected in an Outbox under mu_ and delivered after
// it is released (iommu/outbox.h), never under it.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string_view>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "iommu/dma_space.h"
#include "iommu/iotlb.h"
#include "iommu/msi.h"
#include "iommu/outbox.h"
#include "iommu/smmuv3/smmuv3_config.h"
#include "iommu/smmuv3/smmuv3_defs.h"
#include "iommu/trace.h"
#include "vmm/guest_memory.h"

namespace ionest::smmuv3 {

// Implementation choices, reported in SMMU_IDR0-5 (§6.3.1-6.3.6).
struct Smmuv3Profile {
  bool stage1 = true;                  // IDR0.S1P
  bool stage2 = true;                  // IDR0.S2P
  bool two_level_stream_table = true;  // IDR0.ST_LEVEL = 01
  bool two_level_cd = true;            // IDR0.CD2L
  int sid_bits = 16;                   // IDR1.SIDSIZE (PCI requester IDs: 16)
  int ssid_bits = 20;                  // IDR1.SSIDSIZE, 0..20
  int cmdq_log2 = 10;                  // IDR1.CMDQS, 0..19
  int evtq_log2 = 8;                   // IDR1.EVENTQS, 0..19
  int priq_log2 = 8;                   // IDR1.PRIQS, 0..19
  bool ats = false;                    // IDR0.ATS: ATS translation requests, ATC_INV to the DmaClient
  bool pri = false;                    // IDR0.PRI (page requests into the PRI queue)
  // IDR0.STALL_MODEL 00 (stall supported, not forced): CD.S / STE.S2S stall faulting transactions.
  // On by default: what Linux's arm-smmu-v3 needs (ARM_SMMU_FEAT_STALLS) to enable IOPF and SVA for
  // a master with `dma-can-stall` (§3.12.2).
  bool stall = true;
  uint16_t max_stalls = 64;            // IDR5.STALL_MAX: stalled transactions held at once
  bool asid16 = true;                  // IDR0.ASID16
  bool vmid16 = true;                  // IDR0.VMID16
  int oas_bits = 48;                   // IDR5.OAS: 32, 36, 40, 42, 44 or 48
  bool cohacc = true;                  // IDR0.COHACC
  bool msi = true;                     // IDR0.MSI
  bool sev = true;                     // IDR0.SEV
  bool hardware_af = true;             // IDR0.HTTU = 01: CD.HA / STE.S2HA set the access flag
  bool range_invalidation = true;      // IDR3.RIL: TLBI ranges (TG/NUM/SCALE)
  bool gran4k = true, gran16k = true, gran64k = true;  // IDR5.GRAN*
  bool gbpa_abort_at_reset = false;    // GBPA.ABORT reset value (IMPLEMENTATION DEFINED)
  uint32_t iidr = 0;                   // IIDR: no implementer (Linux applies no product errata)
  uint32_t aidr = 0x02;                // AIDR: SMMUv3.2 (RIL is a v3.2 feature)
  uint16_t msi_requester_id = 0;       // MsiMessage::requester_id of the SMMU's own MSIs (ITS DeviceID)
  size_t iotlb_entries = Iotlb::kDefaultCapacity;
  size_t config_cache_entries = 1024;  // STEs and CDs each; emptied when full
  uint32_t max_commands_per_kick = 4096;  // commands per doorbell; a CMDQ_CONS read continues
  uint32_t max_regions_per_translate = 64;
};

struct Smmuv3Stats {
  uint64_t commands = 0;
  uint64_t command_errors = 0;
  uint64_t syncs = 0;
  uint64_t events_written = 0;
  uint64_t events_lost = 0;  // queue full (overflow) or disabled
  uint64_t page_requests = 0;
  uint64_t page_request_overflows = 0;
  uint64_t msi_writes = 0;  // MSIs that were plain memory writes (e.g. CMD_SYNC into the queue)
  uint64_t msis_sent = 0;   // MSIs handed to the MsiSink
  uint64_t stalls = 0;             // transactions held (event with Stall=1, §3.12.2)
  uint64_t stalls_resumed = 0;     // ... ended by CMD_RESUME retry (§4.7.2)
  uint64_t stalls_terminated = 0;  // ... ended by RESUME abort/terminate, STALL_TERM, SMMUEN=0, reset
  uint64_t stalls_abandoned = 0;   // ... dropped because the device stopped waiting (DmaSpace::AbandonStall)
  size_t ste_cache = 0, cd_cache = 0, context_cache = 0;
  IotlbStats iotlb;
};

class Smmuv3Iommu final : public DmaSpaceProvider {
 public:
  // `memory`: guest-physical memory (tables, queues, DMA); `msi`: where the SMMU's own MSIs go
  // when their address is not guest RAM (a GIC ITS doorbell). Create checks the profile first;
  // the constructor aborts on an invalid one (a host configuration error, never guest input).
  static absl::StatusOr<std::unique_ptr<Smmuv3Iommu>> Create(PhysMemory& memory, MsiSink& msi, Smmuv3Profile profile);
  Smmuv3Iommu(PhysMemory& memory, MsiSink& msi, Smmuv3Profile profile);
  ~Smmuv3Iommu() override;
  static absl::Status Validate(const Smmuv3Profile& profile);

  const Smmuv3Profile& profile() const { return profile_; }
  static constexpr uint64_t mmio_size() { return kWindowSize; }

  // Register window (offset in [0, 0x20000)): 4- and 8-byte accesses (§6.2); other sizes and
  // unknown offsets read as zero and ignore writes. vCPU threads.
  uint64_t MmioRead(uint64_t offset, unsigned size) ABSL_LOCKS_EXCLUDED(mu_);
  void MmioWrite(uint64_t offset, uint64_t value, unsigned size) ABSL_LOCKS_EXCLUDED(mu_);

  // DmaSpaceProvider: StreamID = PCI requester ID (bus << 8 | devfn). The space lives as long as
  // this object. Any thread.
  DmaSpace& ForRequester(uint16_t rid) override ABSL_LOCKS_EXCLUDED(spaces_mu_);

  // Reset (§6.3: registers to their reset values, queues and translation off, caches emptied,
  // stalled transactions terminated). DmaSpaces and their clients stay. The machine's reset path;
  // DMA racing it is safe (it sees the old or the new state).
  void Reset() ABSL_LOCKS_EXCLUDED(mu_);

  Smmuv3Stats stats() const ABSL_LOCKS_EXCLUDED(mu_);

  // `--dump-tables`: the STE (and CD) of one StreamID and, with an IOVA, the walk the model would
  // do for it (smmuv3_trace.cc). Reads guest memory only; bounded output.
  std::string DumpTables(const trace::DumpRequest& request) ABSL_LOCKS_EXCLUDED(mu_);

 private:
  class Space;
  // *_IRQ_CFG0 (MSI address [51:2]), CFG1 (data), CFG2 (MemAttr, SH) (§6.3.18).
  struct IrqConfig {
    uint64_t addr = 0;
    uint32_t data = 0;
    uint32_t attr = 0;
  };
  struct Queue {
    uint64_t base = 0;  // *_BASE as written
    uint32_t prod = 0;
    uint32_t cons = 0;
    int log2size(int max) const;
    uint64_t addr(int max) const { return base & kQueueBaseAddr; }
  };
  // The resolved configuration of one (StreamID, SubstreamID).
  struct Context {
    enum Kind { kAbort, kBypass, kTranslate } kind = kAbort;
    bool s1 = false, s2 = false;
    VmsaStage1Config s1_config;
    VmsaStage2Config s2_config;
    uint16_t vmid = 0;
    uint32_t tag = 0;  // IOTLB "pasid" tag: ASID, or kStage2Tag
    IotlbType type = IotlbType::kFirstStage;
    bool stall_s1 = false;  // CD.S && !STE.S1STALLD (§5.4, §3.12.2)
    bool stall_s2 = false;  // STE.S2S
    bool record_s1 = true;  // CD.R: record terminated stage-1 faults (§5.4)
    bool record_s2 = true;  // STE.S2R (§5.2)
  };
  struct Event {
    uint8_t type = 0;
    uint32_t sid = 0;
    std::optional<uint32_t> ssid;
    uint32_t access = 0;
    bool s2 = false;
    uint32_t klass = kEvtClassIn;
    uint64_t input = 0;
    uint64_t addr3 = 0;  // IPA (stage-2 faults) or fetch address
    std::optional<uint16_t> stag;  // stalled: Stall=1 and this STAG
  };
  struct Resolution {
    std::optional<Context> context;
    std::optional<Event> event;  // why not (no event: silent abort)
  };

  static constexpr uint32_t kStage2Tag = 0x10000;  // IOTLB tag of stage-2-only entries (ASIDs are 16 bits)

  Translation TranslateFor(uint16_t sid, uint64_t iova, uint64_t len, uint32_t access, const DmaAttrs& attrs)
      ABSL_LOCKS_EXCLUDED(mu_);
  absl::Status PageRequestFor(uint16_t sid, const PageRequest& request) ABSL_LOCKS_EXCLUDED(mu_);
  // ATS translation request (§3.9): STE.EATS=1 streams only; faults answer R=W=0 without an event.
  AtsTranslation AtsTranslateFor(uint16_t sid, uint64_t iova, uint32_t access, const DmaAttrs& attrs)
      ABSL_LOCKS_EXCLUDED(mu_);
  // Translated transactions (AT=10b): pass unless CR0.ATSCHK and the STE does not allow ATS (§6.3.9).
  bool AllowTranslatedFor(uint16_t sid) ABSL_LOCKS_EXCLUDED(mu_);
  // Hit path: the resolved configuration of (sid, ssid), or null if it must be resolved again.
  const Context* CachedContextLocked(uint32_t sid, std::optional<uint32_t> ssid) const
      ABSL_SHARED_LOCKS_REQUIRED(mu_);
  // sid << 33 | SSV << 32 | SSID (any 32-bit SSID the device claims stays distinct from none).
  static uint64_t ContextKey(uint32_t sid, std::optional<uint32_t> ssid) {
    return uint64_t{sid} << 33 | (ssid ? uint64_t{1} << 32 | *ssid : 0);
  }
  static uint64_t ContextSid(uint64_t key) { return key >> 33; }
  Resolution ResolveLocked(uint32_t sid, std::optional<uint32_t> ssid, uint64_t input, uint32_t access)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Combines a valid STE and CD (or none) into a Context (§5.2 S1DSS).
  static Context MakeContext(const SteConfig& ste, const CdConfig* cd, bool stage1_bypassed);
  WalkResult Walk(PhysMemory& memory, const Context& c, uint64_t iova, uint32_t access) ABSL_SHARED_LOCKS_REQUIRED(mu_);

  // The fault epilogue: writes the event record (§7.2) if the queue is enabled.
  bool RecordEventLocked(const Event& e, Outbox& out) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  bool WriteEventLocked(const Event& e, Outbox& out) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Event trace (iommu/trace.h, smmuv3_trace.cc): an event record, a command executed.
  // `result`: written, lost (queue off/full/abort), not-recorded (CD.R / STE.S2R = 0).
  void TraceEvent(const Event& e, std::string_view result) const;
  void TraceCommand(uint32_t index, const uint64_t (&cmd)[2], uint32_t error) const;
  void RaiseGerrorLocked(uint32_t bits, Outbox& out) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // An MSI (§6.3.18 *_IRQ_CFG0/1, CMD_SYNC): a 32-bit write, to RAM when the address is RAM,
  // otherwise to the MsiSink (after the lock is dropped).
  void SignalMsiLocked(uint64_t addr, uint32_t data, Outbox& out) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void SignalMsiLocked(const IrqConfig& irq, Outbox& out) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    SignalMsiLocked(irq.addr, irq.data, out);
  }

  uint32_t ReadRegLocked(uint64_t offset) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void WriteRegLocked(uint64_t offset, uint64_t value, unsigned size, Outbox& out) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  uint64_t ReadReg64Locked(uint64_t offset) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  bool Is64BitReg(uint64_t offset) const;
  void WriteCr0Locked(uint32_t value, Outbox& out) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  // Command queue (§4): runs until empty, an error, or the per-kick bound.
  void ProcessCommandsLocked(Outbox& out) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Executes one command; returns a CERROR code (kCerrorNone on success).
  uint32_t ExecuteCommandLocked(const uint64_t (&cmd)[2], Outbox& out) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void InvalidateConfigLocked(uint32_t sid_first, uint64_t count) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Ends stalled transactions (§4.7.2 CMD_RESUME, §4.7.3 CMD_STALL_TERM): the device hears through
  // DmaClient::OnPageResponse (group_index = STAG; kSuccess = retry).
  void EndStallLocked(uint32_t sid, uint16_t stag, bool retry, Outbox& out) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void TerminateStallsLocked(std::optional<uint32_t> sid, Outbox& out) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // DmaSpace::AbandonStall: drops a held transaction without an answer.
  void AbandonStallFor(uint16_t sid, uint16_t stag) ABSL_LOCKS_EXCLUDED(mu_);
  void InvalidateRange(uint16_t vmid, std::optional<uint32_t> tag, uint64_t addr, uint64_t len, uint32_t type_mask);
  // Drops mu_ to deliver the outbox (device callbacks before a CMD_SYNC completes), then retakes it.
  void DeliverUnlocked(Outbox& out) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void Deliver(Outbox& out) ABSL_LOCKS_EXCLUDED(mu_);
  DmaClient* ClientOf(uint16_t rid) ABSL_LOCKS_EXCLUDED(spaces_mu_);
  void ResetLocked(Outbox& out) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  DecodeCaps Caps() const;

  PhysMemory& memory_;
  MsiSink& msi_;
  const Smmuv3Profile profile_;
  const DecodeCaps caps_;

  mutable absl::Mutex mu_;
  // Registers (§6.3).
  uint32_t cr0_ ABSL_GUARDED_BY(mu_) = 0;
  uint32_t cr1_ ABSL_GUARDED_BY(mu_) = 0;
  uint32_t cr2_ ABSL_GUARDED_BY(mu_) = 0;
  uint32_t gbpa_ ABSL_GUARDED_BY(mu_) = 0;
  uint32_t irq_ctrl_ ABSL_GUARDED_BY(mu_) = 0;
  uint32_t gerror_ ABSL_GUARDED_BY(mu_) = 0;
  uint32_t gerrorn_ ABSL_GUARDED_BY(mu_) = 0;
  IrqConfig gerror_irq_ ABSL_GUARDED_BY(mu_);
  StreamTable strtab_ ABSL_GUARDED_BY(mu_);
  Queue cmdq_ ABSL_GUARDED_BY(mu_);
  Queue evtq_ ABSL_GUARDED_BY(mu_);
  Queue priq_ ABSL_GUARDED_BY(mu_);
  IrqConfig evtq_irq_ ABSL_GUARDED_BY(mu_);
  IrqConfig priq_irq_ ABSL_GUARDED_BY(mu_);
  // Configuration caches (§16.2: invalidated by CFGI_*; faults are never cached).
  absl::flat_hash_map<uint32_t, SteConfig> ste_cache_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<uint64_t, CdConfig> cd_cache_ ABSL_GUARDED_BY(mu_);  // sid << 32 | ssid
  // What the two combine to per (sid, transaction ssid) (ContextKey): the hit path's one lookup.
  // Dropped with the STE/CD entries it came from.
  absl::flat_hash_map<uint64_t, Context> contexts_ ABSL_GUARDED_BY(mu_);
  // Stalled transactions by sid << 16 | STAG (at most profile.max_stalls).
  absl::flat_hash_set<uint64_t> stalls_ ABSL_GUARDED_BY(mu_);
  uint16_t next_stag_ ABSL_GUARDED_BY(mu_) = 0;
  bool cmdq_busy_ ABSL_GUARDED_BY(mu_) = false;  // one thread processes commands at a time
  bool cmdq_rekick_ ABSL_GUARDED_BY(mu_) = false;
  Smmuv3Stats stats_ ABSL_GUARDED_BY(mu_);
  Iotlb iotlb_;  // internally synchronised (leaf lock)

  mutable absl::Mutex spaces_mu_ ABSL_ACQUIRED_AFTER(mu_);
  absl::flat_hash_map<uint16_t, std::unique_ptr<DmaSpace>> spaces_ ABSL_GUARDED_BY(spaces_mu_);
};

}  // namespace ionest::smmuv3
