#include "vmm/boot_timing.h"

#include "gtest/gtest.h"
#include "vmm/emulation_stats.h"

namespace ionest {
namespace {

using Clock = BootTiming::Clock;

void Feed(BootTiming& t, std::string_view s, Clock::time_point at) {
  for (char c : s) t.OnConsoleByte(static_cast<uint8_t>(c), at);
}

TEST(BootTimingTest, RecordsFirstByteAndMarker) {
  Clock::time_point start{};
  BootTiming t(start);
  EXPECT_FALSE(t.first_byte_seconds());
  Feed(t, "[    0.000] Linux version 6.12\r\n", start + std::chrono::seconds(2));
  EXPECT_DOUBLE_EQ(*t.first_byte_seconds(), 2.0);
  EXPECT_FALSE(t.init_seconds());
  Feed(t, "ionest-init-star", start + std::chrono::seconds(50));  // partial
  EXPECT_FALSE(t.init_seconds());
  Feed(t, "x\r\nionest-ionest-init-start\r\n", start + std::chrono::seconds(90));
  ASSERT_TRUE(t.init_seconds());
  EXPECT_DOUBLE_EQ(*t.init_seconds(), 90.0);
  Feed(t, "ionest-init-start", start + std::chrono::seconds(120));  // first occurrence wins
  EXPECT_DOUBLE_EQ(*t.init_seconds(), 90.0);
  EXPECT_NE(t.Report().find("90.00 s"), std::string::npos);
}

TEST(BootTimingTest, ReportsNotSeen) {
  BootTiming t;
  EXPECT_NE(t.Report().find("not seen"), std::string::npos);
}

TEST(EmulationStatsTest, CountsPerMnemonic) {
  EmulationStats s;
  EXPECT_EQ(s.Summary(), "none");
  s.Add("int3");
  s.Add("wait");
  s.Add("int3");
  EXPECT_EQ(s.Counts().at("int3"), 2u);
  EXPECT_EQ(s.Summary(), "int3 x2, wait x1");
}

}  // namespace
}  // namespace ionest
