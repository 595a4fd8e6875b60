// Incremental parser for KTAP v1 (Documentation/dev-tools/ktap.rst), as printed
// by the guest /init on the serial console, mixed with kernel log lines.
//
// Accepted: "KTAP version 1" (or "TAP version 13/14") headers, plans "1..N",
// results "ok N name", "not ok N name", optional "- " before the name and
// "# SKIP reason" / "# TODO reason" directives. Nested subtests are indented
// (any deeper indentation opens a subtest); their results are attached to the
// next result line at the parent's indentation. Lines that are not KTAP are
// ignored (console noise).
//
// Counting is over leaf cases: a test with subtests counts as its subtests,
// plus one failure if the parent reports "not ok" although no subtest failed.
// Structural problems (missing header/plan, result count != plan, results out
// of order, subtests never closed by a parent result) are reported in
// `errors` and count as failures.
//
// Thread-compatible (no internal locking).
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace ionest::ktap {

enum class Outcome { kPass, kFail, kSkip };

struct Case {
  std::string name;  // "parent.child" for nested cases
  Outcome outcome = Outcome::kPass;
  std::string directive;  // text after '#', e.g. "SKIP no disk"
};

struct Summary {
  std::vector<Case> cases;
  std::vector<std::string> errors;
  int passed = 0;
  int failed = 0;  // failed cases + structural errors
  int skipped = 0;
  bool saw_header = false;
  bool saw_plan = false;
  bool Ok() const { return failed == 0 && errors.empty() && saw_plan; }
};

class Parser {
 public:
  // Feeds one console line (without the newline; a trailing '\r' is ignored).
  void Feed(std::string_view line);
  // True once the top-level plan is known and that many results were seen.
  bool TopLevelComplete() const;
  // Closes open subtests and validates the top level. Call once, at the end.
  Summary Finish();

 private:
  struct Level {
    int indent = 0;
    int plan = -1;       // -1: no plan seen
    int results = 0;     // result lines seen at this level
    std::vector<Case> children;  // leaves from deeper levels awaiting a parent result
    std::vector<Case> done;      // leaves attached at this level
  };
  void OnResult(int indent, bool ok, int number, std::string_view name, std::string_view directive);
  void CloseLevelsDeeperThan(int indent);
  Level& LevelFor(int indent);

  std::vector<Level> levels_;  // levels_[0] is the top level once a header/plan/result is seen
  std::vector<std::string> errors_;
  bool saw_header_ = false;
};

}  // namespace ionest::ktap
