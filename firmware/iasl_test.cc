// Cross-checks the tables with ACPICA's tools (Debian package acpica-tools), an independent
// implementation and the same ACPICA core Linux uses: data tables must disassemble without
// complaints, the DSDT must disassemble and recompile (name optimization off) to identical AML,
// and acpiexec must load the whole set without firmware warnings and evaluate _S5 and _OSC.
// Skipped when the tools are not installed.
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>

#include <unistd.h>

#include "firmware/acpi_test_util.h"
#include "gtest/gtest.h"

namespace ionest {
namespace {

using namespace ionest::testing;

bool HaveTool(const std::string& tool) {
  return std::system(("command -v " + tool + " >/dev/null 2>&1").c_str()) == 0;
}

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

void WriteFile(const std::string& path, const Bytes& b) {
  std::ofstream out(path, std::ios::binary);
  out.write(reinterpret_cast<const char*>(b.data()), static_cast<std::streamsize>(b.size()));
}

class IaslTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!HaveTool("iasl") || !HaveTool("acpiexec")) {
      GTEST_SKIP() << "iasl/acpiexec not installed (apt-get install acpica-tools)";
    }
    dir_ = ::testing::TempDir() + "/ionest_iasl_" + std::to_string(::getpid()) + "_" +
           ::testing::UnitTest::GetInstance()->current_test_info()->name();
    ASSERT_EQ(std::system(("rm -rf '" + dir_ + "' && mkdir -p '" + dir_ + "'").c_str()), 0);
  }
  void TearDown() override {
    if (!dir_.empty()) std::system(("rm -rf '" + dir_ + "'").c_str());
  }
  // Runs `tool args` in dir_; returns its combined output.
  std::string Run(const std::string& tool, const std::string& args) {
    const std::string log = dir_ + "/tool.log";
    const int rc = std::system(("cd '" + dir_ + "' && timeout 120 " + tool + " " + args + " >'" + log +
                                "' 2>&1 </dev/null").c_str());
    EXPECT_EQ(rc, 0) << ReadFile(log);
    return ReadFile(log);
  }
  std::string Iasl(const std::string& args) { return Run("iasl", args); }
  // Disassembles `dsdt`, recompiles the ASL with name optimization off and expects the identical
  // AML body (headers differ in the compiler ID fields). Returns the ASL.
  std::string RoundTrip(const Bytes& dsdt) {
    WriteFile(dir_ + "/dsdt.dat", dsdt);
    Iasl("-d dsdt.dat");
    const std::string asl = ReadFile(dir_ + "/dsdt.dsl");
    const std::string out = Iasl("-on -p recompiled dsdt.dsl");
    EXPECT_NE(out.find("0 Errors, 0 Warnings"), std::string::npos) << out;
    const std::string aml = ReadFile(dir_ + "/recompiled.aml");
    EXPECT_EQ(aml.size(), dsdt.size());
    if (aml.size() == dsdt.size()) {
      EXPECT_TRUE(aml.substr(kAcpiHeaderSize) == std::string(dsdt.begin() + kAcpiHeaderSize, dsdt.end()))
          << "recompiled AML differs";
    }
    return asl;
  }
  // Writes every table of `blob` except the RSDP/XSDT (acpiexec builds its own) as SIG.dat.
  std::string WriteTables(const AcpiBlob& blob) {
    std::string files;
    for (const AcpiBlob::Table& t : blob.tables) {
      if (t.signature == "RSD PTR " || t.signature == "XSDT") continue;
      WriteFile(dir_ + "/" + t.signature + ".dat", TableAt(blob, t.gpa));
      files += " " + t.signature + ".dat";
    }
    return files;
  }
  std::string dir_;
};

TEST_F(IaslTest, DsdtDisassemblesAndRecompilesIdentically) {
  AcpiConfig c = ConfigWithCpus(4);
  absl::StatusOr<AcpiBlob> blob = BuildAcpiTables(c);
  ASSERT_TRUE(blob.ok()) << blob.status();
  const Bytes dsdt = TableAt(*blob, FindTable(*blob, "DSDT")->gpa);
  const std::string asl = RoundTrip(dsdt);
  for (const char* want : {"Device (PCI0)", "EisaId (\"PNP0A08\")", "EisaId (\"PNP0A03\")", "Name (_SEG, Zero)",
                           "Device (COM1)", "EisaId (\"PNP0501\")", "0x03F8", "IRQNoFlags ()", "{4}",
                           "EisaId (\"PNP0C02\")", "Device (RTC)", "EisaId (\"PNP0B00\")", "0x00000000E0000000", "0x00000000EFFFFFFF",
                           "0xC0000000", "0xDFFFFFFF", "Device (C003)", "\"ACPI0007\"",
                           "Method (_OSC, 4, NotSerialized)", "Name (_PRT, Package (0x80)",
                           "Name (\\_S5, Package (0x04)"}) {
    EXPECT_NE(asl.find(want), std::string::npos) << "missing: " << want << "\n" << asl;
  }
}

