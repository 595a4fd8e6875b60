#include "iommu/vtd/invalidation_queue.h"

namespace ionest::vtd {

uint32_t InvalidationQueue::QueueBytes() const { return 4096u << (regs_.Get(kIqaReg) & 7); }

uint32_t InvalidationQueue::DescriptorBytes() const {
  return (scalable_ && (regs_.Get(kIqaReg) & (1u << 11))) ? 32 : 16;  // IQA.DW (§11.4.9.3)
}

void InvalidationQueue::SetEnabled(bool enabled) {
  enabled_ = enabled;
  regs_.Set(kIqhReg, 0);
}

void InvalidationQueue::Error(IqeiCode code, Outbox& out) {
  // §11.4.9.9: IQEI latched with IQE; IQH keeps pointing at the offending descriptor.
  regs_.Set(kIqercdReg, (regs_.Get(kIqercdReg) & ~uint64_t{0xf}) | code);
  faults_.SetQueueError(kFstsIqe, out);
}

uint32_t InvalidationQueue::Process(PhysMemory& memory, InvalidationHandler& handler, Outbox& out) {
  uint32_t count = 0;
  // At most one queue's worth of descriptors per doorbell.
  const uint32_t limit = QueueBytes() / 16 + 1;
  for (uint32_t iteration = 0; iteration < limit; ++iteration) {
    if (!enabled_ || (regs_.Get(kFstsReg) & kFstsIqe)) break;
    const uint32_t qbytes = QueueBytes();
    const uint32_t dbytes = DescriptorBytes();
    const uint64_t base = regs_.Get(kIqaReg) & ~uint64_t{0xfff};
    const uint64_t head = regs_.Get(kIqhReg) & 0x7fff0;
    const uint64_t tail = regs_.Get(kIqtReg) & 0x7fff0;
    if (tail >= qbytes || (tail % dbytes)) {  // §6.5.2.10: invalid tail pointer
      Error(kIqeiTailPointer, out);
      break;
    }
    if (head == tail) break;
    if (head >= qbytes || (head % dbytes)) {  // IQA changed under an enabled queue: restart at 0
      regs_.Set(kIqhReg, 0);
      continue;
    }
    InvDescriptor d;
    d.wide = dbytes == 32;
    if (!memory.Read(base + head, d.qw.data(), dbytes).ok()) {
      Error(kIqeiFetch, out);
      break;
    }
    if (IqeiCode c = ValidateDescriptor(d, mamv_, scalable_); c != kIqeiNone) {
      Error(c, out);
      break;
    }
    if (d.type() == kDescWait) {
      if (IqeiCode c = handler.Flush(out); c != kIqeiNone) {
        Error(c, out);
        break;
      }
    }
    // Flush may have let other threads run: the queue must still be where we left it.
    if (!enabled_ || (regs_.Get(kFstsReg) & kFstsIqe) || (regs_.Get(kIqhReg) & 0x7fff0) != head) continue;
    current_head_ = head;
    if (IqeiCode c = handler.Execute(d, out); c != kIqeiNone) {
      Error(c, out);
      break;
    }
    regs_.Set(kIqhReg, (head + dbytes) % qbytes);
    ++count;
    ++processed_;
  }
  // Descriptors without a trailing wait take effect too (the guest may poll IQH instead).
  if (count > 0 && enabled_ && !(regs_.Get(kFstsReg) & kFstsIqe)) {
    if (IqeiCode c = handler.Flush(out); c != kIqeiNone) Error(c, out);
  }
  return count;
}

}  // namespace ionest::vtd
