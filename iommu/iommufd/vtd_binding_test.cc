// Binding rules of the VT-d nesting backend: guest entry → host binding kind, with the checks of
// guest-controlled values.
#include "iommu/iommufd/vtd_binding.h"

#include "gtest/gtest.h"
#include "iommu/vtd/fault_reasons.h"

namespace ionest::iommufd {
namespace {

constexpr uint64_t kRamSize = 256ull << 20;

class BindingTest : public ::testing::Test {
 protected:
  BindingTest() {
    ram_.push_back({0, nullptr, kRamSize});
    ram_.push_back({4ull << 30, nullptr, 1ull << 30});  // high RAM above the PCI hole
    env_.profile = vtd::VtdProfile{};
    env_.ram = ram_;
  }
  static vtd::ContextEntry Scalable(bool pasid_enable = true, uint32_t rid_pasid = 0) {
    vtd::ContextEntry c;
    c.scalable = true;
    c.pasid_enable = pasid_enable;
    c.rid_pasid = rid_pasid;
    return c;
  }
  static vtd::PasidEntry FirstStage(uint64_t flptptr, uint16_t did = 7) {
    vtd::PasidEntry e;
    e.pgtt = vtd::kPgttFirstStage;
    e.flptptr = flptptr;
    e.did = did;
    return e;
  }
  std::vector<RamRange> ram_;
  BindingEnv env_;
};

TEST_F(BindingTest, TranslationOffIsIdentityWhateverTheEntries) {
  EXPECT_EQ(BindRequester(env_, false, std::nullopt, std::nullopt).kind, BindingKind::kIdentity);
  EXPECT_EQ(BindRequester(env_, false, Scalable(), FirstStage(0x1000)).kind, BindingKind::kIdentity);
  // PASID requests have no meaning with translation off: blocked.
  EXPECT_EQ(BindPasid(env_, false, FirstStage(0x1000)).kind, BindingKind::kBlocked);
}

TEST_F(BindingTest, AbsentEntriesBlockWithoutAFault) {
  GuestBinding b = BindRequester(env_, true, std::nullopt, std::nullopt);
  EXPECT_EQ(b.kind, BindingKind::kBlocked);
  EXPECT_FALSE(b.fault);
  b = BindRequester(env_, true, Scalable(), std::nullopt);
  EXPECT_EQ(b.kind, BindingKind::kBlocked);
  EXPECT_FALSE(b.fault);
  EXPECT_EQ(BindPasid(env_, true, std::nullopt).kind, BindingKind::kBlocked);
}

TEST_F(BindingTest, FirstStageBecomesNestedWithTheEntrysFields) {
  vtd::PasidEntry e = FirstStage(0x123000, 9);
  e.sre = true;
  e.wpe = true;
  e.eafe = true;
  GuestBinding b = BindPasid(env_, true, e);
  ASSERT_EQ(b.kind, BindingKind::kNested);
  EXPECT_EQ(b.did, 9);
  EXPECT_EQ(b.stage1, (VtdStage1{0x123000, 48, true, true, true}));
  // High RAM is RAM too.
  EXPECT_EQ(BindPasid(env_, true, FirstStage((4ull << 30) + 0x5000)).kind, BindingKind::kNested);
}

TEST_F(BindingTest, FirstStagePointerOutsideRamIsTheArchitectedFault) {
  for (uint64_t bad : {kRamSize, uint64_t{3} << 30, (uint64_t{5} << 30), ~uint64_t{0xfff}}) {
    vtd::PasidEntry e = FirstStage(bad);
    e.fpd = true;
    GuestBinding b = BindPasid(env_, true, e);
    EXPECT_EQ(b.kind, BindingKind::kBlocked) << std::hex << bad;
    ASSERT_TRUE(b.fault) << std::hex << bad;
    EXPECT_EQ(b.fault->reason, vtd::kSmFlAccess);
    EXPECT_TRUE(b.fault->fpd);  // FPD suppresses it like hardware would
  }
}

TEST_F(BindingTest, FiveLevelFirstStageNeedsTheHost) {
  vtd::PasidEntry e = FirstStage(0x1000);
  e.flpm = 1;
  GuestBinding b = BindPasid(env_, true, e);
  EXPECT_EQ(b.kind, BindingKind::kBlocked);
  ASSERT_TRUE(b.fault);
  EXPECT_EQ(b.fault->reason, vtd::kSmPasidEntryInvalid);
  env_.host_fs5lp = true;
  b = BindPasid(env_, true, e);
  ASSERT_EQ(b.kind, BindingKind::kNested);
  EXPECT_EQ(b.stage1.addr_width, 57u);
}

TEST_F(BindingTest, PassThroughEntriesAreIdentity) {
  vtd::PasidEntry e;
  e.pgtt = vtd::kPgttPassThrough;
  EXPECT_EQ(BindPasid(env_, true, e).kind, BindingKind::kIdentity);
  vtd::ContextEntry legacy;
  legacy.tt = vtd::kTtPassThrough;
  EXPECT_EQ(BindRequester(env_, true, legacy, std::nullopt).kind, BindingKind::kIdentity);
}

TEST_F(BindingTest, SecondStageOnlyAndLegacyTablesAreShadowed) {
  vtd::ContextEntry legacy;
  legacy.tt = vtd::kTtUntranslatedOnly;
  legacy.aw = 2;
  legacy.slptptr = 0x40000;
  legacy.did = 3;
  GuestBinding b = BindRequester(env_, true, legacy, std::nullopt);
  ASSERT_EQ(b.kind, BindingKind::kShadow);
  EXPECT_EQ(b.did, 3);
  EXPECT_EQ(b.stage2.root, 0x40000u);
  EXPECT_EQ(b.stage2.levels, 4);
  EXPECT_EQ(b.stage2.aw_bits, 48);
  vtd::PasidEntry e;
  e.pgtt = vtd::kPgttSecondStage;
  e.aw = 1;
  e.slptptr = 0x50000;
  b = BindPasid(env_, true, e);
  ASSERT_EQ(b.kind, BindingKind::kShadow);
  EXPECT_EQ(b.stage2.levels, 3);
  // Pointer outside RAM: the second-stage pointer fault of each mode.
  legacy.slptptr = 1ull << 40;
  b = BindRequester(env_, true, legacy, std::nullopt);
  ASSERT_TRUE(b.fault);
  EXPECT_EQ(b.fault->reason, vtd::kFrSlPtrError);
  e.slptptr = 1ull << 40;
  b = BindPasid(env_, true, e);
  ASSERT_TRUE(b.fault);
  EXPECT_EQ(b.fault->reason, vtd::kSmSlInvalidPointer);
}

TEST_F(BindingTest, NestedGuestEntriesAreBlockedByPolicyWithAReason) {
  vtd::PasidEntry e = FirstStage(0x1000);
  e.pgtt = vtd::kPgttNested;
  GuestBinding b = BindPasid(env_, true, e);
  EXPECT_EQ(b.kind, BindingKind::kBlocked);
  EXPECT_FALSE(b.fault);
  EXPECT_NE(b.note.find("PGTT=011b"), std::string::npos);
}

TEST_F(BindingTest, RequesterUsesTheRidPasidEntry) {
  GuestBinding b = BindRequester(env_, true, Scalable(true, 0), FirstStage(0x7000, 2));
  ASSERT_EQ(b.kind, BindingKind::kNested);
  EXPECT_EQ(b.stage1.pgtbl_addr, 0x7000u);
}

TEST_F(BindingTest, EqualityIgnoresFieldsOfOtherKinds) {
  GuestBinding a = BindPasid(env_, true, FirstStage(0x1000));
  GuestBinding b = a;
  b.stage2.root = 0x9999000;  // irrelevant to a nested binding
  EXPECT_EQ(a, b);
  b.stage1.pgtbl_addr = 0x2000;
  EXPECT_FALSE(a == b);
}

TEST(InGuestRam, Boundaries) {
  std::vector<RamRange> ram = {{0x1000, nullptr, 0x2000}};
  EXPECT_TRUE(InGuestRam(ram, 0x1000, 0x2000));
  EXPECT_FALSE(InGuestRam(ram, 0x1000, 0x2001));
  EXPECT_FALSE(InGuestRam(ram, 0xfff, 2));
  EXPECT_FALSE(InGuestRam(ram, 0x3000, 1));
  EXPECT_FALSE(InGuestRam(ram, ~uint64_t{0}, 2));  // wraps
  EXPECT_FALSE(InGuestRam(ram, 0x1000, 0));
}

}  // namespace
}  // namespace ionest::iommufd
