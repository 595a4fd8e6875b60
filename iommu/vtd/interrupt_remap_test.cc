// Interrupt remapping (§5.1, §9.10): IRTE decode, source-id validation, compatibility format,
// IEC invalidation, faults.
#include "iommu/vtd/interrupt_remap.h"

#include "gtest/gtest.h"
#include "iommu/vtd/registers.h"
#include "iommu/vtd/testing/vtd_test_env.h"

namespace ionest::vtd {
namespace {

using namespace testing;  // NOLINT

constexpr uint16_t kDev = 0x0020;     // 00:04.0
constexpr uint16_t kIoapic = 0x00f8;  // 00:1f.0

class IrTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto env = VtdTestEnv::Create();
    ASSERT_TRUE(env.ok()) << env.status();
    env_ = std::move(*env);
    ASSERT_TRUE(env_->driver->Init(true).ok());
    env_->driver->SetFaultMsi(0xfee00000, 0x99);
    ASSERT_TRUE(env_->driver->EnableInterruptRemapping(8, true).ok());
    env_->cpu->Take();
  }
  uint8_t LastFaultReason() {
    uint64_t fsts = env_->iommu->ReadRegister(kFstsReg, 4);
    EXPECT_TRUE(fsts & kFstsPpf);
    // The newest record is the one before the next free register: find any pending with F set.
    uint8_t reason = 0;
    for (uint32_t i = 0; i < env_->iommu->profile().nfr; ++i) {
      uint64_t hi = env_->iommu->ReadRegister(VtdProfile::kFaultRecordOffset + 16 * i + 8);
      if (hi >> 63) {
        reason = (hi >> 32) & 0xff;
        last_fi_ = env_->iommu->ReadRegister(VtdProfile::kFaultRecordOffset + 16 * i);
        last_sid_ = hi & 0xffff;
        env_->iommu->WriteRegister(VtdProfile::kFaultRecordOffset + 16 * i + 12, 1u << 31, 4);
      }
    }
    return reason;
  }
  std::unique_ptr<VtdTestEnv> env_;
  uint64_t last_fi_ = 0;
  uint16_t last_sid_ = 0;
};

TEST_F(IrTest, RemapsToX2apicDestination) {
  ASSERT_TRUE(env_->driver->WriteIrte(5, {.vector = 0x61, .dest = 0x12345, .level = true, .sid = kDev, .svt = 1}).ok());
  ASSERT_TRUE(env_->iommu->SendMsi(RemappableMsi(5, kDev)).ok());
  std::vector<MsiMessage> msis = env_->cpu->Take();
  ASSERT_EQ(msis.size(), 1u);
  EXPECT_EQ(msis[0].address & 0xffffffff, 0xfee00000u | (0x45u << 12));
  EXPECT_EQ(msis[0].address >> 32, 0x12300u);  // destination bits 31:8
  EXPECT_EQ(msis[0].data & 0xff, 0x61u);
  EXPECT_TRUE(msis[0].data & (1u << 15));  // level
  EXPECT_EQ(env_->iommu->stats().interrupts_remapped, 1u);
}

TEST_F(IrTest, SubhandleAndHighIndexBit) {
  ASSERT_TRUE(env_->driver->WriteIrte(7, {.vector = 0x70}).ok());
  MsiMessage m = RemappableMsi(4, kDev);
  m.address |= 1u << 3;  // SHV
  m.data = 3;            // subhandle: index 4 + 3
  ASSERT_TRUE(env_->iommu->SendMsi(m).ok());
  ASSERT_EQ(env_->cpu->count(), 1u);
  MsiMessage high = RemappableMsi(0x8000 | 7, kDev);
  EXPECT_EQ(InterruptIndex(high), 0x8007u);
  ASSERT_TRUE(env_->iommu->SendMsi(high).ok());  // beyond 256 entries
  EXPECT_EQ(LastFaultReason(), kIrIndexBeyondSize);
  EXPECT_EQ(last_fi_ >> 48, 0x8007u);
}

