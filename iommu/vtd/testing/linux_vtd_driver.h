// The one guest-side VT-d driver of the tests: programs the model's registers in the order and style
// of Linux 6.12 intel-iommu (drivers/iommu/intel/ dmar.c/iommu.c boot order, CM=1 invalidations,
// qi_submit_sync with the IQE recovery, prq.c prq_event_thread, dmar_fault). Register access goes
// through VtdRegisters: MMIO on an IoBus at a base (machine tests, tests/machine) or VtdIommu's
// registers directly (model tests, fuzzers, the passthrough test bed, via VtdTestEnv).
// Table/descriptor encoding comes from vtd_builders.h. Not thread-safe (one "guest CPU").
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "devices/io_bus.h"
#include "iommu/testing/table_builder.h"
#include "iommu/vtd/descriptors.h"
#include "iommu/vtd/registers.h"
#include "iommu/vtd/testing/vtd_builders.h"
#include "iommu/vtd/vtd_iommu.h"
#include "vmm/guest_memory.h"

namespace ionest::vtd::testing {

// How the driver reaches the remapping hardware's registers.
class VtdRegisters {
 public:
  virtual ~VtdRegisters() = default;
  virtual uint64_t Read(uint32_t reg, uint32_t size) = 0;
  virtual void Write(uint32_t reg, uint64_t value, uint32_t size) = 0;
};

// Loads/stores on an MMIO bus at `base` (as a vCPU does).
class MmioVtdRegisters final : public VtdRegisters {
 public:
  MmioVtdRegisters(IoBus& mmio, uint64_t base) : mmio_(mmio), base_(base) {}
  uint64_t Read(uint32_t reg, uint32_t size) override;
  void Write(uint32_t reg, uint64_t value, uint32_t size) override;

 private:
  IoBus& mmio_;
  const uint64_t base_;
};

// VtdIommu::ReadRegister/WriteRegister.
class DirectVtdRegisters final : public VtdRegisters {
 public:
  explicit DirectVtdRegisters(VtdIommu& iommu) : iommu_(iommu) {}
  uint64_t Read(uint32_t reg, uint32_t size) override { return iommu_.ReadRegister(reg, size); }
  void Write(uint32_t reg, uint64_t value, uint32_t size) override { iommu_.WriteRegister(reg, value, size); }

 private:
  VtdIommu& iommu_;
};

struct BootOptions {
  bool scalable = true;
  bool interrupt_remapping = true;
  bool page_requests = true;  // only used when ECAP.PASID and ECAP.PRS
  uint32_t prq_order = 4;     // PQA.PQS: 2^order pages (Linux: 4 = 64 KiB)
  uint64_t fault_msi_address = 0xfee00000;
  uint32_t fault_msi_data = 0x4a;  // Linux: vector of the dmar fault irq
  uint64_t prq_msi_address = 0xfee00000;
  uint32_t prq_msi_data = 0x4b;
};

// One decoded fault recording register (VT-d §11.4.14).
struct FaultRecord {
  uint8_t reason = 0;
  uint16_t sid = 0;
  uint64_t addr = 0;
  bool write = false;         // T2=0, T1=0
  bool page_request = false;  // T2=1
  std::optional<uint32_t> pasid;
  bool exec = false;
  bool priv = false;
  uint8_t at = 0;
};

// A page request as prq_event_thread sees it (notes §5).
struct PageRequestSeen {
  uint16_t rid = 0;
  std::optional<uint32_t> pasid;
  uint64_t addr = 0;
  bool read = false, write = false, exec = false, priv = false, last = false;
  uint16_t group = 0;
};

struct QiResult {
  bool completed = false;  // the wait descriptor's status write arrived
  bool iqe = false;        // FSTS.IQE was raised
  bool ite = false;
  uint8_t iqei = 0;        // IQERCD.IQEI at the error
};

// What SubmitSync does when FSTS.IQE/ITE is raised.
enum class QiErrors {
  kRecover,  // qi_check_fault: overwrite the bad descriptor with the wait, clear IQE (Linux)
  kLeave,    // stop waiting and leave FSTS, IQH and the queue as they are, for the test to inspect
};

class LinuxVtdDriver {
 public:
  // `alloc` provides pages for the root table, invalidation queue, IRT, page request queue.
  LinuxVtdDriver(std::unique_ptr<VtdRegisters> regs, PhysMemory& memory, PageAllocator& alloc);
  // MMIO at `base` on `mmio` (machine tests).
  LinuxVtdDriver(IoBus& mmio, uint64_t base, PhysMemory& memory, PageAllocator& alloc);
  // The model's registers directly (model tests, fuzzers).
  LinuxVtdDriver(VtdIommu& iommu, PhysMemory& memory, PageAllocator& alloc);

  uint32_t Read32(uint32_t reg) { return static_cast<uint32_t>(regs_->Read(reg, 4)); }
  uint64_t Read64(uint32_t reg) { return regs_->Read(reg, 8); }
  void Write32(uint32_t reg, uint32_t v) { regs_->Write(reg, v, 4); }
  void Write64(uint32_t reg, uint64_t v) { regs_->Write(reg, v, 8); }

  // enable_IR_x2apic + init_dmars (notes §2 steps 1-2): drain faults, EnableQueuedInvalidation,
  // EnableInterruptRemapping (2^16 entries, EIME = ECAP.EIM), SetRootTable, EnablePageRequests,
  // SetFaultMsi. Translation stays off (EnableTranslation).
  absl::Status Boot(const BootOptions& options);
  // The minimal bring-up of the model tests: EnableQueuedInvalidation + SetRootTable(scalable).
  absl::Status Init(bool scalable);

