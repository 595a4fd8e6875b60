// Issue 13 item 2: DMA in flight is drained (VT-d §6.5.5, CAP.DRD/DWD). A device thread copies
// through a translation while the guest (this thread) tears the translation down and waits for the
// invalidation: the wait returns only after the copy finished, and nothing reaches the page after
// the wait, where the guest may already reuse it. With drd=off,dwd=off (the model before the
// drain) the same scenario lets the copy run past the wait and overwrite the reused page.
#include <atomic>
#include <cstring>
#include <memory>
#include <thread>
#include <vector>

#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "gtest/gtest.h"
#include "iommu/testing/table_builder.h"
#include "iommu/vtd/registers.h"
#include "iommu/vtd/testing/vtd_test_env.h"

namespace ionest::vtd {
namespace {

using namespace testing;  // NOLINT

constexpr uint16_t kRid = 0x10;
constexpr uint16_t kDid = 2;
constexpr uint64_t kIova = 0x100000;
constexpr uint64_t kPage = 0x200000;  // the guest page the device writes, reused after the wait
constexpr size_t kChunk = 256;
constexpr int kChunks = 4096 / kChunk;
constexpr uint8_t kDeviceByte = 0xd1;
constexpr uint8_t kGuestByte = 0x5a;

struct Bench {
  std::unique_ptr<VtdTestEnv> env;

  explicit Bench(std::string_view profile) {
    auto e = VtdTestEnv::Create(profile);
    EXPECT_TRUE(e.ok()) << e.status();
    env = std::move(*e);
    EXPECT_TRUE(env->driver->Init(true).ok());
    auto fl = iommu_testing::FirstStageTableBuilder::Create(*env->memory, *env->alloc, 4);
    EXPECT_TRUE(fl.ok());
    EXPECT_TRUE(fl->Map(kIova, kPage, 4096, kDmaRead | kDmaWrite).ok());
    EXPECT_TRUE(env->driver->tables().SetScalableContext(kRid, {.dte = true}).ok());
    EXPECT_TRUE(
        env->driver->tables().SetPasidEntry(kRid, 0, {.pgtt = kPgttFirstStage, .did = kDid, .flptptr = fl->root()}).ok());
    EXPECT_TRUE(env->driver->EnableTranslation().ok());
  }

  // What Linux does to take a device's DMA domain away: clear the PASID entry, invalidate the
  // PASID cache and the IOTLB of the domain, wait.
  absl::Status TearDownTranslation() {
    if (absl::Status s = env->driver->tables().ClearPasidEntry(kRid, 0); !s.ok()) return s;
    return env->driver->Invalidate({PasidCacheInv(1, kDid, 0), PIotlbPasid(kDid, 0), IotlbDomain(kDid)});
  }

