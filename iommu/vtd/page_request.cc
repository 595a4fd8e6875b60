#include "iommu/vtd/page_request.h"

#include "iommu/vtd/events.h"

namespace ionest::vtd {

std::array<uint64_t, 4> EncodePageRequest(const PageRequestDescriptor& d) {
  std::array<uint64_t, 4> q{};
  q[0] = 0x1 | (uint64_t{d.pasid.has_value()} << 8) | (uint64_t{d.private_data.has_value()} << 9) |
         (uint64_t{d.rid} << 16) | (uint64_t{d.pasid.value_or(0) & 0xfffff} << 32) | (uint64_t{d.exec} << 52) |
         (uint64_t{d.priv} << 53);
  q[1] = uint64_t{d.read} | (uint64_t{d.write} << 1) | (uint64_t{d.last} << 2) |
         (uint64_t{d.group_index & 0x1ffu} << 3) | (d.addr & ~uint64_t{0xfff});
  if (d.private_data) {
    q[2] = (*d.private_data)[0];
    q[3] = (*d.private_data)[1];
  }
  return q;
}

PageRequestDescriptor DecodePageRequest(const std::array<uint64_t, 4>& q) {
  PageRequestDescriptor d;
  d.rid = (q[0] >> 16) & 0xffff;
  if (q[0] & (1u << 8)) d.pasid = (q[0] >> 32) & 0xfffff;
  d.exec = q[0] & (1ull << 52);
  d.priv = q[0] & (1ull << 53);
  d.read = q[1] & 1;
  d.write = q[1] & 2;
  d.last = q[1] & 4;
  d.group_index = (q[1] >> 3) & 0x1ff;
  d.addr = q[1] & ~uint64_t{0xfff};
  if (q[0] & (1u << 9)) d.private_data = std::array<uint64_t, 2>{q[2], q[3]};
  return d;
}

PageRequestOutcome PageRequestQueue::Enqueue(PhysMemory& memory, const PageRequestDescriptor& d, Outbox& out) {
  const uint64_t size = QueueBytes();
  const uint64_t head = regs_.Get(kPqhReg) & 0x7ffe0;
  const uint64_t tail = regs_.Get(kPqtReg) & 0x7ffe0;
  // §7.5.1: while PRO is set, or when the queue is full, requests are not queued.
  bool full = head >= size || tail >= size || (tail + 32) % size == head;
  if ((regs_.Get(kPrsReg) & kPrsPro) || full) {
    if (!(regs_.Get(kPrsReg) & kPrsPro)) {
      regs_.SetBits(kPrsReg, kPrsPro);
      RaiseEvent(regs_, kPageRequestEvent, out);
    }
    ++overflows_;
    return PageRequestOutcome::kOverflow;
  }
  std::array<uint64_t, 4> q = EncodePageRequest(d);
  const uint64_t base = regs_.Get(kPqaReg) & ~uint64_t{0xfff};
  if (!memory.Write(base + tail, q.data(), sizeof(q)).ok()) return PageRequestOutcome::kWriteFailed;
  regs_.Set(kPqtReg, (tail + 32) % size);
  ++queued_;
  // §11.4.12.4: PPR set by hardware; the event fires when it goes from clear to set.
  if (!(regs_.Get(kPrsReg) & kPrsPpr)) {
    regs_.SetBits(kPrsReg, kPrsPpr);
    RaiseEvent(regs_, kPageRequestEvent, out);
  }
  return PageRequestOutcome::kQueued;
}

void PageRequestQueue::OnStatusWrite() {
  if (!(regs_.Get(kPrsReg) & (kPrsPpr | kPrsPro))) ClearPendingEvent(regs_, kPageRequestEvent);
}

}  // namespace ionest::vtd
