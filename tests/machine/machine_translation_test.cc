// Machine-level DMA remapping: the test device DMAs through the VT-d model programmed by the
// Linux-like driver — legacy TT 0/1/2, scalable first-stage / second-stage / nested / pass-through,
// PASID-tagged DMA, at 48- and 57-bit address widths.
#include <memory>

#include "absl/strings/str_format.h"
#include "gtest/gtest.h"
#include "iommu/first_stage.h"
#include "iommu/second_stage.h"
#include "tests/machine/machine_fixture.h"

namespace ionest::machine_test {
namespace {

using namespace dmatest;
using iommu_testing::FirstStageTableBuilder;
using iommu_testing::SecondStageTableBuilder;
using vtd::testing::LegacyContextSpec;
using vtd::testing::PasidEntrySpec;
using vtd::testing::ScalableContextSpec;

constexpr uint64_t kSrc = TestMachine::kDataBase;             // GPA of the source buffer
constexpr uint64_t kDst = TestMachine::kDataBase + 0x100000;  // GPA of the destination buffer
constexpr uint64_t kLen = 0x3000;                             // crosses pages

class TranslationTest : public ::testing::TestWithParam<int> {
 protected:
  int aw() const { return GetParam(); }
  int levels() const { return aw() == 57 ? 5 : 4; }
  // An IOVA that needs the full width: bit aw-2 set (canonical for first stage).
  uint64_t HighIova() const { return (1ull << (aw() - 2)) + 0x5000; }

  void Boot(bool scalable, std::string extra = "") {
    MachineOptions o;
    o.profile = absl::StrFormat("aw=%d%s%s", aw(), scalable ? "" : ",sm=off", extra);
    auto m = TestMachine::Create(o);
    ASSERT_TRUE(m.ok()) << m.status();
    m_ = *std::move(m);
    BootOptions b;
    b.scalable = scalable;
    ASSERT_TRUE(m_->driver().Boot(b).ok());
    m_->EnableBusMaster();
    std::vector<uint8_t> pattern(kLen);
    for (size_t i = 0; i < kLen; ++i) pattern[i] = static_cast<uint8_t>(i * 13 + aw());
    ASSERT_TRUE(m_->memory().Write(kSrc, pattern.data(), kLen).ok());
    pattern_ = pattern;
  }
  FirstStageTableBuilder Fl() {
    auto b = FirstStageTableBuilder::Create(m_->memory(), m_->alloc(), levels());
    EXPECT_TRUE(b.ok());
    return *std::move(b);
  }
  SecondStageTableBuilder Sl() {
    auto b = SecondStageTableBuilder::Create(m_->memory(), m_->alloc(), levels());
    EXPECT_TRUE(b.ok());
    return *std::move(b);
  }
  // Copies iova_src -> iova_dst and checks the bytes landed at kDst.
  void ExpectCopy(uint64_t iova_src, uint64_t iova_dst, uint64_t ctrl = 0, std::optional<uint32_t> pasid = {}) {
    m_->Fill(kDst, 0, kLen);
    TestMachine::JobResult r = m_->RunJob(kOpCopy, iova_src, iova_dst, kLen, ctrl, pasid);
    ASSERT_TRUE(r.done()) << "error " << int(r.error) << " at " << std::hex << r.fault_addr << " info "
                          << r.fault_info;
    EXPECT_EQ(m_->Bytes(kDst, kLen), pattern_);
    EXPECT_TRUE(m_->driver().ReadAndClearFaults().empty());
  }
  uint8_t sl_aw() const { return levels() == 5 ? 3 : 2; }
  uint8_t flpm() const { return levels() == 5 ? 1 : 0; }

