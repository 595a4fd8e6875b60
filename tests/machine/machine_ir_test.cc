// Machine-level interrupt remapping: the test device's MSI-X messages in remappable format go
// through the IRTE the Linux-like driver wrote (with source-id verification); messages from the
// wrong requester, to absent entries or in compatibility format (CFI clear) are blocked and
// recorded with their fault reason (VT-d §5.1, Appendix A).
#include <memory>

#include "gtest/gtest.h"
#include "iommu/vtd/fault_reasons.h"
#include "tests/machine/machine_fixture.h"

namespace ionest::machine_test {
namespace {

using namespace dmatest;
using namespace vtd;
using vtd::testing::IrteSpec;

constexpr uint32_t kIndex = 37;
constexpr uint32_t kFaultData = 0x4a;

class IrTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto m = TestMachine::Create({});
    ASSERT_TRUE(m.ok()) << m.status();
    m_ = *std::move(m);
    ASSERT_TRUE(m_->driver().Boot({}).ok());
    m_->EnableBusMaster();
    // Linux: IRTE with SVT=1 (verify the full source-id), SQ=0.
    IrteSpec e;
    e.vector = 0x55;
    e.dest = 3;
    e.sid = m_->rid();
    e.svt = 1;
    ASSERT_TRUE(m_->driver().WriteIrte(kIndex, e).ok());
    const MsiMessage msg = testing::RemappableMsi(kIndex, m_->rid());
    m_->ProgramMsix(0, msg.address, msg.data);
    m_->cpu().Take();
  }
  // The device signals completion on vector 0; returns what reached the CPU.
  std::vector<MsiMessage> Interrupt() {
    m_->RunJob(kOpNop, 0, 0, 0, kCtrlIrq);
    return m_->cpu().Take();
  }
  std::unique_ptr<TestMachine> m_;
};

TEST_F(IrTest, RemapsDeviceMsiThroughIrte) {
  auto msis = Interrupt();
  ASSERT_EQ(msis.size(), 1u);
  EXPECT_EQ(msis[0].data & 0xff, 0x55u);
  EXPECT_EQ((msis[0].address >> 12) & 0xff, 3u);
  EXPECT_EQ(msis[0].address & 0xfff00000ull, 0xfee00000ull);
  EXPECT_GE(m_->iommu().stats().interrupts_remapped, 1u);
}

TEST_F(IrTest, IrteChangeTakesEffectAfterIec) {
  ASSERT_EQ(Interrupt().size(), 1u);
  IrteSpec e;
  e.vector = 0x66;
  e.dest = 3;
  e.sid = m_->rid();
  e.svt = 1;
  ASSERT_TRUE(m_->driver().WriteIrte(kIndex, e).ok());  // entry + index-selective IEC
  auto msis = Interrupt();
  ASSERT_EQ(msis.size(), 1u);
  EXPECT_EQ(msis[0].data & 0xff, 0x66u);
}

TEST_F(IrTest, WrongSourceIdIsBlockedAndRecorded) {
  IrteSpec e;
  e.vector = 0x55;
  e.sid = m_->rid() + 1;  // belongs to someone else
  e.svt = 1;
  ASSERT_TRUE(m_->driver().WriteIrte(kIndex, e).ok());
  auto msis = Interrupt();
  ASSERT_EQ(msis.size(), 1u) << "only the fault event";
  EXPECT_EQ(msis[0].data, kFaultData);
  std::vector<FaultRecord> f = m_->driver().ReadAndClearFaults();
  ASSERT_EQ(f.size(), 1u);
  EXPECT_EQ(f[0].reason, kIrSidMismatch);
  EXPECT_EQ(f[0].sid, m_->rid());
  EXPECT_EQ(f[0].addr >> 48, kIndex) << "FI holds the interrupt index";
  EXPECT_GE(m_->iommu().stats().interrupts_blocked, 1u);
}

TEST_F(IrTest, AbsentEntryIsBlocked) {
  IrteSpec e;
  e.present = false;
  ASSERT_TRUE(m_->driver().WriteIrte(kIndex, e).ok());
  auto msis = Interrupt();
  ASSERT_EQ(msis.size(), 1u);
  EXPECT_EQ(msis[0].data, kFaultData);
  std::vector<FaultRecord> f = m_->driver().ReadAndClearFaults();
  ASSERT_EQ(f.size(), 1u);
  EXPECT_EQ(f[0].reason, kIrEntryNotPresent);
}

TEST_F(IrTest, CompatibilityFormatBlockedWithCfiClear) {
  m_->ProgramMsix(0, 0xfee00000, 0x41);
  auto msis = Interrupt();
  ASSERT_EQ(msis.size(), 1u);
  EXPECT_EQ(msis[0].data, kFaultData);
  std::vector<FaultRecord> f = m_->driver().ReadAndClearFaults();
  ASSERT_EQ(f.size(), 1u);
  EXPECT_EQ(f[0].reason, kIrCompatBlocked);
}

}  // namespace
}  // namespace ionest::machine_test
