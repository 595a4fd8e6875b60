// vCPU-style concurrency: DMA translation, MMIO, interrupts and invalidations from several threads.
#include <atomic>
#include <thread>

#include "gtest/gtest.h"
#include "iommu/testing/table_builder.h"
#include "iommu/vtd/registers.h"
#include "iommu/vtd/testing/vtd_test_env.h"

namespace ionest::vtd {
namespace {

using namespace testing;  // NOLINT

TEST(ConcurrencyTest, TranslateWhileInvalidating) {
  auto env_or = VtdTestEnv::Create();
  ASSERT_TRUE(env_or.ok());
  VtdTestEnv& env = **env_or;
  ASSERT_TRUE(env.driver->Init(true).ok());
  auto fl = iommu_testing::FirstStageTableBuilder::Create(*env.memory, *env.alloc, 4);
  ASSERT_TRUE(fl.ok());
  ASSERT_TRUE(fl->Map(0x100000, 0x100000, 1 << 20, kDmaRead | kDmaWrite).ok());
  for (uint16_t rid = 8; rid < 12; ++rid) {
    ASSERT_TRUE(env.driver->tables().SetScalableContext(rid, {.dte = true}).ok());
    ASSERT_TRUE(env.driver->tables().SetPasidEntry(rid, 0, {.pgtt = kPgttFirstStage, .did = 2, .flptptr = fl->root()}).ok());
  }
  ASSERT_TRUE(env.driver->EnableTranslation().ok());
  ASSERT_TRUE(env.driver->EnableInterruptRemapping().ok());
  ASSERT_TRUE(env.driver->WriteIrte(1, {.vector = 0x40}).ok());
  std::atomic<bool> stop{false};
  std::atomic<int> dma_errors{0};
  std::vector<std::thread> threads;
  for (uint16_t rid = 8; rid < 12; ++rid) {
    threads.emplace_back([&, rid] {
      DmaSpace& s = env.iommu->ForRequester(rid);
      uint64_t buf[64];
      while (!stop) {
        if (!s.Write(0x100000 + rid * 0x1000, buf, sizeof(buf)).ok()) ++dma_errors;
        if (!s.Read(0x100000 + rid * 0x1000, buf, sizeof(buf)).ok()) ++dma_errors;
        (void)s.AtsTranslate(0x100000, kDmaRead, {});
        (void)env.iommu->SendMsi(RemappableMsi(1, rid));
      }
    });
  }
  std::thread reader([&] {
    while (!stop) (void)env.iommu->ReadRegister(kFstsReg, 4);
  });
  for (int i = 0; i < 2000; ++i) {
    ASSERT_TRUE(env.driver->Invalidate({IotlbGlobal(), PasidCacheInv(3, 0, 0), CcGlobal(), IecGlobal()}).ok());
  }
  stop = true;
  for (auto& t : threads) t.join();
  reader.join();
  EXPECT_EQ(dma_errors, 0);
  EXPECT_GT(env.iommu->stats().interrupts_remapped, 0u);
}

}  // namespace
}  // namespace ionest::vtd
