// Shared pieces of the IOMMU benchmarks (docs/iommu-benchmarks.md): the guest-memory read they are
// compared with, and a console reporter that prints every benchmark's CPU ns/op as a ratio to a
// baseline benchmark of the same run.
#pragma once

#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <string>
#include <utility>
#include <vector>

#include "benchmark/benchmark.h"
#include "vmm/guest_memory.h"

namespace ionest::iommu_testing {

// Aborts a benchmark whose setup failed (a benchmark must not measure a broken fixture).
inline void BenchCheck(bool ok, const char* what) {
  if (!ok) {
    std::fprintf(stderr, "benchmark setup failed: %s\n", what);
    std::abort();
  }
}

// The i-th address of a scattered walk over `pages` 4 KiB pages from `base` (the order the
// benchmarks visit their working set in), at offset 0x18 in the page.
inline uint64_t ScatteredIova(uint64_t base, uint64_t i, uint64_t pages) {
  return base + ((i * 2654435761u) % pages) * 4096 + 0x18;
}

// The baseline: an 8-byte PhysMemory read of a scattered page among `pages` 4 KiB pages from 0.
inline void GuestMemoryRead8(benchmark::State& state, PhysMemory& mem, uint64_t pages) {
  uint64_t i = 0;
  for (auto _ : state) {
    auto v = mem.ReadObj<uint64_t>(((i++ * 2654435761u) % pages) * 4096 + 0x18);
    benchmark::DoNotOptimize(v);
  }
}

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