TEST_F(IrTest, SourceIdValidation) {
  ASSERT_TRUE(env_->driver->WriteIrte(1, {.vector = 0x31, .sid = kDev, .svt = 1}).ok());
  ASSERT_TRUE(env_->iommu->SendMsi(RemappableMsi(1, kDev + 1)).ok());  // wrong function
  EXPECT_EQ(env_->cpu->count(), 1u);  // only the fault event, not the device interrupt
  EXPECT_EQ(env_->cpu->Take()[0].data, 0x99u);
  EXPECT_EQ(LastFaultReason(), kIrSidMismatch);
  EXPECT_EQ(last_sid_, kDev + 1);
  // SQ=3 ignores function bits 2:0.
  ASSERT_TRUE(env_->driver->WriteIrte(1, {.vector = 0x31, .sid = kDev, .sq = 3, .svt = 1}).ok());
  ASSERT_TRUE(env_->iommu->SendMsi(RemappableMsi(1, kDev + 7)).ok());
  EXPECT_EQ(env_->cpu->Take().size(), 1u);
  // SVT=2: bus range 1..3.
  ASSERT_TRUE(env_->driver->WriteIrte(2, {.vector = 0x32, .sid = 0x0103, .svt = 2}).ok());
  ASSERT_TRUE(env_->iommu->SendMsi(RemappableMsi(2, 0x0200)).ok());
  EXPECT_EQ(env_->cpu->Take().size(), 1u);
  ASSERT_TRUE(env_->iommu->SendMsi(RemappableMsi(2, 0x0400)).ok());
  EXPECT_EQ(LastFaultReason(), kIrSidMismatch);
  // The IOAPIC's source-id (DMAR IOAPIC scope) with SVT=1, SQ=0 as Linux programs it.
  ASSERT_TRUE(env_->driver->WriteIrte(3, {.vector = 0x33, .sid = kIoapic, .svt = 1}).ok());
  env_->cpu->Take();
  ASSERT_TRUE(env_->iommu->SendMsi(RemappableMsi(3, kIoapic)).ok());
  ASSERT_EQ(env_->cpu->Take().size(), 1u);
}

TEST_F(IrTest, BadEntriesFault) {
  ASSERT_TRUE(env_->iommu->SendMsi(RemappableMsi(9, kDev)).ok());
  EXPECT_EQ(LastFaultReason(), kIrEntryNotPresent);
  EXPECT_EQ(last_fi_ >> 48, 9u);
  ASSERT_TRUE(env_->driver->WriteIrte(10, {.vector = 0x40, .delivery_mode = 3}).ok());  // reserved DLM
  ASSERT_TRUE(env_->iommu->SendMsi(RemappableMsi(10, kDev)).ok());
  EXPECT_EQ(LastFaultReason(), kIrEntryReserved);
  ASSERT_TRUE(env_->memory->WriteObj<uint64_t>(env_->driver->irt_base() + 11 * 16, 1 | (1u << 15)).ok());  // posted
  ASSERT_TRUE(env_->driver->Invalidate({IecIndex(11)}).ok());
  ASSERT_TRUE(env_->iommu->SendMsi(RemappableMsi(11, kDev)).ok());
  EXPECT_EQ(LastFaultReason(), kIrEntryReserved);
  MsiMessage m = RemappableMsi(4, kDev);
  m.address |= 1u << 3;
  m.data = 0x10000;  // SHV with reserved data bits
  ASSERT_TRUE(env_->iommu->SendMsi(m).ok());
  EXPECT_EQ(LastFaultReason(), kIrReservedInRequest);
  // FPD suppresses the not-present fault.
  ASSERT_TRUE(env_->memory->WriteObj<uint64_t>(env_->driver->irt_base() + 12 * 16, 2).ok());  // FPD, P=0
  ASSERT_TRUE(env_->iommu->SendMsi(RemappableMsi(12, kDev)).ok());
  EXPECT_FALSE(env_->iommu->ReadRegister(kFstsReg, 4) & kFstsPpf);
  EXPECT_EQ(env_->iommu->stats().faults_suppressed, 1u);
}

