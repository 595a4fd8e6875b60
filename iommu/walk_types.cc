#include "iommu/walk_types.h"

#include <algorithm>

#include "absl/strings/str_format.h"

namespace ionest {

const char* WalkFaultKindName(WalkFaultKind kind) {
  switch (kind) {
    case WalkFaultKind::kNotPresent: return "not-present";
    case WalkFaultKind::kPermission: return "permission";
    case WalkFaultKind::kReservedBit: return "reserved-bit";
    case WalkFaultKind::kNonCanonical: return "non-canonical";
    case WalkFaultKind::kAddressWidth: return "address-width";
    case WalkFaultKind::kTableAccess: return "table-access";
    case WalkFaultKind::kRequestNotAllowed: return "request-not-allowed";
    case WalkFaultKind::kInvalidConfig: return "invalid-config";
    case WalkFaultKind::kAccessFlag: return "access-flag";
  }
  return "unknown";
}

const char* WalkStageName(WalkStage stage) {
  switch (stage) {
    case WalkStage::kFirst: return "first-stage";
    case WalkStage::kSecond: return "second-stage";
    case WalkStage::kSecondForFirstTable: return "second-stage(first-stage table)";
  }
  return "unknown";
}

std::string WalkFaultToString(const WalkFault& f) {
  return absl::StrFormat("%s fault in %s at level %d, addr %#x, entry %#x @ %#x", WalkFaultKindName(f.kind),
                         WalkStageName(f.stage), f.level, f.addr, f.entry, f.entry_addr);
}

WalkResult MakeFault(WalkFaultKind kind, WalkStage stage, int level, uint64_t addr, uint64_t entry,
                     uint64_t entry_addr) {
  WalkResult r;
  r.fault = WalkFault{kind, stage, level, entry, entry_addr, addr};
  return r;
}

WalkResult CombineNestedStages(const WalkResult& first, const WalkResult& second) {
  WalkResult r;
  r.ok = true;
  r.page_size = std::min(first.page_size, second.page_size);
  r.output = second.output;
  r.perms = first.perms & second.perms;
  r.user_perms = first.user_perms & second.perms;
  r.supervisor_perms = first.supervisor_perms & second.perms;
  return r;
}

DmaFaultKind ToDmaFaultKind(WalkFaultKind kind) {
  switch (kind) {
    case WalkFaultKind::kNotPresent: return DmaFaultKind::kNotPresent;
    case WalkFaultKind::kPermission: return DmaFaultKind::kPermission;
    case WalkFaultKind::kReservedBit: return DmaFaultKind::kInvalidEntry;
    case WalkFaultKind::kNonCanonical: return DmaFaultKind::kBadAddress;
    case WalkFaultKind::kAddressWidth: return DmaFaultKind::kBadAddress;
    case WalkFaultKind::kTableAccess: return DmaFaultKind::kInvalidEntry;
    case WalkFaultKind::kRequestNotAllowed: return DmaFaultKind::kBlocked;
    case WalkFaultKind::kInvalidConfig: return DmaFaultKind::kInvalidEntry;
    case WalkFaultKind::kAccessFlag: return DmaFaultKind::kNotPresent;
  }
  return DmaFaultKind::kInvalidEntry;
}

DmaFault ToDmaFault(const WalkFault& fault, uint64_t iova, uint32_t access, std::optional<uint32_t> pasid,
                    uint32_t reason) {
  DmaFault d;
  d.kind = ToDmaFaultKind(fault.kind);
  d.iova = iova;
  d.access = access;
  d.pasid = pasid;
  d.reason = reason;
  d.recorded = false;
  return d;
}

}  // namespace ionest
