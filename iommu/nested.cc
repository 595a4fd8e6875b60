#include "iommu/nested.h"

#include <algorithm>

#include "iommu/table_access.h"

namespace ionest {
namespace {

WalkResult AsTableFault(WalkResult r) {
  r.fault.stage = WalkStage::kSecondForFirstTable;
  return r;
}

// First-stage table accesses, each translated through the second stage.
class NestedTableAccess final : public TableAccess {
 public:
  NestedTableAccess(PhysMemory& memory, const SecondStageConfig& second) : memory_(memory), second_(second) {}

  bool ReadEntry(uint64_t gpa, int level, uint64_t input, uint64_t* value, WalkResult* fault) override {
    WalkResult t = WalkSecondStage(memory_, second_, gpa, kDmaRead);
    if (!t.ok) {
      *fault = AsTableFault(t);
      return false;
    }
    absl::StatusOr<uint64_t> v = memory_.ReadObj<uint64_t>(t.output);
    if (!v.ok()) {
      *fault = MakeFault(WalkFaultKind::kTableAccess, WalkStage::kSecondForFirstTable, level, gpa, 0, t.output);
      return false;
    }
    *value = *v;
    return true;
  }

  CasOutcome UpdateEntry(uint64_t gpa, int level, uint64_t input, uint64_t* expected, uint64_t desired,
                         WalkResult* fault) override {
    WalkResult t = WalkSecondStage(memory_, second_, gpa, kDmaWrite);
    if (!t.ok) {
      *fault = AsTableFault(t);
      return CasOutcome::kFault;
    }
    absl::StatusOr<bool> swapped = memory_.CompareExchange64(t.output, expected, desired);
    if (!swapped.ok()) {
      *fault = MakeFault(WalkFaultKind::kTableAccess, WalkStage::kSecondForFirstTable, level, gpa, *expected,
                         t.output);
      return CasOutcome::kFault;
    }
    return *swapped ? CasOutcome::kSwapped : CasOutcome::kChanged;
  }

 private:
  PhysMemory& memory_;
  const SecondStageConfig& second_;
};

}  // namespace

WalkResult WalkNested(PhysMemory& memory, const FirstStageConfig& first, const SecondStageConfig& second,
                      uint64_t iova, uint32_t access) {
  if (!IsValidSecondStageConfig(second))
    return MakeFault(WalkFaultKind::kInvalidConfig, WalkStage::kSecond, 0, iova);
  NestedTableAccess tables(memory, second);
  WalkResult f = WalkFirstStageVia(tables, first, iova, access);
  if (!f.ok) return f;
  WalkResult s = WalkSecondStage(memory, second, f.output, access & kDmaRwx);
  if (!s.ok) return s;  // stage kSecond, addr = the first stage's output GPA
  WalkResult r;
  r.ok = true;
  r.page_size = std::min(f.page_size, s.page_size);
  r.output = s.output;
  r.perms = f.perms & s.perms;
  r.user_perms = f.user_perms & s.perms;
  r.supervisor_perms = f.supervisor_perms & s.perms;
  return r;
}

}  // namespace ionest
