// IOMMU core micro-benchmarks: IOTLB hit, table walks (the IOTLB-miss cost), invalidation
// processing, and a plain 8-byte guest-memory read as the baseline. See docs/iommu-benchmarks.md.
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
#include "iommu/iotlb.h"
#include "iommu/nested.h"
#include "iommu/testing/table_builder.h"

namespace ionest {
namespace {

using iommu_testing::FirstStageTableBuilder;
using iommu_testing::OffsetPhysMemory;
using iommu_testing::PageAllocator;
using iommu_testing::SecondStageTableBuilder;

constexpr uint64_t kRam = 256ull << 20;
constexpr uint64_t kGpaOffset = 128ull << 20;  // nested: GPA g lives at HPA g + 128 MiB
constexpr int kPages = 4096;                   // working set: 16 MiB of 4 KiB pages
constexpr uint64_t kIovaBase = 0x7f00'0000'0000ull;

void Check(bool ok, const char* what) {
  if (!ok) {
    std::fprintf(stderr, "benchmark setup failed: %s\n", what);
    std::abort();
  }
}

// Guest RAM with 4-level first-stage and second-stage tables mapping kPages pages at kIovaBase,
// and a nested setup (first-stage tables in GPA space, second stage mapping GPA [0, 64 MiB)).
struct Fixture {
  std::unique_ptr<GuestMemory> mem;
  std::unique_ptr<PageAllocator> alloc, fs_gpa_alloc;
  std::unique_ptr<OffsetPhysMemory> gpa_view;
  FirstStageConfig fs, nested_fs;
  SecondStageConfig ss, nested_ss;