  bool PageIs(uint8_t byte) {
    std::vector<uint8_t> page(4096);
    if (!env->memory->Read(kPage, page.data(), page.size()).ok()) return false;
    for (uint8_t b : page)
      if (b != byte) return false;
    return true;
  }
};

struct Outcome {
  bool copy_done_when_wait_returned = false;
  bool page_kept_guest_data = false;  // nothing from the device landed after the wait
};

// One round: the device translates, the guest starts the teardown, the device copies the page in
// chunks (slowly, as a real DMA engine moving a large buffer would) inside one in-flight bracket.
Outcome StraddleOnce(Bench& b, absl::Duration per_chunk) {
  std::atomic<bool> translated{false}, go{false}, copy_done{false};
  std::thread device([&] {
    DmaSpace& space = b.env->iommu->ForRequester(kRid);
    const DmaSpace::InFlight dma = space.BeginDma();
    Translation t = space.Translate(kIova, 4096, kDmaWrite, {});
    ASSERT_FALSE(t.fault);
    ASSERT_EQ(t.regions.size(), 1u);
    translated = true;
    while (!go) std::this_thread::yield();
    uint8_t chunk[kChunk];
    std::memset(chunk, kDeviceByte, sizeof(chunk));
    for (int i = 0; i < kChunks; ++i) {
      absl::SleepFor(per_chunk);
      ASSERT_TRUE(space.AccessRegion(dma, t.regions[0], i * kChunk, chunk, kChunk, kDmaWrite).ok());
    }
    copy_done = true;
  });
  while (!translated) std::this_thread::yield();
  go = true;
  EXPECT_TRUE(b.TearDownTranslation().ok());
  Outcome o;
  o.copy_done_when_wait_returned = copy_done.load();
  // The guest owns the page again: it reuses it.
  std::vector<uint8_t> guest(4096, kGuestByte);
  EXPECT_TRUE(b.env->memory->Write(kPage, guest.data(), guest.size()).ok());
  device.join();
  o.page_kept_guest_data = b.PageIs(kGuestByte);
  return o;
}

TEST(DrainTest, WaitCompletesOnlyAfterTheCopyThroughTheInvalidatedTranslation) {
  Bench b("");  // default profile: DRD=DWD=1
  ASSERT_TRUE(b.env->iommu->ReadRegister(kCapReg) & (3ull << 54));
  const absl::Time start = absl::Now();
  Outcome o = StraddleOnce(b, absl::Milliseconds(2));
  EXPECT_TRUE(o.copy_done_when_wait_returned);
  EXPECT_TRUE(o.page_kept_guest_data);
  EXPECT_GE(absl::Now() - start, absl::Milliseconds(2 * kChunks));  // the copy's own duration
  const VtdStats st = b.env->iommu->stats();
  EXPECT_GE(st.dma_drains, 1u);
  EXPECT_EQ(st.dma_drain_timeouts, 0u);
  // The translation is gone: new DMA faults.
  uint8_t byte = 0;
  EXPECT_FALSE(b.env->iommu->ForRequester(kRid).Write(kIova, &byte, 1).ok());
}

// The same scenario without draining (the model before issue 13, or a profile that turns it off):
// the wait returns while the copy is still going, and the copy overwrites the page the guest
// already reused. Several tries, in case the scheduler delays this thread past the whole copy.
TEST(DrainTest, WithoutDrainingTheCopyOutlivesTheWait) {
  bool violated = false;
  for (int attempt = 0; attempt < 5 && !violated; ++attempt) {
    Bench b("drd=off,dwd=off");
    ASSERT_FALSE(b.env->iommu->ReadRegister(kCapReg) & (3ull << 54));
    Outcome o = StraddleOnce(b, absl::Milliseconds(2));
    violated = !o.copy_done_when_wait_returned && !o.page_kept_guest_data;
    EXPECT_EQ(b.env->iommu->stats().dma_drains, 0u);
  }
  EXPECT_TRUE(violated);
}

// Register-based invalidation (IOTLB_REG, §11.4.8.1): IVT clears only after the DMA in flight
// through the old translation finished (Linux sets IOTLB_REG.DR/DW when CAP.DRD/DWD are set).
TEST(DrainTest, RegisterBasedInvalidationClearsIvtOnlyAfterTheCopy) {
  Bench b("");
  std::atomic<bool> translated{false}, copy_done{false};
  std::thread device([&] {
    DmaSpace& space = b.env->iommu->ForRequester(kRid);
    const DmaSpace::InFlight dma = space.BeginDma();
    Translation t = space.Translate(kIova, 4096, kDmaWrite, {});
    ASSERT_FALSE(t.fault);
    translated = true;
    uint8_t chunk[kChunk];
    std::memset(chunk, kDeviceByte, sizeof(chunk));
    for (int i = 0; i < kChunks; ++i) {
      absl::SleepFor(absl::Milliseconds(2));
      ASSERT_TRUE(space.AccessRegion(dma, t.regions[0], i * kChunk, chunk, kChunk, kDmaWrite).ok());
    }
    copy_done = true;
  });
  while (!translated) std::this_thread::yield();
  const uint32_t iotlb = b.env->iommu->profile().iotlb_offset();
  const uint64_t drains = b.env->iommu->stats().dma_drains;  // the bring-up's invalidations drained too
  b.env->iommu->WriteRegister(iotlb, (1ull << 63) | (1ull << 60) | (1ull << 49) | (1ull << 48));  // IVT, global, DR, DW
  EXPECT_TRUE(copy_done.load());
  EXPECT_EQ(b.env->iommu->ReadRegister(iotlb) >> 63, 0u);  // IVT clear: the invalidation completed
  device.join();
  EXPECT_EQ(b.env->iommu->stats().dma_drains, drains + 1);
}

// A device that never finishes its DMA cannot hang the vCPU: the wait completes at the bound
// (drain-timeout-ms) and the timeout is counted.
TEST(DrainTest, StuckDmaIsBoundedByTheDrainTimeout) {
  Bench b("drain-timeout-ms=50");
  DmaSpace& space = b.env->iommu->ForRequester(kRid);
  auto stuck = std::make_unique<DmaSpace::InFlight>(space.BeginDma());
  ASSERT_FALSE(space.Translate(kIova, 8, kDmaRead, {}).fault);
  const absl::Time start = absl::Now();
  ASSERT_TRUE(b.TearDownTranslation().ok());
  EXPECT_GE(absl::Now() - start, absl::Milliseconds(50));
  EXPECT_LT(absl::Now() - start, absl::Seconds(5));
  EXPECT_EQ(b.env->iommu->stats().dma_drain_timeouts, 1u);
  stuck.reset();
  // Once it finished, the next wait drains at once.
  ASSERT_TRUE(b.env->driver->Invalidate({IotlbGlobal()}).ok());
  EXPECT_EQ(b.env->iommu->stats().dma_drain_timeouts, 1u);
}

// DMA on other requesters and DMA that starts after the invalidation do not hold the wait; waits
// with nothing invalidated since the last drain do not drain at all.
TEST(DrainTest, OnlyEarlierDmaHoldsTheWait) {
  Bench b("drain-timeout-ms=10000");
  std::atomic<bool> stop{false};
  std::atomic<uint64_t> copies{0};
  std::thread streamer([&] {  // a steady stream of short DMA on the same requester
    DmaSpace& space = b.env->iommu->ForRequester(kRid);
    uint64_t v = 0;
    while (!stop) {
      (void)space.Read(kIova, &v, sizeof(v));
      ++copies;
    }
  });
  while (copies < 100) std::this_thread::yield();
  const absl::Time start = absl::Now();
  for (int i = 0; i < 50; ++i) ASSERT_TRUE(b.env->driver->Invalidate({IotlbGlobal()}).ok());
  EXPECT_LT(absl::Now() - start, absl::Seconds(5));  // never starved by the stream
  const uint64_t drains = b.env->iommu->stats().dma_drains;
  EXPECT_GE(drains, 50u);
  ASSERT_TRUE(b.env->driver->Invalidate({IecGlobal()}).ok());  // nothing that removes translations
  EXPECT_EQ(b.env->iommu->stats().dma_drains, drains);
  stop = true;
  streamer.join();
  EXPECT_EQ(b.env->iommu->stats().dma_drain_timeouts, 0u);
}

}  // namespace
}  // namespace ionest::vtd
