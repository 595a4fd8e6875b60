// 16550A UART (PC COM1: I/O 0x3F8-0x3FF, IRQ 4).
//
// Registers per the TI/NS PC16550D data sheet: RBR/THR, IER, IIR/FCR, LCR, MCR, LSR, MSR, SCR, DLL/DLM
// (when LCR.DLAB=1). Transmission is instantaneous: every THR write goes to the output callback (or,
// in loopback mode, back into the receiver). Receive data comes from PushInput into a bounded buffer
// of which the first 16 bytes form the RX FIFO (1 byte when FCR.FIFOE=0).
//
// Thread safety: IoRead/IoWrite may be called concurrently from vCPU threads; PushInput from any
// thread (e.g. the event loop reading stdin). The output callback and IrqLine::SetLevel are called
// with the UART's lock held: they must not call back into the UART.
#pragma once

#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/types/span.h"
#include "devices/io_bus.h"
#include "devices/irq_line.h"

namespace ionest {

inline constexpr uint16_t kCom1Base = 0x3F8;
inline constexpr uint16_t kCom1Irq = 4;
inline constexpr uint64_t kUartRegisterSpan = 8;

class Uart16550 final : public IoDevice {
 public:
  using OutputFn = std::function<void(uint8_t)>;
  // Bytes PushInput can hold before the guest reads them; excess input is dropped.
  static constexpr size_t kInputCapacity = 4096;
  static constexpr size_t kFifoDepth = 16;

  Uart16550(IrqLine& irq, OutputFn output);

  void IoRead(uint64_t offset, uint8_t* data, size_t size) override ABSL_LOCKS_EXCLUDED(mu_);
  void IoWrite(uint64_t offset, const uint8_t* data, size_t size) override ABSL_LOCKS_EXCLUDED(mu_);

  // Queue host input for the guest. Returns the number of bytes accepted (the rest did not fit).
  size_t PushInput(absl::Span<const uint8_t> bytes) ABSL_LOCKS_EXCLUDED(mu_);
  // Bytes queued but not yet read by the guest.
  size_t PendingInput() const ABSL_LOCKS_EXCLUDED(mu_);

 private:
  uint8_t ReadReg(unsigned reg) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void WriteReg(unsigned reg, uint8_t value) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void Transmit(uint8_t byte) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void Receive(uint8_t byte) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  bool RxDataAvailable() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return !rx_.empty(); }
  uint8_t ComputeIir() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  uint8_t ComputeMsr() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void UpdateIrq() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  IrqLine& irq_;
  const OutputFn output_;
  mutable absl::Mutex mu_;
  std::deque<uint8_t> rx_ ABSL_GUARDED_BY(mu_);  // receive buffer (front = RBR)
  uint8_t ier_ ABSL_GUARDED_BY(mu_) = 0;
  uint8_t fcr_ ABSL_GUARDED_BY(mu_) = 0;  // only FIFOE and trigger bits are kept
  uint8_t lcr_ ABSL_GUARDED_BY(mu_) = 0;
  uint8_t mcr_ ABSL_GUARDED_BY(mu_) = 0;
  uint8_t scr_ ABSL_GUARDED_BY(mu_) = 0;
  uint8_t dll_ ABSL_GUARDED_BY(mu_) = 0x0C;  // 9600 baud at 1.8432 MHz
  uint8_t dlm_ ABSL_GUARDED_BY(mu_) = 0;
  bool overrun_ ABSL_GUARDED_BY(mu_) = false;      // LSR.OE, cleared on LSR read
  bool thr_ipending_ ABSL_GUARDED_BY(mu_) = false; // THRE interrupt pending (cleared by IIR read / THR write)
  uint8_t msr_delta_ ABSL_GUARDED_BY(mu_) = 0;     // MSR bits 3:0 (delta bits), cleared on MSR read
  bool irq_level_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace ionest
