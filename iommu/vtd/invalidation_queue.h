// Queued invalidation interface (VT-d §6.5.2): IQA (base, QS, DW), IQH/IQT, descriptor fetch and
// validation, IQE reporting with IQERCD.IQEI. Descriptor effects are delegated to a handler.
// Processing is bounded: at most one queue's worth of descriptors per call (the guest cannot make
// the VMM loop). Not thread-safe: VtdIommu calls it under its lock.
#pragma once

#include <cstdint>

#include "iommu/vtd/descriptors.h"
#include "iommu/vtd/faults.h"
#include "iommu/outbox.h"
#include "iommu/vtd/registers.h"
#include "vmm/guest_memory.h"

namespace ionest::vtd {

class InvalidationHandler {
 public:
  virtual ~InvalidationHandler() = default;
  // Performs a validated descriptor. Returns kIqeiNone or an error code (reported as IQE).
  virtual IqeiCode Execute(const InvDescriptor& d, Outbox& out) = 0;
  // Called before a wait descriptor and when the queue has drained: everything executed so far
  // must have taken effect (device-TLB invalidations delivered, invalidations forwarded to a host
  // IOMMU) before a wait's status write / interrupt. Returns kIqeiNone, or an error code after the
  // handler moved IQH back to the descriptor that could not take effect (reported as IQE there,
  // §6.5.2.10, where Linux's qi_check_fault looks for it).
  virtual IqeiCode Flush(Outbox& out) { return kIqeiNone; }
};

class InvalidationQueue {
 public:
  InvalidationQueue(RegisterFile& regs, FaultRecorder& faults, bool scalable, uint32_t mamv)
      : regs_(regs), faults_(faults), scalable_(scalable), mamv_(mamv) {}

  // GCMD.QIE transitions (§10.4.4 / §6.5.2): IQH is reset when QI is enabled or disabled.
  void SetEnabled(bool enabled);
  bool enabled() const { return enabled_; }
  // Processes descriptors from IQH up to IQT (doorbell, or IQE cleared). Returns the number run.
  uint32_t Process(PhysMemory& memory, InvalidationHandler& handler, Outbox& out);

  uint32_t QueueBytes() const;       // 4 KiB << QS
  uint32_t DescriptorBytes() const;  // 16 or 32

  uint64_t processed() const { return processed_; }
  // IQH offset of the descriptor being executed (valid inside InvalidationHandler::Execute).
  uint64_t current_head() const { return current_head_; }

 private:
  void Error(IqeiCode code, Outbox& out);
  RegisterFile& regs_;
  FaultRecorder& faults_;
  const bool scalable_;
  const uint32_t mamv_;
  bool enabled_ = false;
  uint64_t processed_ = 0;
  uint64_t current_head_ = 0;
};

}  // namespace ionest::vtd