  Fixture() {
    mem = *GuestMemory::Create({{0, kRam}});
    alloc = std::make_unique<PageAllocator>(*mem, 64ull << 20, 32ull << 20);
    auto f = *FirstStageTableBuilder::Create(*mem, *alloc, 4);
    auto s = *SecondStageTableBuilder::Create(*mem, *alloc, 4);
    Check(f.Map(kIovaBase, 0, kPages * kPage4K, kDmaRead | kDmaWrite, kPage4K, fs::kA | fs::kD).ok(), "fs map");
    Check(s.Map(kIovaBase, 0, kPages * kPage4K, kDmaRead | kDmaWrite).ok(), "ss map");
    fs.root = f.root();
    ss.root = s.root();
    ss.superpage_mask = kSuperpage2M | kSuperpage1G;

    auto ns = *SecondStageTableBuilder::Create(*mem, *alloc, 4);
    Check(ns.Map(0, kGpaOffset, 64ull << 20, kDmaRead | kDmaWrite).ok(), "nested ss map");
    gpa_view = std::make_unique<OffsetPhysMemory>(*mem, kGpaOffset);
    fs_gpa_alloc = std::make_unique<PageAllocator>(*gpa_view, 32ull << 20, 16ull << 20);
    auto nf = *FirstStageTableBuilder::Create(*gpa_view, *fs_gpa_alloc, 4);
    Check(nf.Map(kIovaBase, 0, kPages * kPage4K, kDmaRead | kDmaWrite, kPage4K, fs::kA | fs::kD).ok(), "nf map");
    nested_fs.root = nf.root();
    nested_ss = ss;
    nested_ss.root = ns.root();
  }
};

Fixture& F() {
  static Fixture* f = new Fixture();
  return *f;
}

// Page i of the working set in a scattered (but cheap to compute) order.
uint64_t Iova(uint64_t i) { return kIovaBase + ((i * 2654435761u) % kPages) * kPage4K + 0x18; }

void BM_GuestMemoryRead8(benchmark::State& state) { iommu_testing::GuestMemoryRead8(state, *F().mem, kPages); }
BENCHMARK(BM_GuestMemoryRead8);

void FillIotlb(Iotlb& tlb) {
  for (uint64_t p = 0; p < kPages; ++p) {
    WalkResult r = WalkSecondStage(*F().mem, F().ss, kIovaBase + p * kPage4K, kDmaRead);
    Check(r.ok, "walk for fill");
    tlb.Insert(1, kNoPasid, kIovaBase + p * kPage4K, r, IotlbType::kSecondStage, tlb.generation());
  }
  Check(tlb.size() == kPages, "iotlb full");
}

void BM_IotlbHit(benchmark::State& state) {
  Iotlb tlb(kPages);
  FillIotlb(tlb);
  uint64_t i = 0;
  for (auto _ : state) {
    auto hit = tlb.Lookup(1, kNoPasid, Iova(i++), kDmaRead);
    benchmark::DoNotOptimize(hit);
  }
  Check(tlb.stats().misses == 0, "all hits");
}
BENCHMARK(BM_IotlbHit);

// Same, walking the pages in order (a streaming DMA): the cache lines of neighbouring entries
// are not adjacent in a hash table, so this mostly shows the cost without scattered misses in
// the page tables' favour.
void BM_IotlbHitSequential(benchmark::State& state) {
  Iotlb tlb(kPages);
  FillIotlb(tlb);
  uint64_t i = 0;
  for (auto _ : state) {
    auto hit = tlb.Lookup(1, kNoPasid, kIovaBase + (i++ % kPages) * kPage4K, kDmaRead);
    benchmark::DoNotOptimize(hit);
  }
}
BENCHMARK(BM_IotlbHitSequential);

// A hit in a small IOTLB (64 entries, all in L1): the lookup's own cost.
void BM_IotlbHitSmall(benchmark::State& state) {
  Iotlb tlb(64);
  for (uint64_t p = 0; p < 64; ++p) {
    WalkResult r = WalkSecondStage(*F().mem, F().ss, kIovaBase + p * kPage4K, kDmaRead);
    tlb.Insert(1, kNoPasid, kIovaBase + p * kPage4K, r, IotlbType::kSecondStage, tlb.generation());
  }
  uint64_t i = 0;
  for (auto _ : state) {
    auto hit = tlb.Lookup(1, kNoPasid, kIovaBase + (i++ % 64) * kPage4K, kDmaRead);
    benchmark::DoNotOptimize(hit);
  }
  Check(tlb.stats().misses == 0, "all hits");
}
BENCHMARK(BM_IotlbHitSmall);

void BM_FirstStageWalk4Level(benchmark::State& state) {
  Fixture& f = F();
  uint64_t i = 0;
  for (auto _ : state) {
    WalkResult r = WalkFirstStage(*f.mem, f.fs, Iova(i++), kDmaRead);
    benchmark::DoNotOptimize(r);
  }
  Check(WalkFirstStage(*f.mem, f.fs, Iova(1), kDmaRead).ok, "fs walk ok");
}
BENCHMARK(BM_FirstStageWalk4Level);

void BM_SecondStageWalk4Level(benchmark::State& state) {
  Fixture& f = F();
  uint64_t i = 0;
  for (auto _ : state) {
    WalkResult r = WalkSecondStage(*f.mem, f.ss, Iova(i++), kDmaRead);
    benchmark::DoNotOptimize(r);
  }
  Check(WalkSecondStage(*f.mem, f.ss, Iova(1), kDmaRead).ok, "ss walk ok");
}
BENCHMARK(BM_SecondStageWalk4Level);

void BM_NestedWalk4x4(benchmark::State& state) {
  Fixture& f = F();
  uint64_t i = 0;
  for (auto _ : state) {
    WalkResult r = WalkNested(*f.mem, f.nested_fs, f.nested_ss, Iova(i++), kDmaRead);
    benchmark::DoNotOptimize(r);
  }
  Check(WalkNested(*f.mem, f.nested_fs, f.nested_ss, Iova(1), kDmaRead).ok, "nested walk ok");
}
BENCHMARK(BM_NestedWalk4x4);

// The whole miss path: lookup miss, walk, insert (then invalidate so the next one misses again;
// the invalidation is part of the measured cost).
void BM_IotlbMissWalkInsert(benchmark::State& state) {
  Fixture& f = F();
  Iotlb tlb(kPages);
  uint64_t i = 0;
  for (auto _ : state) {
    const uint64_t iova = Iova(i++);
    if (!tlb.Lookup(1, kNoPasid, iova, kDmaRead)) {
      const uint64_t gen = tlb.generation();
      tlb.Insert(1, kNoPasid, iova, WalkFirstStage(*f.mem, f.fs, iova, kDmaRead), IotlbType::kFirstStage, gen);
    }
    tlb.InvalidatePages(1, kNoPasid, iova, 0, false);
  }
}
BENCHMARK(BM_IotlbMissWalkInsert);

// Page-selective invalidation (AM=0) of a cached page in a full IOTLB, plus re-inserting it.
void BM_IotlbInvalidatePageFull(benchmark::State& state) {
  Iotlb tlb(kPages);
  FillIotlb(tlb);
  WalkResult r = WalkSecondStage(*F().mem, F().ss, kIovaBase, kDmaRead);
  uint64_t i = 0;
  for (auto _ : state) {
    const uint64_t iova = Iova(i++);
    tlb.InvalidatePages(1, std::nullopt, iova, 0, false);
    r.output = iova;
    tlb.Insert(1, kNoPasid, iova, r, IotlbType::kSecondStage, tlb.generation());
  }
  Check(tlb.size() == kPages, "still full");
}
BENCHMARK(BM_IotlbInvalidatePageFull);

// Page-selective invalidation of 512 pages (AM=9) that are not cached, over a full IOTLB.
void BM_IotlbInvalidateAm9Absent(benchmark::State& state) {
  Iotlb tlb(kPages);
  FillIotlb(tlb);
  for (auto _ : state) tlb.InvalidatePages(1, std::nullopt, 0x1000'0000, 9, false);
  Check(tlb.size() == kPages, "nothing removed");
}
BENCHMARK(BM_IotlbInvalidateAm9Absent);

// Domain-selective invalidation of another domain: scans the full IOTLB.
void BM_IotlbInvalidateDomainScan(benchmark::State& state) {
  Iotlb tlb(kPages);
  FillIotlb(tlb);
  for (auto _ : state) tlb.InvalidateDomain(2);
  Check(tlb.size() == kPages, "nothing removed");
}
BENCHMARK(BM_IotlbInvalidateDomainScan);

// Console output plus, at the end, every benchmark's CPU time relative to the guest-memory read.

}  // namespace
}  // namespace ionest

int main(int argc, char** argv) {
  // Debian's Abseil is built without NDEBUG, so absl::Mutex does deadlock-detection bookkeeping on
  // every acquisition (about half of an IOTLB hit). Measure with it off, as a release VMM would run.
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  ionest::iommu_testing::RatioReporter reporter("BM_GuestMemoryRead8", "x read8");
  benchmark::RunSpecifiedBenchmarks(&reporter);
  benchmark::Shutdown();
  return 0;
}
