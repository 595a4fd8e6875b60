#include "iommu/vmsa_walk.h"

#include <memory>

#include "gtest/gtest.h"
#include "iommu/testing/vmsa_builder.h"

namespace ionest {
namespace {

using iommu_testing::OffsetPhysMemory;
using iommu_testing::PageAllocator;
using iommu_testing::VmsaTableBuilder;

constexpr uint64_t kRam = 64ull << 20;
constexpr uint32_t kRW = kDmaRead | kDmaWrite;

class VmsaWalkTest : public ::testing::Test {
 protected:
  void SetUp() override {
    mem_ = *GuestMemory::Create({{0, kRam}});
    alloc_ = std::make_unique<PageAllocator>(*mem_, 1ull << 20, 16ull << 20);
  }
  // Stage 1 with a 48-bit TTBR0 region and a 39-bit TTBR1 region.
  void MakeStage1() {
    t0_ = std::make_unique<VmsaTableBuilder>(*VmsaTableBuilder::CreateStage1(*mem_, *alloc_, 48));
    t1_ = std::make_unique<VmsaTableBuilder>(*VmsaTableBuilder::CreateStage1(*mem_, *alloc_, 39));
    s1_.ttbr[0] = {true, t0_->root(), 16, 12};
    s1_.ttbr[1] = {true, t1_->root(), 25, 12};
  }
  WalkResult Walk1(uint64_t va, uint32_t access) { return WalkVmsaStage1(*mem_, s1_, va, access); }

