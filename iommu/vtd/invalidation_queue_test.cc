// Queued invalidation (§6.5.2): every descriptor type, reserved-field checks → IQE/IQEI, queue
// pointer handling, wait descriptors, register-based invalidation.
#include "iommu/vtd/invalidation_queue.h"

#include "gtest/gtest.h"
#include "iommu/second_stage.h"
#include "iommu/testing/table_builder.h"
#include "iommu/vtd/registers.h"
#include "iommu/vtd/testing/vtd_test_env.h"

namespace ionest::vtd {
namespace {

using namespace testing;  // NOLINT: descriptor builders

constexpr uint16_t kRid = 0x0018;

class QueueTest : public ::testing::Test {
 protected:
  void Make(const char* profile, bool scalable) {
    auto env = VtdTestEnv::Create(profile);
    ASSERT_TRUE(env.ok()) << env.status();
    env_ = std::move(*env);
    ASSERT_TRUE(env_->driver->Init(scalable).ok());
    env_->iommu->ForRequester(kRid).SetClient(&client_);
  }
  void SetUp() override { Make("", true); }
  uint64_t Reg(uint32_t off, uint32_t size = 8) { return env_->iommu->ReadRegister(off, size); }
  bool Iqe() { return Reg(kFstsReg, 4) & kFstsIqe; }
  // Submits one descriptor and expects IQE with `code`, IQH at that descriptor.
  void ExpectIqe(const InvDescriptor& d, IqeiCode code) {
    uint64_t head = Reg(kIqhReg);
    ASSERT_TRUE(env_->driver->SubmitRaw({d}).ok());
    EXPECT_TRUE(Iqe()) << "descriptor " << std::hex << d.qw[0] << " " << d.qw[1];
    EXPECT_EQ(Reg(kIqercdReg) & 0xf, code);
    EXPECT_EQ(Reg(kIqhReg), head);
    // Linux: overwrite with a wait descriptor and clear IQE; processing resumes.
    InvDescriptor w = Wait(env_->driver->queue_base() + 0x1f00, 77);
    ASSERT_TRUE(env_->memory->Write(env_->driver->queue_base() + head, w.qw.data(), env_->driver->descriptor_bytes()).ok());
    env_->iommu->WriteRegister(kFstsReg, kFstsIqe, 4);
    EXPECT_FALSE(Iqe());
    EXPECT_EQ(Reg(kIqhReg), Reg(kIqtReg));
    EXPECT_EQ(*env_->memory->ReadObj<uint32_t>(env_->driver->queue_base() + 0x1f00), 77u);
  }
  std::unique_ptr<VtdTestEnv> env_;
  RecordingDmaClient client_;
};

TEST_F(QueueTest, AllValidDescriptorTypesComplete) {
  ASSERT_TRUE(env_->driver
                  ->Invalidate({CcGlobal(), CcDomain(3), CcDevice(3, kRid, 2), IotlbGlobal(), IotlbDomain(3),
                                IotlbPage(3, 0x40000, 2, true), DevTlb(kRid, 0x5000), IecGlobal(), IecIndex(8, 3),
                                PIotlbPasid(3, 7), PIotlbPage(3, 7, 0x7000, 0), PasidCacheInv(0, 3, 0),
                                PasidCacheInv(1, 3, 7), PasidCacheInv(3, 0, 0), PDevTlb(kRid, 7, 0x9000, true),
                                PageGroupResponse(kRid, 7, 0, 5)})
                  .ok());
  EXPECT_FALSE(Iqe());
  EXPECT_EQ(Reg(kIqhReg), Reg(kIqtReg));
}

TEST_F(QueueTest, ReservedFieldsRaiseIqe) {
  InvDescriptor d = CcGlobal();
  d.qw[1] = 1;
  ExpectIqe(d, kIqeiReservedField);
  d = IotlbDomain(1);
  d.qw[0] |= 1ull << 40;
  ExpectIqe(d, kIqeiReservedField);
  d = DevTlb(kRid, 0x1000);
  d.qw[0] |= 1ull << 50;
  ExpectIqe(d, kIqeiReservedField);
  d = IecGlobal();
  d.qw[0] |= 1ull << 60;
  ExpectIqe(d, kIqeiReservedField);
  d = Wait(0x1000, 1);
  d.qw[1] |= 1;
  ExpectIqe(d, kIqeiReservedField);
  d = PIotlbPasid(1, 1);
  d.qw[0] &= ~(3ull << 4);  // granularity 0 is reserved
  ExpectIqe(d, kIqeiReservedField);
  d = PasidCacheInv(2, 1, 1);  // granularity 2 reserved
  ExpectIqe(d, kIqeiReservedField);
  d = PDevTlb(kRid, 1, 0x1000);
  d.qw[1] |= 1ull << 5;
  ExpectIqe(d, kIqeiReservedField);
  d = PageGroupResponse(kRid, 1, 0, 1);
  d.qw[1] |= 1ull << 20;
  ExpectIqe(d, kIqeiReservedField);
  d = CcGlobal();
  d.qw[3] = 1;  // upper half of a 256-bit descriptor
  ExpectIqe(d, kIqeiReservedField);
  d = CcGlobal();
  d.qw[0] &= ~(3ull << 4);
  ExpectIqe(d, kIqeiReservedField);
}

TEST_F(QueueTest, InvalidTypeRaisesIqe) {
  InvDescriptor d;
  d.qw[0] = 0xa;
  ExpectIqe(d, kIqeiInvalidType);
  d.qw[0] = kDescWait | (1u << 9);  // type-high bits
  ExpectIqe(d, kIqeiInvalidType);
}

TEST_F(QueueTest, FetchErrorAndTailErrors) {
  // Tail not 256-bit aligned in 256-bit mode.
  env_->iommu->WriteRegister(kIqtReg, Reg(kIqtReg) + 16, 4);
  EXPECT_TRUE(Iqe());
  EXPECT_EQ(Reg(kIqercdReg) & 0xf, kIqeiTailPointer);
  env_->iommu->WriteRegister(kIqtReg, Reg(kIqhReg), 4);
  env_->iommu->WriteRegister(kFstsReg, kFstsIqe, 4);
  EXPECT_FALSE(Iqe());
  // Queue base outside guest RAM.
  env_->iommu->WriteRegister(kGcmdReg, 0, 4);  // QIE off (IQH reset)
  env_->iommu->WriteRegister(kIqtReg, 0, 4);
  env_->iommu->WriteRegister(kIqaReg, (1ull << 40) | (1u << 11));
  env_->iommu->WriteRegister(kGcmdReg, kGcmdQie, 4);
  env_->iommu->WriteRegister(kIqtReg, 32, 4);
  EXPECT_TRUE(Iqe());
  EXPECT_EQ(Reg(kIqercdReg) & 0xf, kIqeiFetch);
  EXPECT_EQ(Reg(kIqhReg), 0u);
}

TEST_F(QueueTest, ProcessingIsBoundedAndWraps) {
  // Fill the whole 8 KiB / 256-entry queue many times over; the tail wraps.
  for (int round = 0; round < 5; ++round) {
    std::vector<InvDescriptor> many(200, IotlbGlobal());
    ASSERT_TRUE(env_->driver->Invalidate(many).ok()) << round;
  }
  EXPECT_EQ(Reg(kIqhReg), Reg(kIqtReg));
  EXPECT_GE(env_->iommu->stats().descriptors, 1005u);
  // Disabled queue: doorbells do nothing.
  env_->iommu->WriteRegister(kGcmdReg, 0, 4);
  EXPECT_EQ(Reg(kGstsReg, 4) & kGcmdQie, 0u);
  EXPECT_EQ(Reg(kIqhReg), 0u);
  env_->iommu->WriteRegister(kIqtReg, 64, 4);
  EXPECT_EQ(Reg(kIqhReg), 0u);
}

TEST_F(QueueTest, WaitDescriptorInterrupt) {
  env_->iommu->WriteRegister(kIedataReg, 0x55, 4);
  env_->iommu->WriteRegister(kIeaddrReg, 0xfee00000, 4);
  env_->iommu->WriteRegister(kIectlReg, 0, 4);
  env_->cpu->Take();
  ASSERT_TRUE(env_->driver->SubmitRaw({Wait(0, 0, /*sw=*/false, /*interrupt=*/true)}).ok());
  EXPECT_EQ(Reg(kIcsReg, 4), kIcsIwc);
  std::vector<MsiMessage> msis = env_->cpu->Take();
  ASSERT_EQ(msis.size(), 1u);
  EXPECT_EQ(msis[0].data, 0x55u);
  // IWC still set: no new interrupt until software clears it.
  ASSERT_TRUE(env_->driver->SubmitRaw({Wait(0, 0, false, true)}).ok());
  EXPECT_EQ(env_->cpu->count(), 0u);
  env_->iommu->WriteRegister(kIcsReg, kIcsIwc, 4);
  EXPECT_EQ(Reg(kIcsReg, 4), 0u);
  ASSERT_TRUE(env_->driver->SubmitRaw({Wait(0, 0, false, true)}).ok());
  EXPECT_EQ(env_->cpu->count(), 1u);
}

TEST_F(QueueTest, DeviceTlbInvalidationsReachTheDevice) {
  ASSERT_TRUE(env_->driver->Invalidate({DevTlb(kRid, 0x5000), DevTlb(kRid, 0x13000, true),
                                         PDevTlb(kRid, 9, 0x20000), DevTlb(kRid + 1, 0x5000)})
                  .ok());
  std::vector<RecordingDmaClient::AtcInvalidation> inv = client_.invalidations();
  ASSERT_EQ(inv.size(), 3u);
  EXPECT_EQ(inv[0].pasid, std::nullopt);
  EXPECT_EQ(inv[0].addr, 0x5000u);
  EXPECT_EQ(inv[0].size, 4096u);
  EXPECT_EQ(inv[1].addr, 0x10000u);  // ADDR bits 12,13 set, 14 clear: 32 KiB at 0x10000
  EXPECT_EQ(inv[1].size, 0x8000u);
  EXPECT_EQ(inv[2].pasid, 9u);
  EXPECT_EQ(inv[2].addr, 0x20000u);
}

TEST_F(QueueTest, PageGroupResponseReachesDeviceAndListener) {
  struct Listener : VtdListener {
    std::vector<PageResponse> responses;
    std::vector<uint8_t> types;
    void OnPageResponse(const PageResponse& r) override { responses.push_back(r); }
    void OnInvalidation(const InvDescriptor& d) override { types.push_back(d.type()); }
  } listener;
  env_->iommu->AddListener(&listener);
  ASSERT_TRUE(
      env_->driver->Invalidate({PageGroupResponse(kRid, 0x33, 2, 0x1ab), PageGroupResponse(kRid, std::nullopt, 1, 4)})
          .ok());
  env_->iommu->RemoveListener(&listener);
  std::vector<PageResponse> r = client_.responses();
  ASSERT_EQ(r.size(), 2u);
  EXPECT_EQ(r[0].pasid, 0x33u);
  EXPECT_EQ(r[0].group_index, 0x1abu);
  EXPECT_EQ(r[0].code, PageResponseCode::kResponseFailure);
  EXPECT_EQ(r[1].pasid, std::nullopt);
  EXPECT_EQ(r[1].code, PageResponseCode::kInvalidRequest);
  EXPECT_EQ(listener.responses.size(), 2u);
  ASSERT_EQ(listener.types.size(), 3u);  // two responses and the wait
  EXPECT_EQ(listener.types[2], kDescWait);
}

TEST_F(QueueTest, LegacyQueueUses128BitDescriptors) {
  Make("sm=off", false);
  EXPECT_EQ(env_->driver->descriptor_bytes(), 16u);
  ASSERT_TRUE(env_->driver->Invalidate({CcGlobal(), IotlbGlobal(), IecGlobal()}).ok());
  InvDescriptor d = PIotlbPasid(1, 1);  // scalable-mode descriptor in legacy mode
  ExpectIqe(d, kIqeiInvalidType);
}

TEST_F(QueueTest, RegisterBasedInvalidation) {
  auto env = VtdTestEnv::Create("sm=off,ir=off,qi=off");
  ASSERT_TRUE(env.ok()) << env.status();
  env_ = std::move(*env);  // no QI: the driver's Init does not apply
  const uint64_t ccmd = (1ull << 63) | (1ull << 61);  // ICC, global
  env_->iommu->WriteRegister(kCcmdReg, ccmd);
  uint64_t v = Reg(kCcmdReg);
  EXPECT_EQ(v >> 63, 0u);
  EXPECT_EQ((v >> 59) & 3, 1u);  // CAIG
  const uint32_t iotlb = env_->iommu->profile().iotlb_offset();
  env_->iommu->WriteRegister(env_->iommu->profile().iva_offset(), 0x40000 | 30);  // AM > MAMV
  env_->iommu->WriteRegister(iotlb, (1ull << 63) | (3ull << 60) | (5ull << 32));
  v = Reg(iotlb);
  EXPECT_EQ(v >> 63, 0u);
  EXPECT_EQ((v >> 57) & 3, 2u);  // fell back to domain-selective
  env_->iommu->WriteRegister(env_->iommu->profile().iva_offset(), 0x40000);
  env_->iommu->WriteRegister(iotlb, (1ull << 63) | (3ull << 60) | (5ull << 32));
  EXPECT_EQ((Reg(iotlb) >> 57) & 3, 3u);

  // Effects: a legacy driver without QI (root table, SRTP, TE; CCMD / IOTLB registers).
  VtdTableBuilder tables(*env_->memory, *env_->alloc, false);
  ASSERT_TRUE(tables.Init().ok());
  auto sl = iommu_testing::SecondStageTableBuilder::Create(*env_->memory, *env_->alloc, 4);
  ASSERT_TRUE(sl.ok());
  ASSERT_TRUE(sl->Map(0x40000, 0x100000, 4096, kDmaRead).ok());
  ASSERT_TRUE(env_->memory->WriteObj<uint64_t>(0x100000, 1).ok());
  ASSERT_TRUE(env_->memory->WriteObj<uint64_t>(0x200000, 2).ok());
  ASSERT_TRUE(tables.SetLegacyContext(kRid, {.did = 5, .slptptr = sl->root()}).ok());
  env_->iommu->WriteRegister(kRtaddrReg, tables.rtaddr());
  env_->iommu->WriteRegister(kGcmdReg, kGcmdSrtp, 4);
  env_->iommu->WriteRegister(kGcmdReg, kGcmdTe, 4);
  DmaSpace& space = env_->iommu->ForRequester(kRid);
  uint64_t val = 0;
  ASSERT_TRUE(space.Read(0x40000, &val, 8).ok());
  EXPECT_EQ(val, 1u);
  ASSERT_TRUE(sl->WriteEntry(0x40000, 1, 0x200000 | ss::kR).ok());
  ASSERT_TRUE(space.Read(0x40000, &val, 8).ok());
  EXPECT_EQ(val, 1u);  // stale until invalidated
  env_->iommu->WriteRegister(env_->iommu->profile().iva_offset(), 0x40000);
  env_->iommu->WriteRegister(iotlb, (1ull << 63) | (3ull << 60) | (5ull << 32));
  ASSERT_TRUE(space.Read(0x40000, &val, 8).ok());
  EXPECT_EQ(val, 2u);
  // Context removed: cached until a device-selective CCMD invalidation.
  ASSERT_TRUE(tables.SetLegacyContext(kRid, {.present = false}).ok());
  ASSERT_TRUE(space.Read(0x40000, &val, 8).ok());
  env_->iommu->WriteRegister(kCcmdReg, (1ull << 63) | (3ull << 61) | (uint64_t{kRid} << 16));
  EXPECT_EQ((Reg(kCcmdReg) >> 59) & 3, 3u);
  EXPECT_FALSE(space.Read(0x40000, &val, 8).ok());
}

TEST(DescriptorTest, DeviceTlbRangeEncoding) {
  EXPECT_EQ(DeviceTlbRange(0x5000, false).size, 4096u);
  AtcRange r = DeviceTlbRange(0x0000, true);
  EXPECT_EQ(r.size, 8192u);
  r = DeviceTlbRange(0x7fff000, true);  // 15 trailing ones from bit 12 → 2^28
  EXPECT_EQ(r.size, 1ull << 28);
  EXPECT_EQ(r.addr, 0u);
  r = DeviceTlbRange(~0ull, true);
  EXPECT_EQ(r.size, 0u);  // everything
}

}  // namespace
}  // namespace ionest::vtd
