// SMMUv3 model benchmarks: DmaSpace::Translate on an IOTLB hit, a stage-1 miss and a nested miss
// (walk + insert), bypass, and invalidation through the command queue (TLBI range + CMD_SYNC),
// as ratios to a plain 8-byte guest-memory read in the same run. See docs/iommu-benchmarks.md.
#include <cstdio>
#include <cstdlib>
#include <memory>

#include "absl/synchronization/mutex.h"
#include "benchmark/benchmark.h"
#include "iommu/smmuv3/smmuv3_iommu.h"
#include "iommu/smmuv3/testing/smmuv3_driver.h"
#include "iommu/testing/bench_support.h"
#include "iommu/testing/vmsa_builder.h"

namespace ionest::smmuv3 {
namespace {

using iommu_testing::OffsetPhysMemory;
using iommu_testing::PageAllocator;
using iommu_testing::VmsaTableBuilder;

constexpr uint64_t kRam = 256ull << 20;
constexpr uint64_t kIpaOffset = 128ull << 20;  // nested: IPA x lives at PA x + 128 MiB
constexpr int kPages = 4096;                   // working set: 16 MiB of 4 KiB pages
constexpr uint64_t kIovaBase = 0x7f00'0000'0000ull;
constexpr uint16_t kS1Sid = 0x0100, kNestedSid = 0x0108, kBypassSid = 0x0110;
constexpr uint32_t kRW = kDmaRead | kDmaWrite;

void Check(bool ok, const char* what) {
  if (!ok) {
    std::fprintf(stderr, "benchmark setup failed: %s\n", what);
    std::abort();
  }
}

// One SMMU with a stage-1 stream (48-bit VA, 4 levels), a nested stream (4-level stage 1 in IPA
// space over a 3-level stage 2 with 4 KiB pages) and a bypass stream, each mapping kPages pages.
struct Smmu {
  std::unique_ptr<PageAllocator> alloc, ipa_alloc;
  std::unique_ptr<OffsetPhysMemory> ipa;
  iommu_testing::RecordingMsiSink msi;
  std::unique_ptr<Smmuv3Iommu> smmu;
  std::unique_ptr<testing::Smmuv3Driver> driver;

