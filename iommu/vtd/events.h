// Event interrupt blocks xECTL/xEDATA/xEADDR/xEUADDR (fault event §11.4.7.2-5, invalidation event
// §11.4.9.8-11, page request event §11.4.12.5-8): IM masks, IP latches a masked event.
// Called under VtdIommu's lock.
#pragma once

#include <cstdint>

#include "iommu/outbox.h"
#include "iommu/vtd/registers.h"

namespace ionest::vtd {

struct EventBlock {
  uint32_t ectl;  // control register offset; data/addr/uaddr follow at +4/+8/+12
};
inline constexpr EventBlock kFaultEvent{kFectlReg};
inline constexpr EventBlock kInvalidationEvent{kIectlReg};
inline constexpr EventBlock kPageRequestEvent{kPectlReg};

// An interrupt condition occurred: deliver (IM=0) or set IP (IM=1).
void RaiseEvent(RegisterFile& regs, EventBlock block, Outbox& out);
// After software wrote xECTL: if IM went clear with IP set, deliver the pending interrupt.
void OnEventControlWrite(RegisterFile& regs, EventBlock block, Outbox& out);
// Software serviced every condition: a pending (masked) interrupt is dropped.
void ClearPendingEvent(RegisterFile& regs, EventBlock block);

}  // namespace ionest::vtd
