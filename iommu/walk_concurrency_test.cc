// A/D updates racing with a "guest CPU" that rewrites the same entries: the walkers' atomic
// compare-exchange must never lose a guest update, and walks must stay bounded.
#include <atomic>
#include <thread>
#include <vector>

#include "gtest/gtest.h"
#include "iommu/first_stage.h"
#include "iommu/second_stage.h"
#include "iommu/testing/table_builder.h"

namespace ionest {
namespace {

using iommu_testing::FirstStageTableBuilder;
using iommu_testing::PageAllocator;
using iommu_testing::SecondStageTableBuilder;

constexpr int kCounterShift = 52;  // bits 58:52: ignored by both formats; the guest's counter
constexpr uint64_t kCounterMask = 0x7Full << kCounterShift;

// Guest: `iterations` times, atomically bump the counter and clear `ad_bits` in the entry.
void Guest(GuestMemory& mem, uint64_t entry_addr, uint64_t ad_bits, int iterations) {
  for (int i = 0; i < iterations; ++i) {
    uint64_t old = *mem.ReadObj<uint64_t>(entry_addr);
    for (;;) {
      const uint64_t counter = ((old & kCounterMask) + (1ull << kCounterShift)) & kCounterMask;
      const uint64_t desired = (old & ~kCounterMask & ~ad_bits) | counter;
      if (*mem.CompareExchange64(entry_addr, &old, desired)) break;
    }
  }
}

TEST(WalkConcurrencyTest, FirstStageAdUpdatesNeverLoseGuestWrites) {
  auto mem = *GuestMemory::Create({{0, 16 << 20}});
  PageAllocator alloc(*mem, 1 << 20, 1 << 20);
  auto b = *FirstStageTableBuilder::Create(*mem, alloc, 4);
  ASSERT_TRUE(b.Map(0x5000, 0x9000, kPage4K, kDmaRead | kDmaWrite).ok());
  FirstStageConfig cfg;
  cfg.root = b.root();
  const uint64_t leaf_addr = *b.EntryAddress(0x5000, 1);
  const uint64_t pde_addr = *b.EntryAddress(0x5000, 2);
  const uint64_t leaf_before = *mem->ReadObj<uint64_t>(leaf_addr);

  constexpr int kGuestIterations = 300000;
  std::atomic<bool> stop{false};
  std::atomic<int> ok{0}, bad{0};
  std::vector<std::thread> walkers;
  for (int t = 0; t < 2; ++t) {
    walkers.emplace_back([&] {
      while (!stop.load()) {
        WalkResult r = WalkFirstStage(*mem, cfg, 0x5000, kDmaWrite);
        if (r.ok && r.output == 0x9000) ok++;
        else if (!r.ok && r.fault.kind == WalkFaultKind::kTableAccess) continue;  // gave up racing
        else bad++;
      }
    });
  }
  while (ok.load() < 100) std::this_thread::yield();  // walkers are running
  std::thread g1(Guest, std::ref(*mem), leaf_addr, fs::kA | fs::kD, kGuestIterations);
  std::thread g2(Guest, std::ref(*mem), pde_addr, fs::kA, kGuestIterations);
  g1.join();
  g2.join();
  stop = true;
  for (auto& t : walkers) t.join();

  EXPECT_EQ(bad.load(), 0);
  EXPECT_GT(ok.load(), 0);
  const uint64_t leaf = *mem->ReadObj<uint64_t>(leaf_addr);
  EXPECT_EQ(leaf & kCounterMask, uint64_t(kGuestIterations % 128) << kCounterShift);
  EXPECT_EQ(*mem->ReadObj<uint64_t>(pde_addr) & kCounterMask, uint64_t(kGuestIterations % 128) << kCounterShift);
  EXPECT_EQ(leaf & ~(kCounterMask | fs::kA | fs::kD), leaf_before);
  // Once the guest stops, a walk sets A/D again.
  ASSERT_TRUE(WalkFirstStage(*mem, cfg, 0x5000, kDmaWrite).ok);
  EXPECT_EQ(*mem->ReadObj<uint64_t>(leaf_addr) & (fs::kA | fs::kD), fs::kA | fs::kD);
}

TEST(WalkConcurrencyTest, SecondStageAdUpdatesNeverLoseGuestWrites) {
  auto mem = *GuestMemory::Create({{0, 16 << 20}});
  PageAllocator alloc(*mem, 1 << 20, 1 << 20);
  auto b = *SecondStageTableBuilder::Create(*mem, alloc, 4);
  ASSERT_TRUE(b.Map(0x5000, 0x9000, kPage4K, kDmaRead | kDmaWrite).ok());
  SecondStageConfig cfg;
  cfg.root = b.root();
  cfg.ad_enabled = true;
  const uint64_t leaf_addr = *b.EntryAddress(0x5000, 1);
  constexpr int kGuestIterations = 300000;
  std::atomic<bool> stop{false};
  std::atomic<int> bad{0}, ok{0};
  std::thread walker([&] {
    while (!stop.load()) {
      WalkResult r = WalkSecondStage(*mem, cfg, 0x5000, kDmaWrite);
      if (r.ok) ok++;
      else if (r.fault.kind != WalkFaultKind::kTableAccess) bad++;
    }
  });
  while (ok.load() < 100) std::this_thread::yield();
  Guest(*mem, leaf_addr, ss::kA | ss::kD, kGuestIterations);
  stop = true;
  walker.join();
  EXPECT_EQ(bad.load(), 0);
  EXPECT_EQ(*mem->ReadObj<uint64_t>(leaf_addr) & kCounterMask, uint64_t(kGuestIterations % 128) << kCounterShift);
}

}  // namespace
}  // namespace ionest
