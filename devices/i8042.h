// Minimal i8042 keyboard controller (no keyboard or mouse attached): enough for firmware/OS probes
// and the classic reset path. Ports: data 0x60, status/command 0x64 (devices/acpi_pm_layout.h).
//
// Implemented controller commands (written to 0x64): 0x20 read command byte, 0x60 write command
// byte, 0xA7/0xA8 disable/enable aux, 0xA9 aux test, 0xAA self test, 0xAB keyboard test, 0xAD/0xAE
// disable/enable keyboard, 0xD0 read output port, 0xD1 write output port (bit 0 = 0 ⇒ reset),
// 0xF0-0xFF pulse output lines (bit 0 clear ⇒ pulse reset, e.g. 0xFE). Bytes written to 0x60 for the
// (absent) keyboard are dropped. No IRQ is raised (responses are polled).
//
// Thread safety: all methods may be called concurrently; the shutdown callback runs under the lock.
#pragma once

#include <cstdint>
#include <deque>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "devices/io_bus.h"
#include "devices/shutdown.h"

namespace ionest {

class I8042 {
 public:
  explicit I8042(ShutdownFn shutdown);

  // Register each at its port with length 1.
  IoDevice& data_port() { return data_port_; }
  IoDevice& command_port() { return command_port_; }

 private:
  class Port final : public IoDevice {
   public:
    Port(I8042& owner, bool command) : owner_(owner), command_(command) {}
    void IoRead(uint64_t offset, uint8_t* data, size_t size) override;
    void IoWrite(uint64_t offset, const uint8_t* data, size_t size) override;

   private:
    I8042& owner_;
    const bool command_;
  };

  uint8_t ReadData() ABSL_LOCKS_EXCLUDED(mu_);
  uint8_t ReadStatus() ABSL_LOCKS_EXCLUDED(mu_);
  void WriteData(uint8_t v) ABSL_LOCKS_EXCLUDED(mu_);
  void WriteCommand(uint8_t v) ABSL_LOCKS_EXCLUDED(mu_);
  void Respond(uint8_t v) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  static constexpr size_t kOutputCapacity = 16;
  const ShutdownFn shutdown_;
  Port data_port_{*this, false};
  Port command_port_{*this, true};
  absl::Mutex mu_;
  std::deque<uint8_t> output_ ABSL_GUARDED_BY(mu_);
  uint8_t command_byte_ ABSL_GUARDED_BY(mu_) = 0x45;  // kbd IRQ enable, system flag, translation
  uint8_t pending_command_ ABSL_GUARDED_BY(mu_) = 0;  // command awaiting its data byte (0x60/0xD1)
  bool last_was_command_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace ionest
