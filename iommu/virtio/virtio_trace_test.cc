// The virtio-iommu's event trace lines (iommu/trace.h: requests with their status, fault reports)
// and its table dump, driven through the virtio-pci transport by the Linux-like test driver.
#include <memory>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "iommu/testing/trace_capture.h"
#include "iommu/virtio/testing/viommu_test_bench.h"

namespace ionest {
namespace {

using iommu_testing::TraceCapture;
using viommu_testing::ViommuBench;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using V = VirtioIommu;

constexpr uint32_t kEp = 0x10;  // 00:02.0
constexpr uint32_t kRW = V::kMapFRead | V::kMapFWrite;

std::unique_ptr<ViommuBench> Bench(V::Options o = {}) {
  auto b = ViommuBench::Create(std::move(o));
  EXPECT_TRUE(b.ok()) << b.status();
  EXPECT_TRUE((*b)->Start());
  return std::move(*b);
}

TEST(ViommuTraceTest, RequestsWithStatus) {
  auto b = Bench();
  TraceCapture trace;
  ASSERT_EQ(b->Attach(1, kEp), V::kSOk);
  ASSERT_EQ(b->Map(1, 0x100000, 0x101fff, 0x400000, kRW), V::kSOk);
  ASSERT_EQ(b->Map(1, 0x100000, 0x100fff, 0x500000, kRW), V::kSInval);  // overlaps
  ASSERT_EQ(b->Unmap(1, 0x100000, 0x101fff), V::kSOk);
  ASSERT_EQ(b->Detach(2, kEp), V::kSInval);  // not the endpoint's domain
  EXPECT_THAT(trace.Lines(),
              ElementsAre("virtio-iommu attach domain=1 endpoint=0x10 flags=0x0 status=OK",
                          "virtio-iommu map domain=1 virt_start=0x100000 virt_end=0x101fff phys_start=0x400000 flags=0x3 status=OK",
                          "virtio-iommu map domain=1 virt_start=0x100000 virt_end=0x100fff phys_start=0x500000 flags=0x3 status=INVAL",
                          "virtio-iommu unmap domain=1 virt_start=0x100000 virt_end=0x101fff status=OK",
                          "virtio-iommu detach domain=2 endpoint=0x10 status=INVAL"));
}

TEST(ViommuTraceTest, FaultReports) {
  V::Options o;
  o.max_pending_faults = 1;
  auto b = ViommuBench::Create(std::move(o));
  ASSERT_TRUE(b.ok());
  ViommuBench& bench = **b;
  ASSERT_TRUE(bench.Start());
  ASSERT_EQ(bench.Attach(1, kEp), V::kSOk);
  TraceCapture trace(trace::kFault);
  uint64_t v = 0;
  DmaSpace& space = bench.iommu->ForRequester(kEp);
  EXPECT_FALSE(space.Read(0x7000, &v, 8).ok());
  std::vector<std::string> lines = trace.Lines();
  ASSERT_GE(lines.size(), 1u);
  EXPECT_EQ(lines[0], "virtio-iommu fault endpoint=0x10 addr=0x7000 reason=2 name=MAPPING flags=0x101 result=queued");
}

TEST(ViommuTraceTest, DumpListsTheDomainAndItsMappingsBounded) {
  V::Options o;
  o.max_mappings = 1000;
  auto b = Bench(std::move(o));
  EXPECT_THAT(b->iommu->DumpTables({kEp, std::nullopt, std::nullopt}),
              HasSubstr("endpoint=0x10: not attached (config.bypass=0: DMA blocked)"));  // Options default: boot_bypass off
  ASSERT_EQ(b->Attach(1, kEp), V::kSOk);
  for (uint64_t i = 0; i < 300; ++i) ASSERT_EQ(b->Map(1, i << 12, (i << 12) + 0xfff, 0x400000 + (i << 12), kRW), V::kSOk);
  std::string dump = b->iommu->DumpTables({kEp, std::nullopt, 0x5008});
  EXPECT_THAT(dump, HasSubstr("virtio-iommu dump endpoint=0x10 domain=1 bypass=0 endpoints=1 mappings=300"));
  EXPECT_THAT(dump, HasSubstr("iova=0x5008: mapping [0x5000, 0x5fff] -> 0x405000 flags=0x3 output=0x405008"));
  EXPECT_THAT(dump, HasSubstr("  [0x0, 0xfff] -> 0x400000 flags=0x3"));
  // 256 lines at most; the rest is counted, not printed.
  EXPECT_THAT(dump, HasSubstr("... (46 more lines cut)"));
  EXPECT_EQ(std::count(dump.begin(), dump.end(), '\n'), 257);
}

}  // namespace
}  // namespace ionest
