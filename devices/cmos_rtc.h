// MC146818-compatible CMOS RTC and 128 bytes of CMOS RAM at I/O 0x70 (index; bit 7 = NMI disable)
// and 0x71 (data). Time/date registers read the host clock (UTC) plus a guest-set offset; the
// BCD/binary (status B DM) and 12/24-hour (status B 24/12) formats are honoured on reads and writes.
// Status B SET=1 freezes the guest-visible time so the guest can update it; clearing SET applies it.
// The century is at CMOS 0x32 (FADT.CENTURY = kCmosCentury). No alarm/periodic/update interrupts:
// PIE/AIE/UIE are stored but status C never reports a flag (IRQ 8 is not wired).
//
// Thread safety: IoRead/IoWrite and the RAM accessors may be called concurrently (internal lock).
#pragma once

#include <array>
#include <cstdint>
#include <ctime>
#include <functional>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "devices/io_bus.h"

namespace ionest {

inline constexpr uint16_t kCmosIoBase = 0x70;
inline constexpr uint64_t kCmosIoLen = 2;
inline constexpr uint8_t kCmosCentury = 0x32;

class CmosRtc final : public IoDevice {
 public:
  // Wall-clock nanoseconds since the Unix epoch; defaults to CLOCK_REALTIME. Injected by tests.
  using ClockFn = std::function<int64_t()>;
  explicit CmosRtc(ClockFn clock = nullptr);

  void IoRead(uint64_t offset, uint8_t* data, size_t size) override ABSL_LOCKS_EXCLUDED(mu_);
  void IoWrite(uint64_t offset, const uint8_t* data, size_t size) override ABSL_LOCKS_EXCLUDED(mu_);

  // Non-time CMOS bytes (0x0E-0x7F except the century) for firmware-provided data.
  void SetRamByte(uint8_t index, uint8_t value) ABSL_LOCKS_EXCLUDED(mu_);
  uint8_t RamByte(uint8_t index) const ABSL_LOCKS_EXCLUDED(mu_);
  bool nmi_disabled() const ABSL_LOCKS_EXCLUDED(mu_);

 private:
  uint8_t ReadRegister(uint8_t index) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void WriteRegister(uint8_t index, uint8_t value) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Guest-visible broken-down time (frozen copy while SET=1).
  std::tm GuestTime() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void ApplyGuestTime(const std::tm& tm) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  uint8_t Encode(int value) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  int Decode(uint8_t value) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const ClockFn clock_;
  mutable absl::Mutex mu_;
  std::array<uint8_t, 128> ram_ ABSL_GUARDED_BY(mu_){};
  uint8_t index_ ABSL_GUARDED_BY(mu_) = 0;
  bool nmi_disabled_ ABSL_GUARDED_BY(mu_) = false;
  int64_t offset_s_ ABSL_GUARDED_BY(mu_) = 0;  // guest time - host time
  bool frozen_ ABSL_GUARDED_BY(mu_) = false;   // status B SET
  std::tm frozen_tm_ ABSL_GUARDED_BY(mu_){};
};

}  // namespace ionest
