// Benchmarks that need the full VT-d model: queued-invalidation processing as Linux submits it
// (qi_submit_sync through MMIO), DMA translation through the model (IOTLB hit / miss), a device
// DMA job end to end, and interrupt remapping.
#include <memory>

#include "benchmark/benchmark.h"
#include "iommu/first_stage.h"
#include "iommu/vtd/testing/vtd_builders.h"
#include "tests/machine/machine_fixture.h"

namespace ionest::machine_test {
namespace {

using namespace dmatest;
using iommu_testing::FirstStageTableBuilder;

constexpr uint16_t kDid = 2;
constexpr uint64_t kIova = 0x40000000;
constexpr uint64_t kMapped = 4ull << 20;  // 1024 pages

struct Bench {
  std::unique_ptr<TestMachine> m;
  std::optional<FirstStageTableBuilder> fl;

  explicit Bench(bool synchronous_device = true) {
    MachineOptions o;
    o.device.synchronous = synchronous_device;
    m = *TestMachine::Create(o);
    if (!m->driver().Boot({}).ok()) std::abort();
    fl.emplace(*FirstStageTableBuilder::Create(m->memory(), m->alloc(), 4));
    if (!fl->Map(kIova, TestMachine::kDataBase, kMapped, kDmaRead | kDmaWrite, kPage4K, fs::kA | fs::kD).ok())
      std::abort();
    if (!m->driver().AttachScalable(m->rid(), {true, true, false}).ok()) std::abort();
    vtd::testing::PasidEntrySpec pe;
    pe.pgtt = 1;
    pe.did = kDid;
    pe.flptptr = fl->root();
    if (!m->driver().SetPasid(m->rid(), 0, pe, false).ok()) std::abort();
    if (!m->driver().EnableTranslation().ok()) std::abort();
    m->EnableBusMaster();
  }
  DmaSpace& space() { return m->iommu().ForRequester(m->rid()); }
  void Warm() {
    for (uint64_t off = 0; off < kMapped; off += 4096) space().Translate(kIova + off, 8, kDmaRead, {});
  }
};

// qi_submit_sync with one page-selective P_IOTLB descriptor + wait, IOTLB populated.
void BM_QiSubmitSyncPasidPage(benchmark::State& state) {
  Bench b;
  b.Warm();
  uint64_t page = 0;
  for (auto _ : state) {
    auto r = b.m->driver().SubmitSync({vtd::testing::PIotlbPage(kDid, 0, kIova + page * 4096, 0)});
    benchmark::DoNotOptimize(r);
    page = (page + 1) % (kMapped / 4096);
  }
}
BENCHMARK(BM_QiSubmitSyncPasidPage);

// A batch of 16 page-selective invalidations + wait (Linux batches up to 16 descriptors).
void BM_QiSubmitSyncBatch16(benchmark::State& state) {
  Bench b;
  b.Warm();
  std::vector<vtd::InvDescriptor> batch;
  for (int i = 0; i < 16; ++i) batch.push_back(vtd::testing::PIotlbPage(kDid, 0, kIova + i * 4096ull, 0));
  for (auto _ : state) benchmark::DoNotOptimize(b.m->driver().SubmitSync(batch));
  state.SetItemsProcessed(state.iterations() * 16);
}
BENCHMARK(BM_QiSubmitSyncBatch16);

// Domain-wide flush of a full IOTLB (unmap of a large range / domain teardown).
void BM_QiPasidFlushFullIotlb(benchmark::State& state) {
  Bench b;
  for (auto _ : state) {
    state.PauseTiming();
    b.Warm();
    state.ResumeTiming();
    benchmark::DoNotOptimize(b.m->driver().SubmitSync({vtd::testing::PIotlbPasid(kDid, 0)}));
  }
}
BENCHMARK(BM_QiPasidFlushFullIotlb);

void BM_TranslateIotlbHit(benchmark::State& state) {
  Bench b;
  b.Warm();
  uint64_t page = 0;
  for (auto _ : state) {
    benchmark::DoNotOptimize(b.space().Translate(kIova + page * 4096, 64, kDmaRead, {}));
    page = (page + 1) % (kMapped / 4096);
  }
}
BENCHMARK(BM_TranslateIotlbHit);

void BM_TranslateAfterGlobalInvalidation(benchmark::State& state) {
  Bench b;
  for (auto _ : state) {
    state.PauseTiming();
    b.m->driver().SubmitSync({vtd::testing::IotlbGlobal(), vtd::testing::PasidCacheInv(3, 0, 0),
                              vtd::testing::CcGlobal()});
    state.ResumeTiming();
    benchmark::DoNotOptimize(b.space().Translate(kIova, 64, kDmaRead, {}));
  }
}
BENCHMARK(BM_TranslateAfterGlobalInvalidation);

// A 4 KiB copy job of the test device (synchronous mode: doorbell to completion).
void BM_DeviceCopy4K(benchmark::State& state) {
  Bench b;
  for (auto _ : state) {
    TestMachine::JobResult r = b.m->RunJob(kOpCopy, kIova, kIova + 0x100000, 4096);
    if (!r.done()) state.SkipWithError("job failed");
  }
  state.SetBytesProcessed(state.iterations() * 4096);
}
BENCHMARK(BM_DeviceCopy4K);

void BM_RemappedMsi(benchmark::State& state) {
  Bench b;
  vtd::testing::IrteSpec e;
  e.vector = 0x40;
  e.sid = b.m->rid();
  e.svt = 1;
  if (!b.m->driver().WriteIrte(9, e).ok()) std::abort();
  const MsiMessage msg = vtd::testing::RemappableMsi(9, b.m->rid());
  for (auto _ : state) {
    benchmark::DoNotOptimize(b.m->iommu().SendMsi(msg));
    if (b.m->cpu().count() > 4096) b.m->cpu().Take();
  }
}
BENCHMARK(BM_RemappedMsi);

}  // namespace
}  // namespace ionest::machine_test

BENCHMARK_MAIN();
