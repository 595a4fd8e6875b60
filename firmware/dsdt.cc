// DSDT (ACPI 6.5 §5.2.11.1) with hand-built AML. ASL equivalent:
//
//   Scope (\_SB) {
//     Device (PCI0) {                        // §9.6 / PCI Firmware 3.3 §4.3: PCIe host bridge
//       Name (_HID, EISAID ("PNP0A08")) Name (_CID, EISAID ("PNP0A03"))
//       Name (_SEG, 0) Name (_BBN, bus_start) Name (_UID, 0)
//       Name (_CRS, ResourceTemplate () { WordBusNumber (bus_start-bus_end), IO (0xCF8, 8),
//           WordIO (0x0000-0x0CF7), WordIO (0x0D00-0xFFFF), DWordMemory (mmio32),
//           QWordMemory (mmio64) })
//       Name (_PRT, Package () { Package () { slot << 16 | 0xFFFF, pin, 0, gsi }, ... })  [INTx]
//       Method (_OSC, 4) { CreateDWordField (Arg3, 0, CDW1)                           [osc]
//         If (LEqual (Arg0, ToUUID ("33DB4D5B-1FF7-401C-9657-7441C03DD766"))) { Return (Arg3) }
//         Or (CDW1, 4, CDW1) Return (Arg3) }           // unknown UUID: "unrecognized UUID" bit
//     }
//     Device (MRES) { Name (_HID, EISAID ("PNP0C02"))  // motherboard resources: reserves ECAM
//       Name (_CRS, ResourceTemplate () { QWordMemory (ResourceConsumer, ecam window) }) }
//     Device (COM1) { Name (_HID, EISAID ("PNP0501")) Name (_UID, 1)                 [com1]
//       Name (_CRS, ResourceTemplate () { IO (Decode16, 0x3F8, 0x3F8, 0, 8) IRQNoFlags () {4} }) }
//     Device (RTC) { Name (_HID, EISAID ("PNP0B00"))                                  [rtc]
//       Name (_CRS, ResourceTemplate () { IO (Decode16, 0x70, 0x70, 1, 2) IRQNoFlags () {8} }) }
//     Device (Cnnn) { Name (_HID, "ACPI0007") Name (_UID, n) }   // one per vCPU (§8.4)
//   }
//   Name (\_S5, Package () { slp_typ, slp_typ, 0, 0 })             // §7.4.2
//
// Linux 6.12 accepts ECAM from MCFG only if a PNP0C01/PNP0C02 _CRS reserves it
// (arch/x86/pci/mmconfig-shared.c pci_mmcfg_reserved); without it, extended config space (ATS,
// PRI, PASID capabilities) would be unreachable.
#include "absl/strings/str_format.h"
#include "firmware/acpi_table.h"
#include "firmware/aml.h"
#include "firmware/aml_resources.h"
#include "firmware/tables.h"

