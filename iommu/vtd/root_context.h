// Root and context entries, legacy (VT-d §9.1, §9.3) and scalable mode (§9.2, §9.4).
// Pure decoding from guest memory; thread-compatible (no state).
#pragma once

#include <array>
#include <cstdint>

#include "iommu/vtd/caps.h"
#include "iommu/vtd/decode_result.h"
#include "iommu/vtd/fault_reasons.h"
#include "vmm/guest_memory.h"

namespace ionest::vtd {

// RTADDR_REG.TTM (§11.4.6).
enum class TranslationTableMode : uint8_t { kLegacy = 0, kScalable = 1, kReserved2 = 2, kReserved3 = 3 };
inline TranslationTableMode RtaddrMode(uint64_t rtaddr) { return static_cast<TranslationTableMode>((rtaddr >> 10) & 3); }
inline uint64_t RtaddrBase(uint64_t rtaddr) { return rtaddr & ~uint64_t{0xfff}; }

// Legacy context-entry translation types (§9.3).
enum LegacyTranslationType : uint8_t { kTtUntranslatedOnly = 0, kTtAllWithDeviceTlb = 1, kTtPassThrough = 2 };

// Decoded context entry for one requester (cached in the context cache).
struct ContextEntry {
  bool scalable = false;
  bool fpd = false;
  // Legacy mode.
  uint8_t tt = 0;
  uint8_t aw = 0;  // AW field: 1 = 3-level/39-bit, 2 = 4-level/48-bit, 3 = 5-level/57-bit
  uint64_t slptptr = 0;
  uint16_t did = 0;
  // Scalable mode.
  bool dte = false;
  bool pasid_enable = false;
  bool pre = false;
  uint8_t pdts = 0;
  uint64_t pasid_dir = 0;
  uint32_t rid_pasid = 0;
  bool rid_priv = false;
  std::array<uint64_t, 4> raw{};  // entry as read (legacy: 2 qwords)

  bool device_tlb() const { return scalable ? dte : tt == kTtAllWithDeviceTlb; }
  // Number of PASIDs covered by the PASID directory: 2^(PDTS+7) entries × 64.
  uint64_t pasid_limit() const { return uint64_t{1} << (pdts + 7 + 6); }
};

// Address width in bits / paging levels for an AW value (§9.3): 1→39/3, 2→48/4, 3→57/5; 0 if invalid.
uint32_t AwBits(uint8_t aw);
uint32_t AwLevels(uint8_t aw);
// AW supported by CAP.SAGAW of the profile?
bool AwSupported(const VtdProfile& profile, uint8_t aw);

// Reads the root and context entry for `rid` under `rtaddr` (RTADDR_REG value as latched by SRTP).
Decoded<ContextEntry> ReadContextEntry(const PhysMemory& memory, const VtdProfile& profile, uint64_t rtaddr,
                                       uint16_t rid);

}  // namespace ionest::vtd