TEST_F(IrTest, CompatibilityFormatNeedsCfi) {
  MsiMessage compat{0xfee00000, 0x41, kDev};
  ASSERT_TRUE(env_->iommu->SendMsi(compat).ok());
  EXPECT_EQ(LastFaultReason(), kIrCompatBlocked);
  env_->cpu->Take();
  env_->driver->SetPersistent(kGcmdCfi, true);
  EXPECT_TRUE(env_->iommu->ReadRegister(kGstsReg, 4) & kGcmdCfi);
  ASSERT_TRUE(env_->iommu->SendMsi(compat).ok());
  std::vector<MsiMessage> msis = env_->cpu->Take();
  ASSERT_EQ(msis.size(), 1u);
  EXPECT_EQ(msis[0].address, compat.address);
  EXPECT_EQ(msis[0].data, compat.data);
}

TEST_F(IrTest, DisabledRemappingPassesThrough) {
  env_->driver->SetPersistent(kGcmdIre, false);
  MsiMessage m = RemappableMsi(9, kDev);
  ASSERT_TRUE(env_->iommu->SendMsi(m).ok());
  std::vector<MsiMessage> msis = env_->cpu->Take();
  ASSERT_EQ(msis.size(), 1u);
  EXPECT_EQ(msis[0].address, m.address);
}

TEST_F(IrTest, IrteCacheNeedsIecInvalidation) {
  ASSERT_TRUE(env_->driver->WriteIrte(20, {.vector = 0x50}).ok());
  ASSERT_TRUE(env_->iommu->SendMsi(RemappableMsi(20, kDev)).ok());
  ASSERT_TRUE(env_->memory->WriteObj(env_->driver->irt_base() + 20 * 16, EncodeIrte({.vector = 0x51})).ok());
  ASSERT_TRUE(env_->iommu->SendMsi(RemappableMsi(20, kDev)).ok());
  ASSERT_TRUE(env_->driver->Invalidate({IecIndex(16, 2)}).ok());  // entries 16..19: not 20
  ASSERT_TRUE(env_->iommu->SendMsi(RemappableMsi(20, kDev)).ok());
  ASSERT_TRUE(env_->driver->Invalidate({IecIndex(16, 3)}).ok());  // 16..23
  ASSERT_TRUE(env_->iommu->SendMsi(RemappableMsi(20, kDev)).ok());
  std::vector<MsiMessage> msis = env_->cpu->Take();
  ASSERT_EQ(msis.size(), 4u);
  EXPECT_EQ(msis[0].data & 0xff, 0x50u);
  EXPECT_EQ(msis[1].data & 0xff, 0x50u);
  EXPECT_EQ(msis[2].data & 0xff, 0x50u);
  EXPECT_EQ(msis[3].data & 0xff, 0x51u);
}

TEST(IrteDecodeTest, XapicModeDestination) {
  auto raw = EncodeIrte({.vector = 0x22, .dest = 0x7, .x2apic = false});
  Decoded<Irte> d = DecodeIrte(raw[0], raw[1], /*eime=*/false);
  ASSERT_TRUE(d.ok());
  EXPECT_EQ(d.entry->dest, 7u);
  raw = EncodeIrte({.vector = 0x22, .dest = 0x70000, .x2apic = true});  // bits beyond xAPIC dest
  d = DecodeIrte(raw[0], raw[1], false);
  EXPECT_FALSE(d.ok());
  EXPECT_EQ(d.fault.reason, kIrEntryReserved);
}

}  // namespace
}  // namespace ionest::vtd
