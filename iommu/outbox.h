// Work an IOMMU model produces while it holds its lock and performs after releasing it: its own
// event MSIs (VT-d: never remapped, §5.1.6; SMMUv3: queue and GERROR interrupts) and callbacks
// into devices and listeners. Keeps device and CPU interrupt code from ever running under an
// IOMMU lock. Used by VtdIommu and Smmuv3Iommu.
#pragma once

#include <functional>
#include <vector>

#include "iommu/msi.h"

namespace ionest {

struct Outbox {
  std::vector<MsiMessage> msis;
  std::vector<std::function<void()>> calls;
  bool empty() const { return msis.empty() && calls.empty(); }
};

}  // namespace ionest
