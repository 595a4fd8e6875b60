#include "iommu/nested.h"

#include "iommu/table_access.h"

namespace ionest {

WalkResult WalkNested(PhysMemory& memory, const FirstStageConfig& first, const SecondStageConfig& second,
                      uint64_t iova, uint32_t access) {
  if (!IsValidSecondStageConfig(second))
    return MakeFault(WalkFaultKind::kInvalidConfig, WalkStage::kSecond, 0, iova);
  // First-stage table accesses, each translated through the second stage (§3.8).
  auto translate = [&](uint64_t gpa, uint32_t table_access) {
    return WalkSecondStage(memory, second, gpa, table_access);
  };
  TranslatedTableAccess tables(memory, translate);
  WalkResult f = WalkFirstStageVia(tables, first, iova, access);
  if (!f.ok) return f;
  WalkResult s = WalkSecondStage(memory, second, f.output, access & kDmaRwx);
  if (!s.ok) return s;  // stage kSecond, addr = the first stage's output GPA
  return CombineNestedStages(f, s);
}

}  // namespace ionest
