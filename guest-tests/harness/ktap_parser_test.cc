#include "guest-tests/harness/ktap_parser.h"

#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace ionest::ktap {
namespace {

using ::testing::ElementsAre;
using ::testing::Field;
using ::testing::HasSubstr;
using ::testing::IsEmpty;

Summary Parse(const std::vector<std::string>& lines) {
  Parser p;
  for (const auto& l : lines) p.Feed(l);
  return p.Finish();
}

std::vector<std::string> Names(const Summary& s) {
  std::vector<std::string> names;
  for (const auto& c : s.cases) names.push_back(c.name);
  return names;
}

TEST(KtapParser, AllPassWithConsoleNoiseAndCarriageReturns) {
  Summary s = Parse({"[    0.000000] Linux version 6.12", "ionest-init-start\r", "KTAP version 1\r", "1..2\r",
                     "[    9.1] virtio_blk virtio0: [vda] 32768 512-byte logical blocks", "ok 1 cpus\r",
                     "# diagnostic", "ok 2 - acpi\r"});
  EXPECT_TRUE(s.Ok());
  EXPECT_EQ(s.passed, 2);
  EXPECT_EQ(s.failed, 0);
  EXPECT_EQ(s.skipped, 0);
  EXPECT_THAT(Names(s), ElementsAre("cpus", "acpi"));
  EXPECT_THAT(s.errors, IsEmpty());
}

TEST(KtapParser, FailuresAndSkipsAreCounted) {
  Summary s = Parse({"KTAP version 1", "1..3", "ok 1 a", "not ok 2 b", "ok 3 c # SKIP no disk"});
  EXPECT_FALSE(s.Ok());
  EXPECT_EQ(s.passed, 1);
  EXPECT_EQ(s.failed, 1);
  EXPECT_EQ(s.skipped, 1);
  EXPECT_EQ(s.cases[2].directive, "SKIP no disk");
  EXPECT_EQ(s.cases[2].outcome, Outcome::kSkip);
}

TEST(KtapParser, NotOkWithSkipDirectiveIsASkip) {
  Summary s = Parse({"KTAP version 1", "1..1", "not ok 1 x # skip unsupported"});
  EXPECT_EQ(s.skipped, 1);
  EXPECT_EQ(s.failed, 0);
}

TEST(KtapParser, NestedSubtestsAreCountedAsLeavesWithParentPrefix) {
  Summary s = Parse({"KTAP version 1", "1..2", "    KTAP version 1", "    1..3", "    ok 1 read",
                     "    not ok 2 write", "    ok 3 readback # SKIP later", "not ok 1 blk", "ok 2 cpus"});
  EXPECT_THAT(Names(s), ElementsAre("blk.read", "blk.write", "blk.readback", "cpus"));
  EXPECT_EQ(s.passed, 2);
  EXPECT_EQ(s.failed, 1);
  EXPECT_EQ(s.skipped, 1);
  EXPECT_THAT(s.errors, IsEmpty());
}

TEST(KtapParser, DoublyNestedSubtests) {
  Summary s = Parse({"KTAP version 1", "1..1", "    KTAP version 1", "    1..1", "        KTAP version 1",
                     "        1..2", "        ok 1 x", "        ok 2 y", "    ok 1 inner", "ok 1 outer"});
  EXPECT_THAT(Names(s), ElementsAre("outer.inner.x", "outer.inner.y"));
  EXPECT_TRUE(s.Ok());
}

TEST(KtapParser, ParentNotOkWithoutFailingSubtestAddsFailure) {
  Summary s = Parse({"KTAP version 1", "1..1", "    1..1", "    ok 1 sub", "not ok 1 parent"});
  EXPECT_THAT(Names(s), ElementsAre("parent.sub", "parent"));
  EXPECT_EQ(s.passed, 1);
  EXPECT_EQ(s.failed, 1);
}

TEST(KtapParser, ParentOkDoesNotHideFailingSubtest) {
  Summary s = Parse({"KTAP version 1", "1..1", "    1..1", "    not ok 1 sub", "ok 1 parent"});
  EXPECT_EQ(s.failed, 1);
  EXPECT_FALSE(s.Ok());
}

TEST(KtapParser, MissingSubtestResultsFail) {
  Summary s = Parse({"KTAP version 1", "1..1", "    1..3", "    ok 1 a", "ok 1 p"});
  EXPECT_THAT(Names(s), ElementsAre("p.a", "p.missing_result_2_of_3", "p.missing_result_3_of_3"));
  EXPECT_EQ(s.failed, 2);
}

TEST(KtapParser, MissingPlanIsAnError) {
  Summary s = Parse({"KTAP version 1", "ok 1 a"});
  EXPECT_FALSE(s.saw_plan);
  EXPECT_FALSE(s.Ok());
  EXPECT_EQ(s.failed, 1);
  EXPECT_THAT(s.errors, ElementsAre(HasSubstr("missing top-level plan")));
}

TEST(KtapParser, NoOutputAtAllIsAnError) {
  Summary s = Parse({"[    1.0] Kernel panic - not syncing: VFS"});
  EXPECT_FALSE(s.Ok());
  EXPECT_EQ(s.passed, 0);
  EXPECT_GE(s.failed, 1);
  EXPECT_THAT(s.errors, ::testing::Contains(HasSubstr("no KTAP output")));
}

TEST(KtapParser, TruncatedRunCountsMissingResultsAsFailures) {
  Summary s = Parse({"KTAP version 1", "1..3", "ok 1 a"});
  EXPECT_EQ(s.passed, 1);
  EXPECT_EQ(s.failed, 2);
  EXPECT_THAT(Names(s), ElementsAre("a", "missing_result_2_of_3", "missing_result_3_of_3"));
}

TEST(KtapParser, TooManyResultsAndOutOfOrderAreErrors) {
  Summary s = Parse({"KTAP version 1", "1..1", "ok 1 a", "ok 3 b"});
  EXPECT_EQ(s.passed, 2);
  EXPECT_EQ(s.errors.size(), 2u);
  EXPECT_EQ(s.failed, 2);
}

TEST(KtapParser, SubtestsWithoutParentResultAreFlagged) {
  Summary s = Parse({"KTAP version 1", "1..1", "    KTAP version 1", "    1..2", "    ok 1 a"});
  EXPECT_THAT(Names(s), ElementsAre("unfinished.a", "unfinished.missing_result_2_of_2", "missing_result_1_of_1"));
  EXPECT_THAT(s.errors, ::testing::Contains(HasSubstr("without a parent")));
  EXPECT_FALSE(s.Ok());
}

TEST(KtapParser, SecondHeaderAfterResultsIsAnError) {
  Summary s = Parse({"KTAP version 1", "1..1", "ok 1 a", "KTAP version 1"});
  EXPECT_THAT(s.errors, ElementsAre(HasSubstr("unexpected KTAP header")));
}

TEST(KtapParser, AcceptsTapVersion14AndIgnoresLookalikes) {
  Summary s = Parse({"TAP version 14", "1..1", "okay 1 not a result", "ok1 nope", "1..x", "ok 1 real"});
  EXPECT_TRUE(s.Ok());
  EXPECT_THAT(Names(s), ElementsAre("real"));
}

TEST(KtapParser, TopLevelCompleteTracksPlan) {
  Parser p;
  EXPECT_FALSE(p.TopLevelComplete());
  p.Feed("KTAP version 1");
  p.Feed("1..2");
  p.Feed("ok 1 a");
  EXPECT_FALSE(p.TopLevelComplete());
  p.Feed("    1..1");
  p.Feed("    ok 1 s");
  EXPECT_FALSE(p.TopLevelComplete());
  p.Feed("ok 2 b");
  EXPECT_TRUE(p.TopLevelComplete());
}

}  // namespace
}  // namespace ionest::ktap
