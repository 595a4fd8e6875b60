// DmaSpace::AccessRegion: a device copying within a translation it holds gets exactly the region,
// with the region's permissions, and nothing outside it. DmaDrain: what an invalidation waits for.
#include "iommu/dma_space.h"

#include <atomic>
#include <thread>
#include <vector>

#include "gtest/gtest.h"
#include "vmm/guest_memory.h"

namespace ionest {
namespace {

TEST(DmaSpaceTest, AccessRegionStaysInsideTheRegionWithItsPermissions) {
  auto mem = GuestMemory::Create({{0, 1 << 20}});
  ASSERT_TRUE(mem.ok());
  IdentityDmaSpace space(**mem);
  const DmaSpace::InFlight dma = space.BeginDma();
  const DmaRegion r{0x5000, 0x9000, 0x100, kDmaRead};
  uint8_t buf[0x100] = {};
  for (int i = 0; i < 0x100; ++i) buf[i] = static_cast<uint8_t>(i);
  ASSERT_TRUE((*mem)->Write(0x9000, buf, sizeof(buf)).ok());
  uint8_t got[16] = {};
  ASSERT_TRUE(space.AccessRegion(dma, r, 0xf0, got, 16, kDmaRead).ok());
  EXPECT_EQ(got[0], 0xf0);
  EXPECT_EQ(got[15], 0xff);
  EXPECT_EQ(space.AccessRegion(dma, r, 0xf1, got, 16, kDmaRead).code(), absl::StatusCode::kOutOfRange);
  EXPECT_EQ(space.AccessRegion(dma, r, ~uint64_t{0}, got, 2, kDmaRead).code(), absl::StatusCode::kOutOfRange);
  EXPECT_EQ(space.AccessRegion(dma, r, 0, got, 16, kDmaWrite).code(), absl::StatusCode::kPermissionDenied);
  EXPECT_EQ(space.AccessRegion(dma, r, 0, got, 16, kDmaRead | kDmaWrite).code(), absl::StatusCode::kInvalidArgument);
  const DmaRegion w{0x5000, 0x9000, 0x100, kDmaRead | kDmaWrite};
  uint8_t one = 0xaa;
  ASSERT_TRUE(space.AccessRegion(dma, w, 0x10, &one, 1, kDmaWrite).ok());
  EXPECT_EQ((*mem)->ReadObj<uint8_t>(0x9010).value(), 0xaa);
  IdentityDmaSpace other(**mem);
  EXPECT_EQ(other.AccessRegion(dma, w, 0x10, &one, 1, kDmaWrite).code(), absl::StatusCode::kInvalidArgument);
}

// DmaDrain: a drain waits for the DMA that entered before it, not for DMA entering meanwhile (no
// starvation by a steady stream), and gives up at its deadline.
TEST(DmaDrainTest, WaitsForEarlierDmaOnly) {
  DmaDrain drain;
  EXPECT_TRUE(drain.Drain(absl::InfinitePast()));  // nothing in flight: immediate
  const uint32_t early = drain.Enter();
  std::atomic<bool> drained{false};
  std::thread drainer([&] {
    EXPECT_TRUE(drain.Drain(absl::InfiniteFuture()));
    drained = true;
  });
  absl::SleepFor(absl::Milliseconds(20));
  // DMA entering and leaving while the drain waits, and one that stays: none of it holds the drain.
  for (int i = 0; i < 1000; ++i) drain.Exit(drain.Enter());
  const uint32_t late = drain.Enter();
  EXPECT_FALSE(drained.load());
  drain.Exit(early);
  drainer.join();
  EXPECT_TRUE(drained.load());
  EXPECT_EQ(drain.in_flight(), 1);
  drain.Exit(late);
  EXPECT_EQ(drain.in_flight(), 0);
}

TEST(DmaDrainTest, GivesUpAtTheDeadlineAndCatchesUpLater) {
  DmaDrain drain;
  const uint32_t stuck = drain.Enter();
  const absl::Time start = absl::Now();
  EXPECT_FALSE(drain.Drain(start + absl::Milliseconds(20)));
  EXPECT_GE(absl::Now() - start, absl::Milliseconds(20));
  // The straggler is still counted: the next drain waits for it (then for what entered meanwhile).
  EXPECT_FALSE(drain.Drain(absl::Now() + absl::Milliseconds(5)));
  drain.Exit(stuck);
  EXPECT_TRUE(drain.Drain(absl::Now() + absl::Seconds(10)));
}

// More threads than owned slots (the rest share one), threads exiting and their ordinals reused:
// the drain still waits for exactly the DMA in flight.
TEST(DmaDrainTest, ManyThreadsAndReusedOrdinals) {
  DmaDrain drain;
  for (int round = 0; round < 2; ++round) {
    constexpr int kThreads = DmaDrain::kOwnedSlots + 8;
    std::atomic<int> entered{0};
    std::atomic<bool> release{false};
    std::vector<std::thread> threads;
    for (int i = 0; i < kThreads; ++i) {
      threads.emplace_back([&] {
        const uint32_t token = drain.Enter();
        ++entered;
        while (!release) std::this_thread::yield();
        drain.Exit(token);
      });
    }
    while (entered < kThreads) std::this_thread::yield();
    EXPECT_EQ(drain.in_flight(), kThreads);
    EXPECT_FALSE(drain.Drain(absl::Now() + absl::Milliseconds(5)));
    release = true;
    for (auto& t : threads) t.join();
    EXPECT_EQ(drain.in_flight(), 0);
    EXPECT_TRUE(drain.Drain(absl::Now() + absl::Seconds(10)));
  }
}

TEST(DmaDrainTest, ReadAndWriteAreInFlightWhileTheyCopy) {
  auto mem = GuestMemory::Create({{0, 1 << 20}});
  ASSERT_TRUE(mem.ok());
  // A space whose Translate observes the tracker: Read/Write bracket their Translate.
  class Observing final : public DmaSpace {
   public:
    using DmaSpace::DmaSpace;
    Translation Translate(uint64_t iova, uint64_t len, uint32_t access, const DmaAttrs&) override {
      seen = drain().in_flight();
      Translation t;
      t.regions.push_back({iova, iova, len, kDmaRead | kDmaWrite});
      return t;
    }
    int64_t seen = -1;
  } space(**mem);
  uint64_t v = 0;
  ASSERT_TRUE(space.Read(0x1000, &v, sizeof(v)).ok());
  EXPECT_EQ(space.seen, 1);
  EXPECT_EQ(space.drain().in_flight(), 0);
}

}  // namespace
}  // namespace ionest
