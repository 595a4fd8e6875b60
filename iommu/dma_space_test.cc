// DmaSpace::AccessRegion: a device copying within a translation it holds gets exactly the region,
// with the region's permissions, and nothing outside it.
#include "iommu/dma_space.h"

#include "gtest/gtest.h"
#include "vmm/guest_memory.h"

namespace ionest {
namespace {

TEST(DmaSpaceTest, AccessRegionStaysInsideTheRegionWithItsPermissions) {
  auto mem = GuestMemory::Create({{0, 1 << 20}});
  ASSERT_TRUE(mem.ok());
  IdentityDmaSpace space(**mem);
  const DmaRegion r{0x5000, 0x9000, 0x100, kDmaRead};
  uint8_t buf[0x100] = {};
  for (int i = 0; i < 0x100; ++i) buf[i] = static_cast<uint8_t>(i);
  ASSERT_TRUE((*mem)->Write(0x9000, buf, sizeof(buf)).ok());
  uint8_t got[16] = {};
  ASSERT_TRUE(space.AccessRegion(r, 0xf0, got, 16, kDmaRead).ok());
  EXPECT_EQ(got[0], 0xf0);
  EXPECT_EQ(got[15], 0xff);
  EXPECT_EQ(space.AccessRegion(r, 0xf1, got, 16, kDmaRead).code(), absl::StatusCode::kOutOfRange);
  EXPECT_EQ(space.AccessRegion(r, ~uint64_t{0}, got, 2, kDmaRead).code(), absl::StatusCode::kOutOfRange);
  EXPECT_EQ(space.AccessRegion(r, 0, got, 16, kDmaWrite).code(), absl::StatusCode::kPermissionDenied);
  EXPECT_EQ(space.AccessRegion(r, 0, got, 16, kDmaRead | kDmaWrite).code(), absl::StatusCode::kInvalidArgument);
  const DmaRegion w{0x5000, 0x9000, 0x100, kDmaRead | kDmaWrite};
  uint8_t one = 0xaa;
  ASSERT_TRUE(space.AccessRegion(w, 0x10, &one, 1, kDmaWrite).ok());
  EXPECT_EQ((*mem)->ReadObj<uint8_t>(0x9010).value(), 0xaa);
}

}  // namespace
}  // namespace ionest
