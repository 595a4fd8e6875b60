#include "iommu/vtd/registers.h"

#include "gtest/gtest.h"
#include "iommu/vtd/testing/vtd_test_env.h"

namespace ionest::vtd {
namespace {

using testing::VtdTestEnv;

TEST(RegisterFileTest, MasksAndRw1c) {
  RegisterFile rf(0x100, {{0x00, 8, 0x1234, 0xff00, 0, "A"}, {0x08, 4, 0x7, 0, 0x5, "B"}, {0x10, 8, 0, ~0ull, 0, "C"}});
  EXPECT_EQ(rf.Read(0x00, 8), 0x1234u);
  rf.Write(0x00, 8, 0xffff);
  EXPECT_EQ(rf.Read(0x00, 8), 0xff34u);  // only RW bits changed
  WriteEffects e = rf.Write(0x08, 4, 0x4);
  ASSERT_EQ(e.size(), 1u);
  EXPECT_EQ(e[0].old_value, 0x7u);
  EXPECT_EQ(e[0].new_value, 0x3u);  // bit 2 cleared by writing 1; bit 1 RO
  // Split 4-byte halves of a 64-bit register.
  rf.Write(0x14, 4, 0xdeadbeef);
  rf.Write(0x10, 4, 0x12345678);
  EXPECT_EQ(rf.Read(0x10, 8), 0xdeadbeef12345678ull);
  EXPECT_EQ(rf.Read(0x14, 4), 0xdeadbeefu);
  // Unimplemented offsets read 0 and ignore writes.
  EXPECT_TRUE(rf.Write(0x40, 8, ~0ull).empty());
  EXPECT_EQ(rf.Read(0x40, 8), 0u);
  EXPECT_EQ(rf.Read(0x0c, 4), 0u);
  // An 8-byte access spanning two 4-byte registers.
  EXPECT_EQ(rf.Read(0x08, 8), 0x3u);
  // Outside the window.
  EXPECT_EQ(rf.Read(0x1000, 8), 0u);
}

class VtdRegistersTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto env = VtdTestEnv::Create();
    ASSERT_TRUE(env.ok()) << env.status();
    env_ = std::move(*env);
  }
  VtdIommu& iommu() { return *env_->iommu; }
  std::unique_ptr<VtdTestEnv> env_;
};

TEST_F(VtdRegistersTest, ResetValues) {
  const VtdProfile& p = iommu().profile();
  EXPECT_EQ(iommu().ReadRegister(kVerReg, 4), 0x10u);
  EXPECT_EQ(iommu().ReadRegister(kCapReg), p.Cap());
  EXPECT_EQ(iommu().ReadRegister(kEcapReg), p.Ecap());
  EXPECT_EQ(iommu().ReadRegister(kCapReg, 4), p.Cap() & 0xffffffff);
  EXPECT_EQ(iommu().ReadRegister(kCapReg + 4, 4), p.Cap() >> 32);
  EXPECT_EQ(iommu().ReadRegister(kGstsReg, 4), 0u);
  EXPECT_EQ(iommu().ReadRegister(kFectlReg, 4), kEctlIm);
  EXPECT_EQ(iommu().ReadRegister(kIectlReg, 4), kEctlIm);
  EXPECT_EQ(iommu().ReadRegister(kPectlReg, 4), kEctlIm);
  EXPECT_EQ(iommu().ReadRegister(kFstsReg, 4), 0u);
  // Linux debugfs reads everything up to 0x218: unimplemented offsets are 0.
  for (uint32_t off = 0x100; off < 0x220; off += 8) EXPECT_EQ(iommu().ReadRegister(off), 0u) << off;
}

TEST_F(VtdRegistersTest, ReadOnlyRegistersIgnoreWrites) {
  const uint64_t cap = iommu().ReadRegister(kCapReg);
  iommu().WriteRegister(kCapReg, ~cap);
  EXPECT_EQ(iommu().ReadRegister(kCapReg), cap);
  iommu().WriteRegister(kGstsReg, 0xffffffff, 4);
  EXPECT_EQ(iommu().ReadRegister(kGstsReg, 4), 0u);
  iommu().WriteRegister(kIqhReg, 0x100);
  EXPECT_EQ(iommu().ReadRegister(kIqhReg), 0u);
  iommu().WriteRegister(kPqtReg, 0x100);
  EXPECT_EQ(iommu().ReadRegister(kPqtReg), 0u);
}

