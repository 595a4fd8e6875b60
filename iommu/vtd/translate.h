// The DMA translation pipeline (VT-d §3, §6): context cache → PASID cache → bypass/abort → IOTLB →
// page walk. Returns a TranslateOutcome; recording faults is the caller's single epilogue.
// Not thread-safe by itself: VtdIommu calls it under its lock (the IOTLB is independently
// thread-safe).
#pragma once

#include <cstdint>
#include <optional>

#include "iommu/dma_space.h"
#include "iommu/iotlb.h"
#include "iommu/vtd/caps.h"
#include "iommu/vtd/context_cache.h"
#include "iommu/vtd/decode_result.h"
#include "iommu/walk_types.h"
#include "vmm/guest_memory.h"

namespace ionest::vtd {

enum class RequestKind : uint8_t {
  kUntranslated,         // ordinary DMA (AT=00b)
  kTranslationRequest,   // ATS translation request (AT=01b, PCIe §10.2.2)
};

struct TranslateRequest {
  uint16_t rid = 0;
  std::optional<uint32_t> pasid;
  uint64_t iova = 0;
  uint32_t access = 0;  // DmaAccess bits (R/W/X/Priv)
  RequestKind kind = RequestKind::kUntranslated;
};

struct TranslateOutcome {
  bool ok = false;
  uint64_t output = 0;     // translated address of iova
  uint64_t page_size = 0;  // the translation is valid for the aligned page of this size holding iova
  uint32_t perms = 0;      // DmaAccess rights for requests of this privilege
  bool device_tlb = false;  // context allows ATS (legacy TT=01b / scalable DTE=1)
  // When !ok:
  TableFault fault;
  DmaFaultKind dma_kind = DmaFaultKind::kBlocked;
};

// Hardware state the pipeline depends on (latched registers).
struct TranslationState {
  bool enabled = false;  // GSTS.TES
  uint64_t rtaddr = 0;   // root table pointer latched by SRTP (incl. TTM)
};

struct TranslationCaches {
  ContextCache& contexts;
  PasidCache& pasids;
  Iotlb& iotlb;
};

TranslateOutcome TranslateDma(PhysMemory& memory, const VtdProfile& profile, const TranslationState& state,
                              TranslationCaches& caches, const TranslateRequest& request);

// The same pipeline restricted to cached state: a result only if context (and PASID) entry are
// cached and the IOTLB hits (or the translation is a bypass); nullopt means "take the full path".
// Touches no cache except the IOTLB's LRU, so callers may run it under a shared lock.
std::optional<TranslateOutcome> TranslateCached(const TranslationState& state, const ContextCache& contexts,
                                                const PasidCache& pasids, Iotlb& iotlb, const TranslateRequest& request);

// Appendix A fault reason for a failed page walk in legacy or scalable mode.
uint8_t WalkFaultReason(const WalkFault& fault, bool scalable, uint32_t access);

// Looks up (or decodes and caches) the context entry for `rid`.
Decoded<ContextEntry> LookupContext(PhysMemory& memory, const VtdProfile& profile, const TranslationState& state,
                                    ContextCache& cache, uint16_t rid);

}  // namespace ionest::vtd
