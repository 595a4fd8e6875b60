// How a first-stage walker reads and atomically updates its table entries: directly in physical
// memory, or (nested, VT-d spec §3.8) through a second-stage translation of each table address.
// Internal to the walkers; not a stable interface.
#pragma once

#include <cstdint>

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

}  // namespace ionest
