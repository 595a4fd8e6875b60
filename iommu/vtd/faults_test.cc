// Fault recording registers, overflow and the fault event interrupt (§7.3, §11.4.7, §11.4.14).
#include "iommu/vtd/faults.h"

#include "gtest/gtest.h"
#include "iommu/vtd/registers.h"
#include "iommu/vtd/testing/vtd_test_env.h"

namespace ionest::vtd {
namespace {

using testing::VtdTestEnv;

constexpr uint64_t kFaultMsiAddr = 0xfee01000;
constexpr uint32_t kFaultMsiData = 0x41;

class FaultsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto env = VtdTestEnv::Create("sm=off,nfr=2");
    ASSERT_TRUE(env.ok()) << env.status();
    env_ = std::move(*env);
    ASSERT_TRUE(env_->driver->Init(false).ok());
    ASSERT_TRUE(env_->driver->EnableTranslation().ok());
    env_->driver->SetFaultMsi(kFaultMsiAddr, kFaultMsiData);
    env_->cpu->Take();
  }
  // A DMA from `rid` (bus 5: no root entry → fault 1h).
  void Fault(uint16_t rid, uint64_t iova, bool write = false, std::optional<uint32_t> pasid = std::nullopt) {
    uint64_t v = 0;
    DmaSpace& s = env_->iommu->ForRequester(rid);
    absl::Status st = write ? s.Write(iova, &v, 8, {pasid}) : s.Read(iova, &v, 8, {pasid});
    EXPECT_FALSE(st.ok());
  }
  uint64_t Reg(uint32_t off, uint32_t size = 8) { return env_->iommu->ReadRegister(off, size); }
  uint32_t Frcd(int i, int dword) { return static_cast<uint32_t>(Reg(VtdProfile::kFaultRecordOffset + 16 * i + 4 * dword, 4)); }
  std::unique_ptr<VtdTestEnv> env_;
};

TEST_F(FaultsTest, RecordLayoutAndEvent) {
  Fault(0x0508, 0x12345678, /*write=*/true);
  EXPECT_EQ(Reg(kFstsReg, 4), kFstsPpf | (0u << kFstsFriShift));
  // +0: FI (page address), +8: SID, PP; +12: F, T, PV, FR (read the way dmar_fault does).
  EXPECT_EQ(Reg(VtdProfile::kFaultRecordOffset), 0x12345000u);
  EXPECT_EQ(Frcd(0, 2) & 0xffff, 0x0508u);
  EXPECT_EQ(Frcd(0, 2) >> 31, 0u);  // no PASID
  const uint32_t hi = Frcd(0, 3);
  EXPECT_EQ(hi >> 31, 1u);          // F
  EXPECT_EQ((hi >> 30) & 1, 0u);    // T1 = 0: write
  EXPECT_EQ(hi & 0xff, kFrRootNotPresent);
  std::vector<MsiMessage> msis = env_->cpu->Take();
  ASSERT_EQ(msis.size(), 1u);
  EXPECT_EQ(msis[0].address, kFaultMsiAddr);
  EXPECT_EQ(msis[0].data, kFaultMsiData);
  // Second fault: read → T1 = 1, FRI stays at the first pending record.
  Fault(0x0508, 0x2000);
  EXPECT_EQ((Frcd(1, 3) >> 30) & 1, 1u);
  EXPECT_EQ((Reg(kFstsReg, 4) >> kFstsFriShift) & 0xff, 0u);
}

TEST_F(FaultsTest, OverflowSetsPfoAndDrops) {
  Fault(0x0500, 0x1000);
  Fault(0x0500, 0x2000);
  Fault(0x0500, 0x3000);  // both registers full
  EXPECT_EQ(Reg(kFstsReg, 4) & (kFstsPfo | kFstsPpf), kFstsPfo | kFstsPpf);
  EXPECT_EQ(env_->iommu->stats().faults_dropped, 1u);
  EXPECT_EQ(Reg(VtdProfile::kFaultRecordOffset), 0x1000u);
  EXPECT_EQ(Reg(VtdProfile::kFaultRecordOffset + 16), 0x2000u);
  // Software clears record 0 (write F at +12), FRI moves to record 1.
  env_->iommu->WriteRegister(VtdProfile::kFaultRecordOffset + 12, 1u << 31, 4);
  EXPECT_EQ(Frcd(0, 3) >> 31, 0u);
  EXPECT_EQ((Reg(kFstsReg, 4) >> kFstsFriShift) & 0xff, 1u);
  EXPECT_TRUE(Reg(kFstsReg, 4) & kFstsPpf);
  // While PFO is set nothing new is recorded.
  Fault(0x0500, 0x4000);
  EXPECT_EQ(Frcd(0, 3) >> 31, 0u);
  env_->iommu->WriteRegister(kFstsReg, kFstsPfo, 4);
  env_->iommu->WriteRegister(VtdProfile::kFaultRecordOffset + 16 + 12, 1u << 31, 4);
  EXPECT_EQ(Reg(kFstsReg, 4) & (kFstsPfo | kFstsPpf), 0u);
  Fault(0x0500, 0x5000);  // recorded again, into the next register in turn (index 0)
  EXPECT_EQ(Reg(VtdProfile::kFaultRecordOffset), 0x5000u);
  EXPECT_EQ(Frcd(0, 3) >> 31, 1u);
}

