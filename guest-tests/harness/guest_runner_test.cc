#include "guest-tests/harness/guest_runner.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace ionest::guest {
namespace {

using ::testing::ElementsAre;

TEST(ParseVtdCapsTest, ParsesPrintVtdCapsLine) {
  auto caps = ParseVtdCaps("cap=0x00d2008c40660462 ecap=0x0000000000f0050f\n");
  ASSERT_TRUE(caps.has_value());
  EXPECT_EQ(caps->cap, 0x00d2008c40660462u);
  EXPECT_EQ(caps->ecap, 0xf0050fu);
}

TEST(ParseVtdCapsTest, EcapIsNotMistakenForCap) {
  auto caps = ParseVtdCaps("ecap=0x2 cap=0x1");
  ASSERT_TRUE(caps.has_value());
  EXPECT_EQ(caps->cap, 1u);
  EXPECT_EQ(caps->ecap, 2u);
}

TEST(ParseVtdCapsTest, RejectsMissingOrMalformedFields) {
  EXPECT_FALSE(ParseVtdCaps("").has_value());
  EXPECT_FALSE(ParseVtdCaps("cap=0x1").has_value());
  EXPECT_FALSE(ParseVtdCaps("cap=1 ecap=0x2").has_value());
  EXPECT_FALSE(ParseVtdCaps("cap=0x ecap=0x2").has_value());
  EXPECT_FALSE(ParseVtdCaps("cap=0x11112222333344445 ecap=0x2").has_value());  // > 64 bits
  EXPECT_FALSE(ParseVtdCaps("unknown option --print-vtd-caps").has_value());
}

TEST(PrintVtdCapsCommandTest, KeepsOnlyTheProfile) {
  RunnerOptions o;
  o.vmm = "/x/ionest";
  o.vmm_args = {"--device", "dmatest", "--vtd-profile", "sva"};
  EXPECT_THAT(PrintVtdCapsCommand(o), ElementsAre("/x/ionest", "--iommu=vtd", "--vtd-profile", "sva",
                                                  "--print-vtd-caps"));
  o.vmm_args = {"--vtd-profile=legacy", "--device=dmatest"};
  EXPECT_THAT(PrintVtdCapsCommand(o), ElementsAre("/x/ionest", "--iommu=vtd", "--vtd-profile=legacy",
                                                  "--print-vtd-caps"));
}

}  // namespace
}  // namespace ionest::guest
