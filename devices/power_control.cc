#include "devices/power_control.h"

namespace ionest {

absl::Status PowerControl::RegisterOn(IoBus& pio) {
  if (absl::Status s = pio.Register(acpi_pm::kPmIoBase, acpi_pm::kPmIoLen, &pm_, "acpi-pm"); !s.ok()) return s;
  if (absl::Status s = pio.Register(acpi_pm::kI8042DataPort, 1, &i8042_.data_port(), "i8042-data"); !s.ok())
    return s;
  return pio.Register(acpi_pm::kI8042CommandPort, 1, &i8042_.command_port(), "i8042-command");
}

}  // namespace ionest