  std::unique_ptr<TestMachine> m_;
  std::vector<uint8_t> pattern_;
};

TEST_P(TranslationTest, LegacyTt0SecondStage) {
  Boot(false);
  SecondStageTableBuilder sl = Sl();
  ASSERT_TRUE(sl.Map(HighIova(), kSrc, kLen, kDmaRead).ok());
  ASSERT_TRUE(sl.Map(0x40000000, kDst, kLen, kDmaRead | kDmaWrite).ok());
  ASSERT_TRUE(m_->driver().AttachLegacy(m_->rid(), {0, sl_aw(), 3, sl.root()}).ok());
  ASSERT_TRUE(m_->driver().EnableTranslation().ok());
  ExpectCopy(HighIova(), 0x40000000);
  // Untranslated requests with TT=0 cannot use ATS (TT=1 needed): the translation is refused.
  m_->EnableAts();
  TestMachine::JobResult r = m_->RunJob(kOpCopy, HighIova(), 0x40000000, 16, kCtrlUseAts);
  EXPECT_NE(r.error, kErrNone);
}

TEST_P(TranslationTest, LegacyTt1DeviceTlb) {
  Boot(false);
  SecondStageTableBuilder sl = Sl();
  ASSERT_TRUE(sl.Map(0x10000, kSrc, kLen, kDmaRead).ok());
  ASSERT_TRUE(sl.Map(HighIova(), kDst, kLen, kDmaRead | kDmaWrite).ok());
  ASSERT_TRUE(m_->driver().AttachLegacy(m_->rid(), {1, sl_aw(), 3, sl.root()}).ok());
  ASSERT_TRUE(m_->driver().EnableTranslation().ok());
  m_->EnableAts();
  ExpectCopy(0x10000, HighIova(), kCtrlUseAts);
  EXPECT_GE(m_->DevRead(kRegAtsRequests), 6u);
  ExpectCopy(0x10000, HighIova(), kCtrlUseAts);  // served from the device's ATC
  EXPECT_GE(m_->DevRead(kRegAtcHits), 6u);
}

TEST_P(TranslationTest, LegacyTt2PassThrough) {
  Boot(false);
  ASSERT_TRUE(m_->driver().AttachLegacy(m_->rid(), {2, sl_aw(), 1, 0}).ok());
  ASSERT_TRUE(m_->driver().EnableTranslation().ok());
  ExpectCopy(kSrc, kDst);
}

TEST_P(TranslationTest, ScalableFirstStageRidPasidAndPasid) {
  Boot(true);
  FirstStageTableBuilder fl = Fl();
  ASSERT_TRUE(fl.Map(HighIova(), kSrc, kLen, kDmaRead, kPage4K, fs::kA).ok());
  ASSERT_TRUE(fl.Map(0x20000000, kDst, kLen, kDmaRead | kDmaWrite, kPage4K, fs::kA | fs::kD).ok());
  ASSERT_TRUE(m_->driver().AttachScalable(m_->rid(), {false, true, false}).ok());
  PasidEntrySpec pe;
  pe.pgtt = 1;
  pe.did = 2;
  pe.flptptr = fl.root();
  pe.flpm = flpm();
  ASSERT_TRUE(m_->driver().SetPasid(m_->rid(), 0, pe, false).ok());
  ASSERT_TRUE(m_->driver().EnableTranslation().ok());
  ExpectCopy(HighIova(), 0x20000000);  // untagged requests use RID_PASID 0

  // PASID 9 gets its own address space with a 2 MiB mapping.
  FirstStageTableBuilder fl9 = Fl();
  ASSERT_TRUE(fl9.Map(0x600000, kSrc & ~(kPage2M - 1), kPage2M, kDmaRead, kPage2M, fs::kA).ok());
  ASSERT_TRUE(fl9.Map(0x30000000, kDst, kLen, kDmaWrite, kPage4K, fs::kA | fs::kD).ok());
  pe.did = 9;
  pe.flptptr = fl9.root();
  ASSERT_TRUE(m_->driver().SetPasid(m_->rid(), 9, pe, false).ok());
  m_->EnablePasid();
  ExpectCopy(0x600000 + (kSrc & (kPage2M - 1)), 0x30000000, 0, 9u);
  // PASID 10 has no entry: blocked, recorded.
  TestMachine::JobResult r = m_->RunJob(kOpCopy, 0x600000, 0x30000000, 16, 0, 10u);
  EXPECT_EQ(r.error, kErrTranslation);
  auto faults = m_->driver().ReadAndClearFaults();
  ASSERT_FALSE(faults.empty());
  EXPECT_EQ(faults[0].sid, m_->rid());
  EXPECT_EQ(faults[0].pasid, 10u);
}

TEST_P(TranslationTest, ScalableSecondStage) {
  Boot(true);
  SecondStageTableBuilder sl = Sl();
  ASSERT_TRUE(sl.Map(HighIova(), kSrc, kLen, kDmaRead).ok());
  ASSERT_TRUE(sl.Map(0x7000000, kDst, kLen, kDmaRead | kDmaWrite).ok());
  ASSERT_TRUE(m_->driver().AttachScalable(m_->rid(), {false, true, false}).ok());
  PasidEntrySpec pe;
  pe.pgtt = 2;
  pe.did = 4;
  pe.slptptr = sl.root();
  pe.aw = sl_aw();
  ASSERT_TRUE(m_->driver().SetPasid(m_->rid(), 0, pe, false).ok());
  ASSERT_TRUE(m_->driver().EnableTranslation().ok());
  ExpectCopy(HighIova(), 0x7000000);
}

TEST_P(TranslationTest, ScalableNested) {
  Boot(true);
  // Second stage: identity for the table pool (FL tables live there), and the guest-physical
  // window 0x40000000 -> the data buffers.
  SecondStageTableBuilder sl = Sl();
  ASSERT_TRUE(sl.Map(TestMachine::kTablePool, TestMachine::kTablePool, TestMachine::kRamSize - TestMachine::kTablePool,
                     kDmaRead | kDmaWrite, kPage2M)
                  .ok());
  ASSERT_TRUE(sl.Map(0x40000000, TestMachine::kDataBase, 0x200000, kDmaRead | kDmaWrite).ok());
  FirstStageTableBuilder fl = Fl();
  ASSERT_TRUE(fl.Map(HighIova(), 0x40000000 + (kSrc - TestMachine::kDataBase), kLen, kDmaRead, kPage4K, fs::kA).ok());
  ASSERT_TRUE(fl.Map(0x8000, 0x40000000 + (kDst - TestMachine::kDataBase), kLen, kDmaWrite, kPage4K,
                     fs::kA | fs::kD)
                  .ok());
  ASSERT_TRUE(m_->driver().AttachScalable(m_->rid(), {false, true, false}).ok());
  PasidEntrySpec pe;
  pe.pgtt = 3;
  pe.did = 5;
  pe.flptptr = fl.root();
  pe.flpm = flpm();
  pe.slptptr = sl.root();
  pe.aw = sl_aw();
  ASSERT_TRUE(m_->driver().SetPasid(m_->rid(), 0, pe, false).ok());
  ASSERT_TRUE(m_->driver().EnableTranslation().ok());
  ExpectCopy(HighIova(), 0x8000);
}

TEST_P(TranslationTest, ScalablePassThrough) {
  Boot(true);
  ASSERT_TRUE(m_->driver().AttachScalable(m_->rid(), {false, true, false}).ok());
  PasidEntrySpec pe;
  pe.pgtt = 4;
  pe.did = 1;
  pe.aw = sl_aw();
  ASSERT_TRUE(m_->driver().SetPasid(m_->rid(), 0, pe, false).ok());
  ASSERT_TRUE(m_->driver().EnableTranslation().ok());
  ExpectCopy(kSrc, kDst);
}

TEST_P(TranslationTest, TranslationOffMeansIdentity) {
  Boot(true);
  ExpectCopy(kSrc, kDst);
}

INSTANTIATE_TEST_SUITE_P(Widths, TranslationTest, ::testing::Values(48, 57),
                         [](const auto& info) { return absl::StrFormat("aw%d", info.param); });

}  // namespace
}  // namespace ionest::machine_test
