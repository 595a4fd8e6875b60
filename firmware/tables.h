// Builders for the individual ACPI tables. Each takes a config that passed ValidateAcpiConfig()
// and returns the finished table bytes (length and checksum filled in). Addresses of other
// tables are guest-physical. Use BuildAcpiTables() (acpi_tables.h) for the whole set.
// Thread-compatible free functions.
#pragma once

#include <cstdint>
#include <vector>

#include "firmware/acpi_config.h"
#include "firmware/byte_writer.h"

namespace ionest {

Bytes BuildFacs();                                                       // ACPI 6.5 §5.2.10
Bytes BuildFadt(const AcpiConfig& config, uint64_t facs_gpa, uint64_t dsdt_gpa);  // §5.2.9
Bytes BuildDsdt(const AcpiConfig& config);                               // §5.2.11.1
Bytes BuildMadt(const AcpiConfig& config);                               // §5.2.12
Bytes BuildMcfg(const AcpiConfig& config);                               // PCI Firmware 3.3 §4.1.2
Bytes BuildDmar(const AcpiConfig& config);                               // VT-d §8; needs config.vtd
Bytes BuildViot(const AcpiConfig& config);                               // §5.2.32; needs config.viot
Bytes BuildXsdt(const std::vector<uint64_t>& table_gpas);                // §5.2.8
Bytes BuildRsdp(uint64_t xsdt_gpa);                                      // §5.2.5.3

// FADT layout (ACPI 6.5 Table 5.9), used by the builder and by tests.
namespace fadt {
inline constexpr size_t kFirmwareCtrl = 36, kDsdt = 40, kPreferredPmProfile = 45, kSciInt = 46,
                        kSmiCmd = 48, kPm1aEvtBlk = 56, kPm1aCntBlk = 64, kPmTmrBlk = 76,
                        kGpe0Blk = 80, kPm1EvtLen = 88, kPm1CntLen = 89, kPmTmrLen = 91,
                        kPLvl2Lat = 96, kPLvl3Lat = 98, kCentury = 108, kIapcBootArch = 109,
                        kFlags = 112, kResetReg = 116, kResetValue = 128, kMinorVersion = 131,
                        kXFirmwareCtrl = 132, kXDsdt = 140, kXPm1aEvtBlk = 148, kXPm1aCntBlk = 172,
                        kXPmTmrBlk = 208, kSleepControlReg = 244, kHypervisorVendor = 268,
                        kSize = 276;
// Flags (Table 5.10).
inline constexpr uint32_t kWbinvd = 1u << 0, kProcC1 = 1u << 2, kPwrButton = 1u << 4,
                          kSlpButton = 1u << 5, kFixRtc = 1u << 6, kResetRegSup = 1u << 10,
                          kHwReducedAcpi = 1u << 20;
// IA-PC boot architecture flags (Table 5.11).
inline constexpr uint16_t kLegacyDevices = 1u << 0, k8042 = 1u << 1, kVgaNotPresent = 1u << 2,
                          kMsiNotSupported = 1u << 3, kPcieAspmControls = 1u << 4,
                          kCmosRtcNotPresent = 1u << 5;
}  // namespace fadt

}  // namespace ionest
