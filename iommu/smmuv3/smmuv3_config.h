// SMMUv3 configuration structures: stream table lookup (IHI0070 §3.3, §5.1), stream table entry
// (§5.2) and context descriptor (§5.4) fetch and validation, as pure functions over guest memory.
// Every guest value is checked: an ILLEGAL entry yields C_BAD_STE / C_BAD_CD, a fetch that misses
// RAM F_STE_FETCH / F_CD_FETCH, an out-of-range StreamID C_BAD_STREAMID, an out-of-range or
// unsupported SubstreamID C_BAD_SUBSTREAMID (§7.3). Thread safety: may be called from any thread.
#pragma once

#include <cstdint>
#include <optional>

#include "iommu/vmsa_walk.h"
#include "iommu/walk_types.h"
#include "vmm/guest_memory.h"

namespace ionest::smmuv3 {

// The implementation choices decoding depends on (a subset of the model's profile).
struct DecodeCaps {
  bool stage1 = true;
  bool stage2 = true;
  bool two_level_stream_table = true;
  bool two_level_cd = true;
  int sid_bits = 16;
  int ssid_bits = 20;
  int oas_bits = 48;
  bool gran4k = true, gran16k = true, gran64k = true;
  bool hardware_af = true;  // IDR0.HTTU = 01 (access flag)
  bool asid16 = true, vmid16 = true;
  bool stall = false;       // IDR0.STALL_MODEL = 00 (stall and terminate) instead of 01
  bool ats = false;
};

// A decoded, valid STE (§5.2).
struct SteConfig {
  uint32_t config = 0;  // kSteCfg*
  bool s1 = false, s2 = false;
  // Stage 1 (context descriptors).
  uint64_t s1_context_ptr = 0;
  uint32_t s1_fmt = 0;
  uint32_t s1_cd_max = 0;  // S1CDMax: 2^n CDs (0: one CD, no substreams)
  uint32_t s1_dss = 0;
  bool s1_stall_disable = false;  // S1STALLD
  uint32_t eats = 0;
  // Stage 2.
  uint16_t vmid = 0;  // S2VMID (also tags stage-1-only translations when stage 2 is implemented)
  VmsaStage2Config s2_config;
  bool s2_stall = false;   // S2S
  bool s2_record = false;  // S2R
};

// A decoded, valid CD (§5.4).
struct CdConfig {
  VmsaStage1Config s1;
  uint16_t asid = 0;
  bool stall = false;   // S
  bool record = false;  // R: record faults that terminate (stalls are always recorded)
  bool abort = true;    // A: terminate with abort (RAZ/WI not modelled)
};

// Why a configuration lookup failed: the event to record (§7.3) and its address fields.
struct ConfigFault {
  uint8_t event = 0;
  uint64_t fetch_addr = 0;             // F_STE_FETCH / F_CD_FETCH: the (physical) address
  std::optional<WalkFault> s2_fault;  // nested: stage-2 fault translating a CD-table IPA (CLASS=CD)
};

template <typename T>
struct Fetched {
  std::optional<T> config;
  ConfigFault fault;
  bool ok() const { return config.has_value(); }
};

// SMMU_STRTAB_BASE / SMMU_STRTAB_BASE_CFG as latched.
struct StreamTable {
  uint64_t base = 0;
  uint32_t cfg = 0;
};

// Locates and decodes the STE of `sid` (§3.3.2: linear or 2-level stream table).
Fetched<SteConfig> FetchSte(PhysMemory& memory, const DecodeCaps& caps, const StreamTable& table, uint32_t sid);
// Validates raw STE words (exposed for tests and fuzzers); nullopt = C_BAD_STE.
std::optional<SteConfig> DecodeSte(const uint64_t (&w)[8], const DecodeCaps& caps);

// Locates and decodes the CD for `ssid` (0 when the transaction has none) of a stage-1 STE (§3.4:
// linear or 2-level CD table). With stage 2 enabled the CD table addresses are IPAs (§3.3.2).
Fetched<CdConfig> FetchCd(PhysMemory& memory, const DecodeCaps& caps, const SteConfig& ste, uint32_t ssid);
std::optional<CdConfig> DecodeCd(const uint64_t (&w)[8], const DecodeCaps& caps);

// The translation-stage event (§7.3.10-7.3.13, §7.3.12 F_WALK_EABT) for a walk fault.
uint8_t EventForWalkFault(const WalkFault& fault);

}  // namespace ionest::smmuv3
