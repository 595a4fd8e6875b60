// Translate-hit cost through DmaSpace::Translate: virtio-iommu vs VT-d vs no IOMMU, as ratios to
// the VT-d hit in one run. Same working set for both models: 4096 4 KiB pages at one IOVA base,
// visited in a scattered order, caches warm (4096-entry IOTLBs). See docs/iommu-benchmarks.md
// for how iommu/iommu_bench.cc measures the core.
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "benchmark/benchmark.h"
#include "iommu/testing/bench_support.h"
#include "iommu/testing/table_builder.h"
#include "iommu/virtio/testing/viommu_test_bench.h"
#include "iommu/vtd/testing/vtd_test_env.h"

namespace ionest {
namespace {

constexpr int kPages = 4096;
constexpr uint64_t kIovaBase = 0x7f00'0000'0000ull;
constexpr uint16_t kRid = 0x10;

void Check(bool ok, const char* what) {
  if (!ok) {
    std::fprintf(stderr, "benchmark setup failed: %s\n", what);
    std::abort();
  }
}

uint64_t Iova(uint64_t i) { return kIovaBase + ((i * 2654435761u) % kPages) * kPage4K + 0x18; }

struct Fixture {
  std::unique_ptr<vtd::testing::VtdTestEnv> vtd;
  std::unique_ptr<viommu_testing::ViommuBench> viommu;
  std::unique_ptr<BypassDmaProvider> none;

  Fixture() {
    auto env = vtd::testing::VtdTestEnv::Create("sm=off");
    Check(env.ok(), "vtd env");
    vtd = std::move(*env);
    Check(vtd->driver->Init(false).ok(), "vtd init");
    auto sl = iommu_testing::SecondStageTableBuilder::Create(*vtd->memory, *vtd->alloc, 4);
    Check(sl.ok(), "second stage");
    Check(sl->Map(kIovaBase, 0, kPages * kPage4K, kDmaRead | kDmaWrite).ok(), "vtd map");
    Check(vtd->driver->tables().SetLegacyContext(kRid, {.tt = 0, .aw = 2, .did = 1, .slptptr = sl->root()}).ok(),
          "context");
    Check(vtd->driver->EnableTranslation().ok(), "vtd enable");

    auto b = viommu_testing::ViommuBench::Create({}, 64ull << 20);
    Check(b.ok(), "viommu bench");
    viommu = std::move(*b);
    Check(viommu->Start(), "viommu start");
    Check(viommu->Attach(1, kRid) == VirtioIommu::kSOk, "attach");
    Check(viommu->Attach(2, kRid + 1, VirtioIommu::kAttachFBypass) == VirtioIommu::kSOk, "attach bypass");
    // One MAP per page, as Linux's strict DMA domains do.
    for (uint64_t p = 0; p < kPages; ++p)
      Check(viommu->Map(1, kIovaBase + p * kPage4K, kIovaBase + p * kPage4K + 0xFFF, p * kPage4K,
                        VirtioIommu::kMapFRead | VirtioIommu::kMapFWrite) == VirtioIommu::kSOk,
            "map");
    none = std::make_unique<BypassDmaProvider>(*viommu->mem);
    // Warm every cache.
    for (uint64_t i = 0; i < 2 * kPages; ++i) {
      Check(!vtd->iommu->ForRequester(kRid).Translate(Iova(i), 8, kDmaRead, {}).fault, "vtd warm");
      Check(!viommu->iommu->ForRequester(kRid).Translate(Iova(i), 8, kDmaRead, {}).fault, "viommu warm");
    }
  }
};

Fixture& F() {
  static Fixture* f = new Fixture();
  return *f;
}

void Run(benchmark::State& state, DmaSpace& space) {
  uint64_t i = 0;
  for (auto _ : state) {
    Translation t = space.Translate(Iova(i++), 8, kDmaRead, {});
    benchmark::DoNotOptimize(t);
  }
  Check(!space.Translate(Iova(1), 8, kDmaRead, {}).fault, "translates");
}

void BM_VtdTranslateHit(benchmark::State& state) { Run(state, F().vtd->iommu->ForRequester(kRid)); }
BENCHMARK(BM_VtdTranslateHit);

void BM_ViommuTranslateHit(benchmark::State& state) {
  const uint64_t misses = F().viommu->iommu->stats().iotlb.misses;
  Run(state, F().viommu->iommu->ForRequester(kRid));
  Check(F().viommu->iommu->stats().iotlb.misses == misses, "all IOTLB hits");
}
BENCHMARK(BM_ViommuTranslateHit);

// Endpoint in an ATTACH_F_BYPASS domain: identity without the IOTLB.
void BM_ViommuBypassDomain(benchmark::State& state) { Run(state, F().viommu->iommu->ForRequester(kRid + 1)); }
BENCHMARK(BM_ViommuBypassDomain);

// No IOMMU (--iommu=none): BypassDmaProvider's identity space.
void BM_NoIommu(benchmark::State& state) { Run(state, F().none->ForRequester(kRid)); }
BENCHMARK(BM_NoIommu);

}  // namespace
}  // namespace ionest

int main(int argc, char** argv) {
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);  // as iommu_bench.cc
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  ionest::iommu_testing::RatioReporter reporter("BM_VtdTranslateHit", "x vtd hit");
  benchmark::RunSpecifiedBenchmarks(&reporter);
  benchmark::Shutdown();
  return 0;
}