namespace ionest {
namespace {

using aml::Integer;
using aml::Join;
using aml::Name;

// PCI Firmware Specification 3.3 §4.5.1: _OSC UUID for PCI/PCIe host bridges.
constexpr char kPciHostBridgeOscUuid[] = "33DB4D5B-1FF7-401C-9657-7441C03DD766";
constexpr uint32_t kOscUnrecognizedUuid = 1u << 2;  // _OSC status DWORD bit 2 (ACPI 6.5 §6.2.11)

Bytes PciRootBridge(const AcpiConfig& c) {
  std::vector<Bytes> crs = {
      aml::WordBusNumber(c.bus_start, c.bus_end),
      aml::IoPort(0x0CF8, 0x0CF8, 1, 8),  // the config mechanism #1 ports the bridge itself decodes
      aml::WordIo(0x0000, 0x0CF7),
      aml::WordIo(0x0D00, 0xFFFF),
      aml::DWordMemory(c.mmio32_base, c.mmio32_base + (c.mmio32_size - 1), /*cacheable=*/false),
  };
  if (c.mmio64_size != 0) {
    crs.push_back(aml::QWordMemory(c.mmio64_base, c.mmio64_base + (c.mmio64_size - 1),
                                   /*cacheable=*/true, /*producer=*/true));
  }
  Bytes body = Join({
      Name("_HID", Integer(aml::EisaId("PNP0A08"))),
      Name("_CID", Integer(aml::EisaId("PNP0A03"))),
      Name("_SEG", Integer(0)),
      Name("_BBN", Integer(c.bus_start)),
      Name("_UID", Integer(0)),
      Name("_CRS", aml::ResourceTemplate(crs)),
  });
  if (c.intx_gsi_base.has_value()) {
    // §6.2.13 _PRT: Address = (slot << 16) | 0xFFFF (any function), Pin 0-3 = INTA-D, Source 0
    // (SourceIndex is a GSI). Standard swizzle so that slots spread over the 4 GSIs.
    std::vector<Bytes> entries;
    for (uint32_t slot = 0; slot < 32; ++slot) {
      for (uint32_t pin = 0; pin < 4; ++pin) {
        entries.push_back(aml::Package({Integer(slot << 16 | 0xFFFF), Integer(pin), Integer(0),
                                        Integer(*c.intx_gsi_base + (slot + pin) % 4)}));
      }
    }
    body = Join({body, Name("_PRT", aml::Package(entries))});
  }
  if (c.osc_grant_all) {
    body = Join({body, aml::Method("_OSC", 4, /*serialized=*/false,
                                   Join({aml::CreateDWordField(aml::Arg(3), Integer(0), "CDW1"),
                                         aml::If(aml::LEqual(aml::Arg(0), aml::Buffer(aml::Uuid(kPciHostBridgeOscUuid))),
                                                 aml::Return(aml::Arg(3))),
                                         aml::Or(aml::NameString("CDW1"), Integer(kOscUnrecognizedUuid),
                                                 aml::NameString("CDW1")),
                                         aml::Return(aml::Arg(3))}))});
  }
  return aml::Device("PCI0", body);
}

Bytes MotherboardResources(const AcpiConfig& c) {
  const uint64_t start = EcamWindowStart(c);
  return aml::Device(
      "MRES", Join({Name("_HID", Integer(aml::EisaId("PNP0C02"))),
                    Name("_CRS", aml::ResourceTemplate({aml::QWordMemory(
                                     start, start + (EcamWindowSize(c) - 1), /*cacheable=*/false,
                                     /*producer=*/false)}))}));
}

Bytes Com1() {
  return aml::Device(
      "COM1", Join({Name("_HID", Integer(aml::EisaId("PNP0501"))), Name("_UID", Integer(1)),
                    Name("_CRS", aml::ResourceTemplate({aml::IoPort(0x3F8, 0x3F8, 0, 8),
                                                        aml::IrqNoFlags({4})}))}));
}

// AT-compatible CMOS RTC (PNP0B00), so Linux binds rtc_cmos through PNP instead of guessing.
Bytes Rtc() {
  return aml::Device(
      "RTC", Join({Name("_HID", Integer(aml::EisaId("PNP0B00"))),
                   Name("_CRS", aml::ResourceTemplate({aml::IoPort(0x70, 0x70, 1, 2), aml::IrqNoFlags({8})}))}));
}

Bytes Processors(const AcpiConfig& c) {
  Bytes out;
  for (size_t uid = 0; uid < c.apic_ids.size(); ++uid) {
    out = Join({out, aml::Device(absl::StrFormat("C%03X", uid),
                                 Join({Name("_HID", aml::String("ACPI0007")), Name("_UID", Integer(uid))}))});
  }
  return out;
}

}  // namespace

Bytes BuildDsdt(const AcpiConfig& c) {
  Bytes sb = Join({PciRootBridge(c), MotherboardResources(c)});
  if (c.has_com1) sb = Join({sb, Com1()});
  if (c.has_cmos_rtc) sb = Join({sb, Rtc()});
  sb = Join({sb, Processors(c)});
  AcpiTableWriter t("DSDT", 2);  // revision 2: 64-bit AML integers (§5.2.11.1)
  t.body().Append(aml::Scope("\\_SB", sb));
  t.body().Append(Name("\\_S5", aml::Package({Integer(c.s5_slp_typ), Integer(c.s5_slp_typ),
                                              Integer(0), Integer(0)})));
  return std::move(t).Finish();
}

}  // namespace ionest
