// Captures the IOMMU event trace (iommu/trace.h) of a test: installs a sink on a temporary file
// for its lifetime; Lines() returns what was written, without the timestamps.
#pragma once

#include <cstdio>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "iommu/trace.h"

namespace ionest::iommu_testing {

class TraceCapture {
 public:
  explicit TraceCapture(uint32_t mask = trace::kAllClasses)
      : file_(std::tmpfile()), sink_(std::make_unique<trace::Sink>(file_, false, mask)) {
    trace::Install(sink_.get());
  }
  ~TraceCapture() {
    trace::Uninstall();
    sink_.reset();
    std::fclose(file_);
  }
  TraceCapture(const TraceCapture&) = delete;
  TraceCapture& operator=(const TraceCapture&) = delete;

  trace::Sink& sink() { return *sink_; }

  // Every line so far as "<model> <event> key=value...".
  std::vector<std::string> Lines() {
    sink_->Flush();
    std::fflush(file_);
    std::rewind(file_);
    std::vector<std::string> lines;
    std::string line;
    for (int c; (c = std::fgetc(file_)) != EOF;) {
      if (c != '\n') {
        line += static_cast<char>(c);
        continue;
      }
      const size_t space = line.find(' ');
      lines.push_back(space == std::string::npos ? line : line.substr(space + 1));
      line.clear();
    }
    return lines;
  }
  // The lines that start with `prefix` (e.g. "vtd fault ").
  std::vector<std::string> Lines(std::string_view prefix) {
    std::vector<std::string> out;
    for (std::string& l : Lines())
      if (l.rfind(prefix, 0) == 0) out.push_back(std::move(l));
    return out;
  }

 private:
  FILE* file_;
  std::unique_ptr<trace::Sink> sink_;
};

}  // namespace ionest::iommu_testing
