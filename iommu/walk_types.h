// Results and typed faults of IOMMU page-table walks, shared by every walker (first stage,
// second stage, nested) and by the IOTLB. Model-independent: the VT-d layer maps WalkFault to its
// fault reason codes (VT-d spec Appendix A).
//
// Level numbering follows the paging structures: 1 = page table (4 KiB leaf), 2 = page directory
// (2 MiB leaf), 3 = PDPT (1 GiB leaf), 4 = PML4, 5 = PML5. Level 0 means "before any table access".
// The VMSAv8-64 walker (vmsa_walk.h) reports Arm lookup levels instead: 0..3, 3 = the 4 KiB page.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "iommu/dma_space.h"

namespace ionest {

enum class WalkFaultKind : uint8_t {
  kNotPresent,         // entry not present (FS: P=0; SS: R=W=X=0)
  kPermission,         // translation exists but does not allow the access
  kReservedBit,        // a reserved bit is set in an entry
  kNonCanonical,       // first-stage input address not canonical (SDM vol.3 §4.5)
  kAddressWidth,       // second-stage input address beyond the adjusted guest address width
  kTableAccess,        // a table entry lies outside guest RAM (or A/D update kept racing)
  kRequestNotAllowed,  // request type not enabled: privileged with SRE=0, execute with ERE=0
  kInvalidConfig,      // walk configuration unusable (e.g. unsupported number of levels)
  kAccessFlag,         // VMSA leaf with AF=0 and no hardware update (Arm ARM D8.5)
};

enum class WalkStage : uint8_t {
  kFirst,                 // first-stage table or check
  kSecond,                // second-stage translation of the final (first-stage output) address
  kSecondForFirstTable,   // second-stage translation of a first-stage table address (nested)
};

struct WalkFault {
  WalkFaultKind kind = WalkFaultKind::kNotPresent;
  WalkStage stage = WalkStage::kFirst;
  int level = 0;            // level of the faulting entry; 0 if no entry was involved
  uint64_t entry = 0;       // raw entry value (0 if not read)
  uint64_t entry_addr = 0;  // (host-)physical address of the faulting entry, 0 if none
  // Address being translated by the faulting stage: the IOVA for kFirst/standalone second stage,
  // the guest-physical address for kSecond, the first-stage entry's GPA for kSecondForFirstTable.
  uint64_t addr = 0;
};

// Result of one walk. `perms` and friends are the rights a cache may hold for this translation: a
// later access of a kind not listed must walk again. In particular kDmaWrite is only listed when
// the leaf's dirty flag is already set (or A/D updates are off), so a cached read translation never
// lets a write skip the D update.
struct WalkResult {
  bool ok = false;
  uint64_t output = 0;          // translated address of the input address itself (offset included)
  uint64_t page_size = 0;       // 4 KiB, 2 MiB or 1 GiB; the input lies in one aligned page of it
  uint32_t perms = 0;           // rights for requests of the walked privilege (R/W/X DmaAccess bits)
  uint32_t user_perms = 0;      // rights for non-privileged requests
  uint32_t supervisor_perms = 0;  // rights for privileged requests (0 if SRE=0)
  WalkFault fault;              // meaningful when !ok

  // Output address of the first byte of the page holding the input.
  uint64_t page_output() const { return output & ~(page_size - 1); }
};

inline constexpr uint64_t kPage4K = 1ull << 12;
inline constexpr uint64_t kPage2M = 1ull << 21;
inline constexpr uint64_t kPage1G = 1ull << 30;
inline constexpr uint32_t kDmaRwx = kDmaRead | kDmaWrite | kDmaExec;

// Size mapped by one entry at `level` (1..5).
constexpr uint64_t LevelPageSize(int level) { return 1ull << (12 + 9 * (level - 1)); }

const char* WalkFaultKindName(WalkFaultKind kind);
const char* WalkStageName(WalkStage stage);
std::string WalkFaultToString(const WalkFault& fault);

WalkResult MakeFault(WalkFaultKind kind, WalkStage stage, int level, uint64_t addr, uint64_t entry = 0,
                     uint64_t entry_addr = 0);

// A nested translation from its successful first-stage and second-stage (of the first stage's
// output) results: the second stage's output, the smaller page, the intersection of the rights.
WalkResult CombineNestedStages(const WalkResult& first, const WalkResult& second);

// DmaFault for a failed walk. `reason` is the architecture's fault reason code (the VT-d layer
// computes it from the WalkFault); `recorded` stays false (the caller records).
DmaFaultKind ToDmaFaultKind(WalkFaultKind kind);
DmaFault ToDmaFault(const WalkFault& fault, uint64_t iova, uint32_t access, std::optional<uint32_t> pasid,
                    uint32_t reason = 0);

}  // namespace ionest
