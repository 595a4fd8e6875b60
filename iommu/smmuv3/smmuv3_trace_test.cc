// The SMMUv3 model's event trace lines (iommu/trace.h: events written, commands executed, stalls
// and resumes, PRI requests and responses) and its table dump, driven by the Linux-like test driver.
#include <memory>

#include "absl/strings/str_format.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "iommu/smmuv3/smmuv3_iommu.h"
#include "iommu/smmuv3/testing/smmuv3_driver.h"
#include "iommu/testing/trace_capture.h"
#include "iommu/testing/vmsa_builder.h"

namespace ionest::smmuv3 {
namespace {

using iommu_testing::PageAllocator;
using iommu_testing::RecordingDmaClient;
using iommu_testing::RecordingMsiSink;
using iommu_testing::TraceCapture;
using iommu_testing::VmsaTableBuilder;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using testing::Command;
using testing::Smmuv3Driver;

constexpr uint64_t kRam = 256ull << 20;
constexpr uint64_t kData = 16ull << 20;
constexpr uint64_t kTables = 64ull << 20;
constexpr uint16_t kSid = 0x0108;

class Smmuv3TraceTest : public ::testing::Test {
 protected:
  void Build(Smmuv3Profile profile) {
    mem_ = *GuestMemory::Create({{0, kRam}});
    alloc_ = std::make_unique<PageAllocator>(*mem_, kTables, 48ull << 20);
    smmu_ = std::make_unique<Smmuv3Iommu>(*mem_, msi_, profile);
    driver_ = std::make_unique<Smmuv3Driver>(*smmu_, *mem_, *alloc_);
    ASSERT_TRUE(driver_->Probe().ok());
    ASSERT_TRUE(driver_->Init().ok());
  }
  // A stage-1 domain for kSid (ASID 3); `stall` sets CD.S.
  VmsaTableBuilder Stage1(bool stall = false) {
    VmsaTableBuilder t = *VmsaTableBuilder::CreateStage1(*mem_, *alloc_, 48);
    const uint64_t cd_table = *driver_->AllocCdTable(0);
    testing::CdWords cd = testing::CdStage1(t.root(), 3);
    if (stall) cd.w[0] |= kCd0S;
    EXPECT_TRUE(driver_->WriteCd(cd_table, 0, kS1FmtLinear, 0, cd).ok());
    EXPECT_TRUE(driver_->WriteSte(kSid, testing::SteStage1(cd_table)).ok());
    return t;
  }
  DmaSpace& Space() { return smmu_->ForRequester(kSid); }

