// Interrupt remapping (VT-d §5.1, IRTE format §9.10): decodes remappable-format MSIs through the
// interrupt remapping table, validates the source-id, and produces the remapped MSI for the CPU.
// Not thread-safe: VtdIommu uses it under its lock.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>

#include "absl/container/flat_hash_map.h"
#include "iommu/msi.h"
#include "iommu/vtd/decode_result.h"
#include "vmm/guest_memory.h"

namespace ionest::vtd {

// IRTA_REG (§11.4.8.1) as latched by SIRTP.
struct IrtConfig {
  uint64_t base = 0;
  uint32_t entries = 0;  // 2^(S+1)
  bool eime = false;     // x2APIC (32-bit destination ids)
  static IrtConfig FromIrta(uint64_t irta) {
    return {irta & ~uint64_t{0xfff}, 2u << (irta & 0xf), static_cast<bool>(irta & (1u << 11))};
  }
};

// Decoded remappable-format IRTE (§9.10, IM=0).
struct Irte {
  bool fpd = false;
  bool dest_mode_logical = false;  // DM
  bool redirection_hint = false;   // RH
  bool level_trigger = false;      // TM
  uint8_t delivery_mode = 0;       // DLM
  uint8_t vector = 0;
  uint32_t dest = 0;               // x2APIC: 32 bits; xAPIC: 8 bits
  uint16_t sid = 0;
  uint8_t sq = 0;
  uint8_t svt = 0;
};

// Decodes a 128-bit IRTE; fault reasons 22h (not present), 24h (reserved fields).
Decoded<Irte> DecodeIrte(uint64_t lo, uint64_t hi, bool eime);
// SID/SQ/SVT source validation (§9.10 Table "Source validation"). True if `requester` may use it.
bool SourceIdAllowed(const Irte& irte, uint16_t requester);
// The MSI the remapped interrupt is delivered as (x2APIC destination bits 31:8 in address[63:40]).
MsiMessage RemappedMessage(const Irte& irte, uint16_t requester);

// Is `msi` an interrupt request in the remappable format (§5.1.2.2 address bit 4)?
inline bool IsRemappableFormat(const MsiMessage& msi) { return msi.address & (1u << 4); }
// Interrupt index of a remappable request (handle + subhandle if SHV), §5.1.2.2.
uint32_t InterruptIndex(const MsiMessage& msi);

struct RemapResult {
  std::optional<MsiMessage> message;  // deliver this (nullopt: blocked)
  TableFault fault;                   // when blocked
  uint32_t index = 0;
};

class InterruptRemapper {
 public:
  explicit InterruptRemapper(size_t cache_capacity) : capacity_(cache_capacity) {}
  // Remaps one MSI with IR enabled. `compat_allowed` = GSTS.CFIS.
  RemapResult Remap(const PhysMemory& memory, const IrtConfig& irt, bool compat_allowed, const MsiMessage& msi);
  // Interrupt entry cache invalidation (§6.5.2.7): global, or 2^im entries from `index`.
  void InvalidateAll() { cache_.clear(); }
  void InvalidateIndex(uint32_t index, uint8_t im);
  size_t cache_size() const { return cache_.size(); }

 private:
  size_t capacity_;
  absl::flat_hash_map<uint32_t, Irte> cache_;  // valid entries only
};

}  // namespace ionest::vtd
