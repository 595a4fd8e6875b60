#include "devices/uart16550.h"

#include <algorithm>

namespace ionest {
namespace {

// Register offsets (PC16550D data sheet, Table II).
enum : unsigned { kRbrThr = 0, kIer = 1, kIirFcr = 2, kLcr = 3, kMcr = 4, kLsr = 5, kMsr = 6, kScr = 7 };

constexpr uint8_t kIerRxData = 1u << 0;     // ERBFI
constexpr uint8_t kIerThre = 1u << 1;       // ETBEI
constexpr uint8_t kIerLineStatus = 1u << 2; // ELSI
constexpr uint8_t kIerModemStatus = 1u << 3;// EDSSI
constexpr uint8_t kIerWritable = 0x0F;

constexpr uint8_t kIirNoInterrupt = 0x01;
constexpr uint8_t kIirLineStatus = 0x06;
constexpr uint8_t kIirRxData = 0x04;
constexpr uint8_t kIirThre = 0x02;
constexpr uint8_t kIirModemStatus = 0x00;
constexpr uint8_t kIirFifosEnabled = 0xC0;

constexpr uint8_t kFcrEnable = 1u << 0;
constexpr uint8_t kFcrClearRx = 1u << 1;
constexpr uint8_t kFcrClearTx = 1u << 2;
constexpr uint8_t kFcrTriggerMask = 0xC0;

constexpr uint8_t kLcrDlab = 1u << 7;

constexpr uint8_t kMcrDtr = 1u << 0, kMcrRts = 1u << 1, kMcrOut1 = 1u << 2, kMcrOut2 = 1u << 3, kMcrLoop = 1u << 4;
constexpr uint8_t kMcrWritable = 0x1F;

constexpr uint8_t kLsrDataReady = 1u << 0, kLsrOverrun = 1u << 1, kLsrThre = 1u << 5, kLsrTemt = 1u << 6;

constexpr uint8_t kMsrCts = 1u << 4, kMsrDsr = 1u << 5, kMsrRi = 1u << 6, kMsrDcd = 1u << 7;
constexpr uint8_t kMsrDeltaCts = 1u << 0, kMsrDeltaDsr = 1u << 1, kMsrTrailingRi = 1u << 2, kMsrDeltaDcd = 1u << 3;

// Modem inputs: outside loopback the (virtual) cable reports CTS, DSR and DCD asserted.
uint8_t ModemInputs(uint8_t mcr) {
  if (!(mcr & kMcrLoop)) return kMsrCts | kMsrDsr | kMsrDcd;
  uint8_t v = 0;  // loopback wiring (data sheet §8.6): RTS→CTS, DTR→DSR, OUT1→RI, OUT2→DCD
  if (mcr & kMcrRts) v |= kMsrCts;
  if (mcr & kMcrDtr) v |= kMsrDsr;
  if (mcr & kMcrOut1) v |= kMsrRi;
  if (mcr & kMcrOut2) v |= kMsrDcd;
  return v;
}

}  // namespace

Uart16550::Uart16550(IrqLine& irq, OutputFn output) : irq_(irq), output_(std::move(output)) {}

void Uart16550::IoRead(uint64_t offset, uint8_t* data, size_t size) {
  absl::MutexLock l(&mu_);
  for (size_t i = 0; i < size; ++i) {
    if (offset + i >= kUartRegisterSpan) break;  // bus pre-filled 0xff
    data[i] = ReadReg(static_cast<unsigned>(offset + i));
  }
  UpdateIrq();
}

void Uart16550::IoWrite(uint64_t offset, const uint8_t* data, size_t size) {
  absl::MutexLock l(&mu_);
  for (size_t i = 0; i < size; ++i) {
    if (offset + i >= kUartRegisterSpan) break;
    WriteReg(static_cast<unsigned>(offset + i), data[i]);
  }
  UpdateIrq();
}

size_t Uart16550::PushInput(absl::Span<const uint8_t> bytes) {
  absl::MutexLock l(&mu_);
  const size_t n = std::min(bytes.size(), kInputCapacity - rx_.size());
  rx_.insert(rx_.end(), bytes.begin(), bytes.begin() + n);
  UpdateIrq();
  return n;
}

size_t Uart16550::PendingInput() const {
  absl::MutexLock l(&mu_);
  return rx_.size();
}

uint8_t Uart16550::ReadReg(unsigned reg) {
  const bool dlab = lcr_ & kLcrDlab;
  switch (reg) {
    case kRbrThr: {
      if (dlab) return dll_;
      if (rx_.empty()) return 0;
      const uint8_t b = rx_.front();
      rx_.pop_front();
      return b;
    }
    case kIer:
      return dlab ? dlm_ : ier_;
    case kIirFcr: {
      const uint8_t iir = ComputeIir();
      if ((iir & 0x0F) == kIirThre) thr_ipending_ = false;  // reading IIR clears a THRE interrupt
      return iir;
    }
    case kLcr:
      return lcr_;
    case kMcr:
      return mcr_;
    case kLsr: {
      uint8_t lsr = kLsrThre | kLsrTemt;  // transmission is instantaneous
      if (RxDataAvailable()) lsr |= kLsrDataReady;
      if (overrun_) lsr |= kLsrOverrun;
      overrun_ = false;  // error bits clear on LSR read
      return lsr;
    }
    case kMsr: {
      const uint8_t msr = ComputeMsr();
      msr_delta_ = 0;
      return msr;
    }
    case kScr:
      return scr_;
  }
  return 0xff;
}

void Uart16550::WriteReg(unsigned reg, uint8_t value) {
  const bool dlab = lcr_ & kLcrDlab;
  switch (reg) {
    case kRbrThr:
      if (dlab) {
        dll_ = value;
      } else {
        Transmit(value);
      }
      return;
    case kIer:
      if (dlab) {
        dlm_ = value;
        return;
      }
      // Enabling ETBEI while THR is empty raises a THRE interrupt (it always is empty here).
      if ((value & kIerThre) && !(ier_ & kIerThre)) thr_ipending_ = true;
      ier_ = value & kIerWritable;
      return;
    case kIirFcr: {
      const uint8_t old = fcr_;
      // Changing FIFOE clears both FIFOs; CLEAR bits are self-clearing (data sheet, FCR).
      if (((value ^ old) & kFcrEnable) || (value & kFcrClearRx)) {
        const size_t n = std::min(rx_.size(), (old & kFcrEnable) ? kFifoDepth : size_t{1});
        rx_.erase(rx_.begin(), rx_.begin() + static_cast<std::ptrdiff_t>(n));
      }
      (void)kFcrClearTx;  // the TX FIFO is always empty
      fcr_ = value & (kFcrEnable | kFcrTriggerMask);
      return;
    }
    case kLcr:
      lcr_ = value;
      return;
    case kMcr: {
      const uint8_t before = ModemInputs(mcr_);
      mcr_ = value & kMcrWritable;
      const uint8_t after = ModemInputs(mcr_);
      const uint8_t changed = before ^ after;
      if (changed & kMsrCts) msr_delta_ |= kMsrDeltaCts;
      if (changed & kMsrDsr) msr_delta_ |= kMsrDeltaDsr;
      if ((before & kMsrRi) && !(after & kMsrRi)) msr_delta_ |= kMsrTrailingRi;
      if (changed & kMsrDcd) msr_delta_ |= kMsrDeltaDcd;
      return;
    }
    case kLsr:
    case kMsr:
      return;  // read-only (factory test writes ignored)
    case kScr:
      scr_ = value;
      return;
  }
}

void Uart16550::Transmit(uint8_t byte) {
  if (mcr_ & kMcrLoop) {
    Receive(byte);
  } else if (output_) {
    output_(byte);
  }
  thr_ipending_ = true;  // THR empties immediately
}

void Uart16550::Receive(uint8_t byte) {
  const size_t cap = (fcr_ & kFcrEnable) ? kFifoDepth : 1;
  if (rx_.size() >= cap) {
    overrun_ = true;  // loopback data into a full FIFO is lost
    return;
  }
  rx_.push_back(byte);
}

uint8_t Uart16550::ComputeMsr() const { return ModemInputs(mcr_) | msr_delta_; }

uint8_t Uart16550::ComputeIir() const {
  const uint8_t fifo_bits = (fcr_ & kFcrEnable) ? kIirFifosEnabled : 0;
  // Priority order per data sheet Table IV.
  if ((ier_ & kIerLineStatus) && overrun_) return fifo_bits | kIirLineStatus;
  if ((ier_ & kIerRxData) && RxDataAvailable()) return fifo_bits | kIirRxData;
  if ((ier_ & kIerThre) && thr_ipending_) return fifo_bits | kIirThre;
  if ((ier_ & kIerModemStatus) && msr_delta_) return fifo_bits | kIirModemStatus;
  return fifo_bits | kIirNoInterrupt;
}

void Uart16550::UpdateIrq() {
  const bool level = !(ComputeIir() & kIirNoInterrupt);
  if (level == irq_level_) return;
  irq_level_ = level;
  irq_.SetLevel(level);
}

}  // namespace ionest
