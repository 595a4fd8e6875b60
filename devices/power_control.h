// Power and reset controls of the machine: ACPI PM fixed hardware (S5 ⇒ power off) and the i8042
// (0xFE ⇒ reset). Both report through one ShutdownFn.
//
// Wiring: PowerControl pc(shutdown_fn, sci_irq_line); pc.RegisterOn(pio_bus);
// Thread safety: as AcpiPm and I8042 (any thread).
#pragma once

#include "absl/status/status.h"
#include "devices/acpi_pm.h"
#include "devices/i8042.h"
#include "devices/io_bus.h"
#include "devices/irq_line.h"
#include "devices/shutdown.h"

namespace ionest {

class PowerControl {
 public:
  PowerControl(ShutdownFn shutdown, IrqLine& sci, AcpiPm::ClockFn clock = nullptr)
      : pm_(shutdown, sci, std::move(clock)), i8042_(shutdown) {}

  // Registers PM1a_EVT/PM1a_CNT/PM_TMR (0x600-0x60B) and the i8042 (0x60, 0x64).
  absl::Status RegisterOn(IoBus& pio);

  AcpiPm& pm() { return pm_; }
  I8042& i8042() { return i8042_; }

 private:
  AcpiPm pm_;
  I8042 i8042_;
};

}  // namespace ionest
