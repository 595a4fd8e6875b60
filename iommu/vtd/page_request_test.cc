// Page request queue (§7.5.1): descriptor generation, PRS/PQT, event, overflow, auto-responses.
#include "iommu/vtd/page_request.h"

#include "gtest/gtest.h"
#include "iommu/vtd/registers.h"
#include "iommu/vtd/testing/vtd_test_env.h"

namespace ionest::vtd {
namespace {

using namespace testing;  // NOLINT

constexpr uint16_t kRid = 0x0028;

TEST(PageRequestDescriptorTest, LayoutMatchesLinux) {
  PageRequestDescriptor d;
  d.rid = 0x1234;
  d.pasid = 0xabcde;
  d.addr = 0x7fff12345000;
  d.read = true;
  d.write = true;
  d.exec = true;
  d.priv = true;
  d.last = true;
  d.group_index = 0x1a5;
  std::array<uint64_t, 4> q = EncodePageRequest(d);
  // Linux struct page_req_dsc: qw0 type:8, pasid_present:1, priv_data_present:1, rsvd:6, rid:16,
  // pasid:20, exe_req:1, pm_req:1; qw1 rd_req:1, wr_req:1, lpig:1, prg_index:9, addr:52.
  EXPECT_EQ(q[0] & 0xff, 1u);
  EXPECT_EQ((q[0] >> 8) & 1, 1u);
  EXPECT_EQ((q[0] >> 9) & 1, 0u);
  EXPECT_EQ((q[0] >> 16) & 0xffff, 0x1234u);
  EXPECT_EQ((q[0] >> 32) & 0xfffff, 0xabcdeu);
  EXPECT_EQ((q[0] >> 52) & 3, 3u);
  EXPECT_EQ(q[1] & 7, 7u);
  EXPECT_EQ((q[1] >> 3) & 0x1ff, 0x1a5u);
  EXPECT_EQ(q[1] >> 12, 0x7fff12345u);
  PageRequestDescriptor back = DecodePageRequest(q);
  EXPECT_EQ(back.rid, d.rid);
  EXPECT_EQ(back.pasid, d.pasid);
  EXPECT_EQ(back.addr, d.addr);
  EXPECT_EQ(back.group_index, d.group_index);
  EXPECT_TRUE(back.last && back.exec && back.priv && back.read && back.write);
}

class PrqTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto env = VtdTestEnv::Create();
    ASSERT_TRUE(env.ok()) << env.status();
    env_ = std::move(*env);
    ASSERT_TRUE(env_->driver->Init(true).ok());
    ASSERT_TRUE(env_->driver->tables().SetScalableContext(kRid, {.dte = true, .pasid_enable = true, .pre = true}).ok());
    ASSERT_TRUE(env_->driver->tables().SetScalableContext(kRid + 1, {.dte = true, .pasid_enable = true}).ok());
    ASSERT_TRUE(env_->driver->EnableTranslation().ok());
    ASSERT_TRUE(env_->driver->EnablePageRequests(0xfee00000, 0x77).ok());
    env_->iommu->ForRequester(kRid).SetClient(&client_);
    env_->iommu->ForRequester(kRid + 1).SetClient(&client_);
    env_->cpu->Take();
  }
  uint64_t Reg(uint32_t off, uint32_t size = 8) { return env_->iommu->ReadRegister(off, size); }
  absl::Status Request(uint64_t addr, uint16_t index, bool last = true, uint16_t rid = kRid) {
    PageRequest r;
    r.pasid = 5;
    r.addr = addr;
    r.access = kDmaRead | kDmaWrite;
    r.last = last;
    r.group_index = index;
    return env_->iommu->ForRequester(rid).SendPageRequest(r);
  }
  std::array<uint64_t, 4> QueueEntry(uint32_t index) {
    return *env_->memory->ReadObj<std::array<uint64_t, 4>>(env_->driver->prq_base() + 32 * index);
  }
  std::unique_ptr<VtdTestEnv> env_;
  RecordingDmaClient client_;
};

