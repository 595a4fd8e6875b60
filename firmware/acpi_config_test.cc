#include "firmware/acpi_config.h"

#include "devices/cmos_rtc.h"
#include "devices/pci_layout.h"
#include "gtest/gtest.h"
#include "vmm/memory_layout.h"

namespace ionest {
namespace {

TEST(AcpiConfig, DefaultsMatchMachineLayout) {
  AcpiConfig c;
  c.vtd = VtdAcpiConfig{};
  EXPECT_TRUE(ValidateAcpiConfig(c).ok()) << ValidateAcpiConfig(c);
  EXPECT_EQ(c.base_gpa, kAcpiAddr);
  EXPECT_EQ(c.max_size, kAcpiSize);
  EXPECT_EQ(c.ecam_base, kEcamBase);
  EXPECT_EQ(EcamWindowSize(c), kEcamSize);
  EXPECT_EQ(c.mmio32_base, kPciMmioStart);
  EXPECT_EQ(c.mmio32_size, kPciMmioSize);
  EXPECT_EQ(c.local_apic_address, kLapicBase);
  EXPECT_EQ(c.vtd->register_base, kVtdBase);
  EXPECT_EQ(4096u << c.vtd->register_size_log2_pages, kVtdSize);
  EXPECT_EQ(c.cmos_century_index, kCmosCentury);
  // The I/O BAR window lies inside the host bridge's 0x0D00-0xFFFF I/O window.
  EXPECT_GE(pci_layout::kIoBase, 0x0D00u);
  EXPECT_LE(pci_layout::kIoBase + uint32_t{pci_layout::kIoSize}, 0x10000u);
}

AcpiConfig Valid() {
  AcpiConfig c;
  c.vtd = VtdAcpiConfig{};
  return c;
}

TEST(AcpiConfig, RejectsInconsistentValues) {
  struct Case {
    const char* what;
    void (*mutate)(AcpiConfig&);
  };
  const Case cases[] = {
      {"no cpus", [](AcpiConfig& c) { c.apic_ids.clear(); }},
      {"duplicate apic id", [](AcpiConfig& c) { c.apic_ids = {0, 2, 2}; }},
      {"apic id all ones", [](AcpiConfig& c) { c.apic_ids = {0xFFFFFFFF}; }},
      {"too many cpus", [](AcpiConfig& c) { c.apic_ids.assign(kMaxAcpiCpus + 1, 0); }},
      {"unaligned base", [](AcpiConfig& c) { c.base_gpa = 0xE0010; }},
      {"wrapping area", [](AcpiConfig& c) { c.base_gpa = ~uint64_t{0} - 63; }},
      {"short pm1 evt", [](AcpiConfig& c) { c.pm1a_evt_len = 2; }},
      {"odd pm1 evt", [](AcpiConfig& c) { c.pm1a_evt_len = 5; }},
      {"no pm1 cnt", [](AcpiConfig& c) { c.pm1a_cnt_port = 0; }},
      {"pm timer len", [](AcpiConfig& c) { c.pm_tmr_len = 3; }},
      {"sci 2", [](AcpiConfig& c) { c.sci_irq = 2; }},
      {"sci 16", [](AcpiConfig& c) { c.sci_irq = 16; }},
      {"slp_typ", [](AcpiConfig& c) { c.s5_slp_typ = 8; }},
      {"bus range", [](AcpiConfig& c) { c.bus_start = 5, c.bus_end = 4; }},
      {"ecam unaligned", [](AcpiConfig& c) { c.ecam_base = 0xE0080000; }},
      {"ecam wraps", [](AcpiConfig& c) { c.ecam_base = 0xFFFFFFFFFFF00000; }},
      {"mmio32 over 4G", [](AcpiConfig& c) { c.mmio32_base = 0xF0000000, c.mmio32_size = 0x20000000; }},
      {"mmio32 empty", [](AcpiConfig& c) { c.mmio32_size = 0; }},
      {"mmio32 overlaps ecam", [](AcpiConfig& c) { c.mmio32_size = 0x20100000; }},
      {"mmio64 below 4G", [](AcpiConfig& c) { c.mmio64_base = 0x80000000; }},
      {"mmio64 wraps", [](AcpiConfig& c) { c.mmio64_base = 0xFFFFFFFF00000000, c.mmio64_size = 1ull << 33; }},
      {"tables in mmio window", [](AcpiConfig& c) { c.base_gpa = 0xC0000000; }},
      {"intx below 16", [](AcpiConfig& c) { c.intx_gsi_base = 4; }},
      {"century index", [](AcpiConfig& c) { c.cmos_century_index = 0x09; }},
      {"haw", [](AcpiConfig& c) { c.vtd->host_address_width = 11; }},
      {"drhd unaligned", [](AcpiConfig& c) { c.vtd->register_base = 0xFED90800; }},
      {"drhd size alignment", [](AcpiConfig& c) { c.vtd->register_size_log2_pages = 1, c.vtd->register_base = 0xFED91000; }},
      {"drhd zero", [](AcpiConfig& c) { c.vtd->register_base = 0; }},
      {"drhd overlaps ioapic", [](AcpiConfig& c) { c.vtd->register_base = 0xFEC00000; }},
      {"ioapic path empty", [](AcpiConfig& c) { c.vtd->ioapic_path.hops.clear(); }},
      {"satc bad device", [](AcpiConfig& c) { c.vtd->satc_endpoints = {PciPath{0, {{32, 0}}}}; }},
      {"satc bad function", [](AcpiConfig& c) { c.vtd->satc_endpoints = {PciPath{0, {{1, 8}}}}; }},
      {"satc too deep", [](AcpiConfig& c) {
         c.vtd->satc_endpoints = {PciPath{0, std::vector<PciPath::Hop>(kMaxPciPathHops + 1)}};
       }},
  };
  for (const Case& k : cases) {
    AcpiConfig c = Valid();
    k.mutate(c);
    absl::Status s = ValidateAcpiConfig(c);
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << k.what;
  }
}

TEST(AcpiConfig, AcceptsVariants) {
  AcpiConfig c = Valid();
  c.apic_ids = {0, 1, 300, 0x10000};
  c.mmio64_size = 0;
  c.intx_gsi_base.reset();
  c.pm_tmr_port = 0;
  c.bus_start = 0;
  c.bus_end = 63;
  c.vtd->register_size_log2_pages = 2;
  c.vtd->register_base = 0xFED90000;
  EXPECT_TRUE(ValidateAcpiConfig(c).ok()) << ValidateAcpiConfig(c);
}

}  // namespace
}  // namespace ionest
