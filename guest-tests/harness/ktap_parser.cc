#include "guest-tests/harness/ktap_parser.h"

#include <cctype>
#include <charconv>
#include <initializer_list>
#include <string>
#include <utility>


namespace ionest::ktap {
namespace {

// Debian's Abseil has its own string_view type, so this file uses std only.
std::string Cat(std::initializer_list<std::string_view> parts) {
  std::string s;
  for (std::string_view p : parts) s.append(p);
  return s;
}
std::string Num(int n) { return std::to_string(n); }

bool ConsumePrefix(std::string_view& s, std::string_view prefix) {
  if (!s.starts_with(prefix)) return false;
  s.remove_prefix(prefix.size());
  return true;
}

std::string_view StripSpaces(std::string_view s) {
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.front()))) s.remove_prefix(1);
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back()))) s.remove_suffix(1);
  return s;
}

bool StartsWithIgnoreCase(std::string_view s, std::string_view prefix) {
  if (s.size() < prefix.size()) return false;
  for (size_t i = 0; i < prefix.size(); ++i) {
    if (std::tolower(static_cast<unsigned char>(s[i])) != std::tolower(static_cast<unsigned char>(prefix[i]))) {
      return false;
    }
  }
  return true;
}

// Parses a leading decimal number; advances `s` past it.
bool ConsumeNumber(std::string_view& s, int& value) {
  size_t digits = 0;
  while (digits < s.size() && std::isdigit(static_cast<unsigned char>(s[digits]))) ++digits;
  if (digits == 0 || digits > 9) return false;
  std::from_chars(s.data(), s.data() + digits, value);
  s.remove_prefix(digits);
  return true;
}

}  // namespace

void Parser::Feed(std::string_view line) {
  while (!line.empty() && (line.back() == '\r' || line.back() == '\n' || line.back() == ' ')) {
    line.remove_suffix(1);
  }
  int indent = 0;
  size_t pos = 0;
  for (; pos < line.size() && (line[pos] == ' ' || line[pos] == '\t'); ++pos) {
    indent += line[pos] == '\t' ? 8 : 1;
  }
  std::string_view content = line.substr(pos);

  if (content.starts_with("KTAP version ") || content.starts_with("TAP version ")) {
    if (levels_.empty()) {
      levels_.push_back(Level{.indent = indent});
      saw_header_ = true;
    } else if (indent > levels_.back().indent) {
      levels_.push_back(Level{.indent = indent});
    } else if (!(levels_.size() == 1 && indent == levels_[0].indent && levels_[0].plan < 0 &&
                 levels_[0].results == 0)) {
      errors_.push_back(Cat({"unexpected KTAP header (guest restarted?): ", content}));
    }
    return;
  }

  if (content.starts_with("1..")) {
    std::string_view rest = content.substr(3);
    int plan = 0;
    if (!ConsumeNumber(rest, plan)) return;
    if (!rest.empty() && rest[0] != ' ' && rest[0] != '#') return;
    Level& level = LevelFor(indent);
    if (level.plan >= 0) {
      errors_.push_back(Cat({"duplicate plan: ", content}));
    } else {
      level.plan = plan;
    }
    return;
  }

  bool ok;
  std::string_view rest = content;
  if (ConsumePrefix(rest, "not ok ")) {
    ok = false;
  } else if (ConsumePrefix(rest, "ok ")) {
    ok = true;
  } else {
    return;  // not KTAP
  }
  int number = 0;
  if (!ConsumeNumber(rest, number)) return;
  if (!rest.empty() && rest[0] != ' ') return;
  rest = StripSpaces(rest);
  ConsumePrefix(rest, "- ");
  std::string_view name = rest;
  std::string_view directive;
  if (size_t hash = rest.find('#'); hash != std::string_view::npos) {
    name = StripSpaces(rest.substr(0, hash));
    directive = StripSpaces(rest.substr(hash + 1));
  }
  OnResult(indent, ok, number, name, directive);
}

Parser::Level& Parser::LevelFor(int indent) {
  if (levels_.empty()) {
    levels_.push_back(Level{.indent = indent});
    return levels_.back();
  }
  if (levels_.size() == 1 && indent < levels_[0].indent) indent = levels_[0].indent;
  CloseLevelsDeeperThan(indent);
  if (indent > levels_.back().indent) levels_.push_back(Level{.indent = indent});
  return levels_.back();
}

