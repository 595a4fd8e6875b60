// Test/fuzz tooling for the VT-d model: builders of root/context/PASID tables and IRTEs in (fake)
// guest memory, invalidation descriptor encoders and recording MSI sinks / DMA clients. The driver
// that programs the registers the way Linux 6.12's intel-iommu does is linux_vtd_driver.h.
// Host-side tooling: inputs are trusted, errors are absl::Status. Not thread-safe unless stated.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "iommu/dma_space.h"
#include "iommu/msi.h"
#include "iommu/testing/recorders.h"
#include "iommu/testing/table_builder.h"
#include "iommu/vtd/descriptors.h"
#include "iommu/vtd/vtd_iommu.h"
#include "vmm/guest_memory.h"

namespace ionest::vtd::testing {

using iommu_testing::PageAllocator;

// ----- Table entries (VT-d §9) -----

struct LegacyContextSpec {
  uint8_t tt = 0;  // 0 untranslated, 1 with device-TLB, 2 pass-through
  uint8_t aw = 2;  // 4-level
  uint16_t did = 1;
  uint64_t slptptr = 0;
  bool fpd = false;
  bool present = true;
};

struct ScalableContextSpec {
  bool dte = false;
  bool pasid_enable = false;
  bool pre = false;
  uint8_t pdts = 7;  // 2^(7+7) directory entries: every 20-bit PASID
  uint32_t rid_pasid = 0;
  bool fpd = false;
  bool present = true;
};

struct PasidEntrySpec {
  uint8_t pgtt = 1;  // Pgtt
  uint16_t did = 1;
  uint64_t flptptr = 0;
  uint64_t slptptr = 0;
  uint8_t aw = 2;
  uint8_t flpm = 0;
  bool sre = false;
  bool wpe = false;
  bool ssade = false;
  bool fpd = false;
  bool present = true;
};

// Encoders (raw entry words).
std::array<uint64_t, 2> EncodeLegacyContext(const LegacyContextSpec& s);
std::array<uint64_t, 4> EncodeScalableContext(const ScalableContextSpec& s, uint64_t pasid_dir);
std::array<uint64_t, 8> EncodePasidEntry(const PasidEntrySpec& s);

// Builds a root table plus context / PASID tables on demand.
class VtdTableBuilder {
 public:
  VtdTableBuilder(PhysMemory& memory, PageAllocator& alloc, bool scalable);
  absl::Status Init();  // allocates the root table
  // RTADDR_REG value (root | TTM).
  uint64_t rtaddr() const { return root_ | (scalable_ ? (1u << 10) : 0u); }

  absl::Status SetLegacyContext(uint16_t rid, const LegacyContextSpec& s);
  absl::Status SetScalableContext(uint16_t rid, const ScalableContextSpec& s);
  absl::Status ClearContext(uint16_t rid);
  absl::Status SetPasidEntry(uint16_t rid, uint32_t pasid, const PasidEntrySpec& s);
  absl::Status ClearPasidEntry(uint16_t rid, uint32_t pasid);
  // Raw writes for malformed-entry tests.
  absl::StatusOr<uint64_t> ContextEntryAddress(uint16_t rid);
  absl::StatusOr<uint64_t> PasidEntryAddress(uint16_t rid, uint32_t pasid);
  absl::StatusOr<uint64_t> PasidDirectory(uint16_t rid) const;

 private:
  absl::StatusOr<uint64_t> ContextTable(uint16_t rid);
  PhysMemory& memory_;
  PageAllocator& alloc_;
  bool scalable_;
  uint64_t root_ = 0;
};

// Remappable IRTE (§9.10).
struct IrteSpec {
  uint8_t vector = 0x30;
  uint32_t dest = 0;
  bool dest_logical = false;
  bool redirection_hint = false;
  bool level = false;
  uint8_t delivery_mode = 0;
  uint16_t sid = 0;
  uint8_t sq = 0;
  uint8_t svt = 0;
  bool fpd = false;
  bool present = true;
  bool x2apic = true;  // dest in 63:32 (else 47:40)
};
std::array<uint64_t, 2> EncodeIrte(const IrteSpec& s);
// Remappable-format MSI for interrupt `index` (§5.1.2.2), without subhandle.
MsiMessage RemappableMsi(uint32_t index, uint16_t requester_id);

// ----- Invalidation descriptors (§6.5.2) -----

InvDescriptor CcGlobal();
InvDescriptor CcDomain(uint16_t did);
InvDescriptor CcDevice(uint16_t did, uint16_t sid, uint8_t fm = 0);
InvDescriptor IotlbGlobal();
InvDescriptor IotlbDomain(uint16_t did);
InvDescriptor IotlbPage(uint16_t did, uint64_t addr, uint8_t am, bool ih = false);
InvDescriptor DevTlb(uint16_t sid, uint64_t addr, bool size_bit = false);
InvDescriptor IecGlobal();
InvDescriptor IecIndex(uint16_t index, uint8_t im = 0);
InvDescriptor Wait(uint64_t status_addr, uint32_t data, bool sw = true, bool interrupt = false);
InvDescriptor PIotlbPasid(uint16_t did, uint32_t pasid);
InvDescriptor PIotlbPage(uint16_t did, uint32_t pasid, uint64_t addr, uint8_t am, bool ih = false);
InvDescriptor PasidCacheInv(uint8_t granularity, uint16_t did, uint32_t pasid);
InvDescriptor PDevTlb(uint16_t sid, uint32_t pasid, uint64_t addr, bool size_bit = false);
InvDescriptor PageGroupResponse(uint16_t rid, std::optional<uint32_t> pasid, uint8_t code, uint16_t index,
                                bool last = true);

// ----- Recorders -----

// Model-neutral recorders (iommu/testing/recorders.h), under their VT-d test names.
using iommu_testing::RecordingDmaClient;
using iommu_testing::RecordingMsiSink;

}  // namespace ionest::vtd::testing
