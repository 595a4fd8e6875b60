// VT-d names for the event trace (iommu/trace.h): Appendix A fault reasons and §6.5.2
// invalidation descriptor types as short tokens.
#pragma once

#include <cstdint>
#include <string_view>

namespace ionest::vtd {

// e.g. 0x05 "write-denied", 0x59 "sm-pasid-entry-not-present"; "unknown" otherwise.
std::string_view FaultReasonName(uint8_t reason);
// e.g. 1 "cc-inv", 9 "page-group-response"; "unknown" otherwise.
std::string_view DescriptorTypeName(uint8_t type);

}  // namespace ionest::vtd
