#include "iommu/smmuv3/testing/smmuv3_driver.h"

#include "absl/strings/str_format.h"

namespace ionest::smmuv3::testing {

Command CmdCfgiSte(uint32_t sid) { return {kCmdCfgiSte | uint64_t{sid} << 32, 1}; }
Command CmdCfgiAll() { return {kCmdCfgiSteRange, 31}; }
Command CmdCfgiCd(uint32_t sid, uint32_t ssid) {
  return {kCmdCfgiCd | uint64_t{ssid & 0xFFFFF} << 12 | uint64_t{sid} << 32, 1};
}
Command CmdCfgiCdAll(uint32_t sid) { return {kCmdCfgiCdAll | uint64_t{sid} << 32, 0}; }
Command CmdTlbiNhAll(uint16_t vmid) { return {kCmdTlbiNhAll | uint64_t{vmid} << 32, 0}; }
Command CmdTlbiNhAsid(uint16_t vmid, uint16_t asid) {
  return {kCmdTlbiNhAsid | uint64_t{vmid} << 32 | uint64_t{asid} << 48, 0};
}
Command CmdTlbiNhVa(uint16_t vmid, uint16_t asid, uint64_t va, uint32_t tg, uint32_t num, uint32_t scale) {
  return {kCmdTlbiNhVa | uint64_t{num} << 12 | uint64_t{scale} << 20 | uint64_t{vmid} << 32 | uint64_t{asid} << 48,
          (va & Bits(63, 12)) | uint64_t{tg} << 10 | 1};
}
Command CmdTlbiS12Vmall(uint16_t vmid) { return {kCmdTlbiS12Vmall | uint64_t{vmid} << 32, 0}; }
Command CmdTlbiS2Ipa(uint16_t vmid, uint64_t ipa) {
  return {kCmdTlbiS2Ipa | uint64_t{vmid} << 32, (ipa & Bits(51, 12)) | 1};
}
Command CmdTlbiNsnhAll() { return {kCmdTlbiNsnhAll, 0}; }
Command CmdSync(uint32_t cs, uint64_t msi_addr, uint32_t msi_data) {
  // MSH inner shareable, MSIAttr Inner/Outer WB (as Linux).
  return {kCmdSync | uint64_t{cs} << 12 | uint64_t{3} << 22 | uint64_t{0xF} << 24 | uint64_t{msi_data} << 32,
          msi_addr & Bits(51, 2)};
}
Command CmdPriResp(uint32_t sid, std::optional<uint32_t> ssid, uint16_t group, uint32_t resp) {
  uint64_t d0 = kCmdPriResp | uint64_t{sid} << 32;
  if (ssid) d0 |= kEvt0Ssv | uint64_t{*ssid & 0xFFFFF} << 12;
  return {d0, (group & 0x1FFu) | uint64_t{resp} << 12};
}
Command CmdAtcInv(uint32_t sid, std::optional<uint32_t> ssid, uint64_t addr, uint32_t size_log2_pages) {
  uint64_t d0 = kCmdAtcInv | uint64_t{sid} << 32;
  if (ssid) d0 |= Bit(11) | uint64_t{*ssid & 0xFFFFF} << 12;
  return {d0, (addr & Bits(63, 12)) | size_log2_pages};
}

SteWords SteAbort() {
  SteWords s;
  s.w[0] = kSte0V | kSteCfgAbort << 1;
  return s;
}

SteWords SteBypass() {
  SteWords s;
  s.w[0] = kSte0V | kSteCfgBypass << 1;
  s.w[1] = uint64_t{1} << 44;  // SHCFG incoming
  return s;
}

SteWords SteStage1(uint64_t cd_table, uint32_t cd_max, uint32_t fmt, uint32_t dss, uint16_t vmid) {
  SteWords s;
  s.w[0] = kSte0V | kSteCfgS1 << 1 | uint64_t{fmt} << 4 | (cd_table & kSte0S1CtxPtr) | uint64_t{cd_max} << 59;
  // S1DSS, S1CIR/COR WBRA, S1CSH inner shareable, STRW NS-EL1 (arm_smmu_make_cdtable_ste).
  s.w[1] = dss | 1u << 2 | 1u << 4 | 3u << 6;
  s.w[2] = vmid;
  return s;
}

SteWords SteStage2(uint64_t s2ttb, uint16_t vmid, int t0sz, int sl0) {
  SteWords s;
  s.w[0] = kSte0V | kSteCfgS2 << 1;
  s.w[1] = uint64_t{1} << 44;
  // VTCR: T0SZ, SL0, IR0/OR0 WBWA, SH0 inner, TG 4 KiB, PS 48 bits; AA64, S2R (arm_smmu_make_s2_domain_ste).
  const uint64_t vtcr = uint64_t(t0sz) | uint64_t(sl0) << 6 | 1u << 8 | 1u << 10 | 3u << 12 | 0u << 14 | 5u << 16;
  s.w[2] = vmid | vtcr << 32 | kSte2S2AA64 | kSte2S2R;
  s.w[3] = s2ttb & kSte3S2Ttb;
  return s;
}

SteWords SteNested(uint64_t cd_table, uint64_t s2ttb, uint16_t vmid, uint32_t cd_max, uint32_t fmt) {
  SteWords s = SteStage2(s2ttb, vmid);
  SteWords s1 = SteStage1(cd_table, cd_max, fmt, kS1DssSsid0, vmid);
  s.w[0] = kSte0V | kSteCfgNested << 1 | (s1.w[0] & ~Bits(3, 0));
  s.w[1] = s1.w[1];
  return s;
}

CdWords CdStage1(uint64_t ttb0, uint16_t asid, int ias, bool hardware_af) {
  CdWords c;
  // T0SZ, TG0 4 KiB, IRGN0/ORGN0 WBWA, SH0 inner, EPD1, V, IPS 48 bits, AA64, R, A, ASET, ASID
  // (arm_smmu_make_s1_cd).
  c.w[0] = uint64_t(64 - ias) | 0u << 6 | 1u << 8 | 1u << 10 | 3u << 12 | kCd0Epd1 | kCd0V | uint64_t{5} << 32 |
           kCd0AA64 | kCd0R | kCd0A | kCd0Aset | uint64_t{asid} << 48;
  if (hardware_af) c.w[0] |= kCd0Ha;
  c.w[1] = ttb0 & kCdTtb;
  c.w[3] = 0x0404'FF44'0C04'00FFull;  // MAIR (unused by the model)
  return c;
}

absl::StatusOr<uint64_t> Smmuv3Driver::AllocContiguous(uint64_t bytes) {
  const uint64_t pages = (bytes + kPage4K - 1) / kPage4K;
  uint64_t align = kPage4K;
  while (align < pages * kPage4K) align <<= 1;
  while (alloc_.next() % align) {
    if (absl::StatusOr<uint64_t> p = alloc_.AllocPage(); !p.ok()) return p.status();
  }
  uint64_t first = 0;
  for (uint64_t i = 0; i < pages; ++i) {
    absl::StatusOr<uint64_t> p = alloc_.AllocPage();
    if (!p.ok()) return p.status();
    if (i == 0) first = *p;
  }
  return first;
}

absl::Status Smmuv3Driver::Probe() {
  idr0_ = Read32(kIdr0);
  idr1_ = Read32(kIdr1);
  idr5_ = Read32(kIdr5);
  if (Field(idr0_, 3, 2) != 2 && Field(idr0_, 3, 2) != 3) return absl::FailedPreconditionError("no AArch64 tables");
  if (!(idr0_ & (kIdr0S1p | kIdr0S2p))) return absl::FailedPreconditionError("no translation stage");
  if (idr1_ & (Bit(29) | Bit(30))) return absl::FailedPreconditionError("embedded tables/queues not supported");
  if (!(idr5_ & kIdr5Gran4K)) return absl::FailedPreconditionError("no 4 KiB granule");
  return absl::OkStatus();
}

absl::Status Smmuv3Driver::WriteCr0(uint32_t value) {
  Write32(kCr0, value);
  for (int i = 0; i < 10; ++i)
    if (Read32(kCr0Ack) == value) return absl::OkStatus();
  return absl::DeadlineExceededError(absl::StrFormat("CR0ACK never became %#x", value));
}

absl::Status Smmuv3Driver::Init(const Options& o) {
  options_ = o;
  const int sid_bits = std::min<int>(o.strtab_log2, Field(idr1_, 5, 0));
  const int cmdq_log2 = std::min<int>(o.cmdq_log2, Field(idr1_, 25, 21));
  const int evtq_log2 = std::min<int>(o.evtq_log2, Field(idr1_, 20, 16));
  const int priq_log2 = std::min<int>(o.priq_log2, Field(idr1_, 15, 11));
  options_.cmdq_log2 = cmdq_log2;
  options_.evtq_log2 = evtq_log2;
  options_.priq_log2 = priq_log2;
  // Disable first (arm_smmu_device_disable).
  if (absl::Status s = WriteCr0(0); !s.ok()) return s;
  // Stream table (arm_smmu_init_strtab).
  const bool two_level = o.two_level_stream_table && (idr0_ & kIdr0StLevel2);
  options_.two_level_stream_table = two_level;
  uint32_t cfg = 0;
  if (two_level) {
    const int l1_bits = std::max(0, sid_bits - o.split);
    absl::StatusOr<uint64_t> l1 = AllocContiguous(uint64_t{8} << l1_bits);
    if (!l1.ok()) return l1.status();
    strtab_ = *l1;
    l2_tables_.assign(size_t{1} << l1_bits, 0);
    cfg = static_cast<uint32_t>(sid_bits | o.split << 6 | kStrtabFmt2Level << 16);
  } else {
    absl::StatusOr<uint64_t> t = AllocContiguous(kSteSize << sid_bits);
    if (!t.ok()) return t.status();
    strtab_ = *t;
    cfg = static_cast<uint32_t>(sid_bits | kStrtabFmtLinear << 16);
  }
  Write32(kCr1, 0x5 << 6 | 3 << 10 | 1 << 0 | 1 << 2 | 3 << 4);  // WB inner-shareable tables and queues
  Write32(kCr2, 1u << 1);                                          // RECINVSID
  Write64(kStrtabBase, strtab_ | kStrtabBaseRa);
  Write32(kStrtabBaseCfg, cfg);
  // Command queue.
  absl::StatusOr<uint64_t> q = AllocContiguous(kCmdSize << cmdq_log2);
  if (!q.ok()) return q.status();
  cmdq_ = *q;
  Write64(kCmdqBase, cmdq_ | kQueueBaseRa | static_cast<uint64_t>(cmdq_log2));
  Write32(kCmdqProd, 0);
  Write32(kCmdqCons, 0);
  cmdq_prod_ = 0;
  uint32_t enables = kCr0CmdqEn;
  if (absl::Status s = WriteCr0(enables); !s.ok()) return s;
  if (absl::Status s = Submit({CmdCfgiAll(), CmdTlbiNsnhAll()}); !s.ok()) return s;
  // Event queue: PROD/CONS in page 1 (ARM_SMMU_EVTQ_PROD + SZ_64K).
  q = AllocContiguous(kEventSize << evtq_log2);
  if (!q.ok()) return q.status();
  evtq_ = *q;
  Write64(kEvtqBase, evtq_ | kQueueBaseRa | static_cast<uint64_t>(evtq_log2));
  Write32(kPageSize + kEvtqProd, 0);
  Write32(kPageSize + kEvtqCons, 0);
  evtq_cons_ = 0;
  enables |= kCr0EvtqEn;
  if (absl::Status s = WriteCr0(enables); !s.ok()) return s;
  if (idr0_ & kIdr0Pri) {
    q = AllocContiguous(kPriqEntrySize << priq_log2);
    if (!q.ok()) return q.status();
    priq_ = *q;
    Write64(kPriqBase, priq_ | kQueueBaseRa | static_cast<uint64_t>(priq_log2));
    Write32(kPageSize + kPriqProd, 0);
    Write32(kPageSize + kPriqCons, 0);
    priq_cons_ = 0;
    enables |= kCr0PriqEn;
    if (absl::Status s = WriteCr0(enables); !s.ok()) return s;
  }
  // IRQs (arm_smmu_setup_irqs / arm_smmu_setup_msis): off, program MSIs, on.
  Write32(kIrqCtrl, 0);
  Write64(kGerrorIrqCfg0, o.gerror_msi);
  Write32(kGerrorIrqCfg1, o.gerror_msi_data);
  Write32(kGerrorIrqCfg2, 1);
  Write64(kEvtqIrqCfg0, o.evtq_msi);
  Write32(kEvtqIrqCfg1, o.evtq_msi_data);
  Write32(kEvtqIrqCfg2, 1);
  uint32_t irqs = kIrqCtrlGerror | kIrqCtrlEvtq;
  if (idr0_ & kIdr0Pri) {
    Write64(kPriqIrqCfg0, o.priq_msi);
    Write32(kPriqIrqCfg1, o.priq_msi_data);
    irqs |= kIrqCtrlPriq;
  }
  Write32(kIrqCtrl, irqs);
  if (Read32(kIrqCtrlAck) != irqs) return absl::InternalError("IRQ_CTRLACK mismatch");
  return WriteCr0(enables | kCr0SmmuEn);
}

absl::StatusOr<uint64_t> Smmuv3Driver::SteAddress(uint32_t sid) {
  if (!options_.two_level_stream_table) return strtab_ + uint64_t{sid} * kSteSize;
  const uint32_t l1 = sid >> options_.split;
  if (l1 >= l2_tables_.size()) return absl::OutOfRangeError("sid beyond the stream table");
  if (l2_tables_[l1] == 0) {
    // arm_smmu_init_l2_strtab: a level-2 table of 2^split STEs, Span = split + 1.
    absl::StatusOr<uint64_t> t = AllocContiguous(kSteSize << options_.split);
    if (!t.ok()) return t.status();
    l2_tables_[l1] = *t;
    const uint64_t desc = (*t & kL1StdL2Ptr) | static_cast<uint64_t>(options_.split + 1);
    if (absl::Status s = memory_.WriteObj(strtab_ + uint64_t{l1} * 8, desc); !s.ok()) return s;
  }
  return l2_tables_[l1] + uint64_t{sid & ((1u << options_.split) - 1)} * kSteSize;
}

absl::Status Smmuv3Driver::WriteSte(uint32_t sid, const SteWords& ste, bool invalidate) {
  absl::StatusOr<uint64_t> addr = SteAddress(sid);
  if (!addr.ok()) return addr.status();
  if (absl::Status s = memory_.Write(*addr, ste.w, sizeof(ste.w)); !s.ok()) return s;
  return invalidate ? Submit({CmdCfgiSte(sid)}) : absl::OkStatus();
}

absl::StatusOr<uint64_t> Smmuv3Driver::AllocCdTable(uint32_t cd_max, uint32_t fmt) {
  if (fmt == kS1FmtLinear) return AllocContiguous(kCdSize << cd_max);
  const int leaf_bits = fmt == kS1Fmt4KL2 ? 6 : 10;
  const int l1_bits = cd_max > static_cast<uint32_t>(leaf_bits) ? static_cast<int>(cd_max) - leaf_bits : 0;
  return AllocContiguous(uint64_t{8} << l1_bits);
}

absl::Status Smmuv3Driver::WriteCd(uint64_t table, uint32_t cd_max, uint32_t fmt, uint32_t ssid, const CdWords& cd) {
  uint64_t addr = table + uint64_t{ssid} * kCdSize;
  if (cd_max != 0 && fmt != kS1FmtLinear) {
    const int leaf_bits = fmt == kS1Fmt4KL2 ? 6 : 10;
    const uint64_t l1_addr = table + uint64_t{ssid >> leaf_bits} * 8;
    absl::StatusOr<uint64_t> l1 = memory_.ReadObj<uint64_t>(l1_addr);
    if (!l1.ok()) return l1.status();
    if (!(*l1 & kL1CdV)) {
      absl::StatusOr<uint64_t> leaf = AllocContiguous(kCdSize << leaf_bits);
      if (!leaf.ok()) return leaf.status();
      *l1 = *leaf | kL1CdV;
      if (absl::Status s = memory_.WriteObj(l1_addr, *l1); !s.ok()) return s;
    }
    addr = (*l1 & kL1CdL2Ptr) + uint64_t{ssid & ((1u << leaf_bits) - 1)} * kCdSize;
  }
  return memory_.Write(addr, cd.w, sizeof(cd.w));
}

absl::Status Smmuv3Driver::SubmitRaw(const std::vector<Command>& commands) {
  const uint32_t index_mask = (1u << options_.cmdq_log2) - 1, pointer = (2u << options_.cmdq_log2) - 1;
  for (const Command& c : commands) {
    const uint64_t addr = cmdq_ + uint64_t{cmdq_prod_ & index_mask} * kCmdSize;
    if (absl::Status s = memory_.Write(addr, c.data(), kCmdSize); !s.ok()) return s;
    cmdq_prod_ = (cmdq_prod_ + 1) & pointer;
  }
  Write32(kCmdqProd, cmdq_prod_);
  return absl::OkStatus();
}

absl::Status Smmuv3Driver::Submit(const std::vector<Command>& commands, bool sync) {
  const uint32_t index_mask = (1u << options_.cmdq_log2) - 1, pointer = (2u << options_.cmdq_log2) - 1;
  std::vector<Command> all = commands;
  uint64_t sync_entry = 0;
  if (sync) {
    // Linux (MSI + coherent): the SYNC's MSI writes MSIData 0 over the first word of its own entry.
    const uint32_t sync_index = (cmdq_prod_ + static_cast<uint32_t>(commands.size())) & index_mask;
    sync_entry = cmdq_ + uint64_t{sync_index} * kCmdSize;
    all.push_back(options_.msi_sync ? CmdSync(kSyncCsIrq, sync_entry, 0) : CmdSync(kSyncCsNone, 0, 0));
  }
  if (all.size() > index_mask + 1) return absl::InvalidArgumentError("more commands than the queue holds");
  if (absl::Status s = SubmitRaw(all); !s.ok()) return s;
  const uint32_t cons = Read32(kCmdqCons);
  if ((Read32(kGerror) ^ Read32(kGerrorn)) & kGerrorCmdqErr) {
    return absl::FailedPreconditionError(
        absl::StrFormat("command error %u at CONS %#x", Field(cons, 30, 24), cons & pointer));
  }
  if ((cons & pointer) != cmdq_prod_) return absl::DeadlineExceededError("command queue did not drain");
  if (sync && options_.msi_sync) {
    absl::StatusOr<uint32_t> w = memory_.ReadObj<uint32_t>(sync_entry);
    if (!w.ok()) return w.status();
    if (*w != 0) return absl::InternalError("CMD_SYNC MSI did not write back");
  }
  return absl::OkStatus();
}

void Smmuv3Driver::AckGlobalErrors() { Write32(kGerrorn, Read32(kGerror)); }

absl::Status Smmuv3Driver::SkipFailedCommand() {
  // arm_smmu_cmdq_skip_err: overwrite the bad command with a CMD_SYNC, then acknowledge.
  const uint32_t index_mask = (1u << options_.cmdq_log2) - 1;
  const uint32_t cons = Read32(kCmdqCons);
  const Command sync = CmdSync(kSyncCsNone, 0, 0);
  if (absl::Status s = memory_.Write(cmdq_ + uint64_t{cons & index_mask} * kCmdSize, sync.data(), kCmdSize); !s.ok())
    return s;
  AckGlobalErrors();
  return absl::OkStatus();
}

std::vector<EventRecord> Smmuv3Driver::DrainEvents() {
  std::vector<EventRecord> out;
  const uint32_t index_mask = (1u << options_.evtq_log2) - 1, pointer = (2u << options_.evtq_log2) - 1;
  const uint32_t prod = Read32(kPageSize + kEvtqProd);
  while ((evtq_cons_ & pointer) != (prod & pointer)) {
    EventRecord r{};
    (void)memory_.Read(evtq_ + uint64_t{evtq_cons_ & index_mask} * kEventSize, r.data(), kEventSize);
    out.push_back(r);
    evtq_cons_ = (evtq_cons_ + 1) & pointer;
  }
  Write32(kPageSize + kEvtqCons, evtq_cons_ | (prod & kQueueOverflow));
  return out;
}

bool Smmuv3Driver::EventQueueOverflowed() {
  const uint32_t prod = Read32(kPageSize + kEvtqProd);
  const uint32_t cons = Read32(kPageSize + kEvtqCons);
  return (prod ^ cons) & kQueueOverflow;
}

std::vector<Command> Smmuv3Driver::DrainPageRequests() {
  std::vector<Command> out;
  const uint32_t index_mask = (1u << options_.priq_log2) - 1, pointer = (2u << options_.priq_log2) - 1;
  const uint32_t prod = Read32(kPageSize + kPriqProd);
  while ((priq_cons_ & pointer) != (prod & pointer)) {
    Command e{};
    (void)memory_.Read(priq_ + uint64_t{priq_cons_ & index_mask} * kPriqEntrySize, e.data(), kPriqEntrySize);
    out.push_back(e);
    priq_cons_ = (priq_cons_ + 1) & pointer;
  }
  Write32(kPageSize + kPriqCons, priq_cons_ | (prod & kQueueOverflow));
  return out;
}

}  // namespace ionest::smmuv3::testing
