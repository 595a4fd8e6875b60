// Armv8-A VMSAv8-64 translation-table walker (Arm ARM DDI0487 chapter D8), as the SMMUv3 uses it
// for stage 1 (context descriptor, IHI0070 §5.4) and stage 2 (stream table entry, §5.2):
// 4 KiB, 16 KiB and 64 KiB granules, 48-bit input and output at most (no FEAT_LPA/LPA2/LVA),
// table, block and page descriptors, stage-1 AP/UXN/PXN and hierarchical APTable/XNTable/PXNTable,
// stage-2 S2AP/XN, the access flag (fault when AF=0 unless hardware update HA or AFFD), stage-2
// concatenated start-level tables, and nested walks (stage-1 tables and output through stage 2).
//
// Faults use the model-neutral WalkFaultKind; the Arm fault they stand for (IHI0070 §7.3):
//   kNotPresent   invalid descriptor, EPDx=1          -> Translation fault (F_TRANSLATION)
//   kReservedBit  reserved encoding (level-3 block,
//                 block where the granule has none)   -> Translation fault (F_TRANSLATION)
//   kNonCanonical input outside the TTBR0/TTBR1 ranges
//                 or beyond the stage-2 input size    -> Translation fault (F_TRANSLATION)
//   kAddressWidth output/table address beyond IPS/PS  -> Address size fault (F_ADDR_SIZE)
//   kAccessFlag   AF=0 without HA/AFFD                -> Access flag fault (F_ACCESS)
//   kPermission   AP/S2AP/XN deny the access          -> Permission fault (F_PERMISSION)
//   kTableAccess  a table read/update missed RAM      -> external abort on walk (F_WALK_EABT)
// WalkFault.level is the VMSA lookup level (0..3; 3 = 4 KiB page with a 4 KiB granule), not the
// x86 numbering of the other walkers.
//
// Pure functions over a TableAccess; never trust descriptor contents; bounded: at most 4 levels per
// pass, at most kMaxVmsaWalkAttempts passes when a hardware AF update races a guest write.
// Thread safety: may be called concurrently from any thread.
#pragma once

#include <cstdint>

#include "iommu/walk_types.h"
#include "vmm/guest_memory.h"