  Smmu(GuestMemory& mem, uint64_t pool, uint64_t ipa_pool, size_t iotlb_entries) {
    alloc = std::make_unique<PageAllocator>(mem, pool, 24ull << 20);
    Smmuv3Profile p;
    p.iotlb_entries = iotlb_entries;
    smmu = std::make_unique<Smmuv3Iommu>(mem, msi, p);
    driver = std::make_unique<testing::Smmuv3Driver>(*smmu, mem, *alloc);
    Check(driver->Probe().ok() && driver->Init().ok(), "driver init");
    auto s1 = *VmsaTableBuilder::CreateStage1(mem, *alloc, 48);
    Check(s1.Map(kIovaBase, 0, kPages * kPage4K, VmsaTableBuilder::Stage1Attrs(kRW)).ok(), "s1 map");
    const uint64_t cds = *driver->AllocCdTable(0);
    Check(driver->WriteCd(cds, 0, kS1FmtLinear, 0, testing::CdStage1(s1.root(), 1)).ok(), "cd");
    Check(driver->WriteSte(kS1Sid, testing::SteStage1(cds)).ok(), "s1 ste");

    auto s2 = *VmsaTableBuilder::Create(mem, *alloc, 40, 1);
    Check(s2.Map(0, kIpaOffset, 64ull << 20, VmsaTableBuilder::Stage2Attrs(kRW)).ok(), "s2 map");
    ipa = std::make_unique<OffsetPhysMemory>(mem, kIpaOffset);
    ipa_alloc = std::make_unique<PageAllocator>(*ipa, ipa_pool, 8ull << 20);
    auto ns1 = *VmsaTableBuilder::CreateStage1(*ipa, *ipa_alloc, 48);
    Check(ns1.Map(kIovaBase, 0, kPages * kPage4K, VmsaTableBuilder::Stage1Attrs(kRW)).ok(), "nested s1 map");
    const uint64_t cd_ipa = *ipa_alloc->AllocPage();
    const testing::CdWords cd = testing::CdStage1(ns1.root(), 2);
    Check(ipa->Write(cd_ipa, cd.w, sizeof(cd.w)).ok(), "nested cd");
    Check(driver->WriteSte(kNestedSid, testing::SteNested(cd_ipa, s2.root(), 1)).ok(), "nested ste");
    Check(driver->WriteSte(kBypassSid, testing::SteBypass()).ok(), "bypass ste");
  }
};

struct Fixture {
  std::unique_ptr<GuestMemory> mem;
  std::unique_ptr<Smmu> cached;    // IOTLB holds the whole working set
  std::unique_ptr<Smmu> uncached;  // 1-entry IOTLB: every scattered access misses
  Fixture() {
    mem = *GuestMemory::Create({{0, kRam}});
    cached = std::make_unique<Smmu>(*mem, 64ull << 20, 32ull << 20, 2 * kPages);
    uncached = std::make_unique<Smmu>(*mem, 96ull << 20, 40ull << 20, 1);
  }
};

}  // namespace

Fixture& F() {
  static Fixture* f = new Fixture();
  return *f;
}

namespace {

uint64_t Iova(uint64_t i) { return kIovaBase + ((i * 2654435761u) % kPages) * kPage4K + 0x18; }

void BM_GuestMemoryRead8(benchmark::State& state) { iommu_testing::GuestMemoryRead8(state, *F().mem, kPages); }
BENCHMARK(BM_GuestMemoryRead8);

void Translate(benchmark::State& state, DmaSpace& space) {
  uint64_t i = 0;
  for (auto _ : state) {
    Translation t = space.Translate(Iova(i++), 8, kDmaRead, {});
    benchmark::DoNotOptimize(t);
  }
  Check(!space.Translate(Iova(1), 8, kDmaRead, {}).fault, "translation ok");
}

void BM_Smmuv3TranslateHit(benchmark::State& state) {
  DmaSpace& space = F().cached->smmu->ForRequester(kS1Sid);
  for (int i = 0; i < kPages; ++i) (void)space.Translate(Iova(i), 8, kDmaRead, {});
  Translate(state, space);
}
BENCHMARK(BM_Smmuv3TranslateHit);

void BM_Smmuv3NestedTranslateHit(benchmark::State& state) {
  DmaSpace& space = F().cached->smmu->ForRequester(kNestedSid);
  for (int i = 0; i < kPages; ++i) (void)space.Translate(Iova(i), 8, kDmaRead, {});
  Translate(state, space);
}
BENCHMARK(BM_Smmuv3NestedTranslateHit);

void BM_Smmuv3Stage1Miss(benchmark::State& state) { Translate(state, F().uncached->smmu->ForRequester(kS1Sid)); }
BENCHMARK(BM_Smmuv3Stage1Miss);

void BM_Smmuv3NestedMiss(benchmark::State& state) {
  Translate(state, F().uncached->smmu->ForRequester(kNestedSid));
}
BENCHMARK(BM_Smmuv3NestedMiss);

void BM_Smmuv3Bypass(benchmark::State& state) {
  DmaSpace& space = F().cached->smmu->ForRequester(kBypassSid);
  uint64_t i = 0;
  for (auto _ : state) {
    Translation t = space.Translate(((i++ * 2654435761u) % kPages) * kPage4K, 8, kDmaRead, {});
    benchmark::DoNotOptimize(t);
  }
}
BENCHMARK(BM_Smmuv3Bypass);

// CMD_SYNC alone through the queue (Linux style: MSI written back into the entry), then a
// TLBI_NH_VA range of 32 pages (TG 4 KiB, NUM 15, SCALE 1) + CMD_SYNC over a full IOTLB.
void BM_Smmuv3CmdSync(benchmark::State& state) {
  testing::Smmuv3Driver& d = *F().cached->driver;
  for (auto _ : state) Check(d.Submit({}).ok(), "sync");
}
BENCHMARK(BM_Smmuv3CmdSync);

void BM_Smmuv3TlbiRange32(benchmark::State& state) {
  Smmu& s = *F().cached;
  DmaSpace& space = s.smmu->ForRequester(kS1Sid);
  for (int i = 0; i < kPages; ++i) (void)space.Translate(Iova(i), 8, kDmaRead, {});
  uint64_t i = 0;
  for (auto _ : state) {
    const uint64_t va = kIovaBase + ((i++ * 32) % kPages) * kPage4K;
    Check(s.driver->Submit({testing::CmdTlbiNhVa(0, 1, va, 1, 15, 1)}).ok(), "tlbi");
  }
}
BENCHMARK(BM_Smmuv3TlbiRange32);

}  // namespace
}  // namespace ionest::smmuv3

int main(int argc, char** argv) {
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);  // as iommu_bench.cc
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  ionest::smmuv3::F();  // set up (page tables, two SMMUs) outside the first measurement
  ionest::iommu_testing::RatioReporter reporter("BM_GuestMemoryRead8", "x read8");
  benchmark::RunSpecifiedBenchmarks(&reporter);
  benchmark::Shutdown();
  return 0;
}
