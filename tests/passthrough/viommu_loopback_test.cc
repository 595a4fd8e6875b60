// --iommu=virtio with a passthrough function, against the loopback host (issue 12 item 5): the
// same Passthrough::Open + EnableVirtioIommuForwarding the machines use (vmm/pci_functions.cc
// VirtioIommuBinder), the function's cdev a LoopbackVfioDevice, the host IOMMU the loopback model
// that translates the outer device's DMA through whatever its cdev is attached to. The guest side
// is the virtio-iommu driven like Linux's driver (ViommuBench, no vCPU); its RAM is the RAM the
// IOAS maps. Every check asks the host IOMMU where an access of the function lands.
#include <memory>
#include <optional>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "iommu/virtio/testing/viommu_test_bench.h"
#include "tests/passthrough/loopback_host.h"
#include "vmm/passthrough.h"

namespace ionest::passthrough_test {
namespace {

using V = VirtioIommu;
using viommu_testing::ViommuBench;

constexpr uint16_t kEndpoint = 0x10;  // the function at 00:02.0 behind the virtio-iommu
constexpr uint32_t kRW = V::kMapFRead | V::kMapFWrite;

TEST(ViommuLoopbackTest, GuestRequestsDecideWhereTheFunctionsDmaLands) {
  absl::StatusOr<std::unique_ptr<LoopbackWorld>> world = LoopbackWorld::Create();
  ASSERT_TRUE(world.ok()) << world.status();
  LoopbackWorld& w = **world;
  absl::StatusOr<std::unique_ptr<ViommuBench>> made = ViommuBench::Create();
  ASSERT_TRUE(made.ok()) << made.status();
  ViommuBench& b = **made;
  std::vector<iommufd::RamRange> ram;
  for (const MemoryRegion& r : b.mem->regions()) ram.push_back({r.gpa, r.host, r.size});
  const uint64_t host = reinterpret_cast<uint64_t>(ram[0].host);
  auto lands = [&](uint64_t iova, uint32_t access = kDmaRead) -> std::optional<uint64_t> {
    HostIommu::Result r = w.iommu().Translate(std::nullopt, iova, access);
    if (!r.ok) return std::nullopt;
    return r.va - host;  // as a guest-physical address
  };
  {
    absl::StatusOr<std::unique_ptr<Passthrough>> pt =
        Passthrough::Open({{{kLoopbackCdev, ""}, "vfio@02.0"}}, ram, MakeLoopbackHost(w));
    ASSERT_TRUE(pt.ok()) << pt.status();
    EXPECT_EQ(lands(0x200010), 0x200010u);  // Open: the guest-RAM IOAS (IOVA = GPA)
    ASSERT_TRUE((*pt)->EnableVirtioIommuForwarding(*b.iommu, {kEndpoint}).ok());
    EXPECT_THAT((*pt)->Describe(), ::testing::HasSubstr("vfio@02.0: translated via virtio-iommu forwarding"));
    // boot bypass off, unattached: blocked (§5.13.4.2).
    EXPECT_EQ(lands(0x200010), std::nullopt);

    ASSERT_TRUE(b.Start());
    ASSERT_EQ(b.Attach(1, kEndpoint), V::kSOk);
    EXPECT_EQ(lands(0x200010), std::nullopt);  // an empty paging domain
    ASSERT_EQ(b.Map(1, 0x80000000, 0x80001FFF, 0x200000, kRW), V::kSOk);
    ASSERT_EQ(b.Map(1, 0x80004000, 0x80004FFF, 0x300000, kRW), V::kSOk);
    EXPECT_EQ(lands(0x80000010), 0x200010u);
    EXPECT_EQ(lands(0x80001FF8, kDmaWrite), 0x201FF8u);
    EXPECT_EQ(lands(0x80004008), 0x300008u);
    EXPECT_EQ(lands(0x80002000), std::nullopt);  // between the mappings
    EXPECT_EQ(lands(0x200010), std::nullopt);    // guest-physical addresses mean nothing now
    // MAP outside guest RAM: refused, nothing reachable.
    EXPECT_EQ(b.Map(1, 0x90000000, 0x90000FFF, ViommuBench::kRam, kRW), V::kSRange);
    EXPECT_EQ(lands(0x90000000), std::nullopt);
    // UNMAP that would split: refused, still mapped; covering both: both gone.
    EXPECT_EQ(b.Unmap(1, 0x80000000, 0x80000FFF), V::kSRange);
    EXPECT_EQ(lands(0x80000010), 0x200010u);
    EXPECT_EQ(b.Unmap(1, 0x80000000, 0x80FFFFFF), V::kSOk);
    EXPECT_EQ(lands(0x80000010), std::nullopt);
    EXPECT_EQ(lands(0x80004008), std::nullopt);
    // ATTACH_F_BYPASS: guest RAM at its GPA again; the paging domain's IOAS is gone.
    ASSERT_EQ(b.Map(1, 0x80000000, 0x80000FFF, 0x200000, kRW), V::kSOk);
    ASSERT_EQ(b.Attach(2, kEndpoint, V::kAttachFBypass), V::kSOk);
    EXPECT_EQ(lands(0x200010), 0x200010u);
    EXPECT_EQ(lands(0x80000010), std::nullopt);
    EXPECT_EQ(w.iommu().live_objects(), 1u);
    // Back into a paging domain, then a device reset: blocked, per-domain IOAS released.
    ASSERT_EQ(b.Attach(3, kEndpoint), V::kSOk);
    ASSERT_EQ(b.Map(3, 0x80000000, 0x80000FFF, 0x200000, kRW), V::kSOk);
    EXPECT_EQ(lands(0x80000010), 0x200010u);
    EXPECT_EQ(w.iommu().live_objects(), 2u);
    ASSERT_TRUE(b.Start());
    EXPECT_EQ(lands(0x80000010), std::nullopt);
    EXPECT_EQ(lands(0x200010), std::nullopt);
    EXPECT_EQ(w.iommu().live_objects(), 1u);
    // VMM exit while in a paging domain: everything released.
    ASSERT_EQ(b.Attach(4, kEndpoint), V::kSOk);
    ASSERT_EQ(b.Map(4, 0x80000000, 0x80000FFF, 0x200000, kRW), V::kSOk);
  }
  EXPECT_EQ(w.iommu().live_objects(), 0u);
  EXPECT_TRUE(w.iommu().mappings().empty());
  EXPECT_FALSE(w.bound());
  EXPECT_FALSE(w.open());
  // The device carries on without the host.
  EXPECT_EQ(b.Map(4, 0x80001000, 0x80001FFF, 0x200000, kRW), V::kSOk);
}

}  // namespace
}  // namespace ionest::passthrough_test