  // The boot steps, each as Linux does it.
  // dmar_enable_qi (dmar.c:1652-1688): IQA = base | DW (= ECAP.SMTS) | QS (1 with DW, else 0), QIE.
  absl::Status EnableQueuedInvalidation();
  // irq_remapping.c:458-517: IRTA = base | EIME | S, SIRTP, global IEC unless CAP.ESIRTPS, IRE, CFI off.
  absl::Status EnableInterruptRemapping(uint32_t entries_log2 = 8, bool x2apic = true);
  // iommu.c:1120-1151 (after WBF if CAP.RWBF): RTADDR = root | TTM, SRTP, global context-cache,
  // PASID-cache (scalable) and IOTLB invalidations unless CAP.ESRTPS.
  absl::Status SetRootTable(bool scalable);
  // intel_iommu_enable_prq (prq.c:292-338): PQH = PQT = 0, PQA = base | order, page request MSI.
  absl::Status EnablePageRequests(uint64_t msi_address, uint32_t msi_data, uint32_t order = 4);
  // dmar_set_interrupt (dmar.c:2037-2058): FEDATA/FEADDR/FEUADDR, FECTL unmasked.
  void SetFaultMsi(uint64_t address, uint32_t data);

  absl::Status EnableTranslation() { return SetPersistent(vtd::kGcmdTe, true); }
  absl::Status DisableTranslation() { return SetPersistent(vtd::kGcmdTe, false); }
  // GCMD as Linux writes it: persistent bits shadow | one-shot; SetPersistent waits for GSTS.
  void Command(uint32_t one_shot) { Write32(vtd::kGcmdReg, gcmd_ | one_shot); }
  absl::Status SetPersistent(uint32_t bit, bool on);

  VtdTableBuilder& tables() { return *tables_; }
  uint64_t cap() const { return cap_; }
  uint64_t ecap() const { return ecap_; }

  // qi_submit_sync (dmar.c:1378-1506): descriptors + wait (SW, status QI_DONE), IQT, poll the status
  // while checking FSTS.IQE/ITE/ICE; on IQE `errors` says what to do.
  QiResult SubmitSync(const std::vector<InvDescriptor>& descriptors, QiErrors errors = QiErrors::kRecover);
  // SubmitSync that must complete without queue errors.
  absl::Status Invalidate(const std::vector<InvDescriptor>& descriptors, QiErrors errors = QiErrors::kRecover);
  // Raw: write descriptors (each descriptor_bytes() long) at the tail and move IQT (no wait).
  absl::Status SubmitRaw(const std::vector<InvDescriptor>& descriptors);
  uint32_t descriptor_bytes() const { return dw_ ? 32 : 16; }

  // Device attach with CM=1 invalidations (notes §3).
  absl::Status AttachLegacy(uint16_t rid, const LegacyContextSpec& spec);
  absl::Status AttachScalable(uint16_t rid, const ScalableContextSpec& spec);
  absl::Status SetPasid(uint16_t rid, uint32_t pasid, const PasidEntrySpec& spec, bool dev_tlb);
  // intel_pasid_tear_down_entry (pasid.c:240-295).
  absl::Status TearDownPasid(uint16_t rid, uint32_t pasid, uint16_t did, bool dev_tlb);
  // Unmap flushes: PSI IOTLB / P_IOTLB page + device-TLB (am = log2 pages).
  absl::Status FlushRange(uint16_t rid, uint16_t did, std::optional<uint32_t> pasid, uint64_t addr, uint8_t am,
                          bool dev_tlb);

  // dmar_fault: read records from FRI while F is set, clear each F, then clear PFO/PRO.
  std::vector<FaultRecord> ReadAndClearFaults();
  // prq_event_thread: PRS.PPR clear, walk PQH..PQT, reject requests without PASID (Invalid, LPIG
  // only), hand the rest to `handler` for a response code (0 success, 1 invalid, 0xf failure),
  // PQH := tail, clear PRO when drained. Returns the requests seen.
  std::vector<PageRequestSeen> ServicePageRequests(const std::function<uint8_t(const PageRequestSeen&)>& handler);
  // intel-iommu IRTE update: write entry + index-selective IEC.
  absl::Status WriteIrte(uint32_t index, const IrteSpec& spec);

  uint64_t irt_base() const { return irt_base_; }
  uint64_t queue_base() const { return iq_base_; }
  uint64_t prq_base() const { return prq_base_; }

 private:
  void ReadCapabilities();
  absl::Status WaitStatus(uint32_t bit, bool set);
  absl::StatusOr<uint64_t> AllocContiguous(uint64_t pages);
  uint32_t queue_bytes() const { return 4096u << (dw_ ? 1 : 0); }

  std::unique_ptr<VtdRegisters> regs_;
  PhysMemory& memory_;
  PageAllocator& alloc_;
  std::optional<VtdTableBuilder> tables_;
  uint64_t cap_ = 0, ecap_ = 0;
  uint32_t gcmd_ = 0;
  bool dw_ = false;
  uint64_t iq_base_ = 0;
  uint32_t iq_tail_ = 0;  // bytes
  uint64_t status_addr_ = 0;
  uint64_t irt_base_ = 0;
  uint64_t prq_base_ = 0;
  uint32_t prq_bytes_ = 0;
};

}  // namespace ionest::vtd::testing
