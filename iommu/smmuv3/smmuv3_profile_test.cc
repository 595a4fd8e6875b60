#include "iommu/smmuv3/smmuv3_profile.h"

#include "absl/strings/match.h"
#include "gtest/gtest.h"

namespace ionest::smmuv3 {
namespace {

TEST(Smmuv3ProfileTest, EmptyIsTheDefault) {
  auto p = ParseSmmuv3Profile("");
  ASSERT_TRUE(p.ok()) << p.status();
  EXPECT_EQ(Smmuv3ProfileString(*p), Smmuv3ProfileString(Smmuv3Profile{}));
}

TEST(Smmuv3ProfileTest, OptionsChangeTheirFields) {
  auto p = ParseSmmuv3Profile("s1=off,ssid-bits=8,stall=on,stall-max=16,oas=40,ril=no,gran64k=0,st-2level=off");
  ASSERT_TRUE(p.ok()) << p.status();
  EXPECT_FALSE(p->stage1);
  EXPECT_TRUE(p->stage2);
  EXPECT_EQ(p->ssid_bits, 8);
  EXPECT_TRUE(p->stall);
  EXPECT_EQ(p->max_stalls, 16);
  EXPECT_EQ(p->oas_bits, 40);
  EXPECT_FALSE(p->range_invalidation);
  EXPECT_FALSE(p->gran64k);
  EXPECT_FALSE(p->two_level_stream_table);
}

TEST(Smmuv3ProfileTest, ProfileStringRoundTrips) {
  auto p = ParseSmmuv3Profile("s2=off,pri=on,ats=on,sid-bits=12,cd-2level=off");
  ASSERT_TRUE(p.ok()) << p.status();
  auto again = ParseSmmuv3Profile(Smmuv3ProfileString(*p));
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ(Smmuv3ProfileString(*again), Smmuv3ProfileString(*p));
}

TEST(Smmuv3ProfileTest, ErrorsNameTheProblem) {
  const std::pair<const char*, const char*> cases[] = {
      {"bogus=1", "unknown smmuv3 option 'bogus'"},
      {"s1", "not key=value"},
      {"s1=maybe", "smmuv3 option s1: 'maybe' is not on/off"},
      {"ssid-bits=21", "not an integer in [0, 20]"},
      {"s1=off,s2=off", "at least one translation stage"},
      {"oas=41", "oas_bits must be"},
      {"gran4k=off,gran16k=off,gran64k=off", "no translation granule"},
  };
  for (const auto& [opts, want] : cases) {
    auto p = ParseSmmuv3Profile(opts);
    ASSERT_FALSE(p.ok()) << opts;
    EXPECT_TRUE(absl::StrContains(p.status().message(), want)) << opts << ": " << p.status();
  }
}

}  // namespace
}  // namespace ionest::smmuv3
