// VtdListener notifications: context / PASID entries observed at cache invalidations, every
// descriptor processed.
#include "gtest/gtest.h"
#include "iommu/vtd/registers.h"
#include "iommu/vtd/testing/vtd_test_env.h"
#include "iommu/vtd/vtd_iommu.h"

namespace ionest::vtd {
namespace {

using namespace testing;  // NOLINT

constexpr uint16_t kRid = 0x0030;

struct RecordingListener : VtdListener {
  std::vector<std::pair<uint16_t, bool>> contexts;
  std::vector<std::tuple<uint16_t, uint32_t, bool, uint8_t>> pasids;  // rid, pasid, valid, pgtt
  std::vector<InvDescriptor> descriptors;
  void OnContextEntry(uint16_t rid, const std::optional<ContextEntry>& e) override {
    contexts.push_back({rid, e.has_value()});
  }
  void OnPasidEntry(uint16_t rid, uint32_t pasid, const std::optional<PasidEntry>& e) override {
    pasids.push_back({rid, pasid, e.has_value(), e ? e->pgtt : 0});
  }
  void OnInvalidation(const InvDescriptor& d) override { descriptors.push_back(d); }
};

class ListenerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto env = VtdTestEnv::Create();
    ASSERT_TRUE(env.ok()) << env.status();
    env_ = std::move(*env);
    ASSERT_TRUE(env_->driver->Init(true).ok());
    env_->iommu->AddListener(&listener_);
  }
  void TearDown() override { env_->iommu->RemoveListener(&listener_); }
  std::unique_ptr<VtdTestEnv> env_;
  RecordingListener listener_;
};

TEST_F(ListenerTest, ContextAndPasidEntriesFollowInvalidations) {
  VtdTableBuilder& t = env_->driver->tables();
  ASSERT_TRUE(t.SetScalableContext(kRid, {.pasid_enable = true}).ok());
  ASSERT_TRUE(t.SetPasidEntry(kRid, 0, {.pgtt = kPgttSecondStage, .did = 3, .slptptr = 0x1000}).ok());
  EXPECT_TRUE(listener_.contexts.empty());  // nothing until the guest invalidates
  ASSERT_TRUE(env_->driver->SubmitSync({CcDevice(0, kRid)}).ok());
  ASSERT_EQ(listener_.contexts.size(), 1u);
  EXPECT_EQ(listener_.contexts[0], std::make_pair(kRid, true));
  ASSERT_EQ(listener_.pasids.size(), 1u);  // the context's PASID table was scanned
  EXPECT_EQ(listener_.pasids[0], std::make_tuple(kRid, 0u, true, uint8_t{kPgttSecondStage}));
  // A new PASID entry (nested) appears at its PASID-selective invalidation.
  ASSERT_TRUE(t.SetPasidEntry(kRid, 42, {.pgtt = kPgttNested, .did = 3, .flptptr = 0x2000, .slptptr = 0x1000}).ok());
  ASSERT_TRUE(env_->driver->SubmitSync({PasidCacheInv(1, 3, 42)}).ok());
  ASSERT_EQ(listener_.pasids.size(), 2u);
  EXPECT_EQ(listener_.pasids[1], std::make_tuple(kRid, 42u, true, uint8_t{kPgttNested}));
  // Invalidating again without a change reports nothing new.
  ASSERT_TRUE(env_->driver->SubmitSync({PasidCacheInv(1, 3, 42)}).ok());
  EXPECT_EQ(listener_.pasids.size(), 2u);
  // Teardown: clear the entry, PASID-cache invalidation → invalid.
  ASSERT_TRUE(t.ClearPasidEntry(kRid, 42).ok());
  ASSERT_TRUE(env_->driver->SubmitSync({PasidCacheInv(1, 3, 42)}).ok());
  ASSERT_EQ(listener_.pasids.size(), 3u);
  EXPECT_EQ(listener_.pasids[2], std::make_tuple(kRid, 42u, false, uint8_t{0}));
  // Context cleared: context and its remaining PASID entry go invalid at the global invalidation.
  ASSERT_TRUE(t.ClearContext(kRid).ok());
  ASSERT_TRUE(env_->driver->SubmitSync({CcGlobal()}).ok());
  ASSERT_EQ(listener_.contexts.size(), 2u);
  EXPECT_EQ(listener_.contexts[1], std::make_pair(kRid, false));
  ASSERT_EQ(listener_.pasids.size(), 4u);
  EXPECT_EQ(listener_.pasids[3], std::make_tuple(kRid, 0u, false, uint8_t{0}));
}

TEST_F(ListenerTest, EveryDescriptorIsReported) {
  ASSERT_TRUE(env_->driver->SubmitSync({IotlbDomain(4), PIotlbPage(4, 9, 0x5000, 1)}).ok());
  ASSERT_EQ(listener_.descriptors.size(), 3u);
  EXPECT_EQ(listener_.descriptors[0].type(), kDescIotlb);
  EXPECT_EQ(listener_.descriptors[0].did(), 4u);
  EXPECT_EQ(listener_.descriptors[1].type(), kDescPasidIotlb);
  EXPECT_EQ(listener_.descriptors[1].pasid(), 9u);
  EXPECT_EQ(listener_.descriptors[1].inv_am(), 1u);
  EXPECT_EQ(listener_.descriptors[2].type(), kDescWait);
}

// Listeners may call back into the IOMMU (they run without its lock).
TEST_F(ListenerTest, ReentrantListenerDoesNotDeadlock) {
  struct Reentrant : VtdListener {
    VtdIommu* iommu;
    uint64_t gsts = 0;
    void OnInvalidation(const InvDescriptor&) override { gsts = iommu->ReadRegister(kGstsReg, 4); }
  } r;
  r.iommu = env_->iommu.get();
  env_->iommu->AddListener(&r);
  ASSERT_TRUE(env_->driver->SubmitSync({IotlbGlobal()}).ok());
  env_->iommu->RemoveListener(&r);
  EXPECT_TRUE(r.gsts & kGcmdQie);
}

}  // namespace
}  // namespace ionest::vtd
