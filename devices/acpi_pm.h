// ACPI fixed-hardware PM registers: PM1a event block, PM1a control block and the PM timer
// (ACPI 6.5 §4.8.3). Layout in devices/acpi_pm_layout.h; register this device at
// [acpi_pm::kPmIoBase, +acpi_pm::kPmIoLen) on the PIO bus.
//
// Writing PM1_CNT with SLP_EN=1 and SLP_TYP=kSlpTypS5 calls the shutdown callback with kPowerOff.
// PressPowerButton() sets PM1_STS.PWRBTN_STS and raises the SCI if PM1_EN.PWRBTN_EN (guest-visible
// graceful shutdown request).
//
// Thread safety: all methods may be called concurrently from any thread. The shutdown callback and
// the SCI IrqLine are called with the device's lock held.
#pragma once

#include <array>
#include <cstdint>
#include <functional>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "devices/acpi_pm_layout.h"
#include "devices/io_bus.h"
#include "devices/irq_line.h"
#include "devices/shutdown.h"

namespace ionest {

class AcpiPm final : public IoDevice {
 public:
  // Monotonic nanoseconds; defaults to CLOCK_MONOTONIC. Injected by tests.
  using ClockFn = std::function<uint64_t()>;

  AcpiPm(ShutdownFn shutdown, IrqLine& sci, ClockFn clock = nullptr);

  void IoRead(uint64_t offset, uint8_t* data, size_t size) override ABSL_LOCKS_EXCLUDED(mu_);
  void IoWrite(uint64_t offset, const uint8_t* data, size_t size) override ABSL_LOCKS_EXCLUDED(mu_);

  void PressPowerButton() ABSL_LOCKS_EXCLUDED(mu_);

 private:
  static constexpr size_t kSize = acpi_pm::kPmIoLen;
  uint16_t Reg16(size_t offset) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  uint32_t TimerValue() const;
  void UpdateSci() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const ShutdownFn shutdown_;
  IrqLine& sci_;
  const ClockFn clock_;
  const uint64_t epoch_ns_;
  absl::Mutex mu_;
  std::array<uint8_t, kSize> regs_ ABSL_GUARDED_BY(mu_){};
  bool sci_level_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace ionest