TEST_F(FaultsTest, MaskedEventSetsIpAndFiresOnUnmask) {
  env_->iommu->WriteRegister(kFectlReg, kEctlIm, 4);
  Fault(0x0500, 0x1000);
  EXPECT_EQ(env_->cpu->count(), 0u);
  EXPECT_EQ(Reg(kFectlReg, 4), kEctlIm | kEctlIp);
  env_->iommu->WriteRegister(kFectlReg, 0, 4);
  EXPECT_EQ(env_->cpu->count(), 1u);
  EXPECT_EQ(Reg(kFectlReg, 4), 0u);
  // Masked again; servicing the fault before unmasking drops the pending interrupt.
  env_->iommu->WriteRegister(kFectlReg, kEctlIm, 4);
  env_->iommu->WriteRegister(VtdProfile::kFaultRecordOffset + 12, 1u << 31, 4);
  Fault(0x0500, 0x2000);
  EXPECT_EQ(Reg(kFectlReg, 4), kEctlIm | kEctlIp);
  env_->iommu->WriteRegister(VtdProfile::kFaultRecordOffset + 16 + 12, 1u << 31, 4);
  EXPECT_EQ(Reg(kFectlReg, 4), kEctlIm);
  env_->iommu->WriteRegister(kFectlReg, 0, 4);
  EXPECT_EQ(env_->cpu->count(), 1u);
}

TEST_F(FaultsTest, FaultEventIsNotRemapped) {
  ASSERT_TRUE(env_->driver->EnableInterruptRemapping().ok());
  env_->cpu->Take();
  Fault(0x0500, 0x1000);
  std::vector<MsiMessage> msis = env_->cpu->Take();
  ASSERT_EQ(msis.size(), 1u);
  EXPECT_EQ(msis[0].address, kFaultMsiAddr);  // compatibility-format message, untouched
}

TEST(FaultRecorderTest, PasidAndTypeFields) {
  RegisterFile regs(0x1000, [] {
    std::vector<RegisterDef> d = {{kFstsReg, 4, 0, 0, kFstsPfo, "FSTS"}, {kFectlReg, 4, kEctlIm, kEctlIm, 0, "FECTL"},
                                  {kFedataReg, 4, 0, ~0u, 0, "FEDATA"},  {kFeaddrReg, 4, 0, ~0u, 0, "FEADDR"},
                                  {kFeuaddrReg, 4, 0, ~0u, 0, "FEUADDR"}};
    for (const RegisterDef& r : FaultRecordRegisterDefs(0x400, 4)) d.push_back(r);
    return d;
  }());
  FaultRecorder rec(regs, 0x400, 4);
  Outbox out;
  FaultInfo f{kSmFlNotPresent, 0x1234, 0xabcde000, FaultRequestType::kPageRequest, true, true, 1, 0x54321};
  ASSERT_TRUE(rec.Record(f, out));
  uint64_t hi = regs.Get(0x408);
  EXPECT_EQ(hi & 0xffff, 0x1234u);
  EXPECT_TRUE(hi & (1ull << 28));   // T2
  EXPECT_TRUE(hi & (1ull << 29));   // PRIV
  EXPECT_TRUE(hi & (1ull << 30));   // EXE
  EXPECT_TRUE(hi & (1ull << 31));   // PP
  EXPECT_EQ((hi >> 32) & 0xff, kSmFlNotPresent);
  EXPECT_EQ((hi >> 40) & 0xfffff, 0x54321u);
  EXPECT_EQ((hi >> 60) & 3, 1u);    // AT
  EXPECT_TRUE(out.msis.empty());    // FECTL.IM set at reset
  EXPECT_EQ(regs.Get(kFectlReg), kEctlIm | kEctlIp);
}

}  // namespace
}  // namespace ionest::vtd
