// x86 first-stage page-table walker (VT-d spec §3.6, §9.7; same format as IA-32e paging,
// Intel SDM vol.3 §4.5): 4- and 5-level, 2 MiB / 1 GiB pages, A/D (and EA) updates.
//
// Pure function over PhysMemory; never trusts entry contents; bounded (one pass over <= 5 levels,
// restarted at most kMaxWalkAttempts times if an entry changes under an A/D update).
// Thread safety: may be called concurrently from any thread.
#pragma once

#include <cstdint>

#include "iommu/walk_types.h"
#include "vmm/guest_memory.h"

namespace ionest {

// First-stage entry bits (VT-d §9.7, SDM vol.3 §4.5 tables 4-15..4-20).
namespace fs {
inline constexpr uint64_t kP = 1ull << 0;
inline constexpr uint64_t kRW = 1ull << 1;
inline constexpr uint64_t kUS = 1ull << 2;
inline constexpr uint64_t kA = 1ull << 5;
inline constexpr uint64_t kD = 1ull << 6;   // leaf only
inline constexpr uint64_t kPS = 1ull << 7;  // PDPTE/PDE: maps a 1 GiB / 2 MiB page
inline constexpr uint64_t kEA = 1ull << 10;  // extended-accessed (VT-d §9.7, with PASID-entry EAFE)
inline constexpr uint64_t kXD = 1ull << 63;
inline constexpr uint64_t kAddrMask = 0x000F'FFFF'FFFF'F000ull;  // bits 51:12
}  // namespace fs

struct FirstStageConfig {
  uint64_t root = 0;      // FSPTPTR: PML4 (or PML5) table address; bits 11:0 ignored
  int levels = 4;         // 4 or 5 (PASID-entry FLPM, VT-d §9.6)
  bool sre = false;       // supervisor requests enable; privileged requests fault without it
  bool wpe = false;       // write-protect enable: supervisor writes honour R/W (like CR0.WP)
  bool ere = false;       // execute requests enable; execute requests fault without it; XD honoured
  bool eafe = false;      // extended-accessed flag enable: EA (bit 10) is set together with A
  bool update_ad = true;  // set A on every used entry and D on written leaves (VT-d §3.6.3)
  bool allow_1g = true;   // CAP.FL1GP; without it PS in a PDPTE is a reserved bit
  int haw_bits = 48;      // host address width; entry address bits 51:haw_bits are reserved
};

inline constexpr int kMaxWalkAttempts = 8;

// Translates `iova` for a request with DmaAccess bits `access` (kDmaPriv = supervisor request).
// Checks, in order: config, canonical input, request type (SRE/ERE), then per level present and
// reserved bits, then the access rights accumulated over all levels (SDM vol.3 §4.6).
WalkResult WalkFirstStage(PhysMemory& memory, const FirstStageConfig& config, uint64_t iova, uint32_t access);

class TableAccess;
// Same walk with table accesses routed through `tables` (used by the nested walker).
WalkResult WalkFirstStageVia(TableAccess& tables, const FirstStageConfig& config, uint64_t iova, uint32_t access);

// True if `addr` is canonical for a `levels`-level first-stage walk (48 or 57 bits, sign-extended).
bool IsCanonical(uint64_t addr, int levels);

}  // namespace ionest
