// Nested translation (VT-d spec §3.8): a first-stage walk whose table addresses (root, every
// table pointer) and final output are guest-physical and translated through the second stage.
//
// Table reads need second-stage read rights, first-stage A/D updates need second-stage write
// rights (§3.8: they are writes to the first-stage tables). Rights of the result are the
// intersection of both stages; the page size is the smaller of the two. Faults carry the stage
// that failed: kFirst, kSecondForFirstTable (fault.addr = GPA of the first-stage entry) or
// kSecond (fault.addr = GPA produced by the first stage).
// Thread safety: may be called concurrently from any thread.
#pragma once

#include <cstdint>

#include "iommu/first_stage.h"
#include "iommu/second_stage.h"

namespace ionest {

WalkResult WalkNested(PhysMemory& memory, const FirstStageConfig& first, const SecondStageConfig& second,
                      uint64_t iova, uint32_t access);

}  // namespace ionest