void Parser::CloseLevelsDeeperThan(int indent) {
  while (levels_.size() > 1 && levels_.back().indent > indent) {
    Level closed = std::move(levels_.back());
    levels_.pop_back();
    for (int k = closed.results + 1; k <= closed.plan; ++k) {
      closed.done.push_back(Case{.name = Cat({"missing_result_", Num(k), "_of_", Num(closed.plan)}),
                                 .outcome = Outcome::kFail,
                                 .directive = "no result line (test crashed?)"});
    }
    if (closed.plan >= 0 && closed.results > closed.plan) {
      errors_.push_back(Cat({"subtest plan 1..", Num(closed.plan), " but ", Num(closed.results), " results"}));
    }
    // Subtests whose own parent never reported are kept (and flagged at Finish).
    for (Case& c : closed.children) closed.done.push_back(std::move(c));
    Level& parent = levels_.back();
    for (Case& c : closed.done) parent.children.push_back(std::move(c));
  }
}

void Parser::OnResult(int indent, bool ok, int number, std::string_view name, std::string_view directive) {
  Level& level = LevelFor(indent);
  ++level.results;
  if (number != level.results) {
    errors_.push_back(Cat({"result number ", Num(number), " out of order (expected ", Num(level.results), "): ", name}));
  }
  const bool skip = StartsWithIgnoreCase(directive, "SKIP") || StartsWithIgnoreCase(directive, "TODO");
  const Outcome outcome = skip ? Outcome::kSkip : (ok ? Outcome::kPass : Outcome::kFail);
  if (level.children.empty()) {
    level.done.push_back(Case{.name = std::string(name), .outcome = outcome, .directive = std::string(directive)});
    return;
  }
  bool child_failed = false;
  for (Case& c : level.children) {
    child_failed |= c.outcome == Outcome::kFail;
    c.name = Cat({name, ".", c.name});
    level.done.push_back(std::move(c));
  }
  level.children.clear();
  if (outcome == Outcome::kFail && !child_failed) {
    level.done.push_back(Case{.name = std::string(name), .outcome = Outcome::kFail,
                              .directive = "parent reported not ok, no subtest failed"});
  }
}

bool Parser::TopLevelComplete() const {
  return !levels_.empty() && levels_[0].plan >= 0 && levels_.size() == 1 &&
         levels_[0].results >= levels_[0].plan;
}

Summary Parser::Finish() {
  Summary s;
  s.saw_header = saw_header_;
  if (levels_.empty()) {
    errors_.push_back("no KTAP output");
  } else {
    if (levels_.size() > 1) {
      CloseLevelsDeeperThan(levels_[0].indent);
    }
    Level& top = levels_[0];
    if (!top.children.empty()) {
      errors_.push_back("subtests without a parent result line (test crashed?)");
      for (Case& c : top.children) {
        c.name = Cat({"unfinished.", c.name});
        top.done.push_back(std::move(c));
      }
      top.children.clear();
    }
    if (!saw_header_) errors_.push_back("missing 'KTAP version 1' header");
    s.saw_plan = top.plan >= 0;
    if (!s.saw_plan) {
      errors_.push_back("missing top-level plan (1..N)");
    } else if (top.results > top.plan) {
      errors_.push_back(Cat({"plan 1..", Num(top.plan), " but ", Num(top.results), " results"}));
    }
    for (int k = top.results + 1; k <= top.plan; ++k) {
      top.done.push_back(Case{.name = Cat({"missing_result_", Num(k), "_of_", Num(top.plan)}),
                              .outcome = Outcome::kFail, .directive = "no result line"});
    }
    s.cases = std::move(top.done);
  }
  levels_.clear();
  for (const Case& c : s.cases) {
    switch (c.outcome) {
      case Outcome::kPass: ++s.passed; break;
      case Outcome::kFail: ++s.failed; break;
      case Outcome::kSkip: ++s.skipped; break;
    }
  }
  s.errors = std::move(errors_);
  s.failed += static_cast<int>(s.errors.size());
  return s;
}

}  // namespace ionest::ktap