TEST_F(IaslTest, LargeDsdtWithThreeBytePkgLengthsRoundTrips) {
  AcpiConfig c = ConfigWithCpus(300);
  c.max_size = 1 << 20;
  absl::StatusOr<AcpiBlob> blob = BuildAcpiTables(c);
  ASSERT_TRUE(blob.ok()) << blob.status();
  const Bytes dsdt = TableAt(*blob, FindTable(*blob, "DSDT")->gpa);
  ASSERT_GT(dsdt.size(), 4096u);  // \_SB's PkgLength needs 3 bytes
  EXPECT_NE(RoundTrip(dsdt).find("Device (C12B)"), std::string::npos);
}

TEST_F(IaslTest, DataTablesDisassembleCleanly) {
  AcpiConfig c = ConfigWithCpus(2);
  c.vtd = VtdAcpiConfig{};  // no SATC: this iasl (2020) predates SATC decoding
  absl::StatusOr<AcpiBlob> blob = BuildAcpiTables(c);
  ASSERT_TRUE(blob.ok()) << blob.status();
  for (const char* sig : {"FACP", "FACS", "APIC", "MCFG", "DMAR", "XSDT"}) {
    SCOPED_TRACE(sig);
    const std::string name = std::string(sig) + ".dat";
    WriteFile(dir_ + "/" + name, TableAt(*blob, FindTable(*blob, sig)->gpa));
    const std::string out = Iasl("-d " + name);
    const std::string dsl = ReadFile(dir_ + "/" + std::string(sig) + ".dsl");
    ASSERT_FALSE(dsl.empty()) << out;
    for (const char* bad : {"Invalid", "Incorrect", "Unknown", "terminates", "Error", "Warning", "****"}) {
      EXPECT_EQ(dsl.find(bad), std::string::npos) << bad << " in\n" << dsl;
      EXPECT_EQ(out.find(bad), std::string::npos) << bad << " in\n" << out;
    }
  }
}

TEST_F(IaslTest, AcpiexecLoadsTablesAndEvaluatesMethods) {
  AcpiConfig c = ConfigWithCpus(2);
  c.s5_slp_typ = 6;
  c.vtd = VtdAcpiConfig{};
  absl::StatusOr<AcpiBlob> blob = BuildAcpiTables(c);
  ASSERT_TRUE(blob.ok()) << blob.status();
  const std::string files = WriteTables(*blob);
  // _OSC(PCI host bridge UUID, rev 1, 3 DWORDs, {0, 0x1F, 0xFF}): everything granted, status 0.
  // _OSC with an unknown UUID: status DWORD gets "unrecognized UUID" (bit 2).
  const std::string out = Run(
      "acpiexec",
      "-b 'evaluate \\_S5; "
      "evaluate \\_SB.PCI0._OSC (5b 4d db 33 f7 1f 1c 40 96 57 74 41 c0 3d d7 66) 1 3 "
      "(00 00 00 00 1f 00 00 00 ff 00 00 00); "
      "evaluate \\_SB.PCI0._OSC (00 4d db 33 f7 1f 1c 40 96 57 74 41 c0 3d d7 66) 1 3 "
      "(00 00 00 00 1f 00 00 00 ff 00 00 00); "
      "evaluate \\_SB.COM1._CRS'" + files);
  for (const char* bad : {"Warning", "Error", "error", "Could not"}) {
    EXPECT_EQ(out.find(bad), std::string::npos) << bad << " in\n" << out;
  }
  EXPECT_NE(out.find("Table [DSDT: IONESTVM]"), std::string::npos) << out;
  EXPECT_NE(out.find("[Integer] = 0000000000000006"), std::string::npos) << out;
  EXPECT_NE(out.find("0000: 00 00 00 00 1F 00 00 00 FF 00 00 00"), std::string::npos) << out;
  EXPECT_NE(out.find("0000: 04 00 00 00 1F 00 00 00 FF 00 00 00"), std::string::npos) << out;
  EXPECT_NE(out.find("47 01 F8 03 F8 03 00 08 22 10 00 79"), std::string::npos) << out;
}

}  // namespace
}  // namespace ionest
