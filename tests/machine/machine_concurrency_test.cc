// Invalidation racing with DMA: a device thread keeps reading one IOVA (through the IOTLB, or via
// ATS and its ATC) while the "guest CPU" remaps it to a new page and invalidates, over and over.
// A job started after an invalidation completed must never see an older mapping (VT-d §6.5,
// PCIe 6.0 §10.3.1), and nothing deadlocks.
#include <atomic>
#include <memory>
#include <thread>

#include "gtest/gtest.h"
#include "iommu/first_stage.h"
#include "tests/machine/machine_fixture.h"

namespace ionest::machine_test {
namespace {

using namespace dmatest;
using iommu_testing::FirstStageTableBuilder;

constexpr uint64_t kIova = 0x300000;
constexpr uint16_t kDid = 2;
constexpr int kMappings = 200;

uint64_t PageOf(int i) { return TestMachine::kDataBase + uint64_t(i) * 0x1000; }

class ConcurrencyTest : public ::testing::TestWithParam<bool> {};

TEST_P(ConcurrencyTest, NoStaleTranslationAfterInvalidationCompletes) {
  const bool ats = GetParam();
  auto mm = TestMachine::Create({});
  ASSERT_TRUE(mm.ok());
  TestMachine& m = **mm;
  ASSERT_TRUE(m.driver().Boot({}).ok());
  for (int i = 0; i < kMappings; ++i) m.Fill(PageOf(i), static_cast<uint8_t>(i + 1), 1);
  auto fl = FirstStageTableBuilder::Create(m.memory(), m.alloc(), 4);
  ASSERT_TRUE(fl.ok());
  ASSERT_TRUE(fl->Map(kIova, PageOf(0), 0x1000, kDmaRead, kPage4K, fs::kA).ok());
  ASSERT_TRUE(m.driver().AttachScalable(m.rid(), {ats, true, false}).ok());
  vtd::testing::PasidEntrySpec pe;
  pe.pgtt = 1;
  pe.did = kDid;
  pe.flptptr = fl->root();
  ASSERT_TRUE(m.driver().SetPasid(m.rid(), 0, pe, ats).ok());
  ASSERT_TRUE(m.driver().EnableTranslation().ok());
  m.EnableBusMaster();
  if (ats) m.EnableAts();

  std::atomic<int> published{0};  // mappings < published are invalidated away
  std::atomic<bool> stop{false};
  std::atomic<int> jobs{0}, stale{0}, failed{0};
  std::thread device_user([&] {
    while (!stop.load()) {
      const int floor = published.load();
      TestMachine::JobResult r = m.RunJob(kOpRead, kIova, 0, 1, (ats ? kCtrlUseAts : 0) | kCtrlNoPri);
      if (!r.done()) {
        ++failed;
        continue;
      }
      uint8_t b = 0;
      m.device().bar(0)->IoRead(kSramOffset, &b, 1);
      if (int(b) - 1 < floor) ++stale;
      ++jobs;
    }
  });
  for (int i = 1; i < kMappings; ++i) {
    ASSERT_TRUE(fl->WriteEntry(kIova, 1, PageOf(i) | FirstStageTableBuilder::LeafFlags(kDmaRead) | fs::kA).ok());
    ASSERT_TRUE(m.driver().FlushRange(m.rid(), kDid, 0u, kIova, 0, false).ok());
    if (ats) ASSERT_TRUE(m.driver().Invalidate({vtd::testing::DevTlb(m.rid(), kIova)}).ok());
    published.store(i);
    absl::SleepFor(absl::Microseconds(200));  // let the device run jobs against each mapping
    if (i % 20 == 0) {  // and make sure it really does, even on a loaded machine
      const int before = jobs.load();
      const absl::Time deadline = absl::Now() + absl::Seconds(10);
      while (jobs.load() == before && absl::Now() < deadline) absl::SleepFor(absl::Microseconds(100));
    }
  }
  stop.store(true);
  device_user.join();
  EXPECT_EQ(stale.load(), 0);
  EXPECT_EQ(failed.load(), 0);
  EXPECT_GE(jobs.load(), kMappings / 20) << "the device must have raced with the invalidations";
  RecordProperty("jobs", jobs.load());
}

INSTANTIATE_TEST_SUITE_P(Paths, ConcurrencyTest, ::testing::Bool(),
                         [](const auto& info) { return info.param ? "Ats" : "Untranslated"; });

}  // namespace
}  // namespace ionest::machine_test
