// A guest-side VT-d driver for machine tests: programs the model through its MMIO window exactly in
// the order and style of Linux 6.12 intel-iommu (drivers/iommu/intel/
// dmar.c/iommu.c boot order, CM=1 invalidations, qi_submit_sync, prq.c prq_event_thread, dmar_fault).
// Table/descriptor encoding comes from iommu/vtd/testing (shared with the VT-d unit tests); the
// register programming, invalidation sequences, fault and page-request handling are this file's.
// Not thread-safe (one "guest CPU").
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "devices/io_bus.h"
#include "iommu/testing/table_builder.h"
#include "iommu/vtd/descriptors.h"
#include "iommu/vtd/testing/vtd_builders.h"
#include "vmm/guest_memory.h"

namespace ionest::machine_test {

using vtd::InvDescriptor;
using vtd::testing::PageAllocator;

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

class LinuxVtdDriver {
 public:
  LinuxVtdDriver(IoBus& mmio, uint64_t base, PhysMemory& memory, PageAllocator& alloc);

  uint32_t Read32(uint32_t reg);
  uint64_t Read64(uint32_t reg);
  void Write32(uint32_t reg, uint32_t v);
  void Write64(uint32_t reg, uint64_t v);

  // enable_IR_x2apic + init_dmars (notes §2 steps 1-2). Translation stays off (EnableTranslation).
  absl::Status Boot(const BootOptions& options);
  absl::Status EnableTranslation();
  absl::Status DisableTranslation();
  vtd::testing::VtdTableBuilder& tables() { return *tables_; }
  uint64_t cap() const { return cap_; }
  uint64_t ecap() const { return ecap_; }

  // qi_submit_sync (dmar.c:1378-1506): descriptors + wait (SW, status QI_DONE), IQT, poll the status
  // while checking FSTS.IQE/ITE/ICE. On IQE the bad descriptor is overwritten with the wait
  // descriptor and IQE cleared, as Linux does.
  QiResult SubmitSync(const std::vector<InvDescriptor>& descriptors);
  // Convenience: SubmitSync that must complete without queue errors.
  absl::Status Invalidate(const std::vector<InvDescriptor>& descriptors);
  // Raw: write descriptors (each descriptor_bytes() long) at the tail and move IQT.
  void SubmitRaw(const std::vector<InvDescriptor>& descriptors);
  uint32_t descriptor_bytes() const { return dw_ ? 32 : 16; }

  // Device attach with CM=1 invalidations (notes §3).
  absl::Status AttachLegacy(uint16_t rid, const vtd::testing::LegacyContextSpec& spec);
  absl::Status AttachScalable(uint16_t rid, const vtd::testing::ScalableContextSpec& spec);
  absl::Status SetPasid(uint16_t rid, uint32_t pasid, const vtd::testing::PasidEntrySpec& spec, bool dev_tlb);
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
  absl::Status WriteIrte(uint32_t index, const vtd::testing::IrteSpec& spec);

  uint64_t irt_base() const { return irt_base_; }
  uint64_t queue_base() const { return iq_base_; }
  uint64_t prq_base() const { return prq_base_; }

 private:
  absl::Status WaitStatus(uint32_t bit, bool set);
  void Command(uint32_t one_shot) { Write32(vtd::kGcmdReg, gcmd_ | one_shot); }
  absl::Status SetPersistent(uint32_t bit, bool on);
  absl::StatusOr<uint64_t> AllocContiguous(unsigned pages);

  IoBus& mmio_;
  const uint64_t base_;
  PhysMemory& memory_;
  PageAllocator& alloc_;
  std::optional<vtd::testing::VtdTableBuilder> tables_;
  uint64_t cap_ = 0, ecap_ = 0;
  uint32_t gcmd_ = 0;
  bool dw_ = false;
  bool scalable_ = false;
  uint64_t iq_base_ = 0;
  uint32_t iq_tail_ = 0;  // bytes
  uint64_t status_addr_ = 0;
  uint32_t irt_entries_log2_ = 8;
  uint64_t irt_base_ = 0;
  uint64_t prq_base_ = 0;
  uint32_t prq_bytes_ = 0;
  static constexpr uint32_t kQueueBytes = 4096;  // IQA.QS=0 (128/256 descriptors); QS=1 with DW
};

}  // namespace ionest::machine_test
