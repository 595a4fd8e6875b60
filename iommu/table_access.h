// How a first-stage walker reads and atomically updates its table entries: directly in physical
// memory, or (nested, VT-d spec §3.8) through a second-stage translation of each table address.
// Internal to the walkers; not a stable interface.
#pragma once

#include <cstdint>

#include "absl/functional/function_ref.h"

#include "iommu/walk_types.h"
#include "vmm/guest_memory.h"

namespace ionest {

class TableAccess {
 public:
  enum class CasOutcome { kSwapped, kChanged, kFault };
  virtual ~TableAccess() = default;
  // Reads the 8-byte entry at `addr` for a walk of `input` at `level`. On failure returns false
  // and fills *fault.
  virtual bool ReadEntry(uint64_t addr, int level, uint64_t input, uint64_t* value, WalkResult* fault) = 0;
  // Atomically replaces *expected with `desired` at `addr`. kChanged: memory held another value
  // (now in *expected).
  virtual CasOutcome UpdateEntry(uint64_t addr, int level, uint64_t input, uint64_t* expected, uint64_t desired,
                                 WalkResult* fault) = 0;
};

// Tables in `memory` itself. Faults are reported as `stage`.
class DirectTableAccess final : public TableAccess {
 public:
  DirectTableAccess(PhysMemory& memory, WalkStage stage) : memory_(memory), stage_(stage) {}
  bool ReadEntry(uint64_t addr, int level, uint64_t input, uint64_t* value, WalkResult* fault) override;
  CasOutcome UpdateEntry(uint64_t addr, int level, uint64_t input, uint64_t* expected, uint64_t desired,
                         WalkResult* fault) override;

 private:
  PhysMemory& memory_;
  WalkStage stage_;
};

// Tables at addresses that are first translated by `translate(addr, access)` (nested walks: a
// stage-2 / second-stage walk of each first-stage table address). Reads need kDmaRead, updates
// kDmaWrite; a translation fault is reported with stage kSecondForFirstTable, a translated
// address outside `memory` as kTableAccess of that stage.
class TranslatedTableAccess final : public TableAccess {
 public:
  TranslatedTableAccess(PhysMemory& memory, absl::FunctionRef<WalkResult(uint64_t addr, uint32_t access)> translate)
      : memory_(memory), translate_(translate) {}
  bool ReadEntry(uint64_t addr, int level, uint64_t input, uint64_t* value, WalkResult* fault) override;
  CasOutcome UpdateEntry(uint64_t addr, int level, uint64_t input, uint64_t* expected, uint64_t desired,
                         WalkResult* fault) override;

 private:
  PhysMemory& memory_;
  absl::FunctionRef<WalkResult(uint64_t, uint32_t)> translate_;
};

}  // namespace ionest
