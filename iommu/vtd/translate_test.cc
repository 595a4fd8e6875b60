// End-to-end DMA translation through VtdIommu: legacy and scalable tables built in fake guest
// memory, programmed like Linux does, with cache/invalidation semantics.
#include "iommu/vtd/translate.h"

#include "gtest/gtest.h"
#include "iommu/first_stage.h"
#include "iommu/second_stage.h"
#include "iommu/testing/table_builder.h"
#include "iommu/vtd/registers.h"
#include "iommu/vtd/testing/vtd_test_env.h"

namespace ionest::vtd {
namespace {

using iommu_testing::FirstStageTableBuilder;
using iommu_testing::SecondStageTableBuilder;
using testing::CcDevice;
using testing::IotlbPage;
using testing::LegacyContextSpec;
using testing::PasidCacheInv;
using testing::PasidEntrySpec;
using testing::PIotlbPasid;
using testing::ScalableContextSpec;
using testing::VtdTestEnv;

constexpr uint16_t kRid = 0x0010;  // 00:02.0
constexpr uint64_t kData1 = 0x100000;
constexpr uint64_t kData2 = 0x200000;

class TranslateTest : public ::testing::Test {
 protected:
  void Make(const char* profile, bool scalable) {
    auto env = VtdTestEnv::Create(profile);
    ASSERT_TRUE(env.ok()) << env.status();
    env_ = std::move(*env);
    ASSERT_TRUE(env_->driver->Init(scalable).ok());
    ASSERT_TRUE(env_->memory->WriteObj<uint64_t>(kData1, 0x1111).ok());
    ASSERT_TRUE(env_->memory->WriteObj<uint64_t>(kData2, 0x2222).ok());
  }
  SecondStageTableBuilder NewSl() {
    auto b = SecondStageTableBuilder::Create(*env_->memory, *env_->alloc, 4);
    EXPECT_TRUE(b.ok());
    return std::move(*b);
  }
  FirstStageTableBuilder NewFl() {
    auto b = FirstStageTableBuilder::Create(*env_->memory, *env_->alloc, 4);
    EXPECT_TRUE(b.ok());
    return std::move(*b);
  }
  DmaSpace& space(uint16_t rid = kRid) { return env_->iommu->ForRequester(rid); }
  // Reads a u64 through the IOMMU; returns nullopt on fault (fault kept in last_fault_).
  std::optional<uint64_t> Read(uint64_t iova, std::optional<uint32_t> pasid = std::nullopt, uint16_t rid = kRid) {
    uint64_t v = 0;
    DmaAttrs attrs{pasid};
    last_fault_ = {};
    if (!space(rid).Read(iova, &v, sizeof(v), attrs, &last_fault_).ok()) return std::nullopt;
    return v;
  }
  uint8_t RecordedReason(int index = 0) {
    uint64_t hi = env_->iommu->ReadRegister(VtdProfile::kFaultRecordOffset + 16 * index + 8);
    return (hi >> 32) & 0xff;
  }
  bool FaultPending() { return env_->iommu->ReadRegister(kFstsReg, 4) & kFstsPpf; }

