// Cost of tracking DMA in flight (issue 13 item 2, iommu/dma_drain.h) on the VT-d translate hit
// path, as ratios to the untracked hit in one run: Translate alone vs DmaSpace::InFlight +
// Translate (what a device does per DMA), the bracket alone, and the Read helper (bracket,
// Translate, 8-byte copy). Default profile, scalable mode, first-stage domain; 4096 4 KiB pages
// visited in a scattered order, IOTLB warm. The /threads:2 rows run two device threads on the same requester
// (the bracket's counters are per DmaSpace, shared by those threads). See docs/iommu-benchmarks.md.
#include <memory>
#include <utility>

#include "absl/synchronization/mutex.h"
#include "benchmark/benchmark.h"
#include "iommu/testing/bench_support.h"
#include "iommu/testing/table_builder.h"
#include "iommu/vtd/testing/vtd_test_env.h"

namespace ionest {
namespace {

constexpr int kPages = 4096;
constexpr uint64_t kIovaBase = 0x7f00'0000'0000ull;
constexpr uint16_t kRid = 0x10;

using iommu_testing::BenchCheck;

uint64_t Iova(uint64_t i) { return iommu_testing::ScatteredIova(kIovaBase, i, kPages); }

struct Fixture {
  std::unique_ptr<vtd::testing::VtdTestEnv> vtd;

  Fixture() {
    // The default profile (DRD/DWD on) with a first-stage DMA domain, as Linux sets it up.
    auto env = vtd::testing::VtdTestEnv::Create("");
    BenchCheck(env.ok(), "vtd env");
    vtd = std::move(*env);
    BenchCheck(vtd->iommu->profile().drains(), "draining advertised");
    BenchCheck(vtd->driver->Init(true).ok(), "vtd init");
    auto fl = iommu_testing::FirstStageTableBuilder::Create(*vtd->memory, *vtd->alloc, 4);
    BenchCheck(fl.ok(), "first stage");
    BenchCheck(fl->Map(kIovaBase, 0, kPages * kPage4K, kDmaRead | kDmaWrite, kPage4K, fs::kA | fs::kD).ok(), "map");
    BenchCheck(vtd->driver->tables().SetScalableContext(kRid, {.dte = true}).ok(), "context");
    BenchCheck(vtd->driver->tables()
                   .SetPasidEntry(kRid, 0, {.pgtt = vtd::kPgttFirstStage, .did = 1, .flptptr = fl->root()})
                   .ok(),
               "pasid entry");
    BenchCheck(vtd->driver->EnableTranslation().ok(), "vtd enable");
    for (uint64_t i = 0; i < 2 * kPages; ++i) BenchCheck(!space().Translate(Iova(i), 8, kDmaRead, {}).fault, "warm");
  }
  DmaSpace& space() { return vtd->iommu->ForRequester(kRid); }
};

Fixture& F() {
  static Fixture* f = new Fixture();
  return *f;
}

void BM_TranslateHit(benchmark::State& state) {
  DmaSpace& space = F().space();
  uint64_t i = state.thread_index() * 7919;
  for (auto _ : state) {
    Translation t = space.Translate(Iova(i++), 8, kDmaRead, {});
    benchmark::DoNotOptimize(t);
  }
}
BENCHMARK(BM_TranslateHit);
BENCHMARK(BM_TranslateHit)->Threads(2);

void BM_TranslateHitInFlight(benchmark::State& state) {
  DmaSpace& space = F().space();
  uint64_t i = state.thread_index() * 7919;
  for (auto _ : state) {
    const DmaSpace::InFlight dma = space.BeginDma();
    Translation t = space.Translate(Iova(i++), 8, kDmaRead, {});
    benchmark::DoNotOptimize(t);
  }
}
BENCHMARK(BM_TranslateHitInFlight);
BENCHMARK(BM_TranslateHitInFlight)->Threads(2);

// The bracket alone: Enter + Exit.
void BM_InFlightBracket(benchmark::State& state) {
  DmaSpace& space = F().space();
  for (auto _ : state) {
    const DmaSpace::InFlight dma = space.BeginDma();
    benchmark::DoNotOptimize(&dma);
  }
}
BENCHMARK(BM_InFlightBracket);

// DmaSpace::Read of 8 bytes: bracket + Translate hit + copy.
void BM_Read8(benchmark::State& state) {
  DmaSpace& space = F().space();
  uint64_t i = 0, v = 0;
  for (auto _ : state) {
    BenchCheck(space.Read(Iova(i++), &v, sizeof(v)).ok(), "read");
    benchmark::DoNotOptimize(v);
  }
}
BENCHMARK(BM_Read8);

}  // namespace
}  // namespace ionest

int main(int argc, char** argv) {
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);  // as iommu/iommu_bench.cc
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  ionest::iommu_testing::RatioReporter reporter("BM_TranslateHit", "x hit");
  benchmark::RunSpecifiedBenchmarks(&reporter);
  benchmark::Shutdown();
  return 0;
}
