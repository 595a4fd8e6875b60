#include "iommu/vtd/caps.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace ionest::vtd {
namespace {

using ::testing::HasSubstr;

TEST(CapsTest, DefaultsMatchLinuxExampleProfile) {
  // notes §2 example (computed for one fault recording register).
  absl::StatusOr<VtdProfile> p = ParseVtdProfile("nfr=1,drd=off,dwd=off");
  ASSERT_TRUE(p.ok()) << p.status();
  EXPECT_EQ(p->Cap(), 0x0112008C222F0486ull);
  EXPECT_EQ(p->Ecap(), 0x1ED98A4F00F5Full);
  // The default also drains (issue 13): DRD (55) and DWD (54) on top of the example.
  p = ParseVtdProfile("nfr=1");
  ASSERT_TRUE(p.ok()) << p.status();
  EXPECT_EQ(p->Cap(), 0x01D2008C222F0486ull);
  EXPECT_EQ(p->Ecap(), 0x1ED98A4F00F5Full);
}

TEST(CapsTest, DrainingIsAdvertisedByDefaultAndCanBeTurnedOff) {
  absl::StatusOr<VtdProfile> p = ParseVtdProfile("");
  ASSERT_TRUE(p.ok());
  EXPECT_TRUE(p->Cap() & (1ull << 55));  // DRD
  EXPECT_TRUE(p->Cap() & (1ull << 54));  // DWD
  EXPECT_TRUE(p->drains());
  EXPECT_EQ(p->drain_timeout_ms, 1000u);
  p = ParseVtdProfile("drd=off,dwd=off,drain-timeout-ms=5");
  ASSERT_TRUE(p.ok());
  EXPECT_FALSE(p->Cap() & (3ull << 54));
  EXPECT_FALSE(p->drains());
  EXPECT_EQ(p->drain_timeout_ms, 5u);
  p = ParseVtdProfile("dwd=off");
  ASSERT_TRUE(p.ok());
  EXPECT_EQ((p->Cap() >> 54) & 3, 2u);  // DRD only: still drains
  EXPECT_TRUE(p->drains());
  EXPECT_FALSE(ParseVtdProfile("drain-timeout-ms=0").ok());
}

TEST(CapsTest, DefaultFields) {
  absl::StatusOr<VtdProfile> p = ParseVtdProfile("");
  ASSERT_TRUE(p.ok());
  const uint64_t cap = p->Cap(), ecap = p->Ecap();
  EXPECT_EQ((cap >> 40) & 0xff, 7u);           // NFR-1 = 7
  EXPECT_EQ(((cap >> 24) & 0x3ff) * 16, 0x220u);  // FRO
  EXPECT_EQ(((ecap >> 8) & 0x3ff) * 16, 0xf0u);   // IRO
  EXPECT_TRUE(cap & (1ull << 7));               // CM
  EXPECT_TRUE(ecap & (1ull << 43));             // SMTS
  EXPECT_EQ(p->window_size(), 0x1000u);
  EXPECT_EQ(p->max_pasid(), 1u << 20);
}

TEST(CapsTest, Aw57SetsFiveLevelBits) {
  absl::StatusOr<VtdProfile> p = ParseVtdProfile("aw=57");
  ASSERT_TRUE(p.ok());
  EXPECT_EQ((p->Cap() >> 8) & 0x1f, 0b01100u);  // SAGAW 4- and 5-level
  EXPECT_EQ((p->Cap() >> 16) & 0x3f, 56u);      // MGAW
  EXPECT_TRUE(p->Cap() & (1ull << 60));         // FL5LP
}

TEST(CapsTest, LegacyProfileClearsScalableBits) {
  absl::StatusOr<VtdProfile> p = ParseVtdProfile("sm=off,cm=off,ir=off");
  ASSERT_TRUE(p.ok()) << p.status();
  EXPECT_FALSE(p->Ecap() & (1ull << 43));
  EXPECT_FALSE(p->Ecap() & (1ull << 40));  // no PASID
  EXPECT_FALSE(p->Ecap() & (1ull << 29));  // no PRS
  EXPECT_FALSE(p->Ecap() & (1ull << 3));   // no IR
  EXPECT_FALSE(p->Ecap() & (1ull << 4));   // EIM dropped with IR (not given explicitly)
  EXPECT_FALSE(p->Cap() & (1ull << 7));
}

TEST(CapsTest, DefaultsYieldToExplicitChoices) {
  absl::StatusOr<VtdProfile> p = ParseVtdProfile("flts=off");
  ASSERT_TRUE(p.ok()) << p.status();
  EXPECT_FALSE(p->nesting);
  EXPECT_FALSE(p->Ecap() & (1ull << 47));
}

TEST(CapsTest, Errors) {
  struct Case {
    const char* options;
    const char* message;
  } cases[] = {
      {"bogus=1", "unknown vtd option 'bogus'"},
      {"sm=maybe", "not on/off"},
      {"aw=40", "aw must be 39, 48 or 57"},
      {"aw=99", "not an integer in"},
      {"nfr=0", "not an integer in"},
      {"sm", "not key=value"},
      {"qi=off", "sm=on requires qi=on"},
      {"nest=on,flts=off", "nest=on requires"},
      {"sm=off,ir=off,eim=on", "eim=on requires ir=on"},
      {"pasid-bits=0,prs=on", "prs=on requires pasid-bits"},
      {"aw=39", "flts=on requires aw=48"},
  };
  for (const Case& c : cases) {
    absl::StatusOr<VtdProfile> p = ParseVtdProfile(c.options);
    ASSERT_FALSE(p.ok()) << c.options;
    EXPECT_EQ(p.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(std::string(p.status().message()), HasSubstr(c.message)) << c.options;
  }
}

TEST(CapsTest, LargeNfrGrowsWindow) {
  absl::StatusOr<VtdProfile> p = ParseVtdProfile("nfr=256");
  ASSERT_TRUE(p.ok());
  EXPECT_EQ(p->window_size(), 0x2000u);  // 0x220 + 256*16 = 0x1220 → 8 KiB
  EXPECT_EQ((p->Cap() >> 40) & 0xff, 255u);
}

}  // namespace
}  // namespace ionest::vtd
