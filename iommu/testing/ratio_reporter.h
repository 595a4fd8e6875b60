// Google Benchmark console reporter that also prints every benchmark's CPU ns/op as a ratio to a
// baseline benchmark of the same run (the IOMMU benchmarks' tables in docs/iommu-benchmarks.md).
#pragma once

#include <unistd.h>

#include <cstdio>
#include <string>
#include <utility>
#include <vector>

#include "benchmark/benchmark.h"

namespace ionest::iommu_testing {

class RatioReporter : public benchmark::ConsoleReporter {
 public:
  // `baseline`: benchmark name the ratios divide by; `column`: the ratio column's heading.
  RatioReporter(std::string baseline, std::string column)
      : ConsoleReporter(isatty(STDOUT_FILENO) ? OO_Color : OO_None),
        baseline_(std::move(baseline)),
        column_(std::move(column)) {}
  void ReportRuns(const std::vector<Run>& runs) override {
    ConsoleReporter::ReportRuns(runs);
    for (const Run& r : runs)
      if (r.run_type == Run::RT_Iteration && !r.error_occurred)
        results_.emplace_back(r.benchmark_name(), r.GetAdjustedCPUTime());
  }
  void Finalize() override {
    ConsoleReporter::Finalize();
    double base = 0;
    for (auto& [name, ns] : results_)
      if (name == baseline_) base = ns;
    if (base <= 0) return;
    std::printf("\n%-32s %12s %10s\n", "benchmark", "cpu ns/op", column_.c_str());
    for (auto& [name, ns] : results_) std::printf("%-32s %12.1f %10.2f\n", name.c_str(), ns, ns / base);
  }

 private:
  std::string baseline_, column_;
  std::vector<std::pair<std::string, double>> results_;
};

}  // namespace ionest::iommu_testing
