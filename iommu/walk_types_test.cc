#include "iommu/walk_types.h"

#include "gtest/gtest.h"

namespace ionest {
namespace {

TEST(WalkTypesTest, ToDmaFaultMapsKinds) {
  EXPECT_EQ(ToDmaFaultKind(WalkFaultKind::kNotPresent), DmaFaultKind::kNotPresent);
  EXPECT_EQ(ToDmaFaultKind(WalkFaultKind::kPermission), DmaFaultKind::kPermission);
  EXPECT_EQ(ToDmaFaultKind(WalkFaultKind::kReservedBit), DmaFaultKind::kInvalidEntry);
  EXPECT_EQ(ToDmaFaultKind(WalkFaultKind::kNonCanonical), DmaFaultKind::kBadAddress);
  EXPECT_EQ(ToDmaFaultKind(WalkFaultKind::kAddressWidth), DmaFaultKind::kBadAddress);
  EXPECT_EQ(ToDmaFaultKind(WalkFaultKind::kTableAccess), DmaFaultKind::kInvalidEntry);
  EXPECT_EQ(ToDmaFaultKind(WalkFaultKind::kRequestNotAllowed), DmaFaultKind::kBlocked);
  EXPECT_EQ(ToDmaFaultKind(WalkFaultKind::kInvalidConfig), DmaFaultKind::kInvalidEntry);
}

TEST(WalkTypesTest, ToDmaFaultCarriesRequest) {
  WalkResult r = MakeFault(WalkFaultKind::kPermission, WalkStage::kSecond, 2, 0x5000, 0x1234, 0x8000);
  EXPECT_FALSE(r.ok);
  EXPECT_EQ(r.fault.level, 2);
  EXPECT_EQ(r.fault.entry, 0x1234u);
  EXPECT_EQ(r.fault.entry_addr, 0x8000u);
  DmaFault d = ToDmaFault(r.fault, 0x7000'0123, kDmaWrite, 42, 0x5A);
  EXPECT_EQ(d.kind, DmaFaultKind::kPermission);
  EXPECT_EQ(d.iova, 0x7000'0123u);
  EXPECT_EQ(d.access, uint32_t{kDmaWrite});
  EXPECT_EQ(d.pasid, 42u);
  EXPECT_EQ(d.reason, 0x5Au);
  EXPECT_FALSE(d.recorded);
  EXPECT_NE(WalkFaultToString(r.fault).find("permission fault in second-stage at level 2"), std::string::npos);
}

TEST(WalkTypesTest, PageHelpers) {
  EXPECT_EQ(LevelPageSize(1), kPage4K);
  EXPECT_EQ(LevelPageSize(2), kPage2M);
  EXPECT_EQ(LevelPageSize(3), kPage1G);
  WalkResult r;
  r.output = 0x12345678;
  r.page_size = kPage2M;
  EXPECT_EQ(r.page_output(), 0x12200000u);
}

}  // namespace
}  // namespace ionest
