// Cost of the IOMMU event trace (issue 13 item 6, iommu/trace.h) on the VT-d model, as ratios to
// the translate hit with no sink installed, in one run:
//  - the translate hit with tracing off and with every class on (the hit path has no hook: a hit
//    is not an event, so both must stay at 1.00);
//  - a faulting translate (legacy mode, no root entry: the fault epilogue runs, the fault registers
//    overflow after NFR) with tracing off and with faults traced into /dev/null through the
//    sink's writer thread;
//  - the hook itself, off: `if (trace::On(cls)) trace::Emit(...)` against an empty loop body.
// See docs/iommu-benchmarks.md.
#include <cstdio>
#include <memory>

#include "benchmark/benchmark.h"
#include "iommu/testing/bench_support.h"
#include "iommu/testing/table_builder.h"
#include "iommu/trace.h"
#include "iommu/vtd/testing/vtd_test_env.h"

namespace ionest {
namespace {

constexpr int kPages = 1024;
constexpr uint64_t kIovaBase = 0x4000'0000ull;
constexpr uint16_t kRid = 0x10;        // mapped through a second-stage table
constexpr uint16_t kNoRoot = 0x0508;   // bus 5: no root entry, every DMA faults

using iommu_testing::BenchCheck;

struct Env {
  std::unique_ptr<vtd::testing::VtdTestEnv> vtd;

  Env() {
    auto env = vtd::testing::VtdTestEnv::Create("sm=off");
    BenchCheck(env.ok(), "vtd env");
    vtd = std::move(*env);
    BenchCheck(vtd->driver->Init(false).ok(), "vtd init");
    auto sl = iommu_testing::SecondStageTableBuilder::Create(*vtd->memory, *vtd->alloc, 4);
    BenchCheck(sl.ok() && sl->Map(kIovaBase, 0, kPages * kPage4K, kDmaRead | kDmaWrite).ok(), "second stage");
    BenchCheck(vtd->driver->tables().SetLegacyContext(kRid, {.did = 1, .slptptr = sl->root()}).ok(), "context");
    BenchCheck(vtd->driver->EnableTranslation().ok(), "enable");
    for (uint64_t i = 0; i < kPages; ++i) BenchCheck(!Hit(i).fault, "warm");
  }
  Translation Hit(uint64_t i) {
    return vtd->iommu->ForRequester(kRid).Translate(iommu_testing::ScatteredIova(kIovaBase, i, kPages), 8, kDmaRead, {});
  }
};

Env& E() {
  static Env* e = new Env();
  return *e;
}

// A sink for every class into /dev/null, installed while it lives.
struct TraceOn {
  FILE* null = std::fopen("/dev/null", "w");
  trace::Sink sink{null, true, trace::kAllClasses};
  trace::ScopedInstall install{&sink};
  ~TraceOn() {
    if (sink.dropped()) std::fprintf(stderr, "(%s)\n", sink.Summary().c_str());
  }
};

void BM_TranslateHit(benchmark::State& state) {
  uint64_t i = 0;
  for (auto _ : state) benchmark::DoNotOptimize(E().Hit(i++));
}
BENCHMARK(BM_TranslateHit);

void BM_TranslateHitTraceOn(benchmark::State& state) {
  TraceOn on;
  uint64_t i = 0;
  for (auto _ : state) benchmark::DoNotOptimize(E().Hit(i++));
}
BENCHMARK(BM_TranslateHitTraceOn);

void Fault(benchmark::State& state) {
  DmaSpace& space = E().vtd->iommu->ForRequester(kNoRoot);
  uint64_t i = 0;
  for (auto _ : state) {
    Translation t = space.Translate(kIovaBase + (i++ & 0xff) * kPage4K, 8, kDmaRead, {});
    BenchCheck(t.fault.has_value(), "fault");
    benchmark::DoNotOptimize(t);
  }
}

void BM_TranslateFault(benchmark::State& state) { Fault(state); }
BENCHMARK(BM_TranslateFault);

void BM_TranslateFaultTraceOn(benchmark::State& state) {
  TraceOn on;
  Fault(state);
}
BENCHMARK(BM_TranslateFaultTraceOn);

// The hook with tracing off, against the same loop without it.
void BM_EmptyLoop(benchmark::State& state) {
  uint64_t i = 0;
  for (auto _ : state) benchmark::DoNotOptimize(++i);
}
BENCHMARK(BM_EmptyLoop);

void BM_HookOff(benchmark::State& state) {
  uint64_t i = 0;
  for (auto _ : state) {
    benchmark::DoNotOptimize(++i);
    if (trace::On(trace::kFault)) trace::Emit(trace::kFault, "bench", "x", {trace::Dec("i", i)});
  }
}
BENCHMARK(BM_HookOff);

}  // namespace
}  // namespace ionest

int main(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  ionest::iommu_testing::RatioReporter reporter("BM_TranslateHit", "x hit (off)");
  benchmark::RunSpecifiedBenchmarks(&reporter);
  benchmark::Shutdown();
  return 0;
}