TEST_F(PrqTest, QueuesDescriptorAndRaisesEvent) {
  ASSERT_TRUE(Request(0x12345000, 3).ok());
  EXPECT_EQ(Reg(kPqtReg), 32u);
  EXPECT_EQ(Reg(kPrsReg, 4), kPrsPpr);
  std::vector<MsiMessage> msis = env_->cpu->Take();
  ASSERT_EQ(msis.size(), 1u);
  EXPECT_EQ(msis[0].data, 0x77u);
  PageRequestDescriptor d = DecodePageRequest(QueueEntry(0));
  EXPECT_EQ(d.rid, kRid);
  EXPECT_EQ(d.pasid, 5u);
  EXPECT_EQ(d.addr, 0x12345000u);
  EXPECT_EQ(d.group_index, 3u);
  EXPECT_TRUE(d.read && d.write && d.last);
  // PPR still set: no second interrupt.
  ASSERT_TRUE(Request(0x2000, 4).ok());
  EXPECT_EQ(env_->cpu->count(), 0u);
  // Linux clears PPR first, then consumes: a new request interrupts again.
  env_->iommu->WriteRegister(kPrsReg, kPrsPpr, 4);
  env_->iommu->WriteRegister(kPqhReg, Reg(kPqtReg));
  ASSERT_TRUE(Request(0x3000, 5).ok());
  EXPECT_EQ(env_->cpu->count(), 1u);
  EXPECT_TRUE(client_.responses().empty());
}

TEST_F(PrqTest, PrivateDataFromInjectedRequest) {
  PageRequest r{kRid, 5, 0x4000, kDmaRead, true, 9};
  ASSERT_TRUE(env_->iommu->InjectPageRequest(r, std::array<uint64_t, 2>{0x1111, 0x2222}).ok());
  std::array<uint64_t, 4> q = QueueEntry(0);
  EXPECT_TRUE(q[0] & (1u << 9));
  EXPECT_EQ(q[2], 0x1111u);
  EXPECT_EQ(q[3], 0x2222u);
}

TEST_F(PrqTest, OverflowSetsProAndAutoResponds) {
  // 64 KiB queue = 2048 entries; one slot stays empty.
  for (int i = 0; i < 2047; ++i) ASSERT_TRUE(Request(0x1000 * i, i & 0x1ff, true).ok());
  EXPECT_EQ(Reg(kPrsReg, 4) & kPrsPro, 0u);
  EXPECT_TRUE(client_.responses().empty());
  ASSERT_TRUE(Request(0x999000, 0x42, /*last=*/false).ok());  // not last: silently dropped
  EXPECT_EQ(Reg(kPrsReg, 4) & kPrsPro, kPrsPro);
  EXPECT_TRUE(client_.responses().empty());
  ASSERT_TRUE(Request(0x99a000, 0x42, /*last=*/true).ok());
  std::vector<PageResponse> r = client_.responses();
  ASSERT_EQ(r.size(), 1u);
  EXPECT_EQ(r[0].code, PageResponseCode::kSuccess);
  EXPECT_EQ(r[0].group_index, 0x42u);
  EXPECT_EQ(r[0].pasid, 5u);
  // Software drains and clears PRO: queueing resumes.
  env_->iommu->WriteRegister(kPqhReg, Reg(kPqtReg));
  env_->iommu->WriteRegister(kPrsReg, kPrsPro | kPrsPpr, 4);
  EXPECT_EQ(Reg(kPrsReg, 4), 0u);
  uint64_t tail = Reg(kPqtReg);
  ASSERT_TRUE(Request(0x5000, 1).ok());
  EXPECT_EQ(Reg(kPqtReg), (tail + 32) % 65536);
}

TEST_F(PrqTest, RequestsWithoutPreAreAnsweredAndRecorded) {
  ASSERT_TRUE(Request(0x1000, 7, true, kRid + 1).ok());
  EXPECT_EQ(Reg(kPqtReg), 0u);
  std::vector<PageResponse> r = client_.responses();
  ASSERT_EQ(r.size(), 1u);
  EXPECT_EQ(r[0].code, PageResponseCode::kResponseFailure);
  uint64_t hi = Reg(VtdProfile::kFaultRecordOffset + 8);
  EXPECT_EQ((hi >> 32) & 0xff, kSmPreClear);
  EXPECT_TRUE(hi & (1ull << 28));  // T2: page request
}

TEST_F(PrqTest, ResponsesRoundTripThroughQueuedInvalidation) {
  ASSERT_TRUE(Request(0x1000, 0x10).ok());
  PageRequestDescriptor d = DecodePageRequest(QueueEntry(0));
  ASSERT_TRUE(env_->driver->Invalidate({PageGroupResponse(d.rid, d.pasid, 0, d.group_index)}).ok());
  std::vector<PageResponse> r = client_.responses();
  ASSERT_EQ(r.size(), 1u);
  EXPECT_EQ(r[0].rid, kRid);
  EXPECT_EQ(r[0].group_index, 0x10u);
  EXPECT_EQ(r[0].code, PageResponseCode::kSuccess);
}

TEST(PrqProfileTest, NoPrsRejectsPageRequests) {
  auto env = VtdTestEnv::Create("prs=off");
  ASSERT_TRUE(env.ok());
  PageRequest r;
  EXPECT_FALSE((*env)->iommu->ForRequester(1).SendPageRequest(r).ok());
}

}  // namespace
}  // namespace ionest::vtd
