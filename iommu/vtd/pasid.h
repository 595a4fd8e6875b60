// Scalable-mode PASID directory and PASID table entries (VT-d §9.5, §9.6).
// Pure decoding from guest memory; no state.
#pragma once

#include <array>
#include <cstdint>

#include "iommu/vtd/caps.h"
#include "iommu/vtd/decode_result.h"
#include "iommu/vtd/root_context.h"
#include "vmm/guest_memory.h"

namespace ionest::vtd {

// PASID-granular translation type, PASID entry PGTT (§9.6).
enum Pgtt : uint8_t { kPgttFirstStage = 1, kPgttSecondStage = 2, kPgttNested = 3, kPgttPassThrough = 4 };

struct PasidEntry {
  uint32_t pasid = 0;
  bool fpd = false;
  uint8_t aw = 0;     // second-stage AW (1..3)
  uint8_t pgtt = 0;
  bool ssade = false;  // second-stage A/D enable
  uint64_t slptptr = 0;
  uint16_t did = 0;
  bool sre = false;    // supervisor requests enable
  uint8_t flpm = 0;    // first-stage paging mode: 0 = 4-level, 1 = 5-level
  bool wpe = false;    // write-protect enable (supervisor writes honour R/W)
  bool eafe = false;   // extended accessed flag enable
  uint64_t flptptr = 0;
  std::array<uint64_t, 8> raw{};
};

// Reads directory and table entry for `pasid` of a scalable context entry.
Decoded<PasidEntry> ReadPasidEntry(const PhysMemory& memory, const VtdProfile& profile, const ContextEntry& ctx,
                                   uint32_t pasid);

}  // namespace ionest::vtd
