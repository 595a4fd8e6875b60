// VT-d second-stage page-table walker (VT-d spec §3.7, §9.8): 3/4/5 levels by AW, R/W/X,
// superpages (SLLPS), reserved bits, optional A/D updates (SSADE), input-width check.
//
// Pure function over PhysMemory; never trusts entry contents; bounded.
// Thread safety: may be called concurrently from any thread.
#pragma once

#include <cstdint>

#include "iommu/walk_types.h"
#include "vmm/guest_memory.h"

namespace ionest {

// Second-stage entry bits (VT-d §9.8).
namespace ss {
inline constexpr uint64_t kR = 1ull << 0;
inline constexpr uint64_t kW = 1ull << 1;
inline constexpr uint64_t kX = 1ull << 2;
inline constexpr uint64_t kPS = 1ull << 7;  // SL-PDPE/SL-PDE: 1 GiB / 2 MiB page
inline constexpr uint64_t kA = 1ull << 8;   // with SSADE
inline constexpr uint64_t kD = 1ull << 9;   // leaf, with SSADE
inline constexpr uint64_t kAddrMask = 0x000F'FFFF'FFFF'F000ull;  // bits 51:12
}  // namespace ss

// SLLPS bits (CAP 37:34): which superpage sizes PS may select.
inline constexpr uint32_t kSuperpage2M = 1u << 0;
inline constexpr uint32_t kSuperpage1G = 1u << 1;

struct SecondStageConfig {
  uint64_t root = 0;            // SSPTPTR; bits 11:0 ignored
  int levels = 4;               // 3, 4 or 5 (AW field, supported per CAP.SAGAW)
  int aw_bits = 48;             // input width; inputs >= 2^aw_bits fault kAddressWidth (<= 12 + 9*levels)
  bool ad_enabled = false;      // SSADE: A (bit 8) on every used entry, D (bit 9) on written leaves
  uint32_t superpage_mask = 0;  // kSuperpage2M | kSuperpage1G; PS elsewhere is a reserved bit
  int haw_bits = 48;            // host address width; entry address bits 51:haw_bits are reserved
};

// Translates `addr` for DmaAccess bits `access` (kDmaRead needs R, kDmaWrite W, kDmaExec X;
// kDmaPriv is ignored). Faults are reported with stage kSecond and fault.addr = `addr`.
// perms == user_perms == supervisor_perms (second stage has no privilege levels).
WalkResult WalkSecondStage(PhysMemory& memory, const SecondStageConfig& config, uint64_t addr, uint32_t access);

// Reserved bits of a present entry at `level` (VT-d §9.8): address bits 51:HAW everywhere; PS at
// levels 5/4 and wherever the superpage size is not supported (CAP.SLLPS, config.superpage_mask);
// the address bits below the superpage size of a 1 GiB / 2 MiB leaf.
uint64_t SecondStageReservedMask(const SecondStageConfig& config, int level, uint64_t entry);
// The R/W/X rights of an entry as DmaAccess bits.
uint32_t SecondStageEntryRights(uint64_t entry);

// True if the config is walkable (levels 3..5, 12 < aw_bits <= 12 + 9*levels, 12 <= haw_bits <= 52).
bool IsValidSecondStageConfig(const SecondStageConfig& config);

}  // namespace ionest
