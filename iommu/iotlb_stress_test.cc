// Concurrent lookups/inserts (walk simulations) against invalidations: once an invalidation of a
// page has returned, no lookup may see a translation older than the one it replaced.
#include <atomic>
#include <random>
#include <thread>
#include <vector>

#include "gtest/gtest.h"
#include "iommu/iotlb.h"

namespace ionest {
namespace {

constexpr int kPages = 64;
constexpr uint16_t kDid = 3;

struct Shared {
  std::atomic<uint64_t> version[kPages] = {};      // "page-table" content: current mapping version
  std::atomic<uint64_t> invalidated[kPages] = {};  // versions whose invalidation has completed
  std::atomic<uint64_t> violations{0};
  std::atomic<uint64_t> hits{0};
  std::atomic<bool> stop{false};
};

uint64_t OutputFor(int page, uint64_t version) { return (version << 24) | (uint64_t(page) << 12); }

void Reader(Iotlb& tlb, Shared& s, int seed, int ops) {
  std::mt19937 rng(seed);
  for (int i = 0; i < ops; ++i) {
    const int p = rng() % kPages;
    const uint64_t iova = uint64_t(p) * kPage4K;
    const uint64_t floor = s.invalidated[p].load(std::memory_order_acquire);
    if (auto hit = tlb.Lookup(kDid, kNoPasid, iova, kDmaRead)) {
      s.hits.fetch_add(1, std::memory_order_relaxed);
      if ((hit->output >> 24) < floor || ((hit->output >> 12) & 0xFFF) != uint64_t(p)) s.violations++;
      continue;
    }
    // Miss: "walk" the tables and insert, tagged with the generation read before the walk.
    const uint64_t gen = tlb.generation();
    const uint64_t v = s.version[p].load(std::memory_order_acquire);
    if (rng() % 4 == 0) std::this_thread::yield();  // a walk takes time: widen the race window
    WalkResult r;
    r.ok = true;
    r.output = OutputFor(p, v);
    r.page_size = kPage4K;
    r.perms = r.user_perms = kDmaRead | kDmaWrite;
    tlb.Insert(kDid, kNoPasid, iova, r, IotlbType::kSecondStage, gen);
  }
}

void Writer(Iotlb& tlb, Shared& s, int seed) {
  std::mt19937 rng(seed);
  while (!s.stop.load(std::memory_order_relaxed)) {
    const int p = rng() % kPages;
    const uint64_t nv = s.version[p].fetch_add(1, std::memory_order_acq_rel) + 1;
    switch (rng() % 16) {
      case 0: tlb.InvalidateDomain(kDid); break;
      case 1: tlb.InvalidateAll(); break;
      case 2: tlb.InvalidatePasid(kDid, kNoPasid); break;
      case 3: tlb.InvalidatePages(kDid, std::nullopt, uint64_t(p & ~3) * kPage4K, 2, false); break;
      default: tlb.InvalidatePages(kDid, std::nullopt, uint64_t(p) * kPage4K, 0, rng() & 1); break;
    }
    // Publish only after the invalidation returned (versions only grow).
    uint64_t cur = s.invalidated[p].load();
    while (cur < nv && !s.invalidated[p].compare_exchange_weak(cur, nv)) {
    }
    if (rng() % 4 == 0) std::this_thread::yield();
  }
}

TEST(IotlbStressTest, NoStaleTranslationsAfterInvalidation) {
  Iotlb tlb(32);  // smaller than the working set: evictions race too
  Shared s;
  std::thread writer(Writer, std::ref(tlb), std::ref(s), 1);
  std::vector<std::thread> readers;
  for (int i = 0; i < 3; ++i) readers.emplace_back(Reader, std::ref(tlb), std::ref(s), 100 + i, 200000);
  for (auto& t : readers) t.join();
  s.stop = true;
  writer.join();
  EXPECT_EQ(s.violations.load(), 0u);
  EXPECT_GT(s.hits.load(), 1000u);  // the cache was actually exercised
  const IotlbStats st = tlb.stats();
  EXPECT_GT(st.evictions, 0u);
  EXPECT_GT(st.invalidated_entries, 0u);
  EXPECT_LE(tlb.size(), 32u);
}

}  // namespace
}  // namespace ionest
