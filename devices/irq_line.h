// An interrupt line from a device to an interrupt controller (IOAPIC pin, or KVM_IRQ_LINE).
//
// Thread safety: implementations must accept calls from any thread (vCPU threads, the event loop).
// Devices call SetLevel while holding their own lock so that level changes stay ordered; an
// implementation must therefore never call back into the device that drives it.
#pragma once

namespace ionest {

class IrqLine {
 public:
  virtual ~IrqLine() = default;
  // Level-triggered: drive the line high (asserted) or low.
  virtual void SetLevel(bool asserted) = 0;
  // Edge-triggered: one rising edge (assert then deassert).
  virtual void Pulse() {
    SetLevel(true);
    SetLevel(false);
  }
};

// A line connected to nothing (devices without an interrupt, tests).
class NullIrqLine final : public IrqLine {
 public:
  void SetLevel(bool) override {}
};

}  // namespace ionest
