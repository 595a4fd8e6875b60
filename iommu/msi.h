// Message-signalled interrupts on their way to the CPUs.
//
// Devices (and the IOAPIC) hand MSI writes to an MsiSink. Without an IOMMU the sink is the KVM
// delivery (KVM_SIGNAL_MSI); with VT-d interrupt remapping the IOMMU's remapper sits in between.
// Thread safety: SendMsi may be called concurrently from any thread.
#pragma once

#include <cstdint>

#include "absl/status/status.h"

namespace ionest {

struct MsiMessage {
  uint64_t address = 0;  // 0xFEEx_xxxx in the interrupt address range (Intel SDM vol. 3 §11.11)
  uint32_t data = 0;
  uint16_t requester_id = 0;  // bus<<8 | devfn of the source (IOAPIC: its DMAR scope source-id)
};

class MsiSink {
 public:
  virtual ~MsiSink() = default;
  // Deliver or drop (with a recorded fault, if remapping blocked it). Host failures return an error.
  virtual absl::Status SendMsi(const MsiMessage& msi) = 0;
};

}  // namespace ionest
