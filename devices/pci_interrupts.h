// Shared types for PCI message-signalled interrupts (MSI and MSI-X).
#pragma once

#include <cstdint>

#include "iommu/msi.h"

namespace ionest {

enum class PciIrqResult {
  kSent,         // handed to the MsiSink
  kPending,      // masked: pending bit set, delivered on unmask
  kDisabled,     // neither MSI-X nor MSI enabled, or bus mastering disabled: dropped
  kBadVector,    // vector beyond what the guest enabled: dropped
  kSinkError,    // the MsiSink returned a host error
};

// Where a function's MSIs go: set when the device is attached to a host bridge.
struct PciMsiRoute {
  MsiSink* sink = nullptr;
  uint16_t requester_id = 0;
};

}  // namespace ionest
