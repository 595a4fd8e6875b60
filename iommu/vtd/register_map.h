// The VT-d register map of a profile (VT-d §11.4): every register with reset value and RW / RW1C
// masks. Offsets not listed read 0 and ignore writes.
#pragma once

#include <vector>

#include "iommu/vtd/caps.h"
#include "iommu/vtd/registers.h"

namespace ionest::vtd {

std::vector<RegisterDef> VtdRegisterDefs(const VtdProfile& profile, uint32_t version);

}  // namespace ionest::vtd
