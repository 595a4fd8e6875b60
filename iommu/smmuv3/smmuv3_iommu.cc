#include "iommu/smmuv3/smmuv3_iommu.h"

#include <algorithm>
#include <bit>
#include <cstring>
#include <utility>

#include "absl/base/internal/raw_logging.h"
#include "absl/strings/str_format.h"
#include "iommu/trace.h"

namespace ionest::smmuv3 {
namespace {

constexpr uint32_t kAllAccess = kDmaRead | kDmaWrite | kDmaExec | kDmaPriv;

// Largest page size the IOTLB caches (4 KiB, 2 MiB, 1 GiB) within a translation of `size`
// (16/64 KiB granules give other sizes; a sub-page of an aligned page is aligned too).
uint64_t CacheablePageSize(uint64_t size) {
  if (size >= kPage1G) return kPage1G;
  if (size >= kPage2M) return kPage2M;
  return kPage4K;
}

bool IsQueueEmpty(uint32_t prod, uint32_t cons, uint32_t wrap_and_index) {
  return (prod & wrap_and_index) == (cons & wrap_and_index);
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// Per-StreamID DMA space.

class Smmuv3Iommu::Space final : public DmaSpace {
 public:
  Space(Smmuv3Iommu& smmu, uint16_t sid) : DmaSpace(smmu.memory_), smmu_(smmu), sid_(sid) {}
  Translation Translate(uint64_t iova, uint64_t len, uint32_t access, const DmaAttrs& attrs) override {
    return smmu_.TranslateFor(sid_, iova, len, access, attrs);
  }
  absl::Status SendPageRequest(const PageRequest& request) override { return smmu_.PageRequestFor(sid_, request); }
  AtsTranslation AtsTranslate(uint64_t iova, uint32_t access, const DmaAttrs& attrs) override {
    return smmu_.AtsTranslateFor(sid_, iova, access, attrs);
  }
  bool AllowTranslatedRequest() override { return smmu_.AllowTranslatedFor(sid_); }
  void AbandonStall(uint16_t stag) override { smmu_.AbandonStallFor(sid_, stag); }

 private:
  Smmuv3Iommu& smmu_;
  const uint16_t sid_;
};

int Smmuv3Iommu::Queue::log2size(int max) const {
  return std::min<int>(static_cast<int>(base & kQueueLog2Size), max);
}

absl::Status Smmuv3Iommu::Validate(const Smmuv3Profile& p) {
  auto bad = [](const char* what) { return absl::InvalidArgumentError(absl::StrFormat("smmuv3: %s", what)); };
  if (!p.stage1 && !p.stage2) return bad("at least one translation stage");
  if (p.sid_bits < 0 || p.sid_bits > 16) return bad("sid_bits must be 0..16 (PCI requester IDs)");
  if (p.ssid_bits < 0 || p.ssid_bits > 20) return bad("ssid_bits must be 0..20");
  for (int q : {p.cmdq_log2, p.evtq_log2, p.priq_log2})
    if (q < 0 || q > 19) return bad("queue sizes must be 2^0..2^19");
  if (AddressSizeBits(AddressSizeEncoding(p.oas_bits)) != p.oas_bits || p.oas_bits > 48)
    return bad("oas_bits must be 32, 36, 40, 42, 44 or 48");
  if (!p.gran4k && !p.gran16k && !p.gran64k) return bad("no translation granule");
  if (p.stall && p.max_stalls == 0) return bad("the stall model needs max_stalls > 0");
  if (p.iotlb_entries == 0 || p.config_cache_entries == 0 || p.max_commands_per_kick == 0 ||
      p.max_regions_per_translate == 0)
    return bad("zero limit");
  return absl::OkStatus();
}

DecodeCaps Smmuv3Iommu::Caps() const {
  DecodeCaps c;
  c.stage1 = profile_.stage1;
  c.stage2 = profile_.stage2;
  c.two_level_stream_table = profile_.two_level_stream_table;
  c.two_level_cd = profile_.two_level_cd;
  c.sid_bits = profile_.sid_bits;
  c.ssid_bits = profile_.ssid_bits;
  c.oas_bits = profile_.oas_bits;
  c.gran4k = profile_.gran4k;
  c.gran16k = profile_.gran16k;
  c.gran64k = profile_.gran64k;
  c.hardware_af = profile_.hardware_af;
  c.asid16 = profile_.asid16;
  c.vmid16 = profile_.vmid16;
  c.stall = profile_.stall;
  c.ats = profile_.ats;
  return c;
}

absl::StatusOr<std::unique_ptr<Smmuv3Iommu>> Smmuv3Iommu::Create(PhysMemory& memory, MsiSink& msi,
                                                                 Smmuv3Profile profile) {
  if (absl::Status s = Validate(profile); !s.ok()) return s;
  return std::make_unique<Smmuv3Iommu>(memory, msi, profile);
}

Smmuv3Iommu::Smmuv3Iommu(PhysMemory& memory, MsiSink& msi, Smmuv3Profile profile)
    : memory_(memory), msi_(msi), profile_(profile), caps_(Caps()), iotlb_(profile_.iotlb_entries) {
  ABSL_RAW_CHECK(Validate(profile_).ok(), "smmuv3: invalid Smmuv3Profile (see Smmuv3Iommu::Validate)");
  Outbox out;
  absl::MutexLock l(&mu_);
  ResetLocked(out);
}

Smmuv3Iommu::~Smmuv3Iommu() = default;

DmaSpace& Smmuv3Iommu::ForRequester(uint16_t rid) {
  absl::MutexLock l(&spaces_mu_);
  auto& slot = spaces_[rid];
  if (!slot) slot = std::make_unique<Space>(*this, rid);
  return *slot;
}

DmaClient* Smmuv3Iommu::ClientOf(uint16_t rid) {
  absl::MutexLock l(&spaces_mu_);
  auto it = spaces_.find(rid);
  return it == spaces_.end() ? nullptr : it->second->client();
}

void Smmuv3Iommu::Reset() {
  Outbox out;
  {
    absl::MutexLock l(&mu_);
    ResetLocked(out);
  }
  Deliver(out);
}

void Smmuv3Iommu::ResetLocked(Outbox& out) {
  TerminateStallsLocked(std::nullopt, out);
  // §6.3: every register resets to 0 except GBPA (ABORT IMPLEMENTATION DEFINED, SHCFG 0b01).
  cr0_ = cr1_ = cr2_ = irq_ctrl_ = gerror_ = gerrorn_ = 0;
  gbpa_ = (profile_.gbpa_abort_at_reset ? kGbpaAbort : 0) | (1u << 12);
  gerror_irq_ = evtq_irq_ = priq_irq_ = {};
  strtab_ = {};
  cmdq_ = evtq_ = priq_ = {};
  ste_cache_.clear();
  cd_cache_.clear();
  contexts_.clear();
  iotlb_.InvalidateAll();
}

Smmuv3Stats Smmuv3Iommu::stats() const {
  absl::MutexLock l(&mu_);
  Smmuv3Stats s = stats_;
  s.ste_cache = ste_cache_.size();
  s.cd_cache = cd_cache_.size();
  s.context_cache = contexts_.size();
  s.iotlb = iotlb_.stats();
  return s;
}

// ---------------------------------------------------------------------------------------------
// Outbox delivery.

void Smmuv3Iommu::Deliver(Outbox& out) { out.Deliver(msi_, "smmuv3"); }

void Smmuv3Iommu::DeliverUnlocked(Outbox& out) { out.DeliverUnlocked(mu_, msi_, "smmuv3"); }

void Smmuv3Iommu::SignalMsiLocked(uint64_t addr, uint32_t data, Outbox& out) {
  addr &= kMsiAddrMask;
  if (addr == 0) return;  // §6.3.18: MSI address 0 disables the MSI
  if (memory_.Write(addr, &data, sizeof(data)).ok()) {
    ++stats_.msi_writes;  // an MSI is a 32-bit write (§3.18); RAM takes it like any other write
    return;
  }
  ++stats_.msis_sent;
  out.msis.push_back({addr, data, profile_.msi_requester_id});
}

void Smmuv3Iommu::RaiseGerrorLocked(uint32_t bits, Outbox& out) {
  // §6.3.16: an error is active while GERROR[x] != GERRORN[x]; raising toggles an inactive one.
  const uint32_t inactive = ~(gerror_ ^ gerrorn_) & bits & kGerrorMask;
  if (inactive == 0) return;
  gerror_ ^= inactive;
  if (irq_ctrl_ & kIrqCtrlGerror) SignalMsiLocked(gerror_irq_, out);
}

// ---------------------------------------------------------------------------------------------
// Register window (§6.3).

bool Smmuv3Iommu::Is64BitReg(uint64_t offset) const {
  switch (offset) {
    case kGerrorIrqCfg0: case kStrtabBase: case kCmdqBase: case kEvtqBase: case kEvtqIrqCfg0: case kPriqBase:
    case kPriqIrqCfg0:
      return true;
    default:
      return false;
  }
}

uint64_t Smmuv3Iommu::ReadReg64Locked(uint64_t offset) {
  switch (offset) {
    case kGerrorIrqCfg0: return gerror_irq_.addr;
    case kStrtabBase: return strtab_.base;
    case kCmdqBase: return cmdq_.base;
    case kEvtqBase: return evtq_.base;
    case kEvtqIrqCfg0: return evtq_irq_.addr;
    case kPriqBase: return priq_.base;
    case kPriqIrqCfg0: return priq_irq_.addr;
    default: return 0;
  }
}

uint32_t Smmuv3Iommu::ReadRegLocked(uint64_t offset) {
  const Smmuv3Profile& p = profile_;
  switch (offset) {
    case kIdr0: {
      uint32_t v = kIdr0TtfAArch64 | kIdr0TtEndianLe;
      if (p.stage2) v |= kIdr0S2p;
      if (p.stage1) v |= kIdr0S1p;
      if (p.cohacc) v |= kIdr0Cohacc;
      if (p.hardware_af) v |= kIdr0HttuAccess;
      if (p.ats) v |= kIdr0Ats;
      if (p.asid16) v |= kIdr0Asid16;
      if (p.msi) v |= kIdr0Msi;
      if (p.sev) v |= kIdr0Sev;
      if (p.pri) v |= kIdr0Pri;
      if (p.vmid16 && p.stage2) v |= kIdr0Vmid16;
      if (p.two_level_cd) v |= kIdr0Cd2l;
      if (!p.stall) v |= kIdr0StallModelTerminate;
      if (p.two_level_stream_table) v |= kIdr0StLevel2;
      return v;
    }
    case kIdr1:
      return static_cast<uint32_t>(p.sid_bits | p.ssid_bits << 6 | (p.pri ? p.priq_log2 : 0) << 11 |
                                   p.evtq_log2 << 16 | p.cmdq_log2 << 21);
    case kIdr3: return p.range_invalidation ? kIdr3Ril : 0;
    case kIdr5: {
      uint32_t v = AddressSizeEncoding(p.oas_bits) | (p.stall ? uint32_t{p.max_stalls} << 16 : 0u);
      if (p.gran4k) v |= kIdr5Gran4K;
      if (p.gran16k) v |= kIdr5Gran16K;
      if (p.gran64k) v |= kIdr5Gran64K;
      return v;
    }
    case kIidr: return p.iidr;
    case kAidr: return p.aidr;
    case kCr0: return cr0_;
    case kCr0Ack: return cr0_;  // updates take effect at once
    case kCr1: return cr1_;
    case kCr2: return cr2_;
    case kGbpa: return gbpa_;  // Update completes at once: reads as 0
    case kIrqCtrl: case kIrqCtrlAck: return irq_ctrl_;
    case kGerror: return gerror_;
    case kGerrorn: return gerrorn_;
    case kGerrorIrqCfg1: return gerror_irq_.data;
    case kGerrorIrqCfg2: return gerror_irq_.attr;
    case kStrtabBaseCfg: return strtab_.cfg;
    case kCmdqProd: return cmdq_.prod;
    case kCmdqCons: return cmdq_.cons;
    case kEvtqProd: return evtq_.prod;
    case kEvtqCons: return evtq_.cons;
    case kEvtqIrqCfg1: return evtq_irq_.data;
    case kEvtqIrqCfg2: return evtq_irq_.attr;
    case kPriqProd: return priq_.prod;
    case kPriqCons: return priq_.cons;
    case kPriqIrqCfg1: return priq_irq_.data;
    case kPriqIrqCfg2: return priq_irq_.attr;
    default: return 0;  // IDR2, IDR4, STATUSR, AGBPA, reserved: RAZ
  }
}

void Smmuv3Iommu::WriteCr0Locked(uint32_t value, Outbox& out) {
  uint32_t mask = kCr0SmmuEn | kCr0EvtqEn | kCr0CmdqEn;
  if (profile_.pri) mask |= kCr0PriqEn;
  if (profile_.ats) mask |= kCr0AtsChk;
  const uint32_t old = cr0_;
  cr0_ = value & mask;
  if ((old & kCr0SmmuEn) && !(cr0_ & kCr0SmmuEn)) TerminateStallsLocked(std::nullopt, out);  // §3.12.2
  if ((cr0_ & kCr0CmdqEn) && !(old & kCr0CmdqEn)) ProcessCommandsLocked(out);
}

void Smmuv3Iommu::WriteRegLocked(uint64_t offset, uint64_t value, unsigned size, Outbox& out) {
  const uint32_t v32 = static_cast<uint32_t>(value);
  // Queue pointers keep the wrap bit and index of the current size (§6.3.21).
  auto pointer_mask = [](const Queue& q, int max) { return (2u << q.log2size(max)) - 1; };
  switch (offset) {
    case kCr0: WriteCr0Locked(v32, out); return;
    case kCr1: cr1_ = v32 & 0xFFF; return;
    case kCr2: cr2_ = v32 & 0x7; return;
    case kGbpa:
      // §6.3.13: a write with Update=1 applies the other fields; Update then reads as 0.
      if (v32 & kGbpaUpdate) gbpa_ = v32 & kGbpaFields;
      return;
    case kIrqCtrl: {
      uint32_t mask = kIrqCtrlGerror | kIrqCtrlEvtq;
      if (profile_.pri) mask |= kIrqCtrlPriq;
      irq_ctrl_ = v32 & mask;
      return;
    }
    case kGerrorn: {
      const bool cmdq_was_active = (gerror_ ^ gerrorn_) & kGerrorCmdqErr;
      gerrorn_ = v32 & kGerrorMask;
      // §7.1: command processing resumes once CMDQ_ERR is acknowledged.
      if (cmdq_was_active && !((gerror_ ^ gerrorn_) & kGerrorCmdqErr)) ProcessCommandsLocked(out);
      return;
    }
    case kGerrorIrqCfg0: gerror_irq_.addr = value & kMsiAddrMask; return;
    case kGerrorIrqCfg1: gerror_irq_.data = v32; return;
    case kGerrorIrqCfg2: gerror_irq_.attr = v32 & 0x3F; return;
    // Table and queue bases are read-only while the SMMU / the queue is enabled (§6.3.24, §6.3.20).
    case kStrtabBase:
      if (!(cr0_ & kCr0SmmuEn)) strtab_.base = value & (kStrtabBaseAddr | kStrtabBaseRa);
      return;
    case kStrtabBaseCfg:
      if (!(cr0_ & kCr0SmmuEn)) strtab_.cfg = v32 & static_cast<uint32_t>(Bits(17, 16) | Bits(10, 0));
      return;
    case kCmdqBase:
      if (!(cr0_ & kCr0CmdqEn)) cmdq_.base = value & (kQueueBaseAddr | kQueueBaseRa | kQueueLog2Size);
      return;
    case kCmdqProd:
      cmdq_.prod = v32 & pointer_mask(cmdq_, profile_.cmdq_log2);
      ProcessCommandsLocked(out);
      return;
    case kCmdqCons:
      if (!(cr0_ & kCr0CmdqEn))
        cmdq_.cons = v32 & (pointer_mask(cmdq_, profile_.cmdq_log2) | (0x7Fu << kCmdqConsErrShift));
      return;
    case kEvtqBase:
      if (!(cr0_ & kCr0EvtqEn)) evtq_.base = value & (kQueueBaseAddr | kQueueBaseRa | kQueueLog2Size);
      return;
    case kEvtqProd:
      if (!(cr0_ & kCr0EvtqEn)) evtq_.prod = v32 & (pointer_mask(evtq_, profile_.evtq_log2) | kQueueOverflow);
      return;
    case kEvtqCons: evtq_.cons = v32 & (pointer_mask(evtq_, profile_.evtq_log2) | kQueueOverflow); return;
    case kEvtqIrqCfg0: evtq_irq_.addr = value & kMsiAddrMask; return;
    case kEvtqIrqCfg1: evtq_irq_.data = v32; return;
    case kEvtqIrqCfg2: evtq_irq_.attr = v32 & 0x3F; return;
    case kPriqBase:
      if (profile_.pri && !(cr0_ & kCr0PriqEn)) priq_.base = value & (kQueueBaseAddr | kQueueBaseRa | kQueueLog2Size);
      return;
    case kPriqProd:
      if (profile_.pri && !(cr0_ & kCr0PriqEn))
        priq_.prod = v32 & (pointer_mask(priq_, profile_.priq_log2) | kQueueOverflow);
      return;
    case kPriqCons:
      if (profile_.pri) priq_.cons = v32 & (pointer_mask(priq_, profile_.priq_log2) | kQueueOverflow);
      return;
    case kPriqIrqCfg0: if (profile_.pri) priq_irq_.addr = value & kMsiAddrMask; return;
    case kPriqIrqCfg1: if (profile_.pri) priq_irq_.data = v32; return;
    case kPriqIrqCfg2: if (profile_.pri) priq_irq_.attr = v32 & 0x3F; return;
    default: return;  // read-only or reserved: WI
  }
}

uint64_t Smmuv3Iommu::MmioRead(uint64_t offset, unsigned size) {
  if ((size != 4 && size != 8) || offset % size || offset >= kWindowSize) return 0;
  if (offset >= kPageSize) {
    // Page 1 aliases EVTQ/PRIQ PROD and CONS (§6.1); everything else there is reserved.
    offset -= kPageSize;
    if (offset != kEvtqProd && offset != kPriqProd && !(size == 4 && (offset == kEvtqCons || offset == kPriqCons)))
      return 0;
  }
  Outbox out;
  uint64_t v = 0;
  {
    absl::MutexLock l(&mu_);
    if (offset == kCmdqCons) ProcessCommandsLocked(out);  // continue a queue the per-kick bound left
    if (Is64BitReg(offset)) {
      v = ReadReg64Locked(offset);
      if (size == 4) v &= 0xFFFF'FFFF;
    } else if (Is64BitReg(offset - 4) && offset >= 4) {
      v = size == 4 ? ReadReg64Locked(offset - 4) >> 32 : 0;
    } else {
      v = ReadRegLocked(offset);
      if (size == 8) v |= uint64_t{ReadRegLocked(offset + 4)} << 32;
    }
  }
  Deliver(out);
  return v;
}

void Smmuv3Iommu::MmioWrite(uint64_t offset, uint64_t value, unsigned size) {
  if ((size != 4 && size != 8) || offset % size || offset >= kWindowSize) return;
  if (offset >= kPageSize) {
    offset -= kPageSize;
    if (offset != kEvtqProd && offset != kEvtqCons && offset != kPriqProd && offset != kPriqCons) return;
  }
  Outbox out;
  {
    absl::MutexLock l(&mu_);
    if (Is64BitReg(offset)) {
      if (size == 4) value = (ReadReg64Locked(offset) & ~0xFFFF'FFFFull) | (value & 0xFFFF'FFFF);
      WriteRegLocked(offset, value, 8, out);
    } else if (offset >= 4 && Is64BitReg(offset - 4)) {
      if (size == 4)
        WriteRegLocked(offset - 4, (ReadReg64Locked(offset - 4) & 0xFFFF'FFFF) | (value << 32), 8, out);
    } else {
      WriteRegLocked(offset, value & 0xFFFF'FFFF, 4, out);
      if (size == 8) WriteRegLocked(offset + 4, value >> 32, 4, out);
    }
  }
  Deliver(out);
}

// ---------------------------------------------------------------------------------------------
// Command queue (§4, §7.1).

void Smmuv3Iommu::ProcessCommandsLocked(Outbox& out) {
  if (cmdq_busy_) {  // another thread is processing (its lock dropped at a CMD_SYNC): it looks again
    cmdq_rekick_ = true;
    return;
  }
  cmdq_busy_ = true;
  uint32_t budget = profile_.max_commands_per_kick;
  do {
    cmdq_rekick_ = false;
    while (budget > 0) {
      if (!(cr0_ & kCr0CmdqEn) || ((gerror_ ^ gerrorn_) & kGerrorCmdqErr)) break;
      const int log2 = cmdq_.log2size(profile_.cmdq_log2);
      const uint32_t index_mask = (1u << log2) - 1, pointer = (2u << log2) - 1;
      const uint32_t cons = cmdq_.cons & pointer;
      if (IsQueueEmpty(cmdq_.prod, cons, pointer)) break;
      uint64_t cmd[2] = {};
      uint32_t error = kCerrorNone;
      const uint32_t cons_register = cmdq_.cons;
      if (!memory_.Read(cmdq_.addr(profile_.cmdq_log2) + uint64_t{cons & index_mask} * kCmdSize, cmd, sizeof(cmd)).ok()) {
        error = kCerrorAbt;
      } else {
        ++stats_.commands;
        error = ExecuteCommandLocked(cmd, out);
      }
      if (trace::On(trace::kCommand)) TraceCommand(cons & index_mask, cmd, error);
      --budget;
      if (error != kCerrorNone) {
        // §7.1: CONS stays at the failing command, ERR says why, GERROR.CMDQ_ERR stops the queue.
        ++stats_.command_errors;
        cmdq_.cons = (cmdq_.cons & pointer) | error << kCmdqConsErrShift;
        RaiseGerrorLocked(kGerrorCmdqErr, out);
        break;
      }
      // A CMD_SYNC drops the lock: if the queue was disabled, reset or reprogrammed meanwhile,
      // CONS belongs to the new state and is left alone.
      if (!(cr0_ & kCr0CmdqEn) || cmdq_.cons != cons_register) break;
      const uint32_t now_pointer = (2u << cmdq_.log2size(profile_.cmdq_log2)) - 1;
      cmdq_.cons = ((cons + 1) & now_pointer) | (cmdq_.cons & ~now_pointer);
    }
  } while (cmdq_rekick_ && budget > 0);
  cmdq_busy_ = false;
}

void Smmuv3Iommu::InvalidateConfigLocked(uint32_t sid_first, uint64_t count) {
  const uint64_t last = uint64_t{sid_first} + count - 1;
  auto in_range = [&](uint64_t sid) { return sid >= sid_first && sid <= last; };
  if (count == 1) {
    ste_cache_.erase(sid_first);
  } else {
    absl::erase_if(ste_cache_, [&](const auto& kv) { return in_range(kv.first); });
  }
  // The CDs of a stream hang off its STE: drop them too.
  absl::erase_if(cd_cache_, [&](const auto& kv) { return in_range(kv.first >> 32); });
  absl::erase_if(contexts_, [&](const auto& kv) { return in_range(ContextSid(kv.first)); });
}

void Smmuv3Iommu::InvalidateRange(uint16_t vmid, std::optional<uint32_t> tag, uint64_t addr, uint64_t len,
                                  uint32_t type_mask) {
  // Split [addr, addr + len) into naturally aligned power-of-two blocks: at most ~2 x 64 of them.
  uint64_t a = addr & ~(kPage4K - 1);
  const uint64_t end = addr + len < addr ? ~0ull : addr + len;
  while (a < end) {
    int shift = a == 0 ? 63 : std::countr_zero(a);
    while (shift > 12 && (shift >= 64 || a + (uint64_t{1} << shift) > end || a + (uint64_t{1} << shift) < a)) --shift;
    iotlb_.InvalidatePages(vmid, tag, a, static_cast<unsigned>(shift - 12), false, type_mask);
    const uint64_t next = a + (uint64_t{1} << shift);
    if (next <= a) break;
    a = next;
  }
}

uint32_t Smmuv3Iommu::ExecuteCommandLocked(const uint64_t (&cmd)[2], Outbox& out) {
  const uint8_t op = static_cast<uint8_t>(cmd[0] & 0xFF);
  // Fields each command defines (§4.x); anything else set is a reserved bit: CERROR_ILL (§4.1.2).
  constexpr uint64_t kOp = Bits(7, 0), kSsv = Bit(11), kSsid = Bits(31, 12), kSid = Bits(63, 32),
                     kVmid = Bits(47, 32), kAsid = Bits(63, 48), kNumScale = Bits(16, 12) | Bits(24, 20),
                     kLeafTtlTg = Bit(0) | Bits(11, 8);
  auto fields = [&](uint64_t d0, uint64_t d1) { return (cmd[0] & ~d0) == 0 && (cmd[1] & ~d1) == 0; };
  const uint32_t sid = static_cast<uint32_t>(cmd[0] >> 32);
  const uint16_t vmid = static_cast<uint16_t>(Field(cmd[0], 47, 32));
  const uint16_t asid = static_cast<uint16_t>(Field(cmd[0], 63, 48));
  constexpr uint32_t kS1Types = IotlbTypeBit(IotlbType::kFirstStage) | IotlbTypeBit(IotlbType::kNested);
  // TLBI by address (§4.4.1.1): TG=0 one address, else a range of (NUM+1) * 2^SCALE granules
  // (the SMMU's range encoding, unlike the CPU's TLBI RVA*).
  auto tlbi_by_address = [&](std::optional<uint32_t> tag, uint64_t addr, uint32_t types) -> uint32_t {
    const uint32_t tg = Field(cmd[1], 11, 10);
    const uint32_t num = Field(cmd[0], 16, 12), scale = Field(cmd[0], 24, 20);
    if (tg == 0) {
      if (num || scale) return kCerrorIll;
      iotlb_.InvalidatePages(vmid, tag, addr, 0, false, types);
      return kCerrorNone;
    }
    if (!profile_.range_invalidation) return kCerrorIll;
    const int granule = tg == 1 ? 12 : tg == 2 ? 14 : 16;
    const int shift = static_cast<int>(scale) + granule;  // <= 31 + 16
    if (shift + 5 >= 64) {  // covers everything
      if (tag) iotlb_.InvalidatePasid(vmid, *tag, types);
      else iotlb_.InvalidateDomain(vmid, types);
      return kCerrorNone;
    }
    InvalidateRange(vmid, tag, addr, (uint64_t{num} + 1) << shift, types);
    return kCerrorNone;
  };
  switch (op) {
    case kCmdPrefetchConfig:
      return fields(kOp | kSsv | kSsid | kSid, 0) ? kCerrorNone : kCerrorIll;  // no-op (§4.2.1)
    case kCmdPrefetchAddr:
      return fields(kOp | kSsv | kSsid | kSid, Bits(4, 0) | Bits(63, 12)) ? kCerrorNone : kCerrorIll;
    case kCmdCfgiSte:  // §4.3.1
      if (!fields(kOp | kSid, Bit(0))) return kCerrorIll;
      InvalidateConfigLocked(sid, 1);
      return kCerrorNone;
    case kCmdCfgiSteRange: {  // §4.3.2; Range 31 = CFGI_ALL
      if (!fields(kOp | kSid, Bits(4, 0))) return kCerrorIll;
      const uint32_t range = Field(cmd[1], 4, 0);
      if (range == 31) {
        ste_cache_.clear();
        cd_cache_.clear();
        contexts_.clear();
      } else {
        const uint64_t count = uint64_t{2} << range;
        InvalidateConfigLocked(static_cast<uint32_t>(sid & ~(count - 1)), count);
      }
      return kCerrorNone;
    }
    case kCmdCfgiCd:  // §4.3.3
      if (!fields(kOp | kSsid | kSid, Bit(0))) return kCerrorIll;
      cd_cache_.erase(uint64_t{sid} << 32 | Field(cmd[0], 31, 12));
      absl::erase_if(contexts_, [&](const auto& kv) { return ContextSid(kv.first) == sid; });
      return kCerrorNone;
    case kCmdCfgiCdAll:  // §4.3.4
      if (!fields(kOp | kSid, 0)) return kCerrorIll;
      absl::erase_if(cd_cache_, [&](const auto& kv) { return (kv.first >> 32) == sid; });
      absl::erase_if(contexts_, [&](const auto& kv) { return ContextSid(kv.first) == sid; });
      return kCerrorNone;
    case kCmdTlbiNhAll:  // §4.4.1: every stage-1 entry of the VMID
      if (!fields(kOp | kVmid, 0)) return kCerrorIll;
      iotlb_.InvalidateDomain(vmid, kS1Types);
      return kCerrorNone;
    case kCmdTlbiNhAsid:  // §4.4.2
      if (!fields(kOp | kVmid | kAsid, 0)) return kCerrorIll;
      iotlb_.InvalidatePasid(vmid, asid, kS1Types);
      return kCerrorNone;
    case kCmdTlbiNhVa:  // §4.4.3
      if (!fields(kOp | kNumScale | kVmid | kAsid, kLeafTtlTg | Bits(63, 12))) return kCerrorIll;
      return tlbi_by_address(asid, cmd[1] & Bits(63, 12), kS1Types);
    case kCmdTlbiNhVaa:  // §4.4.4: every ASID
      if (!fields(kOp | kNumScale | kVmid, kLeafTtlTg | Bits(63, 12))) return kCerrorIll;
      return tlbi_by_address(std::nullopt, cmd[1] & Bits(63, 12), kS1Types);
    case kCmdTlbiS12Vmall:  // §4.4.8
      if (!profile_.stage2 || !fields(kOp | kVmid, 0)) return kCerrorIll;
      iotlb_.InvalidateDomain(vmid);
      return kCerrorNone;
    case kCmdTlbiS2Ipa: {  // §4.4.9; nested (combined) entries of the VMID go too (over-invalidation)
      if (!profile_.stage2 || !fields(kOp | kNumScale | kVmid, kLeafTtlTg | Bits(51, 12))) return kCerrorIll;
      const uint32_t e = tlbi_by_address(kStage2Tag, cmd[1] & Bits(51, 12), IotlbTypeBit(IotlbType::kSecondStage));
      if (e == kCerrorNone) iotlb_.InvalidateDomain(vmid, IotlbTypeBit(IotlbType::kNested));
      return e;
    }
    case kCmdTlbiNsnhAll:  // §4.4.10
      if (!fields(kOp, 0)) return kCerrorIll;
      iotlb_.InvalidateAll();
      return kCerrorNone;
    case kCmdAtcInv: {  // §4.5.1, forwarded to the device's ATC
      if (!profile_.ats || !fields(kOp | Bit(9) | kSsv | kSsid | kSid, Bits(5, 0) | Bits(63, 12))) return kCerrorIll;
      const uint32_t size = Field(cmd[1], 5, 0);
      const uint64_t span = size >= 52 ? ~0ull : kPage4K << size;
      const uint64_t addr = (cmd[1] & Bits(63, 12)) & ~(span - 1);
      std::optional<uint32_t> pasid;
      if (cmd[0] & kSsv) pasid = static_cast<uint32_t>(Field(cmd[0], 31, 12));
      if (sid <= 0xFFFF) {
        const uint16_t rid = static_cast<uint16_t>(sid);
        out.calls.push_back([this, rid, pasid, addr, span] {
          if (DmaClient* c = ClientOf(rid)) c->OnDeviceTlbInvalidate(pasid, addr, span);
        });
      }
      return kCerrorNone;
    }
    case kCmdPriResp: {  // §4.7.1, the PRG response to the device
      if (!profile_.pri || !fields(kOp | kSsv | kSsid | kSid, Bits(8, 0) | Bits(13, 12))) return kCerrorIll;
      const uint32_t resp = Field(cmd[1], 13, 12);
      if (resp > kPriRespSucc) return kCerrorIll;
      PageResponse r;
      r.rid = static_cast<uint16_t>(sid);
      if (cmd[0] & kSsv) r.pasid = static_cast<uint32_t>(Field(cmd[0], 31, 12));
      r.group_index = static_cast<uint16_t>(Field(cmd[1], 8, 0));
      r.code = resp == kPriRespSucc ? PageResponseCode::kSuccess
               : resp == kPriRespDeny ? PageResponseCode::kInvalidRequest
                                      : PageResponseCode::kResponseFailure;
      if (trace::On(trace::kPageRequest)) {
        trace::Emit(trace::kPageRequest, "smmuv3", "page-response",
                    {trace::Hex("sid", sid), trace::OptDec("ssid", r.pasid), trace::Dec("group", r.group_index),
                     trace::Dec("resp", resp), trace::Str("result", trace::ResponseCodeName(r.code))});
      }
      if (sid <= 0xFFFF) {
        out.calls.push_back([this, r] {
          if (DmaClient* c = ClientOf(r.rid)) c->OnPageResponse(r);
        });
      }
      return kCerrorNone;
    }
    case kCmdSync: {  // §4.6.1
      if (!fields(kOp | Bits(13, 12) | Bits(27, 22) | Bits(63, 32), Bits(51, 2))) return kCerrorIll;
      const uint32_t cs = Field(cmd[0], 13, 12);
      if (cs > kSyncCsSev) return kCerrorIll;
      ++stats_.syncs;
      // Everything before the SYNC is complete once the device callbacks (ATC invalidations, PRI
      // responses) have run: deliver them with the lock dropped before signalling.
      DeliverUnlocked(out);
      if (cs == kSyncCsIrq && profile_.msi) SignalMsiLocked(cmd[1], static_cast<uint32_t>(cmd[0] >> 32), out);
      return kCerrorNone;  // SIG_SEV: the WFE wake-up is not modelled (pollers re-read CONS)
    }
    case kCmdResume: {  // §4.7.2: Action 0 terminate, 1 retry, 2 abort
      if (!profile_.stall || !fields(kOp | Bits(13, 12) | kSid, Bits(15, 0))) return kCerrorIll;
      const uint32_t action = Field(cmd[0], 13, 12);
      if (action > kResumeAbort) return kCerrorIll;
      if (trace::On(trace::kPageRequest)) {
        static constexpr std::string_view kAction[] = {"terminate", "retry", "abort"};
        trace::Emit(trace::kPageRequest, "smmuv3", "resume",
                    {trace::Hex("sid", sid), trace::Dec("stag", cmd[1] & 0xFFFF), trace::Str("action", kAction[action]),
                     trace::Dec("stalled", stalls_.contains(uint64_t{sid} << 16 | (cmd[1] & 0xFFFF)))});
      }
      EndStallLocked(sid, static_cast<uint16_t>(cmd[1] & 0xFFFF), action == kResumeRetry, out);
      return kCerrorNone;
    }
    case kCmdStallTerm:  // §4.7.3
      if (!profile_.stall || !fields(kOp | kSid, 0)) return kCerrorIll;
      TerminateStallsLocked(sid, out);
      return kCerrorNone;
    default:
      // TLBI_EL2_* / TLBI_EL3_* (no IDR0.HYP, no secure state), RESUME / STALL_TERM without the
      // stall model, and unknown opcodes.
      return kCerrorIll;
  }
}

void Smmuv3Iommu::EndStallLocked(uint32_t sid, uint16_t stag, bool retry, Outbox& out) {
  // A RESUME naming no stalled transaction is ignored (§4.7.2).
  if (stalls_.erase(uint64_t{sid} << 16 | stag) == 0 || sid > 0xFFFF) return;
  ++(retry ? stats_.stalls_resumed : stats_.stalls_terminated);
  PageResponse r;
  r.rid = static_cast<uint16_t>(sid);
  r.group_index = stag;
  r.code = retry ? PageResponseCode::kSuccess : PageResponseCode::kResponseFailure;
  r.stall = true;
  out.calls.push_back([this, r] {
    if (DmaClient* c = ClientOf(r.rid)) c->OnPageResponse(r);
  });
}

void Smmuv3Iommu::AbandonStallFor(uint16_t sid, uint16_t stag) {
  // Not an architected operation: a real device cannot withdraw a stalled transaction. The model
  // frees the slot when the device model gave up on it (timeout, abort, FLR) so that a guest that
  // never answers cannot exhaust STALL_MAX; a later RESUME naming it is ignored as in §4.7.2.
  absl::MutexLock l(&mu_);
  if (stalls_.erase(uint64_t{sid} << 16 | stag) != 0) ++stats_.stalls_abandoned;
}

void Smmuv3Iommu::TerminateStallsLocked(std::optional<uint32_t> sid, Outbox& out) {
  std::vector<uint64_t> keys;
  for (uint64_t key : stalls_)
    if (!sid || (key >> 16) == *sid) keys.push_back(key);
  for (uint64_t key : keys) EndStallLocked(static_cast<uint32_t>(key >> 16), static_cast<uint16_t>(key), false, out);
}

// ---------------------------------------------------------------------------------------------
// Events (§7.2-7.3) and page requests (§8).

bool Smmuv3Iommu::RecordEventLocked(const Event& e, Outbox& out) {
  const bool written = WriteEventLocked(e, out);
  if (trace::On(trace::kFault | trace::kPageRequest)) TraceEvent(e, written ? "written" : "lost");
  return written;
}

bool Smmuv3Iommu::WriteEventLocked(const Event& e, Outbox& out) {
  if (!(cr0_ & kCr0EvtqEn)) {
    ++stats_.events_lost;
    return false;
  }
  const int log2 = evtq_.log2size(profile_.evtq_log2);
  const uint32_t index_mask = (1u << log2) - 1, pointer = (2u << log2) - 1;
  const uint32_t prod = evtq_.prod & pointer, cons = evtq_.cons & pointer;
  if ((prod & index_mask) == (cons & index_mask) && prod != cons) {
    // Full (§7.2.1): the event is lost and OVFLG toggles unless an overflow is still unacknowledged.
    if ((evtq_.prod & kQueueOverflow) == (evtq_.cons & kQueueOverflow)) evtq_.prod ^= kQueueOverflow;
    ++stats_.events_lost;
    return false;
  }
  uint64_t rec[4] = {};
  rec[0] = e.type | uint64_t{e.sid} << 32;
  if (e.ssid) rec[0] |= kEvt0Ssv | uint64_t{*e.ssid & 0xFFFFF} << 12;
  if (e.type >= kEvtWalkEabt) {
    if (e.access & kDmaPriv) rec[1] |= kEvt1PnU;
    if (e.access & kDmaExec) rec[1] |= kEvt1InD;
    if (!(e.access & kDmaWrite)) rec[1] |= kEvt1RnW;
    if (e.s2) rec[1] |= kEvt1S2;
    rec[1] |= uint64_t{e.klass} << kEvt1ClassShift;
    if (e.stag) rec[1] |= kEvt1Stall | *e.stag;
  }
  rec[2] = e.input;
  rec[3] = e.addr3;
  if (!memory_.Write(evtq_.addr(profile_.evtq_log2) + uint64_t{prod & index_mask} * kEventSize, rec, sizeof(rec))
           .ok()) {
    ++stats_.events_lost;
    RaiseGerrorLocked(kGerrorEvtqAbtErr, out);
    return false;
  }
  evtq_.prod = ((prod + 1) & pointer) | (evtq_.prod & kQueueOverflow);
  ++stats_.events_written;
  if (irq_ctrl_ & kIrqCtrlEvtq) SignalMsiLocked(evtq_irq_, out);
  return true;
}

absl::Status Smmuv3Iommu::PageRequestFor(uint16_t sid, const PageRequest& req) {
  if (!profile_.pri) return absl::FailedPreconditionError("smmuv3: page requests need a profile with pri");
  Outbox out;
  {
    absl::MutexLock l(&mu_);
    ++stats_.page_requests;
    bool queued = false;
    bool overflow = false;
    if ((cr0_ & kCr0SmmuEn) && (cr0_ & kCr0PriqEn)) {
      const int log2 = priq_.log2size(profile_.priq_log2);
      const uint32_t index_mask = (1u << log2) - 1, pointer = (2u << log2) - 1;
      const uint32_t prod = priq_.prod & pointer, cons = priq_.cons & pointer;
      if ((prod & index_mask) == (cons & index_mask) && prod != cons) {
        overflow = true;  // §8.2: PRIQ_PROD.OVFLG, the request is discarded
        if ((priq_.prod & kQueueOverflow) == (priq_.cons & kQueueOverflow)) priq_.prod ^= kQueueOverflow;
        ++stats_.page_request_overflows;
      } else {
        uint64_t e[2];
        e[0] = sid;
        if (req.pasid) e[0] |= kPriq0SsidV | uint64_t{*req.pasid & 0xFFFFF} << 32;
        if (req.access & kDmaPriv) e[0] |= kPriq0Priv;
        if (req.access & kDmaExec) e[0] |= kPriq0Exec;
        if (req.access & kDmaRead) e[0] |= kPriq0Read;
        if (req.access & kDmaWrite) e[0] |= kPriq0Write;
        if (req.last) e[0] |= kPriq0Last;
        e[1] = (req.group_index & 0x1FFu) | (req.addr & Bits(63, 12));
        if (memory_.Write(priq_.addr(profile_.priq_log2) + uint64_t{prod & index_mask} * kPriqEntrySize, e,
                          sizeof(e))
                .ok()) {
          priq_.prod = ((prod + 1) & pointer) | (priq_.prod & kQueueOverflow);
          queued = true;
          if (irq_ctrl_ & kIrqCtrlPriq) SignalMsiLocked(priq_irq_, out);
        } else {
          RaiseGerrorLocked(kGerrorPriqAbtErr, out);
        }
      }
    }
    if (trace::On(trace::kPageRequest)) {
      trace::Emit(trace::kPageRequest, "smmuv3", "page-request",
                  {trace::Hex("sid", sid), trace::OptDec("ssid", req.pasid), trace::Hex("addr", req.addr),
                   trace::Access("access", req.access), trace::Dec("group", req.group_index & 0x1FF),
                   trace::Dec("last", req.last),
                   trace::Str("result", queued ? "queued" : overflow ? "overflow" : "not-queued")});
    }
    if (!queued && req.last) {
      // Not queued: the group is answered automatically so the device does not wait forever
      // (overflow: Success, the device retries; PRI queue off or broken: Response Failure).
      PageResponse r{sid, req.pasid, static_cast<uint16_t>(req.group_index & 0x1FF),
                     overflow ? PageResponseCode::kSuccess : PageResponseCode::kResponseFailure};
      out.calls.push_back([this, r] {
        if (DmaClient* c = ClientOf(r.rid)) c->OnPageResponse(r);
      });
    }
  }
  Deliver(out);
  return absl::OkStatus();
}

// ---------------------------------------------------------------------------------------------
// ATS (§3.9).

AtsTranslation Smmuv3Iommu::AtsTranslateFor(uint16_t sid, uint64_t iova, uint32_t access, const DmaAttrs& attrs) {
  AtsTranslation a;  // success = false: Unsupported Request
  if (!profile_.ats) return a;
  Outbox out;
  {
    absl::MutexLock l(&mu_);
    if (!(cr0_ & kCr0SmmuEn)) return a;
    Resolution res = ResolveLocked(sid, attrs.pasid, iova, access);
    auto ste = ste_cache_.find(sid);
    if (!res.context || ste == ste_cache_.end()) {
      if (res.event) RecordEventLocked(*res.event, out);  // configuration errors are recorded
    } else if (ste->second.eats != 1 && res.context->kind != Context::kAbort) {
      // ATS not enabled for the stream (EATS=0; split-stage EATS=0b10 is not modelled).
      Event ev;
      ev.type = kEvtBadAtsTreq;
      ev.sid = sid;
      ev.ssid = attrs.pasid;
      ev.access = access;
      ev.input = iova;
      RecordEventLocked(ev, out);
    } else if (res.context->kind == Context::kBypass) {
      const uint64_t page = iova & ~(kPage4K - 1);
      a = {true, page, page, kPage4K, kAllAccess};
    } else if (res.context->kind == Context::kTranslate) {
      WalkResult w = Walk(memory_, *res.context, iova, access);
      if (w.ok) {
        const uint64_t size = CacheablePageSize(w.page_size);
        a = {true, iova & ~(size - 1), w.output & ~(size - 1), size, w.perms};
      } else {
        a = {true, iova & ~(kPage4K - 1), 0, kPage4K, 0};  // translation fault: R=W=0, not recorded
      }
    }
  }
  Deliver(out);
  return a;
}

bool Smmuv3Iommu::AllowTranslatedFor(uint16_t sid) {
  if (!profile_.ats) return false;
  absl::MutexLock l(&mu_);
  if (!(cr0_ & kCr0SmmuEn)) return !(gbpa_ & kGbpaAbort);
  if (!(cr0_ & kCr0AtsChk)) return true;
  if (auto it = ste_cache_.find(sid); it != ste_cache_.end())
    return it->second.config != kSteCfgAbort && it->second.eats == 1;
  Fetched<SteConfig> f = FetchSte(memory_, caps_, strtab_, sid);
  return f.ok() && f.config->config != kSteCfgAbort && f.config->eats == 1;
}

// ---------------------------------------------------------------------------------------------
// Translation (§3.2 flow: STE -> CD -> TLB -> walk).

Smmuv3Iommu::Context Smmuv3Iommu::MakeContext(const SteConfig& ste, const CdConfig* cd, bool stage1_bypassed) {
  Context c;
  if (ste.config == kSteCfgAbort) return c;
  c.s1 = ste.s1 && !stage1_bypassed && cd;
  c.s2 = ste.s2;
  if (!c.s1 && !c.s2) {
    c.kind = Context::kBypass;
    return c;
  }
  c.kind = Context::kTranslate;
  c.vmid = ste.vmid;
  if (c.s2) {
    c.s2_config = ste.s2_config;
    c.stall_s2 = ste.s2_stall;
    c.record_s2 = ste.s2_record;
  }
  if (c.s1) {
    c.s1_config = cd->s1;
    c.tag = cd->asid;
    c.type = c.s2 ? IotlbType::kNested : IotlbType::kFirstStage;
    c.stall_s1 = cd->stall && !ste.s1_stall_disable;
    c.record_s1 = cd->record;
  } else {
    c.tag = kStage2Tag;
    c.type = IotlbType::kSecondStage;
  }
  return c;
}

const Smmuv3Iommu::Context* Smmuv3Iommu::CachedContextLocked(uint32_t sid, std::optional<uint32_t> ssid) const {
  auto it = contexts_.find(ContextKey(sid, ssid));
  return it == contexts_.end() ? nullptr : &it->second;
}

Smmuv3Iommu::Resolution Smmuv3Iommu::ResolveLocked(uint32_t sid, std::optional<uint32_t> ssid, uint64_t input,
                                                   uint32_t access) {
  Resolution r;
  Event ev;
  ev.sid = sid;
  ev.ssid = ssid;
  ev.access = access;
  ev.input = input;
  auto fail = [&](uint8_t type) {
    ev.type = type;
    r.event = ev;
    return r;
  };
  const SteConfig* ste = nullptr;
  if (auto it = ste_cache_.find(sid); it != ste_cache_.end()) {
    ste = &it->second;
  } else {
    Fetched<SteConfig> f = FetchSte(memory_, caps_, strtab_, sid);
    if (!f.ok()) {
      ev.addr3 = f.fault.fetch_addr;
      return fail(f.fault.event);
    }
    if (ste_cache_.size() >= profile_.config_cache_entries) {
      ste_cache_.clear();
      cd_cache_.clear();
      contexts_.clear();
    }
    ste = &ste_cache_.emplace(sid, *f.config).first->second;
  }
  if (ste->config == kSteCfgAbort) {
    r.context = Context{};  // §5.2 Config abort: terminated without an event
    return r;
  }
  // §5.2: a SubstreamID needs stage 1 and S1CDMax > 0; S1DSS decides the non-substream traffic.
  if (!ste->s1) {
    if (ssid) return fail(kEvtBadSubstreamId);
    r.context = MakeContext(*ste, nullptr, false);
    return r;
  }
  uint32_t cd_ssid = 0;
  if (ssid) {
    if (ste->s1_cd_max == 0 || *ssid >= (uint64_t{1} << ste->s1_cd_max) ||
        (ste->s1_dss == kS1DssSsid0 && *ssid == 0))
      return fail(kEvtBadSubstreamId);
    cd_ssid = *ssid;
  } else if (ste->s1_cd_max != 0) {
    if (ste->s1_dss == kS1DssTerminate) return fail(kEvtStreamDisabled);
    if (ste->s1_dss == kS1DssBypass) {
      r.context = MakeContext(*ste, nullptr, true);
      return r;
    }
  }
  const uint64_t key = uint64_t{sid} << 32 | cd_ssid;
  const CdConfig* cd = nullptr;
  if (auto it = cd_cache_.find(key); it != cd_cache_.end()) {
    cd = &it->second;
  } else {
    Fetched<CdConfig> f = FetchCd(memory_, caps_, *ste, cd_ssid);
    if (!f.ok()) {
      ev.addr3 = f.fault.fetch_addr;
      if (f.fault.s2_fault) {  // stage-2 fault on the CD fetch (§7.3: CLASS=CD, IPA)
        ev.s2 = true;
        ev.klass = kEvtClassCd;
        ev.addr3 = f.fault.s2_fault->addr & Bits(51, 12);
        ev.access = kDmaRead;
      }
      return fail(f.fault.event);
    }
    if (cd_cache_.size() >= profile_.config_cache_entries) {
      cd_cache_.clear();
      contexts_.clear();
    }
    cd = &cd_cache_.emplace(key, *f.config).first->second;
  }
  r.context = MakeContext(*ste, cd, false);
  return r;
}

WalkResult Smmuv3Iommu::Walk(PhysMemory& memory, const Context& c, uint64_t iova, uint32_t access) {
  if (c.s1 && c.s2) return WalkVmsaNested(memory, c.s1_config, c.s2_config, iova, access);
  if (c.s1) return WalkVmsaStage1(memory, c.s1_config, iova, access);
  return WalkVmsaStage2(memory, c.s2_config, iova, access);
}

Translation Smmuv3Iommu::TranslateFor(uint16_t sid, uint64_t iova, uint64_t len, uint32_t access,
                                      const DmaAttrs& attrs) {
  Translation t;
  if (len == 0) return t;
  const size_t max_regions = profile_.max_regions_per_translate;
  auto blocked = [&](uint32_t reason, DmaFaultKind kind, bool recorded) {
    t.fault = DmaFault{kind, iova + [&] {
      uint64_t done = 0;
      for (const DmaRegion& r : t.regions) done += r.len;
      return done;
    }(), access, attrs.pasid, reason, recorded};
  };
  auto identity = [&] { t.regions.push_back({iova, iova, len, kAllAccess}); };
  // Appends the region of `addr` from a translation of its page; returns the bytes covered.
  auto append = [&](uint64_t addr, uint64_t done, uint64_t output, uint64_t page_size, uint32_t perms) {
    const uint64_t page_end = (addr & ~(page_size - 1)) + page_size;
    uint64_t n = std::min(len - done, page_end - addr);
    if (n == 0) n = len - done;  // page_end wrapped to 0
    t.regions.push_back({addr, output, n, perms});
    return n;
  };

  // Hit path: shared lock, cached configuration, IOTLB hits only.
  {
    absl::ReaderMutexLock l(&mu_);
    if (!(cr0_ & kCr0SmmuEn)) {
      // §6.3.13: with the SMMU disabled, GBPA decides: bypass or abort (no event).
      if (gbpa_ & kGbpaAbort) blocked(0, DmaFaultKind::kBlocked, false);
      else identity();
      return t;
    }
    const Context* c = CachedContextLocked(sid, attrs.pasid);
    if (c && c->kind == Context::kAbort) {
      blocked(0, DmaFaultKind::kBlocked, false);
      return t;
    }
    if (c && c->kind == Context::kBypass) {
      identity();
      return t;
    }
    if (c) {
      uint64_t done = 0;
      bool complete = true;
      while (done < len && t.regions.size() < max_regions) {
        const uint64_t addr = iova + done;
        if (addr < iova) break;
        std::optional<IotlbHit> h = iotlb_.Lookup(c->vmid, c->tag, addr, access);
        if (!h) {
          complete = false;
          break;
        }
        done += append(addr, done, h->output, h->page_size, h->perms);
      }
      if (complete) return t;
      t.regions.clear();
    }
  }

  Outbox out;
  {
    absl::MutexLock l(&mu_);
    if (!(cr0_ & kCr0SmmuEn)) {
      if (gbpa_ & kGbpaAbort) blocked(0, DmaFaultKind::kBlocked, false);
      else identity();
      return t;
    }
    Resolution res = ResolveLocked(sid, attrs.pasid, iova, access);
    if (res.context) {
      if (contexts_.size() >= profile_.config_cache_entries) contexts_.clear();
      contexts_.insert_or_assign(ContextKey(sid, attrs.pasid), *res.context);
    }
    if (!res.context) {
      const bool recorded = res.event && RecordEventLocked(*res.event, out);
      const uint8_t type = res.event ? res.event->type : 0;
      DmaFaultKind kind = DmaFaultKind::kBlocked;
      if (type == kEvtBadSte || type == kEvtBadCd || type == kEvtSteFetch || type == kEvtCdFetch)
        kind = DmaFaultKind::kInvalidEntry;
      blocked(type, kind, recorded);
    } else if (res.context->kind == Context::kAbort) {
      blocked(0, DmaFaultKind::kBlocked, false);
    } else if (res.context->kind == Context::kBypass) {
      identity();
    } else {
      const Context& c = *res.context;
      uint64_t done = 0;
      while (done < len && t.regions.size() < max_regions) {
        const uint64_t addr = iova + done;
        if (addr < iova) break;  // wrapped
        if (std::optional<IotlbHit> h = iotlb_.Lookup(c.vmid, c.tag, addr, access)) {
          done += append(addr, done, h->output, h->page_size, h->perms);
          continue;
        }
        const uint64_t generation = iotlb_.generation();
        WalkResult w = Walk(memory_, c, addr, access);
        if (!w.ok) {
          Event ev;
          ev.type = EventForWalkFault(w.fault);
          ev.sid = sid;
          ev.ssid = attrs.pasid;
          ev.access = access;
          ev.input = addr;
          ev.s2 = w.fault.stage != WalkStage::kFirst;
          ev.klass = w.fault.stage == WalkStage::kSecondForFirstTable ? kEvtClassTt : kEvtClassIn;
          if (ev.type == kEvtWalkEabt) ev.addr3 = w.fault.entry_addr & Bits(51, 3);
          else if (ev.s2) ev.addr3 = w.fault.addr & Bits(51, 12);
          // §3.12.2: translation, address size, access and permission faults stall when the stage
          // that faulted has stalling enabled and a stall slot is free; else they terminate.
          const bool stallable = ev.type >= kEvtTranslation && ev.type <= kEvtPermission &&
                                 (ev.s2 ? c.stall_s2 : c.stall_s1) && stalls_.size() < profile_.max_stalls;
          if (stallable) {
            while (stalls_.contains(uint64_t{sid} << 16 | next_stag_)) ++next_stag_;  // < max_stalls tries
            ev.stag = next_stag_++;
          }
          // CD.R / STE.S2R = 0: a terminated fault of that stage is not recorded (§5.4, §5.2; e.g.
          // Linux's SVA CD after the mm went away: EPD0, S = R = 0); a stall always is (§3.12.2).
          const bool record = ev.type < kEvtTranslation || ev.type > kEvtPermission || stallable ||
                              (ev.s2 ? c.record_s2 : c.record_s1);
          const bool recorded = record && RecordEventLocked(ev, out);
          if (!record && trace::On(trace::kFault)) TraceEvent(ev, "not-recorded");
          if (stallable && recorded) {
            stalls_.insert(uint64_t{sid} << 16 | *ev.stag);
            ++stats_.stalls;
            t.fault = DmaFault{DmaFaultKind::kStalled, addr, access, attrs.pasid, *ev.stag, true};
          } else {
            t.fault = DmaFault{ToDmaFaultKind(w.fault.kind), addr, access, attrs.pasid, ev.type, recorded};
          }
          break;
        }
        WalkResult cached = w;
        cached.page_size = CacheablePageSize(w.page_size);
        iotlb_.Insert(c.vmid, c.tag, addr, cached, c.type, generation);
        done += append(addr, done, w.output, cached.page_size, w.perms);
      }
    }
  }
  Deliver(out);
  return t;
}

}  // namespace ionest::smmuv3