TEST_F(VtdRegistersTest, WritableMasks) {
  iommu().WriteRegister(kRtaddrReg, ~0ull);
  EXPECT_EQ(iommu().ReadRegister(kRtaddrReg), ~0ull & ~0x3ffull);  // bits 9:0 reserved; TTM 11:10
  iommu().WriteRegister(kIqaReg, ~0ull);
  EXPECT_EQ(iommu().ReadRegister(kIqaReg), (~0ull & ~0xfffull) | 0x800 | 7);
  iommu().WriteRegister(kIqtReg, ~0ull);
  EXPECT_EQ(iommu().ReadRegister(kIqtReg), 0x7fff0u);
  iommu().WriteRegister(kIrtaReg, ~0ull);
  EXPECT_EQ(iommu().ReadRegister(kIrtaReg), (~0ull & ~0xfffull) | 0x800 | 0xf);
  iommu().WriteRegister(kPqhReg, ~0ull);
  EXPECT_EQ(iommu().ReadRegister(kPqhReg), 0x7ffe0u);
  iommu().WriteRegister(kFeaddrReg, 0xfee01003, 4);
  EXPECT_EQ(iommu().ReadRegister(kFeaddrReg, 4), 0xfee01000u);
  iommu().WriteRegister(kFectlReg, 0x7fffffff, 4);  // IP is RO, only IM writable
  EXPECT_EQ(iommu().ReadRegister(kFectlReg, 4), 0u);
}

TEST_F(VtdRegistersTest, LegacyProfileHasNoDwOrPrq) {
  auto env = VtdTestEnv::Create("sm=off");
  ASSERT_TRUE(env.ok()) << env.status();
  VtdIommu& legacy = *(*env)->iommu;
  legacy.WriteRegister(kIqaReg, ~0ull);
  EXPECT_EQ(legacy.ReadRegister(kIqaReg) & 0x800, 0u);
  legacy.WriteRegister(kPqaReg, ~0ull);
  EXPECT_EQ(legacy.ReadRegister(kPqaReg), 0u);
  legacy.WriteRegister(kRtaddrReg, ~0ull);
  EXPECT_EQ(legacy.ReadRegister(kRtaddrReg) & 0xc00, 0u);
}

TEST_F(VtdRegistersTest, GcmdLevelAndOneShotBits) {
  EXPECT_EQ(iommu().ReadRegister(kGcmdReg, 4), 0u);  // write-only
  iommu().WriteRegister(kRtaddrReg, 0x100000);
  iommu().WriteRegister(kGcmdReg, kGcmdSrtp, 4);
  EXPECT_EQ(iommu().ReadRegister(kGstsReg, 4), kGcmdSrtp);  // RTPS
  EXPECT_EQ(iommu().ReadRegister(kGcmdReg, 4), 0u);
  iommu().WriteRegister(kGcmdReg, kGcmdTe | kGcmdQie, 4);
  EXPECT_EQ(iommu().ReadRegister(kGstsReg, 4), kGcmdSrtp | kGcmdTe | kGcmdQie);
  iommu().WriteRegister(kGcmdReg, kGcmdTe | kGcmdWbf, 4);  // QIE dropped from the level bits
  EXPECT_EQ(iommu().ReadRegister(kGstsReg, 4), kGcmdSrtp | kGcmdTe);  // WBFS never stays set
  iommu().WriteRegister(kGcmdReg, kGcmdTe | kGcmdIre | kGcmdCfi | kGcmdSirtp, 4);
  EXPECT_EQ(iommu().ReadRegister(kGstsReg, 4), kGcmdSrtp | kGcmdTe | kGcmdIre | kGcmdCfi | kGcmdSirtp);
  iommu().WriteRegister(kGcmdReg, 0, 4);
  EXPECT_EQ(iommu().ReadRegister(kGstsReg, 4), kGcmdSrtp | kGcmdSirtp);
}

TEST_F(VtdRegistersTest, ResetRestoresPowerOnState) {
  ASSERT_TRUE(env_->driver->Init(true).ok());
  ASSERT_TRUE(env_->driver->EnableTranslation().ok());
  uint64_t v = 0;
  EXPECT_FALSE(iommu().ForRequester(5).Read(0x1000, &v, 8).ok());  // blocked: no context
  EXPECT_NE(iommu().ReadRegister(kGstsReg, 4), 0u);
  iommu().Reset();
  EXPECT_EQ(iommu().ReadRegister(kGstsReg, 4), 0u);
  EXPECT_EQ(iommu().ReadRegister(kRtaddrReg), 0u);
  EXPECT_EQ(iommu().ReadRegister(kIqaReg), 0u);
  EXPECT_EQ(iommu().ReadRegister(kFectlReg, 4), kEctlIm);
  EXPECT_EQ(iommu().ReadRegister(kFstsReg, 4), 0u);
  EXPECT_TRUE(iommu().ForRequester(5).Read(0x1000, &v, 8).ok());  // translation off again
}

TEST_F(VtdRegistersTest, ByteAndOddAccessesDoNotCrash) {
  for (uint32_t off = 0; off < iommu().mmio_size(); off += 3) {
    uint8_t buf[8];
    iommu().IoRead(off, buf, 1 + off % 8);
  }
  uint8_t b = 0xff;
  iommu().IoWrite(kFstsReg + 1, &b, 1);
  EXPECT_EQ(iommu().ReadRegister(kFstsReg, 4), 0u);
}

}  // namespace
}  // namespace ionest::vtd
