// Whole-blob checks: RSDP → XSDT → tables, checksums of every table, placement, guest write.
#include "firmware/acpi_tables.h"

#include <set>

#include "firmware/acpi_test_util.h"
#include "firmware/tables.h"
#include "gtest/gtest.h"
#include "vmm/guest_memory.h"

namespace ionest {
namespace {

using namespace ionest::testing;

AcpiConfig FullConfig() {
  AcpiConfig c = ConfigWithCpus(4);
  c.vtd = VtdAcpiConfig{};
  c.vtd->satc_endpoints = {PciPath{0, {{3, 0}}}};
  return c;
}

TEST(AcpiTables, RsdpRevision2BothChecksums) {
  absl::StatusOr<AcpiBlob> blob = BuildAcpiTables(FullConfig());
  ASSERT_TRUE(blob.ok()) << blob.status();
  EXPECT_EQ(blob->rsdp_gpa, 0xE0000u);
  const Bytes r(blob->bytes.begin(), blob->bytes.begin() + 36);
  EXPECT_EQ(Str(r, 0, 8), "RSD PTR ");
  EXPECT_EQ(AcpiSum(r.data(), 20), 0);  // ACPI 1.0 checksum
  EXPECT_EQ(AcpiSum(r.data(), 36), 0);  // extended checksum
  EXPECT_EQ(U8(r, 15), 2);
  EXPECT_EQ(U32(r, 16), 0u);  // no RSDT
  EXPECT_EQ(U32(r, 20), 36u);
  EXPECT_EQ(U64(r, 24), FindTable(*blob, "XSDT")->gpa);
  EXPECT_EQ(blob->rsdp_gpa % 16, 0u);
}

TEST(AcpiTables, XsdtReachesEveryTableWithValidChecksums) {
  absl::StatusOr<AcpiBlob> blob = BuildAcpiTables(FullConfig());
  ASSERT_TRUE(blob.ok()) << blob.status();
  const Bytes xsdt = TableAt(*blob, U64(blob->bytes, 24));
  ExpectValidTable(xsdt, "XSDT", 1);
  ASSERT_EQ((xsdt.size() - 36) % 8, 0u);
  std::set<std::string> seen;
  for (size_t off = 36; off < xsdt.size(); off += 8) {
    const Bytes t = TableAt(*blob, U64(xsdt, off));
    ASSERT_GE(t.size(), 36u);
    const std::string sig = Str(t, 0, 4);
    seen.insert(sig);
    EXPECT_EQ(AcpiSum(t.data(), t.size()), 0) << sig;
    EXPECT_EQ(U32(t, 4), t.size()) << sig;
  }
  EXPECT_EQ(seen, (std::set<std::string>{"FACP", "APIC", "MCFG", "DMAR"}));

  // FADT → DSDT and FACS.
  const Bytes fadt = TableAt(*blob, FindTable(*blob, "FACP")->gpa);
  const Bytes dsdt = TableAt(*blob, U64(fadt, fadt::kXDsdt));
  ExpectValidTable(dsdt, "DSDT", 2);
  const uint64_t facs_gpa = U64(fadt, fadt::kXFirmwareCtrl);
  EXPECT_EQ(facs_gpa % 64, 0u);
  EXPECT_EQ(Str(TableAt(*blob, facs_gpa), 0, 4), "FACS");
}

TEST(AcpiTables, TableListMatchesBytesAndDoesNotOverlap) {
  absl::StatusOr<AcpiBlob> blob = BuildAcpiTables(FullConfig());
  ASSERT_TRUE(blob.ok()) << blob.status();
  uint64_t prev_end = blob->base_gpa;
  for (const AcpiBlob::Table& t : blob->tables) {
    EXPECT_GE(t.gpa, prev_end) << t.signature;
    EXPECT_EQ(t.gpa % 16, 0u) << t.signature;
    EXPECT_EQ(Str(blob->bytes, t.gpa - blob->base_gpa, t.signature.size()), t.signature);
    prev_end = t.gpa + t.size;
  }
  EXPECT_EQ(prev_end, blob->base_gpa + blob->bytes.size());
  EXPECT_LE(blob->bytes.size(), 0x10000u);
}

TEST(AcpiTables, DmarOnlyWithVtd) {
  AcpiConfig c = FullConfig();
  c.vtd.reset();
  absl::StatusOr<AcpiBlob> blob = BuildAcpiTables(c);
  ASSERT_TRUE(blob.ok()) << blob.status();
  EXPECT_EQ(FindTable(*blob, "DMAR"), nullptr);
  const Bytes xsdt = TableAt(*blob, FindTable(*blob, "XSDT")->gpa);
  EXPECT_EQ(xsdt.size(), 36u + 3 * 8);
}

TEST(AcpiTables, BaseAddressIsHonoured) {
  AcpiConfig c = FullConfig();
  c.base_gpa = 0x7FF00000;
  absl::StatusOr<AcpiBlob> blob = BuildAcpiTables(c);
  ASSERT_TRUE(blob.ok()) << blob.status();
  EXPECT_EQ(blob->rsdp_gpa, 0x7FF00000u);
  const Bytes fadt = TableAt(*blob, FindTable(*blob, "FACP")->gpa);
  EXPECT_EQ(U64(fadt, fadt::kXDsdt), FindTable(*blob, "DSDT")->gpa);
  EXPECT_GT(FindTable(*blob, "DSDT")->gpa, 0x7FF00000u);
}

TEST(AcpiTables, RejectsTooSmallArea) {
  AcpiConfig c = FullConfig();
  c.max_size = 0x400;
  absl::StatusOr<AcpiBlob> blob = BuildAcpiTables(c);
  EXPECT_EQ(blob.status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(AcpiTables, ManyCpusUseMultiBytePkgLengthsAndX2Apic) {
  AcpiConfig c = ConfigWithCpus(300);  // IDs 255-299 need x2APIC entries; \_SB exceeds 4 KiB
  absl::StatusOr<AcpiBlob> blob = BuildAcpiTables(c);
  ASSERT_TRUE(blob.ok()) << blob.status();
  for (const char* sig : {"DSDT", "APIC"}) {
    const Bytes t = TableAt(*blob, FindTable(*blob, sig)->gpa);
    EXPECT_EQ(AcpiSum(t.data(), t.size()), 0) << sig;
  }
  const Bytes madt = TableAt(*blob, FindTable(*blob, "APIC")->gpa);
  EXPECT_EQ(madt.size(), 44u + 255 * 8 + 45 * 16 + 12 + 2 * 10 + 6 + 12);
}

TEST(AcpiTables, MaxCpusExceedTheDefaultAreaWithoutCrashing) {
  AcpiConfig c = ConfigWithCpus(kMaxAcpiCpus);
  EXPECT_EQ(BuildAcpiTables(c).status().code(), absl::StatusCode::kInvalidArgument);
  c.max_size = 1 << 20;
  EXPECT_TRUE(BuildAcpiTables(c).ok());
}

TEST(AcpiTables, RejectsInvalidConfig) {
  AcpiConfig c = FullConfig();
  c.apic_ids = {1, 1};
  EXPECT_EQ(BuildAcpiTables(c).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(AcpiTables, WritesIntoGuestMemory) {
  absl::StatusOr<std::unique_ptr<GuestMemory>> mem = GuestMemory::Create({{0, 0x100000}});
  ASSERT_TRUE(mem.ok()) << mem.status();
  absl::StatusOr<AcpiBlob> blob = BuildAcpiTables(FullConfig());
  ASSERT_TRUE(blob.ok()) << blob.status();
  ASSERT_TRUE(WriteAcpiTables(*blob, **mem).ok());
  Bytes back(blob->bytes.size());
  ASSERT_TRUE((*mem)->Read(blob->base_gpa, back.data(), back.size()).ok());
  EXPECT_EQ(back, blob->bytes);

  // Outside guest RAM: error with context, not a crash.
  AcpiBlob far = *blob;
  far.base_gpa = 0x200000;
  absl::Status s = WriteAcpiTables(far, **mem);
  EXPECT_FALSE(s.ok());
  EXPECT_NE(s.message().find("ACPI"), std::string::npos);
}

}  // namespace
}  // namespace ionest
