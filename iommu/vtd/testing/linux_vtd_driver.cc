#include "iommu/vtd/testing/linux_vtd_driver.h"

#include <algorithm>
#include <array>
#include <cstring>

#include "absl/strings/str_format.h"

namespace ionest::vtd::testing {

namespace {
constexpr uint32_t kQiInUse = 1;  // dmar.c QI_IN_USE / QI_DONE
constexpr uint32_t kQiDone = 2;
constexpr int kPollLimit = 10000;
}  // namespace

uint64_t MmioVtdRegisters::Read(uint32_t reg, uint32_t size) {
  uint8_t b[8] = {};
  mmio_.Read(base_ + reg, b, size);
  uint64_t v = 0;
  std::memcpy(&v, b, size);
  return v;
}

void MmioVtdRegisters::Write(uint32_t reg, uint64_t value, uint32_t size) {
  uint8_t b[8];
  std::memcpy(b, &value, 8);
  mmio_.Write(base_ + reg, b, size);
}

LinuxVtdDriver::LinuxVtdDriver(std::unique_ptr<VtdRegisters> regs, PhysMemory& memory, PageAllocator& alloc)
    : regs_(std::move(regs)), memory_(memory), alloc_(alloc) {}
LinuxVtdDriver::LinuxVtdDriver(IoBus& mmio, uint64_t base, PhysMemory& memory, PageAllocator& alloc)
    : LinuxVtdDriver(std::make_unique<MmioVtdRegisters>(mmio, base), memory, alloc) {}
LinuxVtdDriver::LinuxVtdDriver(VtdIommu& iommu, PhysMemory& memory, PageAllocator& alloc)
    : LinuxVtdDriver(std::make_unique<DirectVtdRegisters>(iommu), memory, alloc) {}

absl::Status LinuxVtdDriver::WaitStatus(uint32_t bit, bool set) {
  // IOMMU_WAIT_OP (iommu.h:365-376): poll GSTS, give up eventually (Linux panics).
  for (int i = 0; i < kPollLimit; ++i)
    if (((Read32(kGstsReg) & bit) != 0) == set) return absl::OkStatus();
  return absl::DeadlineExceededError(absl::StrFormat("GSTS bit %#x never became %d", bit, set));
}

absl::Status LinuxVtdDriver::SetPersistent(uint32_t bit, bool on) {
  gcmd_ = on ? (gcmd_ | bit) : (gcmd_ & ~bit);
  Command(0);
  return WaitStatus(bit, on);
}

absl::StatusOr<uint64_t> LinuxVtdDriver::AllocContiguous(uint64_t pages) {
  uint64_t first = 0;
  for (uint64_t i = 0; i < pages; ++i) {
    absl::StatusOr<uint64_t> p = alloc_.AllocPage();
    if (!p.ok()) return p.status();
    if (i == 0) first = *p;
    if (*p != first + i * 4096ull) return absl::InternalError("pages not contiguous");
  }
  return first;
}

void LinuxVtdDriver::ReadCapabilities() {
  cap_ = Read64(kCapReg);
  ecap_ = Read64(kEcapReg);
  // Shadow of the persistent GCMD bits seeded from GSTS (dmar.c:1123-1129).
  gcmd_ = Read32(kGstsReg) & (kGcmdTe | kGcmdQie | kGcmdIre | kGcmdCfi);
}

absl::Status LinuxVtdDriver::Boot(const BootOptions& o) {
  ReadCapabilities();
  ReadAndClearFaults();
  // 1. dmar_enable_qi, then interrupt remapping (enable_IR_x2apic).
  if (absl::Status s = EnableQueuedInvalidation(); !s.ok()) return s;
  if (o.interrupt_remapping && ((ecap_ >> 3) & 1)) {
    // Linux: INTR_REMAP_TABLE_ENTRIES = 65536 (1 MiB); EIME when the hardware has EIM.
    if (absl::Status s = EnableInterruptRemapping(16, (ecap_ >> 4) & 1); !s.ok()) return s;
  }
  // 2. init_dmars (iommu.c:2296-2430).
  if (absl::Status s = SetRootTable(o.scalable); !s.ok()) return s;
  const bool pasid = (ecap_ >> 40) & 1, prs = (ecap_ >> 29) & 1;
  if (o.page_requests && o.scalable && pasid && prs) {
    if (absl::Status s = EnablePageRequests(o.prq_msi_address, o.prq_msi_data, o.prq_order); !s.ok()) return s;
  }
  SetFaultMsi(o.fault_msi_address, o.fault_msi_data);
  return absl::OkStatus();
}

absl::Status LinuxVtdDriver::Init(bool scalable) {
  ReadCapabilities();
  if (absl::Status s = EnableQueuedInvalidation(); !s.ok()) return s;
  return SetRootTable(scalable);
}

absl::Status LinuxVtdDriver::EnableQueuedInvalidation() {
  if (!((ecap_ >> 1) & 1)) return absl::FailedPreconditionError("ECAP.QI clear");
  dw_ = (ecap_ >> 43) & 1;  // DW follows ECAP.SMTS even with sm_off
  const unsigned qs = dw_ ? 1 : 0;
  absl::StatusOr<uint64_t> q = AllocContiguous(1u << qs);
  absl::StatusOr<uint64_t> st = alloc_.AllocPage();
  if (!q.ok() || !st.ok()) return absl::ResourceExhaustedError("queue pages");
  iq_base_ = *q;
  status_addr_ = *st;
  if (Read32(kGstsReg) & kGcmdQie) {
    for (int i = 0; i < kPollLimit && Read64(kIqtReg) != Read64(kIqhReg); ++i) {
    }
    if (absl::Status s = SetPersistent(kGcmdQie, false); !s.ok()) return s;
  }
  iq_tail_ = 0;
  Write64(kIqtReg, 0);
  Write64(kIqaReg, iq_base_ | (dw_ ? (1u << 11) : 0u) | qs);
  return SetPersistent(kGcmdQie, true);
}

absl::Status LinuxVtdDriver::EnableInterruptRemapping(uint32_t entries_log2, bool x2apic) {
  const uint64_t bytes = (uint64_t{1} << entries_log2) * 16;
  absl::StatusOr<uint64_t> irt = AllocContiguous(std::max<uint64_t>(bytes / 4096, 1));
  if (!irt.ok()) return irt.status();
  irt_base_ = *irt;
  Write64(kIrtaReg, irt_base_ | (x2apic ? (1u << 11) : 0u) | ((entries_log2 - 1) & 0xf));
  Command(kGcmdSirtp);
  if (absl::Status s = WaitStatus(kGcmdSirtp, true); !s.ok()) return s;
  if (!((cap_ >> 62) & 1))  // unless ESIRTPS
    if (absl::Status s = Invalidate({IecGlobal()}); !s.ok()) return s;
  if (absl::Status s = SetPersistent(kGcmdIre, true); !s.ok()) return s;
  if (Read32(kGstsReg) & kGcmdCfi) return SetPersistent(kGcmdCfi, false);
  return absl::OkStatus();
}

absl::Status LinuxVtdDriver::SetRootTable(bool scalable) {
  if ((cap_ >> 4) & 1) {  // RWBF
    Command(kGcmdWbf);
    if (absl::Status s = WaitStatus(kGcmdWbf, false); !s.ok()) return s;
  }
  tables_.emplace(memory_, alloc_, scalable);
  if (absl::Status s = tables_->Init(); !s.ok()) return s;
  Write64(kRtaddrReg, tables_->rtaddr());
  Command(kGcmdSrtp);
  if (absl::Status s = WaitStatus(kGcmdSrtp, true); !s.ok()) return s;
  if ((cap_ >> 63) & 1) return absl::OkStatus();  // ESRTPS
  std::vector<InvDescriptor> inv = {CcGlobal()};
  if (scalable) inv.push_back(PasidCacheInv(3, 0, 0));
  inv.push_back(IotlbGlobal());
  return Invalidate(inv);
}

absl::Status LinuxVtdDriver::EnablePageRequests(uint64_t msi_address, uint32_t msi_data, uint32_t order) {
  absl::StatusOr<uint64_t> prq = AllocContiguous(uint64_t{1} << order);
  if (!prq.ok()) return prq.status();
  prq_base_ = *prq;
  prq_bytes_ = 4096u << order;
  Write64(kPqhReg, 0);
  Write64(kPqtReg, 0);
  Write64(kPqaReg, prq_base_ | order);
  Write32(kPedataReg, msi_data);
  Write32(kPeaddrReg, static_cast<uint32_t>(msi_address));
  Write32(kPeuaddrReg, static_cast<uint32_t>(msi_address >> 32));
  Write32(kPectlReg, 0);
  return absl::OkStatus();
}

void LinuxVtdDriver::SetFaultMsi(uint64_t address, uint32_t data) {
  Write32(kFedataReg, data);
  Write32(kFeaddrReg, static_cast<uint32_t>(address));
  Write32(kFeuaddrReg, static_cast<uint32_t>(address >> 32));
  Write32(kFectlReg, 0);
}

absl::Status LinuxVtdDriver::SubmitRaw(const std::vector<InvDescriptor>& descriptors) {
  absl::Status status;
  for (const InvDescriptor& d : descriptors) {
    status.Update(memory_.Write(iq_base_ + iq_tail_, d.qw.data(), descriptor_bytes()));
    iq_tail_ = (iq_tail_ + descriptor_bytes()) % queue_bytes();
  }
  Write64(kIqtReg, iq_tail_);
  return status;
}

QiResult LinuxVtdDriver::SubmitSync(const std::vector<InvDescriptor>& descriptors, QiErrors errors) {
  QiResult r;
  const uint32_t qbytes = queue_bytes();
  memory_.WriteObj<uint32_t>(status_addr_, kQiInUse).IgnoreError();
  const uint32_t first = iq_tail_;
  const InvDescriptor wait = Wait(status_addr_, kQiDone);
  std::vector<InvDescriptor> all = descriptors;
  all.push_back(wait);
  SubmitRaw(all).IgnoreError();
  for (int i = 0; i < kPollLimit; ++i) {
    absl::StatusOr<uint32_t> s = memory_.ReadObj<uint32_t>(status_addr_);
    if (s.ok() && *s == kQiDone) {
      r.completed = true;
      return r;
    }
    // qi_check_fault (dmar.c:1290-1370).
    const uint32_t fsts = Read32(kFstsReg);
    if (fsts & kFstsIqe) {
      r.iqe = true;
      r.iqei = Read64(kIqercdReg) & 0xf;
      if (errors == QiErrors::kLeave) return r;
      const uint32_t head = static_cast<uint32_t>(Read64(kIqhReg)) & (qbytes - 1);
      // Overwrite the offending descriptor with the wait descriptor and clear IQE.
      const uint32_t span = (iq_tail_ + qbytes - first) % qbytes;
      if ((head + qbytes - first) % qbytes < span)
        memory_.Write(iq_base_ + head, wait.qw.data(), descriptor_bytes()).IgnoreError();
      Write32(kFstsReg, kFstsIqe);
    }
    if (fsts & kFstsIte) {
      r.ite = true;
      if (errors == QiErrors::kLeave) return r;
      Write32(kFstsReg, kFstsIte);
      return r;  // Linux restarts the submission; callers here inspect the result
    }
    if (fsts & kFstsIce) {
      if (errors == QiErrors::kLeave) return r;
      Write32(kFstsReg, kFstsIce);
    }
  }
  return r;
}

absl::Status LinuxVtdDriver::Invalidate(const std::vector<InvDescriptor>& descriptors, QiErrors errors) {
  QiResult r = SubmitSync(descriptors, errors);
  if (r.completed && !r.iqe && !r.ite) return absl::OkStatus();
  return absl::InternalError(
      absl::StrFormat("QI failed: completed=%d iqe=%d (iqei %d) ite=%d FSTS=%#x IQERCD=%#x IQH=%#x IQT=%#x",
                      r.completed, r.iqe, r.iqei, r.ite, Read32(kFstsReg), Read64(kIqercdReg), Read64(kIqhReg),
                      Read64(kIqtReg)));
}
absl::Status LinuxVtdDriver::AttachLegacy(uint16_t rid, const LegacyContextSpec& spec) {
  if (absl::Status s = tables_->SetLegacyContext(rid, spec); !s.ok()) return s;
  // CM=1: context-cache device-selective with DID 0 + domain-selective IOTLB (notes §3).
  return Invalidate({CcDevice(0, rid), IotlbDomain(spec.did)});
}

absl::Status LinuxVtdDriver::AttachScalable(uint16_t rid, const ScalableContextSpec& spec) {
  if (absl::Status s = tables_->SetScalableContext(rid, spec); !s.ok()) return s;
  return Invalidate({CcDevice(0, rid), PasidCacheInv(3, 0, 0), IotlbGlobal()});
}

absl::Status LinuxVtdDriver::SetPasid(uint16_t rid, uint32_t pasid, const PasidEntrySpec& spec, bool dev_tlb) {
  if (absl::Status s = tables_->SetPasidEntry(rid, pasid, spec); !s.ok()) return s;
  // pasid_flush_caches: PASID-cache (PASID-selective), then P_IOTLB (or DSI IOTLB for SL/PT).
  std::vector<InvDescriptor> inv = {PasidCacheInv(1, spec.did, pasid), PIotlbPasid(spec.did, pasid)};
  if (dev_tlb) inv.push_back(PDevTlb(rid, pasid, ~0ull >> 1 & ~0xfffull, true));
  return Invalidate(inv);
}

absl::Status LinuxVtdDriver::TearDownPasid(uint16_t rid, uint32_t pasid, uint16_t did, bool dev_tlb) {
  absl::StatusOr<uint64_t> a = tables_->PasidEntryAddress(rid, pasid);
  if (!a.ok()) return a.status();
  absl::StatusOr<uint64_t> w0 = memory_.ReadObj<uint64_t>(*a);
  if (!w0.ok()) return w0.status();
  if (absl::Status s = memory_.WriteObj<uint64_t>(*a, *w0 & ~1ull); !s.ok()) return s;  // clear P
  std::vector<InvDescriptor> inv = {PasidCacheInv(1, did, pasid), PIotlbPasid(did, pasid)};
  if (dev_tlb) inv.push_back(PDevTlb(rid, pasid, ~0ull >> 1 & ~0xfffull, true));
  if (absl::Status s = Invalidate(inv); !s.ok()) return s;
  return tables_->ClearPasidEntry(rid, pasid);
}

absl::Status LinuxVtdDriver::FlushRange(uint16_t rid, uint16_t did, std::optional<uint32_t> pasid, uint64_t addr,
                                        uint8_t am, bool dev_tlb) {
  std::vector<InvDescriptor> inv;
  inv.push_back(pasid ? PIotlbPage(did, *pasid, addr, am) : IotlbPage(did, addr, am));
  if (dev_tlb) {
    // Size encoded by trailing ones (PCIe 6.0 §10.3.1); am = 0 is a single page (S=0).
    uint64_t a = addr;
    if (am > 0) a = (addr & ~((1ull << (12 + am)) - 1)) | (((1ull << (am - 1)) - 1) << 12);
    inv.push_back(pasid ? PDevTlb(rid, *pasid, a, am > 0) : DevTlb(rid, a, am > 0));
  }
  return Invalidate(inv);
}

std::vector<FaultRecord> LinuxVtdDriver::ReadAndClearFaults() {
  std::vector<FaultRecord> out;
  const uint32_t fsts = Read32(kFstsReg);
  if (fsts & kFstsPpf) {
    const uint32_t fro = static_cast<uint32_t>((Read64(kCapReg) >> 24) & 0x3ff) * 16;
    const uint32_t nfr = static_cast<uint32_t>((Read64(kCapReg) >> 40) & 0xff) + 1;
    uint32_t index = (fsts >> kFstsFriShift) & 0xff;
    for (uint32_t n = 0; n < nfr; ++n) {
      const uint32_t rec = fro + index * 16;
      const uint32_t hi = Read32(rec + 12);
      if (!(hi & (1u << 31))) break;
      const uint32_t mid = Read32(rec + 8);
      FaultRecord f;
      f.reason = hi & 0xff;
      f.page_request = mid & (1u << 28);                    // T2 (bit 92)
      f.write = !f.page_request && !(hi & (1u << 30));      // T1 (bit 126): 0 write, 1 read
      f.at = (hi >> 28) & 3;
      f.sid = mid & 0xffff;
      if (mid & (1u << 31)) f.pasid = (hi >> 8) & 0xfffff;
      f.exec = mid & (1u << 30);
      f.priv = mid & (1u << 29);
      f.addr = Read64(rec) & ~0xfffull;
      out.push_back(f);
      Write32(rec + 12, 1u << 31);  // clear F
      index = (index + 1) % nfr;
    }
  }
  Write32(kFstsReg, kFstsPfo | (1u << 7) /* PRO */);
  return out;
}

std::vector<PageRequestSeen> LinuxVtdDriver::ServicePageRequests(
    const std::function<uint8_t(const PageRequestSeen&)>& handler) {
  std::vector<PageRequestSeen> seen;
  if (prq_bytes_ == 0) return seen;
  Write32(kPrsReg, kPrsPpr);
  const uint32_t mask = prq_bytes_ - 1;
  uint64_t tail = Read64(kPqtReg) & mask & ~0x1full;
  uint64_t head = Read64(kPqhReg) & mask & ~0x1full;
  std::vector<InvDescriptor> responses;
  while (head != tail) {
    std::array<uint64_t, 4> qw{};
    memory_.Read(prq_base_ + head, qw.data(), 32).IgnoreError();
    PageRequestSeen r;
    r.rid = (qw[0] >> 16) & 0xffff;
    if (qw[0] & (1u << 8)) r.pasid = (qw[0] >> 32) & 0xfffff;
    r.exec = (qw[0] >> 52) & 1;
    r.priv = (qw[0] >> 53) & 1;
    r.read = qw[1] & 1;
    r.write = (qw[1] >> 1) & 1;
    r.last = (qw[1] >> 2) & 1;
    r.group = (qw[1] >> 3) & 0x1ff;
    r.addr = qw[1] & ~0xfffull;
    seen.push_back(r);
    uint8_t code;
    if (!r.pasid) {
      code = 1;  // prq.c:217-222: requests without PASID are answered Invalid
    } else {
      code = handler(r);
    }
    if (r.last) responses.push_back(PageGroupResponse(r.rid, r.pasid, code, r.group, true));
    head = (head + 32) & mask;
  }
  Write64(kPqhReg, tail);
  if (!responses.empty()) Invalidate(responses).IgnoreError();
  if (Read32(kPrsReg) & kPrsPro) {
    head = Read64(kPqhReg) & mask;
    tail = Read64(kPqtReg) & mask;
    if (head == tail) Write32(kPrsReg, kPrsPro);
  }
  return seen;
}

absl::Status LinuxVtdDriver::WriteIrte(uint32_t index, const IrteSpec& spec) {
  if (absl::Status s = memory_.WriteObj(irt_base_ + index * 16ull, EncodeIrte(spec)); !s.ok()) return s;
  return Invalidate({IecIndex(static_cast<uint16_t>(index), 0)});
}

}  // namespace ionest::vtd::testing
