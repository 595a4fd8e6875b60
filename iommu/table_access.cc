#include "iommu/table_access.h"

namespace ionest {

bool DirectTableAccess::ReadEntry(uint64_t addr, int level, uint64_t input, uint64_t* value, WalkResult* fault) {
  absl::StatusOr<uint64_t> v = memory_.ReadObj<uint64_t>(addr);
  if (!v.ok()) {
    *fault = MakeFault(WalkFaultKind::kTableAccess, stage_, level, input, 0, addr);
    return false;
  }
  *value = *v;
  return true;
}

TableAccess::CasOutcome DirectTableAccess::UpdateEntry(uint64_t addr, int level, uint64_t input, uint64_t* expected,
                                                       uint64_t desired, WalkResult* fault) {
  absl::StatusOr<bool> swapped = memory_.CompareExchange64(addr, expected, desired);
  if (!swapped.ok()) {
    *fault = MakeFault(WalkFaultKind::kTableAccess, stage_, level, input, *expected, addr);
    return CasOutcome::kFault;
  }
  return *swapped ? CasOutcome::kSwapped : CasOutcome::kChanged;
}

bool TranslatedTableAccess::ReadEntry(uint64_t addr, int level, uint64_t input, uint64_t* value, WalkResult* fault) {
  WalkResult t = translate_(addr, kDmaRead);
  if (!t.ok) {
    *fault = t;
    fault->fault.stage = WalkStage::kSecondForFirstTable;
    return false;
  }
  absl::StatusOr<uint64_t> v = memory_.ReadObj<uint64_t>(t.output);
  if (!v.ok()) {
    *fault = MakeFault(WalkFaultKind::kTableAccess, WalkStage::kSecondForFirstTable, level, addr, 0, t.output);
    return false;
  }
  *value = *v;
  return true;
}

TableAccess::CasOutcome TranslatedTableAccess::UpdateEntry(uint64_t addr, int level, uint64_t input,
                                                           uint64_t* expected, uint64_t desired, WalkResult* fault) {
  WalkResult t = translate_(addr, kDmaWrite);
  if (!t.ok) {
    *fault = t;
    fault->fault.stage = WalkStage::kSecondForFirstTable;
    return CasOutcome::kFault;
  }
  absl::StatusOr<bool> swapped = memory_.CompareExchange64(t.output, expected, desired);
  if (!swapped.ok()) {
    *fault = MakeFault(WalkFaultKind::kTableAccess, WalkStage::kSecondForFirstTable, level, addr, *expected, t.output);
    return CasOutcome::kFault;
  }
  return *swapped ? CasOutcome::kSwapped : CasOutcome::kChanged;
}

}  // namespace ionest
