#include "iommu/vtd/events.h"

namespace ionest::vtd {

static MsiMessage EventMessage(const RegisterFile& regs, EventBlock block) {
  MsiMessage m;
  m.data = static_cast<uint32_t>(regs.Get(block.ectl + 4));
  m.address = (regs.Get(block.ectl + 12) << 32) | regs.Get(block.ectl + 8);
  m.requester_id = 0;  // the IOMMU itself; its MSIs bypass interrupt remapping (§5.1.6)
  return m;
}

void RaiseEvent(RegisterFile& regs, EventBlock block, Outbox& out) {
  if (regs.Get(block.ectl) & kEctlIm) {
    regs.SetBits(block.ectl, kEctlIp);
    return;
  }
  out.msis.push_back(EventMessage(regs, block));
  regs.ClearBits(block.ectl, kEctlIp);
}

void OnEventControlWrite(RegisterFile& regs, EventBlock block, Outbox& out) {
  uint64_t ctl = regs.Get(block.ectl);
  if (!(ctl & kEctlIm) && (ctl & kEctlIp)) {
    out.msis.push_back(EventMessage(regs, block));
    regs.ClearBits(block.ectl, kEctlIp);
  }
}

void ClearPendingEvent(RegisterFile& regs, EventBlock block) { regs.ClearBits(block.ectl, kEctlIp); }

}  // namespace ionest::vtd