namespace ionest {

class TableAccess;

// Descriptor bits (Arm ARM D8.3).
namespace vmsa {
inline constexpr uint64_t kValid = 1ull << 0;
inline constexpr uint64_t kTableOrPage = 1ull << 1;  // levels 0-2: table; level 3: page
inline constexpr uint64_t kAp1 = 1ull << 6;          // stage 1 AP[1]: EL0 (unprivileged) access
inline constexpr uint64_t kAp2 = 1ull << 7;          // stage 1 AP[2]: read-only
inline constexpr uint64_t kS2apRead = 1ull << 6;     // stage 2 S2AP[0]
inline constexpr uint64_t kS2apWrite = 1ull << 7;    // stage 2 S2AP[1]
inline constexpr uint64_t kAf = 1ull << 10;
inline constexpr uint64_t kPxn = 1ull << 53;
inline constexpr uint64_t kUxn = 1ull << 54;          // stage 1 UXN/XN; stage 2 XN[1]
inline constexpr uint64_t kPxnTable = 1ull << 59;
inline constexpr uint64_t kXnTable = 1ull << 60;     // UXNTable
inline constexpr uint64_t kApTableNoEl0 = 1ull << 61;  // APTable[0]
inline constexpr uint64_t kApTableReadOnly = 1ull << 62;  // APTable[1]
// Without FEAT_LPA/LPA2 (48-bit OA): bits 51:48 of a table descriptor are RES0; in a block or page
// descriptor only bits 49:48 are, bit 50 is GP (FEAT_BTI) and bit 51 DBM (Arm ARM D8.3.1-D8.3.2),
// which Linux sets in every writable user PTE (PTE_WRITE = PTE_DBM) that an SVA walk meets.
inline constexpr uint64_t kOaHighTable = 0x000F'0000'0000'0000ull;  // bits 51:48
inline constexpr uint64_t kOaHighLeaf = 0x0003'0000'0000'0000ull;   // bits 49:48
inline constexpr uint64_t kDbm = 1ull << 51;
inline constexpr uint64_t kGp = 1ull << 50;
inline constexpr int kMaxAddressBits = 48;
}  // namespace vmsa

inline constexpr int kMaxVmsaWalkAttempts = 8;

// One translation table base of stage 1 (TTB0/T0SZ/TG0/EPD0 or TTB1/T1SZ/TG1/EPD1 of a CD).
struct VmsaRegion {
  bool enabled = false;   // !EPDx
  uint64_t ttb = 0;       // table base (bits below the start table's size are ignored)
  int tsz = 25;           // TxSZ: input size is 64 - tsz bits (16..39)
  int granule_shift = 12;  // 12, 14 or 16
};

struct VmsaStage1Config {
  VmsaRegion ttbr[2];          // [0]: VA[55] == 0, [1]: VA[55] == 1 (top bits all ones)
  int oas_bits = 48;           // CD.IPS (capped by SMMU_IDR5.OAS): larger output faults F_ADDR_SIZE
  bool hardware_af = false;    // CD.HA: set AF instead of faulting
  bool af_fault_disable = false;  // CD.AFFD: AF=0 is treated as 1
};

struct VmsaStage2Config {
  uint64_t ttb = 0;       // S2TTB
  int t0sz = 25;          // S2T0SZ: input (IPA) size 64 - t0sz bits (16..39)
  int sl0 = 1;            // S2SL0: start level 2 - sl0 (4 KiB), 3 - sl0 (16/64 KiB)
  int granule_shift = 12;  // S2TG decoded: 12, 14 or 16
  int oas_bits = 48;      // S2PS (capped by SMMU_IDR5.OAS)
  bool hardware_af = false;       // S2HA
  bool af_fault_disable = false;  // S2AFFD
};

// Config checks (IHI0070 §5.2/§5.4 "ILLEGAL" combinations): granule 12/14/16, TxSZ 16..39,
// oas_bits 32..48, stage-2 start level consistent with S2T0SZ (at most 16 concatenated tables).
bool IsValidVmsaRegion(const VmsaRegion& region);
bool IsValidVmsaStage1(const VmsaStage1Config& config);
bool IsValidVmsaStage2(const VmsaStage2Config& config);

// Stage 1: `access` DmaAccess bits; kDmaPriv = privileged (PnU=1) request. Rights: unprivileged
// R needs AP[1], W needs AP[1] and !AP[2], X needs R and !UXN; privileged R always, W needs !AP[2],
// X needs !PXN and not EL0-writable; APTable/XNTable/PXNTable of every table on the way restrict.
WalkResult WalkVmsaStage1(PhysMemory& memory, const VmsaStage1Config& config, uint64_t va, uint32_t access);
WalkResult WalkVmsaStage1Via(TableAccess& tables, const VmsaStage1Config& config, uint64_t va, uint32_t access);

// Stage 2: R needs S2AP[0], W needs S2AP[1], X needs !XN[1]; kDmaPriv is ignored. Faults are stage kSecond.
WalkResult WalkVmsaStage2(PhysMemory& memory, const VmsaStage2Config& config, uint64_t ipa, uint32_t access);
WalkResult WalkVmsaStage2Via(TableAccess& tables, const VmsaStage2Config& config, uint64_t ipa, uint32_t access);

// Nested (IHI0070 §3.3.2): stage-1 table addresses and output are IPAs translated by stage 2;
// table reads need S2 read, hardware AF updates S2 write. Rights are the intersection, the page
// size the smaller. Faults carry kFirst, kSecondForFirstTable (addr = IPA of the stage-1
// descriptor) or kSecond (addr = stage-1 output IPA).
WalkResult WalkVmsaNested(PhysMemory& memory, const VmsaStage1Config& s1, const VmsaStage2Config& s2, uint64_t va,
                          uint32_t access);

// Block sizes a granule allows at `level` (Arm ARM D8.3.1; no FEAT_LPA2): 4 KiB: levels 1, 2;
// 16 KiB and 64 KiB: level 2.
bool VmsaBlockAllowed(int granule_shift, int level);

}  // namespace ionest
