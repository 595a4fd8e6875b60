// Work produced while VtdIommu holds its lock and performed after releasing it: the IOMMU's own
// event MSIs (never remapped, §5.1.6) and callbacks into devices and listeners. Keeps device and
// CPU interrupt code from ever running under the IOMMU lock.
#pragma once

#include <functional>
#include <vector>

#include "iommu/msi.h"

namespace ionest::vtd {

struct Outbox {
  std::vector<MsiMessage> msis;
  std::vector<std::function<void()>> calls;
  bool empty() const { return msis.empty() && calls.empty(); }
};

}  // namespace ionest::vtd