  std::unique_ptr<VtdTestEnv> env_;
  DmaFault last_fault_;
};

// ----- Legacy mode -----

TEST_F(TranslateTest, TranslationDisabledIsIdentity) {
  Make("sm=off", false);
  EXPECT_EQ(Read(kData1), 0x1111u);
  EXPECT_TRUE(space().AllowTranslatedRequest());
}

TEST_F(TranslateTest, LegacyContextNotPresentFaults) {
  Make("sm=off", false);
  ASSERT_TRUE(env_->driver->EnableTranslation().ok());
  EXPECT_EQ(Read(0x5000), std::nullopt);
  EXPECT_EQ(last_fault_.kind, DmaFaultKind::kBlocked);
  EXPECT_EQ(last_fault_.reason, kFrRootNotPresent);  // no root entry for bus 0 yet
  EXPECT_TRUE(last_fault_.recorded);
  // Root present but context not.
  ASSERT_TRUE(env_->driver->tables().SetLegacyContext(kRid + 1, {}).ok());
  EXPECT_EQ(Read(0x5000), std::nullopt);
  EXPECT_EQ(last_fault_.reason, kFrContextNotPresent);
}

TEST_F(TranslateTest, LegacySecondStageTranslationAndPermissions) {
  Make("sm=off", false);
  SecondStageTableBuilder sl = NewSl();
  ASSERT_TRUE(sl.Map(0x5000, kData1, 4096, kDmaRead).ok());
  ASSERT_TRUE(env_->driver->tables().SetLegacyContext(kRid, {.tt = 0, .aw = 2, .did = 3, .slptptr = sl.root()}).ok());
  ASSERT_TRUE(env_->driver->EnableTranslation().ok());
  EXPECT_EQ(Read(0x5000), 0x1111u);
  uint64_t v = 1;
  DmaFault f;
  EXPECT_FALSE(space().Write(0x5000, &v, sizeof(v), {}, &f).ok());
  EXPECT_EQ(f.reason, kFrWriteDenied);
  EXPECT_EQ(Read(0x9000), std::nullopt);  // unmapped
  EXPECT_EQ(last_fault_.kind, DmaFaultKind::kNotPresent);
  EXPECT_EQ(last_fault_.reason, kFrReadDenied);
  // Beyond the 48-bit AW.
  EXPECT_EQ(Read(1ull << 50), std::nullopt);
  EXPECT_EQ(last_fault_.reason, kFrAddressBeyondAw);
  // Translation request with TT=0 is blocked.
  AtsTranslation a = space().AtsTranslate(0x5000, kDmaRead, {});
  EXPECT_FALSE(a.success);
  EXPECT_FALSE(space().AllowTranslatedRequest());
}

TEST_F(TranslateTest, LegacyPassThroughAndDeviceTlb) {
  Make("sm=off", false);
  ASSERT_TRUE(env_->driver->tables().SetLegacyContext(kRid, {.tt = 2, .did = 2}).ok());
  SecondStageTableBuilder sl = NewSl();
  ASSERT_TRUE(sl.Map(0x7000, kData2, 4096, kDmaRead | kDmaWrite).ok());
  ASSERT_TRUE(env_->driver->tables().SetLegacyContext(kRid + 1, {.tt = 1, .did = 4, .slptptr = sl.root()}).ok());
  ASSERT_TRUE(env_->driver->EnableTranslation().ok());
  EXPECT_EQ(Read(kData1), 0x1111u);
  AtsTranslation a = space(kRid + 1).AtsTranslate(0x7123, kDmaRead | kDmaWrite, {});
  EXPECT_TRUE(a.success);
  EXPECT_EQ(a.iova, 0x7000u);
  EXPECT_EQ(a.gpa, kData2);
  EXPECT_EQ(a.perms & (kDmaRead | kDmaWrite), kDmaRead | kDmaWrite);
  EXPECT_TRUE(space(kRid + 1).AllowTranslatedRequest());
}

TEST_F(TranslateTest, LegacyContextCacheNeedsInvalidation) {
  Make("sm=off", false);
  SecondStageTableBuilder sl1 = NewSl(), sl2 = NewSl();
  ASSERT_TRUE(sl1.Map(0x5000, kData1, 4096, kDmaRead).ok());
  ASSERT_TRUE(sl2.Map(0x5000, kData2, 4096, kDmaRead).ok());
  ASSERT_TRUE(env_->driver->tables().SetLegacyContext(kRid, {.did = 1, .slptptr = sl1.root()}).ok());
  ASSERT_TRUE(env_->driver->EnableTranslation().ok());
  EXPECT_EQ(Read(0x5000), 0x1111u);
  ASSERT_TRUE(env_->driver->tables().SetLegacyContext(kRid, {.did = 2, .slptptr = sl2.root()}).ok());
  EXPECT_EQ(Read(0x5000), 0x1111u);  // cached context (and IOTLB) still used
  ASSERT_TRUE(env_->driver->Invalidate({CcDevice(1, kRid)}).ok());
  EXPECT_EQ(Read(0x5000), 0x2222u);  // new context, new DID: no stale IOTLB entry applies
}

TEST_F(TranslateTest, LegacyIotlbNeedsInvalidation) {
  Make("sm=off", false);
  SecondStageTableBuilder sl = NewSl();
  ASSERT_TRUE(sl.Map(0x5000, kData1, 4096, kDmaRead).ok());
  ASSERT_TRUE(env_->driver->tables().SetLegacyContext(kRid, {.did = 1, .slptptr = sl.root()}).ok());
  ASSERT_TRUE(env_->driver->EnableTranslation().ok());
  EXPECT_EQ(Read(0x5000), 0x1111u);
  ASSERT_TRUE(sl.WriteEntry(0x5000, 1, kData2 | ss::kR).ok());
  EXPECT_EQ(Read(0x5000), 0x1111u);  // stale IOTLB entry
  ASSERT_TRUE(env_->driver->Invalidate({IotlbPage(7, 0x5000, 0)}).ok());  // other domain: no effect
  EXPECT_EQ(Read(0x5000), 0x1111u);
  ASSERT_TRUE(env_->driver->Invalidate({IotlbPage(1, 0x5000, 0)}).ok());
  EXPECT_EQ(Read(0x5000), 0x2222u);
  // A mask beyond CAP.MAMV acts domain-wide rather than failing.
  ASSERT_TRUE(sl.WriteEntry(0x5000, 1, kData1 | ss::kR).ok());
  EXPECT_EQ(Read(0x5000), 0x2222u);
  ASSERT_TRUE(env_->driver->Invalidate({IotlbPage(1, 0x40000000, 40)}).ok());
  EXPECT_EQ(Read(0x5000), 0x1111u);
}

TEST_F(TranslateTest, NotPresentIsNeverCached) {
  Make("sm=off,cm=on", false);
  SecondStageTableBuilder sl = NewSl();
  ASSERT_TRUE(env_->driver->EnableTranslation().ok());
  EXPECT_EQ(Read(0x5000), std::nullopt);  // no context yet
  ASSERT_TRUE(env_->driver->tables().SetLegacyContext(kRid, {.did = 1, .slptptr = sl.root()}).ok());
  EXPECT_EQ(Read(0x5000), std::nullopt);  // context now used; page missing
  ASSERT_TRUE(sl.Map(0x5000, kData1, 4096, kDmaRead).ok());
  EXPECT_EQ(Read(0x5000), 0x1111u);  // no invalidation needed (CM semantics)
}

TEST_F(TranslateTest, FpdSuppressesQualifiedFaultsOnly) {
  Make("sm=off", false);
  SecondStageTableBuilder sl = NewSl();
  ASSERT_TRUE(env_->driver->tables().SetLegacyContext(kRid, {.did = 1, .slptptr = sl.root(), .fpd = true}).ok());
  ASSERT_TRUE(env_->driver->EnableTranslation().ok());
  EXPECT_EQ(Read(0x5000), std::nullopt);
  EXPECT_FALSE(last_fault_.recorded);
  EXPECT_FALSE(FaultPending());
  // Reserved bits in the context entry are not qualified: recorded despite FPD.
  absl::StatusOr<uint64_t> ce = env_->driver->tables().ContextEntryAddress(kRid + 1);
  ASSERT_TRUE(ce.ok());
  ASSERT_TRUE(env_->memory->WriteObj<uint64_t>(*ce, sl.root() | 0x3 | 0x100).ok());  // P, FPD, reserved bit 8
  ASSERT_TRUE(env_->memory->WriteObj<uint64_t>(*ce + 8, 2 | (1 << 8)).ok());
  EXPECT_EQ(Read(0x5000, std::nullopt, kRid + 1), std::nullopt);
  EXPECT_TRUE(last_fault_.recorded);
  EXPECT_EQ(RecordedReason(), kFrContextReserved);
}

// ----- Scalable mode -----

class ScalableTranslateTest : public TranslateTest {
 protected:
  void SetUp() override { Make("", true); }
};

TEST_F(ScalableTranslateTest, FirstStageThroughRidPasid) {
  FirstStageTableBuilder fl = NewFl();
  ASSERT_TRUE(fl.Map(0x5000, kData1, 4096, kDmaRead | kDmaWrite).ok());
  ASSERT_TRUE(env_->driver->tables().SetScalableContext(kRid, {.rid_pasid = 0}).ok());
  ASSERT_TRUE(env_->driver->tables().SetPasidEntry(kRid, 0, {.pgtt = kPgttFirstStage, .did = 5, .flptptr = fl.root()}).ok());
  ASSERT_TRUE(env_->driver->EnableTranslation().ok());
  EXPECT_EQ(Read(0x5000), 0x1111u);
  uint64_t v = 0x4242;
  ASSERT_TRUE(space().Write(0x5000, &v, sizeof(v)).ok());
  EXPECT_EQ(*env_->memory->ReadObj<uint64_t>(kData1), 0x4242u);
  // The walker set A and D in the leaf.
  absl::StatusOr<uint64_t> leaf = fl.ReadEntry(0x5000, 1);
  ASSERT_TRUE(leaf.ok());
  EXPECT_EQ(*leaf & (fs::kA | fs::kD), fs::kA | fs::kD);
  // PASID-tagged request without PASIDE.
  EXPECT_EQ(Read(0x5000, 7), std::nullopt);
  EXPECT_EQ(last_fault_.reason, kSmPasidDisabled);
  // Unmapped first-stage address.
  EXPECT_EQ(Read(0x9000), std::nullopt);
  EXPECT_EQ(last_fault_.reason, kSmFlNotPresent);
  // Non-canonical.
  EXPECT_EQ(Read(0x0000800000000000ull), std::nullopt);
  EXPECT_EQ(last_fault_.reason, kSmNonCanonical);
}

TEST_F(ScalableTranslateTest, PasidTaggedSecondStageAndPassThrough) {
  SecondStageTableBuilder sl = NewSl();
  ASSERT_TRUE(sl.Map(0x5000, kData2, 4096, kDmaRead).ok());
  ASSERT_TRUE(env_->driver->tables().SetScalableContext(kRid, {.pasid_enable = true, .rid_pasid = 0}).ok());
  ASSERT_TRUE(env_->driver->tables().SetPasidEntry(kRid, 0, {.pgtt = kPgttPassThrough, .did = 1}).ok());
  ASSERT_TRUE(env_->driver->tables().SetPasidEntry(kRid, 9, {.pgtt = kPgttSecondStage, .did = 6, .slptptr = sl.root()}).ok());
  ASSERT_TRUE(env_->driver->EnableTranslation().ok());
  EXPECT_EQ(Read(kData1), 0x1111u);  // RID_PASID 0 is pass-through
  EXPECT_EQ(Read(0x5000, 9), 0x2222u);
  EXPECT_EQ(Read(0x5000, 10), std::nullopt);
  EXPECT_EQ(last_fault_.reason, kSmPasidEntryNotPresent);
}

TEST_F(ScalableTranslateTest, NestedTranslation) {
  // Second stage: identity over the table pool, GPA 0x300000 → HPA kData2.
  SecondStageTableBuilder sl = NewSl();
  ASSERT_TRUE(sl.Map(VtdTestEnv::kTablePool, VtdTestEnv::kTablePool, 32ull << 20, kDmaRead | kDmaWrite, kPage2M).ok());
  ASSERT_TRUE(sl.Map(0x300000, kData2, 4096, kDmaRead | kDmaWrite).ok());
  FirstStageTableBuilder fl = NewFl();  // tables in the pool: GPA == HPA there
  ASSERT_TRUE(fl.Map(0x5000, 0x300000, 4096, kDmaRead).ok());
  ASSERT_TRUE(env_->driver->tables().SetScalableContext(kRid, {.rid_pasid = 0}).ok());
  ASSERT_TRUE(env_->driver->tables()
                  .SetPasidEntry(kRid, 0, {.pgtt = kPgttNested, .did = 8, .flptptr = fl.root(), .slptptr = sl.root()})
                  .ok());
  ASSERT_TRUE(env_->driver->EnableTranslation().ok());
  EXPECT_EQ(Read(0x5000), 0x2222u);
  // First stage maps to a GPA the second stage does not map.
  ASSERT_TRUE(fl.Map(0x6000, 0x400000, 4096, kDmaRead).ok());
  EXPECT_EQ(Read(0x6000), std::nullopt);
  EXPECT_EQ(last_fault_.reason, kSmReadDenied);
}

TEST_F(ScalableTranslateTest, PasidCacheAndIotlbNeedInvalidation) {
  FirstStageTableBuilder fl1 = NewFl(), fl2 = NewFl();
  ASSERT_TRUE(fl1.Map(0x5000, kData1, 4096, kDmaRead).ok());
  ASSERT_TRUE(fl2.Map(0x5000, kData2, 4096, kDmaRead).ok());
  ASSERT_TRUE(env_->driver->tables().SetScalableContext(kRid, {.pasid_enable = true}).ok());
  ASSERT_TRUE(env_->driver->tables().SetPasidEntry(kRid, 3, {.pgtt = kPgttFirstStage, .did = 5, .flptptr = fl1.root()}).ok());
  ASSERT_TRUE(env_->driver->EnableTranslation().ok());
  EXPECT_EQ(Read(0x5000, 3), 0x1111u);
  ASSERT_TRUE(env_->driver->tables().SetPasidEntry(kRid, 3, {.pgtt = kPgttFirstStage, .did = 5, .flptptr = fl2.root()}).ok());
  EXPECT_EQ(Read(0x5000, 3), 0x1111u);  // PASID cache + IOTLB
  ASSERT_TRUE(env_->driver->Invalidate({PasidCacheInv(1, 5, 3)}).ok());
  EXPECT_EQ(Read(0x5000, 3), 0x1111u);  // IOTLB still holds the old translation
  ASSERT_TRUE(env_->driver->Invalidate({PIotlbPasid(5, 3)}).ok());
  EXPECT_EQ(Read(0x5000, 3), 0x2222u);
}

TEST_F(ScalableTranslateTest, NotPresentPasidEntryIsNeverCached) {
  FirstStageTableBuilder fl = NewFl();
  ASSERT_TRUE(fl.Map(0x5000, kData1, 4096, kDmaRead).ok());
  ASSERT_TRUE(env_->driver->tables().SetScalableContext(kRid, {.pasid_enable = true}).ok());
  ASSERT_TRUE(env_->driver->EnableTranslation().ok());
  EXPECT_EQ(Read(0x5000, 3), std::nullopt);
  EXPECT_EQ(last_fault_.reason, kSmPasidDirNotPresent);
  ASSERT_TRUE(env_->driver->tables().SetPasidEntry(kRid, 3, {.pgtt = kPgttFirstStage, .did = 5, .flptptr = fl.root()}).ok());
  EXPECT_EQ(Read(0x5000, 3), 0x1111u);
}

TEST_F(ScalableTranslateTest, AtsHonoursDte) {
  FirstStageTableBuilder fl = NewFl();
  ASSERT_TRUE(fl.Map(0x5000, kData1, 4096, kDmaRead | kDmaWrite).ok());
  ASSERT_TRUE(env_->driver->tables().SetScalableContext(kRid, {.dte = false}).ok());
  ASSERT_TRUE(env_->driver->tables().SetScalableContext(kRid + 1, {.dte = true}).ok());
  for (uint16_t rid : {kRid, uint16_t(kRid + 1)}) {
    ASSERT_TRUE(env_->driver->tables().SetPasidEntry(rid, 0, {.pgtt = kPgttFirstStage, .did = 5, .flptptr = fl.root()}).ok());
  }
  ASSERT_TRUE(env_->driver->EnableTranslation().ok());
  AtsTranslation a = space(kRid).AtsTranslate(0x5000, kDmaRead, {});
  EXPECT_FALSE(a.success);
  EXPECT_EQ(RecordedReason(), kSmDteClear);
  EXPECT_FALSE(space(kRid).AllowTranslatedRequest());
  a = space(kRid + 1).AtsTranslate(0x5008, kDmaRead, {});
  EXPECT_TRUE(a.success);
  EXPECT_EQ(a.gpa, kData1);
  EXPECT_TRUE(a.perms & kDmaRead);
  EXPECT_TRUE(space(kRid + 1).AllowTranslatedRequest());
  // A translation fault is reported in the completion, not recorded.
  uint64_t before = env_->iommu->stats().faults_recorded;
  a = space(kRid + 1).AtsTranslate(0x9000, kDmaRead, {});
  EXPECT_TRUE(a.success);
  EXPECT_EQ(a.perms, 0u);
  EXPECT_EQ(env_->iommu->stats().faults_recorded, before);
}

TEST_F(ScalableTranslateTest, InvalidPasidEntries) {
  ASSERT_TRUE(env_->driver->tables().SetScalableContext(kRid, {.pasid_enable = true}).ok());
  ASSERT_TRUE(env_->driver->tables().SetPasidEntry(kRid, 1, {.pgtt = 5, .did = 5}).ok());
  ASSERT_TRUE(env_->driver->tables().SetPasidEntry(kRid, 2, {.pgtt = kPgttSecondStage, .did = 5, .aw = 3}).ok());
  ASSERT_TRUE(env_->driver->EnableTranslation().ok());
  EXPECT_EQ(Read(0x5000, 1), std::nullopt);
  EXPECT_EQ(last_fault_.reason, kSmPasidEntryInvalid);
  EXPECT_EQ(Read(0x5000, 2), std::nullopt);  // AW 3 (5-level) not in SAGAW with aw=48
  EXPECT_EQ(last_fault_.reason, kSmPasidEntryInvalid);
  absl::StatusOr<uint64_t> pe = env_->driver->tables().PasidEntryAddress(kRid, 4);
  ASSERT_TRUE(pe.ok());
  ASSERT_TRUE(env_->memory->WriteObj<uint64_t>(*pe + 40, 1).ok());  // qword 5 reserved
  ASSERT_TRUE(env_->memory->WriteObj<uint64_t>(*pe, 1 | (kPgttPassThrough << 6)).ok());
  EXPECT_EQ(Read(0x5000, 4), std::nullopt);
  EXPECT_EQ(last_fault_.reason, kSmPasidEntryReserved);
  EXPECT_EQ(Read(0x5000, 1u << 20), std::nullopt);
  EXPECT_EQ(last_fault_.reason, kSmPasidTooLarge);
}

}  // namespace
}  // namespace ionest::vtd