  std::unique_ptr<GuestMemory> mem_;
  std::unique_ptr<PageAllocator> alloc_;
  std::unique_ptr<VmsaTableBuilder> t0_, t1_;
  VmsaStage1Config s1_;
};

TEST_F(VmsaWalkTest, Stage1PageBlockAndTtbrSelection) {
  MakeStage1();
  ASSERT_TRUE(t0_->Map(0x1234'5000, 0x300'0000, kPage4K, VmsaTableBuilder::Stage1Attrs(kRW)).ok());
  ASSERT_TRUE(t0_->Map(0x4000'0000, 0x200'0000, kPage2M, VmsaTableBuilder::Stage1Attrs(kRW), kPage2M).ok());
  ASSERT_TRUE(t0_->Map(0x80'0000'0000, 0x4000'0000, kPage1G, VmsaTableBuilder::Stage1Attrs(kDmaRead), kPage1G).ok());
  const uint64_t kHigh = 0xFFFF'FF80'0000'1000ull;  // TTBR1, 39-bit region
  ASSERT_TRUE(t1_->Map(kHigh & ((1ull << 39) - 1), 0x310'0000, kPage4K, VmsaTableBuilder::Stage1Attrs(kDmaRead)).ok());

  WalkResult r = Walk1(0x1234'5678, kDmaWrite);
  ASSERT_TRUE(r.ok) << WalkFaultToString(r.fault);
  EXPECT_EQ(r.output, 0x300'0678u);
  EXPECT_EQ(r.page_size, kPage4K);
  EXPECT_EQ(r.perms, kRW);
  r = Walk1(0x4001'2345, kDmaRead);
  ASSERT_TRUE(r.ok);
  EXPECT_EQ(r.output, 0x201'2345u);
  EXPECT_EQ(r.page_size, kPage2M);
  r = Walk1(0x80'1234'5678, kDmaRead);
  ASSERT_TRUE(r.ok);
  EXPECT_EQ(r.output, 0x4000'0000u + 0x1234'5678u);
  EXPECT_EQ(r.page_size, kPage1G);
  r = Walk1(kHigh + 0x10, kDmaRead);
  ASSERT_TRUE(r.ok) << WalkFaultToString(r.fault);
  EXPECT_EQ(r.output, 0x310'0010u);

  // Top bits not matching the selected region: translation fault at level 0.
  EXPECT_EQ(Walk1(0x0001'0000'0000'0000ull, kDmaRead).fault.kind, WalkFaultKind::kNonCanonical);
  EXPECT_EQ(Walk1(0xFFFF'FF00'0000'0000ull, kDmaRead).fault.kind, WalkFaultKind::kNonCanonical);
  // EPD1: the TTBR1 half faults without a walk.
  s1_.ttbr[1].enabled = false;
  r = Walk1(kHigh, kDmaRead);
  EXPECT_EQ(r.fault.kind, WalkFaultKind::kNotPresent);
  EXPECT_EQ(r.fault.level, 0);
  // Unmapped page: translation fault at level 3.
  r = Walk1(0x1234'6000, kDmaRead);
  EXPECT_EQ(r.fault.kind, WalkFaultKind::kNotPresent);
  EXPECT_EQ(r.fault.level, 3);
}

// AP[2:1] x privilege, and UXN/PXN, as Arm ARM D8.4.
TEST_F(VmsaWalkTest, Stage1PermissionMatrix) {
  MakeStage1();
  struct Case {
    uint64_t attrs;
    uint32_t user, priv;
  } cases[] = {
      {vmsa::kAf | vmsa::kUxn | vmsa::kPxn, 0, kRW},                                   // AP=00: EL1 RW
      {vmsa::kAf | vmsa::kAp1 | vmsa::kUxn | vmsa::kPxn, kRW, kRW},                    // AP=01: RW both
      {vmsa::kAf | vmsa::kAp2 | vmsa::kUxn | vmsa::kPxn, 0, kDmaRead},                 // AP=10: EL1 RO
      {vmsa::kAf | vmsa::kAp1 | vmsa::kAp2 | vmsa::kUxn | vmsa::kPxn, kDmaRead, kDmaRead},  // AP=11
      {vmsa::kAf | vmsa::kAp1 | vmsa::kAp2, kDmaRead | kDmaExec, kDmaRead | kDmaExec},  // executable
      {vmsa::kAf | vmsa::kAp1, kDmaRwx, kRW},  // EL0-writable: never privileged-executable
  };
  uint64_t va = 0x10'0000;
  for (const Case& c : cases) {
    ASSERT_TRUE(t0_->Map(va, 0x400'0000, kPage4K, c.attrs).ok());
    for (uint32_t access : {kDmaRead, kDmaWrite, kDmaExec}) {
      for (bool priv : {false, true}) {
        WalkResult r = Walk1(va, access | (priv ? uint32_t{kDmaPriv} : 0u));
        const bool allowed = ((priv ? c.priv : c.user) & access) != 0;
        EXPECT_EQ(r.ok, allowed) << std::hex << c.attrs << " access " << access << " priv " << priv;
        if (!allowed) {
          EXPECT_EQ(r.fault.kind, WalkFaultKind::kPermission);
        } else {
          EXPECT_EQ(r.user_perms, c.user);
          EXPECT_EQ(r.supervisor_perms, c.priv);
        }
      }
    }
    va += kPage4K;
  }
}

TEST_F(VmsaWalkTest, Stage1HierarchicalTableLimits) {
  MakeStage1();
  ASSERT_TRUE(t0_->Map(0x20'0000, 0x400'0000, kPage4K, VmsaTableBuilder::Stage1Attrs(kRW | kDmaExec)).ok());
  ASSERT_TRUE(Walk1(0x20'0000, kDmaWrite).ok);
  ASSERT_TRUE(t0_->SetEntryBits(0x20'0000, 2, vmsa::kApTableReadOnly).ok());
  EXPECT_EQ(Walk1(0x20'0000, kDmaWrite).fault.kind, WalkFaultKind::kPermission);
  ASSERT_TRUE(t0_->SetEntryBits(0x20'0000, 1, vmsa::kApTableNoEl0).ok());
  EXPECT_EQ(Walk1(0x20'0000, kDmaRead).fault.kind, WalkFaultKind::kPermission);
  EXPECT_TRUE(Walk1(0x20'0000, kDmaRead | kDmaPriv).ok);
  ASSERT_TRUE(t0_->SetEntryBits(0x20'0000, 0, vmsa::kPxnTable).ok());
  EXPECT_EQ(Walk1(0x20'0000, kDmaExec | kDmaPriv).fault.kind, WalkFaultKind::kPermission);
}

TEST_F(VmsaWalkTest, AccessFlagFaultHardwareUpdateAndAffd) {
  MakeStage1();
  ASSERT_TRUE(t0_->Map(0x30'0000, 0x400'0000, kPage4K, VmsaTableBuilder::Stage1Attrs(kRW) & ~vmsa::kAf).ok());
  WalkResult r = Walk1(0x30'0000, kDmaRead);
  EXPECT_EQ(r.fault.kind, WalkFaultKind::kAccessFlag);
  EXPECT_EQ(r.fault.level, 3);
  s1_.af_fault_disable = true;
  EXPECT_TRUE(Walk1(0x30'0000, kDmaRead).ok);
  EXPECT_FALSE(*t0_->ReadEntry(0x30'0000, 3) & vmsa::kAf);
  s1_.af_fault_disable = false;
  s1_.hardware_af = true;
  // A denied access does not set AF; a permitted one does.
  ASSERT_TRUE(t0_->SetEntryBits(0x30'0000, 3, vmsa::kAp2).ok());
  EXPECT_EQ(Walk1(0x30'0000, kDmaWrite).fault.kind, WalkFaultKind::kPermission);
  EXPECT_FALSE(*t0_->ReadEntry(0x30'0000, 3) & vmsa::kAf);
  EXPECT_TRUE(Walk1(0x30'0000, kDmaRead).ok);
  EXPECT_TRUE(*t0_->ReadEntry(0x30'0000, 3) & vmsa::kAf);
}

TEST_F(VmsaWalkTest, ReservedEncodingsAndAddressSize) {
  MakeStage1();
  ASSERT_TRUE(t0_->Map(0x40'0000, 0x400'0000, kPage4K, VmsaTableBuilder::Stage1Attrs(kRW)).ok());
  // Level-3 descriptor with bit 1 clear (block encoding) is reserved: translation fault.
  ASSERT_TRUE(t0_->SetEntryBits(0x40'0000, 3, 0, vmsa::kTableOrPage).ok());
  EXPECT_EQ(Walk1(0x40'0000, kDmaRead).fault.kind, WalkFaultKind::kReservedBit);
  ASSERT_TRUE(t0_->SetEntryBits(0x40'0000, 3, vmsa::kTableOrPage).ok());
  // Output address beyond the configured output size: address size fault.
  s1_.oas_bits = 40;
  ASSERT_TRUE(t0_->SetEntryBits(0x40'0000, 3, 1ull << 41).ok());
  EXPECT_EQ(Walk1(0x40'0000, kDmaRead).fault.kind, WalkFaultKind::kAddressWidth);
  ASSERT_TRUE(t0_->SetEntryBits(0x40'0000, 3, 1ull << 49, 1ull << 41).ok());  // bits 49:48 are RES0
  s1_.oas_bits = 48;
  EXPECT_EQ(Walk1(0x40'0000, kDmaRead).fault.kind, WalkFaultKind::kAddressWidth);
  // Bits 51:50 of a page are DBM and GP, not address bits: Linux's writable user PTEs have DBM.
  ASSERT_TRUE(t0_->SetEntryBits(0x40'0000, 3, vmsa::kDbm | vmsa::kGp, 1ull << 49).ok());
  WalkResult dbm = Walk1(0x40'0000, kDmaRead | kDmaWrite);
  EXPECT_TRUE(dbm.ok);
  EXPECT_EQ(dbm.output, 0x400'0000u);
  // In a table descriptor they stay RES0.
  ASSERT_TRUE(t0_->SetEntryBits(0x40'0000, 2, vmsa::kDbm).ok());
  EXPECT_EQ(Walk1(0x40'0000, kDmaRead).fault.kind, WalkFaultKind::kAddressWidth);
  ASSERT_TRUE(t0_->SetEntryBits(0x40'0000, 2, 0, vmsa::kDbm).ok());
  // A level-0 block does not exist with a 4 KiB granule.
  const uint64_t l0 = *t0_->EntryAddress(0x40'0000, 0);
  ASSERT_TRUE(mem_->WriteObj<uint64_t>(l0, 0x0 | vmsa::kValid | vmsa::kAf).ok());
  EXPECT_EQ(Walk1(0x40'0000, kDmaRead).fault.kind, WalkFaultKind::kReservedBit);
}

TEST_F(VmsaWalkTest, TableOutsideRamIsExternalAbort) {
  MakeStage1();
  ASSERT_TRUE(t0_->Map(0x40'0000, 0x400'0000, kPage4K, VmsaTableBuilder::Stage1Attrs(kRW)).ok());
  ASSERT_TRUE(mem_->WriteObj<uint64_t>(*t0_->EntryAddress(0x40'0000, 0), 0x10'0000'0000ull | 3).ok());
  WalkResult r = Walk1(0x40'0000, kDmaRead);
  EXPECT_EQ(r.fault.kind, WalkFaultKind::kTableAccess);
  EXPECT_EQ(r.fault.level, 1);
}

TEST_F(VmsaWalkTest, InvalidConfigs) {
  VmsaStage1Config c;
  c.ttbr[0] = {true, 0x10'0000, 15, 12};
  EXPECT_FALSE(IsValidVmsaStage1(c));
  c.ttbr[0] = {true, 0x10'0000, 40, 12};
  EXPECT_FALSE(IsValidVmsaStage1(c));
  c.ttbr[0] = {true, 0x10'0000, 25, 13};
  EXPECT_FALSE(IsValidVmsaStage1(c));
  c.ttbr[0] = {false, 0x10'0000, 99, 13};  // disabled halves are not checked
  EXPECT_TRUE(IsValidVmsaStage1(c));
  EXPECT_EQ(WalkVmsaStage1(*mem_, VmsaStage1Config{.oas_bits = 60}, 0, kDmaRead).fault.kind,
            WalkFaultKind::kInvalidConfig);
  VmsaStage2Config s2;
  s2.t0sz = 25;  // 39-bit IPA
  s2.sl0 = 1;    // level 1: fine
  EXPECT_TRUE(IsValidVmsaStage2(s2));
  s2.sl0 = 2;  // level 0 would resolve nothing
  EXPECT_FALSE(IsValidVmsaStage2(s2));
  s2.sl0 = 0;  // level 2: 2^9 tables needed
  EXPECT_FALSE(IsValidVmsaStage2(s2));
  s2.sl0 = 3;
  EXPECT_FALSE(IsValidVmsaStage2(s2));
  s2 = {.t0sz = 24, .sl0 = 1};  // 40 bits from level 1: 2 concatenated tables
  EXPECT_TRUE(IsValidVmsaStage2(s2));
  s2 = {.t0sz = 21, .sl0 = 1};  // 43 bits from level 1: 16 tables
  EXPECT_TRUE(IsValidVmsaStage2(s2));
  s2 = {.t0sz = 20, .sl0 = 1};  // 32 tables: too many
  EXPECT_FALSE(IsValidVmsaStage2(s2));
}

TEST_F(VmsaWalkTest, Stage2ConcatenatedTablesAndS2ap) {
  // 40-bit IPA from level 1: two concatenated level-1 tables.
  auto b = *VmsaTableBuilder::Create(*mem_, *alloc_, 40, 1);
  VmsaStage2Config s2{.ttb = b.root(), .t0sz = 24, .sl0 = 1};
  const uint64_t kIpa = 0x80'1234'5000ull;  // bit 39 set: second concatenated table
  ASSERT_TRUE(b.Map(kIpa, 0x500'0000, kPage4K, VmsaTableBuilder::Stage2Attrs(kDmaRead)).ok());
  WalkResult r = WalkVmsaStage2(*mem_, s2, kIpa + 0x44, kDmaRead);
  ASSERT_TRUE(r.ok) << WalkFaultToString(r.fault);
  EXPECT_EQ(r.output, 0x500'0044u);
  EXPECT_EQ(r.perms, kDmaRead);
  r = WalkVmsaStage2(*mem_, s2, kIpa, kDmaWrite);
  EXPECT_EQ(r.fault.kind, WalkFaultKind::kPermission);
  EXPECT_EQ(r.fault.stage, WalkStage::kSecond);
  EXPECT_EQ(WalkVmsaStage2(*mem_, s2, kIpa, kDmaExec).fault.kind, WalkFaultKind::kPermission);
  // Beyond the 40-bit input: translation fault.
  EXPECT_EQ(WalkVmsaStage2(*mem_, s2, 1ull << 40, kDmaRead).fault.kind, WalkFaultKind::kNonCanonical);
  // Stage-2 AF.
  ASSERT_TRUE(b.SetEntryBits(kIpa, 3, 0, vmsa::kAf).ok());
  EXPECT_EQ(WalkVmsaStage2(*mem_, s2, kIpa, kDmaRead).fault.kind, WalkFaultKind::kAccessFlag);
  s2.hardware_af = true;
  EXPECT_TRUE(WalkVmsaStage2(*mem_, s2, kIpa, kDmaRead).ok);
  EXPECT_TRUE(*b.ReadEntry(kIpa, 3) & vmsa::kAf);
}

TEST_F(VmsaWalkTest, Stage2With64KGranule) {
  // 42-bit IPA, 64 KiB granule, start level 2 (SL0=1): level 2 resolves bits 41:29 (8 KiB table),
  // level 3 bits 28:16.
  const uint64_t l2 = 0x20'0000, l3 = 0x30'0000;
  VmsaStage2Config s2{.ttb = l2, .t0sz = 22, .sl0 = 1, .granule_shift = 16};
  ASSERT_TRUE(IsValidVmsaStage2(s2));
  const uint64_t ipa = (0x123ull << 29) | (0x45ull << 16) | 0x1234;
  ASSERT_TRUE(mem_->WriteObj<uint64_t>(l2 + 0x123 * 8, l3 | 3).ok());
  ASSERT_TRUE(mem_->WriteObj<uint64_t>(l3 + 0x45 * 8, 0x60'0000 | 3 | VmsaTableBuilder::Stage2Attrs(kRW)).ok());
  WalkResult r = WalkVmsaStage2(*mem_, s2, ipa, kDmaWrite);
  ASSERT_TRUE(r.ok) << WalkFaultToString(r.fault);
  EXPECT_EQ(r.output, 0x60'1234u);
  EXPECT_EQ(r.page_size, 64u << 10);
  // A level-2 block is 512 MiB with 64 KiB pages.
  ASSERT_TRUE(mem_->WriteObj<uint64_t>(l2 + 0x1 * 8, 0x2000'0000ull | 1 | VmsaTableBuilder::Stage2Attrs(kRW)).ok());
  r = WalkVmsaStage2(*mem_, s2, (1ull << 29) + 0x777, kDmaRead);
  ASSERT_TRUE(r.ok);
  EXPECT_EQ(r.page_size, 512u << 20);
  EXPECT_EQ(r.output, 0x2000'0777u);
}

TEST_F(VmsaWalkTest, NestedTranslatesTablesAndOutput) {
  // Stage 2 maps IPA [0, 32 MiB) to PA [32 MiB, 64 MiB); the stage-1 tables live in IPA space.
  constexpr uint64_t kOffset = 32ull << 20;
  auto s2b = *VmsaTableBuilder::Create(*mem_, *alloc_, 40, 1);
  ASSERT_TRUE(s2b.Map(0, kOffset, 32ull << 20, VmsaTableBuilder::Stage2Attrs(kRW), kPage2M).ok());
  VmsaStage2Config s2{.ttb = s2b.root(), .t0sz = 24, .sl0 = 1};
  OffsetPhysMemory ipa_view(*mem_, kOffset);
  PageAllocator ipa_alloc(ipa_view, 16ull << 20, 8ull << 20);
  auto s1b = *VmsaTableBuilder::CreateStage1(ipa_view, ipa_alloc, 48);
  ASSERT_TRUE(s1b.Map(0x7000'0000, 0x10'0000, kPage4K, VmsaTableBuilder::Stage1Attrs(kRW)).ok());
  ASSERT_TRUE(s1b.Map(0x7000'1000, 0x3000'0000, kPage4K, VmsaTableBuilder::Stage1Attrs(kRW)).ok());
  VmsaStage1Config s1;
  s1.ttbr[0] = {true, s1b.root(), 16, 12};

  WalkResult r = WalkVmsaNested(*mem_, s1, s2, 0x7000'0123, kDmaWrite);
  ASSERT_TRUE(r.ok) << WalkFaultToString(r.fault);
  EXPECT_EQ(r.output, kOffset + 0x10'0123);
  EXPECT_EQ(r.page_size, kPage4K);
  // Stage-1 output IPA unmapped at stage 2.
  r = WalkVmsaNested(*mem_, s1, s2, 0x7000'1000, kDmaRead);
  EXPECT_EQ(r.fault.stage, WalkStage::kSecond);
  EXPECT_EQ(r.fault.kind, WalkFaultKind::kNotPresent);
  EXPECT_EQ(r.fault.addr, 0x3000'0000u);
  // A stage-1 table read-only at stage 2: reads fine, a hardware AF update faults on the table.
  ASSERT_TRUE(s1b.SetEntryBits(0x7000'0000, 3, 0, vmsa::kAf).ok());
  s1.hardware_af = true;
  const uint64_t leaf_ipa = *s1b.EntryAddress(0x7000'0000, 3);
  ASSERT_TRUE(s2b.SetEntryBits(leaf_ipa, 2, 0, vmsa::kS2apWrite).ok());
  r = WalkVmsaNested(*mem_, s1, s2, 0x7000'0000, kDmaRead);
  EXPECT_EQ(r.fault.stage, WalkStage::kSecondForFirstTable);
  EXPECT_EQ(r.fault.kind, WalkFaultKind::kPermission);
  // Stage-1 root outside the stage-2 map.
  s1.ttbr[0].ttb = 0x4000'0000;
  r = WalkVmsaNested(*mem_, s1, s2, 0x7000'0000, kDmaRead);
  EXPECT_EQ(r.fault.stage, WalkStage::kSecondForFirstTable);
  EXPECT_EQ(r.fault.kind, WalkFaultKind::kNotPresent);
}

}  // namespace
}  // namespace ionest
