// Entry point for the VMM: builds the complete ACPI table set as one contiguous blob laid out at
// AcpiConfig::base_gpa, and writes it into guest memory.
//
// Layout (offsets from base_gpa; tables 16-byte aligned):
//   +0x00 RSDP (36 bytes; the address for boot_params.acpi_rsdp_addr)
//   +0x40 FACS (64 bytes, 64-byte aligned)
//   +0x80 DSDT, then FADT, MADT, MCFG, DMAR (only with config.vtd), XSDT
// The XSDT lists FADT, MADT, MCFG and DMAR; the FADT points at the FACS and the DSDT.
//
// Thread-compatible free functions.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "firmware/acpi_config.h"
#include "firmware/byte_writer.h"
#include "vmm/guest_memory.h"

namespace ionest {

struct AcpiBlob {
  uint64_t base_gpa = 0;
  Bytes bytes;            // place at base_gpa; mark [base_gpa, base_gpa + bytes.size()) as ACPI in e820
  uint64_t rsdp_gpa = 0;  // boot_params.acpi_rsdp_addr

  struct Table {
    std::string signature;
    uint64_t gpa = 0;
    uint64_t size = 0;
  };
  std::vector<Table> tables;  // every table in the blob, in address order (for logs and tests)
};

// InvalidArgument if the config is inconsistent (ValidateAcpiConfig) or the tables exceed
// config.max_size.
absl::StatusOr<AcpiBlob> BuildAcpiTables(const AcpiConfig& config);

// Copies the blob to guest memory at blob.base_gpa.
absl::Status WriteAcpiTables(const AcpiBlob& blob, PhysMemory& memory);

}  // namespace ionest