  RecordingMsiSink msi_;
  std::unique_ptr<GuestMemory> mem_;
  std::unique_ptr<PageAllocator> alloc_;
  std::unique_ptr<Smmuv3Iommu> smmu_;
  std::unique_ptr<Smmuv3Driver> driver_;
};

TEST_F(Smmuv3TraceTest, EventWrittenAndCommandsExecuted) {
  Build({});
  VmsaTableBuilder t = Stage1();
  TraceCapture trace;
  uint32_t v = 0;
  EXPECT_FALSE(Space().Read(0x5000, &v, 4).ok());
  EXPECT_THAT(trace.Lines("smmuv3 event "),
              ElementsAre("smmuv3 event sid=0x108 ssid=- type=0x10 name=F_TRANSLATION input=0x5000 access=r s2=0 "
                          "addr3=0x0 stag=- result=written"));
  ASSERT_TRUE(driver_->Submit({testing::CmdTlbiNhAsid(0, 3)}).ok());
  std::vector<std::string> cmds = trace.Lines("smmuv3 cmd ");
  ASSERT_EQ(cmds.size(), 2u);
  EXPECT_THAT(cmds[0], HasSubstr("op=0x11 name=CMD_TLBI_NH_ASID cmd0=0x3000000000011 cmd1=0x0 result=ok"));
  EXPECT_THAT(cmds[1], HasSubstr("op=0x46 name=CMD_SYNC"));
  // An illegal command: the line carries the CERROR.
  EXPECT_FALSE(driver_->Submit({Command{kCmdTlbiNhAsid | (1ull << 8), 0}}, false).ok());
  EXPECT_THAT(trace.Lines("smmuv3 cmd ").back(), HasSubstr("name=CMD_TLBI_NH_ASID cmd0=0x111"));
  EXPECT_THAT(trace.Lines("smmuv3 cmd ").back(), HasSubstr("result=CERROR_ILL"));
}

TEST_F(Smmuv3TraceTest, FaultNotRecordedWithCdRClearIsStillTraced) {
  Build({});
  VmsaTableBuilder t = *VmsaTableBuilder::CreateStage1(*mem_, *alloc_, 48);
  const uint64_t cd_table = *driver_->AllocCdTable(0);
  testing::CdWords cd = testing::CdStage1(t.root(), 3);
  cd.w[0] &= ~kCd0R;  // R = 0: terminated faults are not recorded (§5.4)
  ASSERT_TRUE(driver_->WriteCd(cd_table, 0, kS1FmtLinear, 0, cd).ok());
  ASSERT_TRUE(driver_->WriteSte(kSid, testing::SteStage1(cd_table)).ok());
  TraceCapture trace;
  uint32_t v = 0;
  EXPECT_FALSE(Space().Read(0x5000, &v, 4).ok());
  EXPECT_TRUE(driver_->DrainEvents().empty());
  EXPECT_THAT(trace.Lines("smmuv3 event "), ElementsAre(HasSubstr("name=F_TRANSLATION input=0x5000 access=r")));
  EXPECT_THAT(trace.Lines("smmuv3 event "), ElementsAre(HasSubstr("result=not-recorded")));
}

TEST_F(Smmuv3TraceTest, StallAndResume) {
  Smmuv3Profile p;
  p.stall = true;
  Build(p);
  RecordingDmaClient client;
  Space().SetClient(&client);
  VmsaTableBuilder t = Stage1(/*stall=*/true);
  TraceCapture trace(trace::kPageRequest);
  DmaFault fault;
  uint32_t v = 0x42;
  EXPECT_FALSE(Space().Write(0x3000, &v, 4, {}, &fault).ok());
  ASSERT_EQ(fault.kind, DmaFaultKind::kStalled);
  const uint16_t stag = static_cast<uint16_t>(fault.reason);
  ASSERT_TRUE(t.Map(0x3000, kData, kPage4K, VmsaTableBuilder::Stage1Attrs(kDmaRead | kDmaWrite)).ok());
  ASSERT_TRUE(driver_->Submit({Command{kCmdResume | uint64_t{kResumeRetry} << 12 | uint64_t{kSid} << 32, stag}}).ok());
  EXPECT_THAT(trace.Lines(),
              ElementsAre(absl::StrFormat("smmuv3 stall sid=0x108 ssid=- stag=%d input=0x3000 access=w name=F_TRANSLATION", stag),
                          absl::StrFormat("smmuv3 resume sid=0x108 stag=%d action=retry stalled=1", stag)));
  Space().SetClient(nullptr);
}

TEST_F(Smmuv3TraceTest, PageRequestAndResponse) {
  Smmuv3Profile p;
  p.pri = true;
  Build(p);
  RecordingDmaClient client;
  Space().SetClient(&client);
  TraceCapture trace(trace::kPageRequest);
  PageRequest req;
  req.pasid = 2;
  req.addr = 0x7000;
  req.access = kDmaRead;
  req.group_index = 9;
  ASSERT_TRUE(Space().SendPageRequest(req).ok());
  ASSERT_TRUE(driver_->Submit({testing::CmdPriResp(kSid, 2, 9, kPriRespSucc)}).ok());
  EXPECT_THAT(trace.Lines(),
              ElementsAre("smmuv3 page-request sid=0x108 ssid=2 addr=0x7000 access=r group=9 last=1 result=queued",
                          "smmuv3 page-response sid=0x108 ssid=2 group=9 resp=2 result=success"));
  Space().SetClient(nullptr);
}

TEST_F(Smmuv3TraceTest, DumpShowsSteCdAndWalk) {
  Build({});
  VmsaTableBuilder t = Stage1();
  ASSERT_TRUE(t.Map(0x40000, kData, kPage4K, VmsaTableBuilder::Stage1Attrs(kDmaRead | kDmaWrite)).ok());
  const uint64_t leaf = *t.ReadEntry(0x40000, 3);
  std::string dump = smmu_->DumpTables({kSid, std::nullopt, 0x40008});
  EXPECT_THAT(dump, HasSubstr("smmuv3 dump sid=0x108 smmuen=1"));
  EXPECT_THAT(dump, HasSubstr("ste: config=5 s1=1 s2=0"));
  EXPECT_THAT(dump, HasSubstr("cd 0: asid=3"));
  EXPECT_THAT(dump, HasSubstr(absl::StrFormat("walk iova=0x40008: output=0x%x page-size=0x1000", kData + 8)));
  EXPECT_THAT(dump, HasSubstr(absl::StrFormat("gpa=0x%x size=8", *t.EntryAddress(0x40000, 3))));
  EXPECT_EQ(*t.ReadEntry(0x40000, 3), leaf);  // nothing written (no AF update)
  // Unmapped: the event the walk would report; an unconfigured stream: the STE's.
  EXPECT_THAT(smmu_->DumpTables({kSid, std::nullopt, 0x9000}), HasSubstr("walk iova=0x9000: fault F_TRANSLATION"));
  EXPECT_THAT(smmu_->DumpTables({0x0200, std::nullopt, std::nullopt}), HasSubstr("ste: C_BAD_STREAMID"));  // no level-2 table for bus 2
}

}  // namespace
}  // namespace ionest::smmuv3
