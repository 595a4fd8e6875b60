#include "devices/i8042.h"

namespace ionest {
namespace {

// Status register bits.
constexpr uint8_t kStsOutputFull = 1u << 0;
constexpr uint8_t kStsSystemFlag = 1u << 2;
constexpr uint8_t kStsCommand = 1u << 3;  // last write went to the command port
constexpr uint8_t kStsNotInhibited = 1u << 4;  // keyboard not locked (Linux warns "Keylock active" if 0)
// Command byte bits.
constexpr uint8_t kCmdSystemFlag = 1u << 2;
constexpr uint8_t kCmdKbdDisable = 1u << 4;
constexpr uint8_t kCmdAuxDisable = 1u << 5;
// Output port: bit 0 = system reset (active low), bit 1 = A20 gate.
constexpr uint8_t kOutputPortValue = 0x03;

}  // namespace

I8042::I8042(ShutdownFn shutdown) : shutdown_(std::move(shutdown)) {}

void I8042::Port::IoRead(uint64_t offset, uint8_t* data, size_t size) {
  if (offset != 0 || size == 0) return;  // leave the bus's 0xff
  data[0] = command_ ? owner_.ReadStatus() : owner_.ReadData();
}

void I8042::Port::IoWrite(uint64_t offset, const uint8_t* data, size_t size) {
  if (offset != 0 || size == 0) return;
  if (command_) {
    owner_.WriteCommand(data[0]);
  } else {
    owner_.WriteData(data[0]);
  }
}

void I8042::Respond(uint8_t v) {
  if (output_.size() < kOutputCapacity) output_.push_back(v);
}

uint8_t I8042::ReadData() {
  absl::MutexLock l(&mu_);
  if (output_.empty()) return 0;
  const uint8_t v = output_.front();
  output_.pop_front();
  return v;
}

uint8_t I8042::ReadStatus() {
  absl::MutexLock l(&mu_);
  uint8_t s = kStsNotInhibited;  // input buffer always empty: writes are consumed at once
  if (!output_.empty()) s |= kStsOutputFull;
  if (command_byte_ & kCmdSystemFlag) s |= kStsSystemFlag;
  if (last_was_command_) s |= kStsCommand;
  return s;
}

void I8042::WriteData(uint8_t v) {
  absl::MutexLock l(&mu_);
  last_was_command_ = false;
  const uint8_t cmd = pending_command_;
  pending_command_ = 0;
  switch (cmd) {
    case 0x60:
      command_byte_ = v;
      return;
    case 0xD1:
      if (!(v & 1u) && shutdown_) shutdown_(ShutdownKind::kReset);  // reset line driven low
      return;
    default:
      return;  // to the absent keyboard
  }
}

void I8042::WriteCommand(uint8_t v) {
  absl::MutexLock l(&mu_);
  last_was_command_ = true;
  pending_command_ = 0;
  if (v >= 0xF0) {  // pulse output port lines whose bit in 3:0 is 0
    if (!(v & 1u) && shutdown_) shutdown_(ShutdownKind::kReset);
    return;
  }
  switch (v) {
    case 0x20: Respond(command_byte_); break;
    case 0x60: pending_command_ = v; break;
    case 0xA7: command_byte_ |= kCmdAuxDisable; break;
    case 0xA8: command_byte_ &= static_cast<uint8_t>(~kCmdAuxDisable); break;
    case 0xA9: Respond(0x00); break;  // aux interface test: OK
    case 0xAA: Respond(0x55); break;  // controller self test: passed
    case 0xAB: Respond(0x00); break;  // keyboard interface test: OK
    case 0xAD: command_byte_ |= kCmdKbdDisable; break;
    case 0xAE: command_byte_ &= static_cast<uint8_t>(~kCmdKbdDisable); break;
    case 0xD0: Respond(kOutputPortValue); break;
    case 0xD1: pending_command_ = v; break;
    default: break;  // unknown commands are ignored
  }
}

}  // namespace ionest
