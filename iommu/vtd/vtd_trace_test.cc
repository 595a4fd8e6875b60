// The VT-d model's event trace lines (iommu/trace.h) and its table dump, driven the way the other
// VT-d tests drive the model (VtdTestEnv + the Linux-like test driver).
#include "iommu/vtd/vtd_trace.h"

#include "absl/strings/str_format.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "iommu/testing/recorders.h"
#include "iommu/testing/table_builder.h"
#include "iommu/testing/trace_capture.h"
#include "iommu/vtd/registers.h"
#include "iommu/vtd/testing/vtd_test_env.h"

namespace ionest::vtd {
namespace {

using ::ionest::iommu_testing::TraceCapture;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using testing::VtdTestEnv;

constexpr uint16_t kRid = 0x0028;  // 00:05.0

std::unique_ptr<VtdTestEnv> Env(std::string_view profile, bool scalable) {
  auto env = VtdTestEnv::Create(profile);
  EXPECT_TRUE(env.ok()) << env.status();
  EXPECT_TRUE((*env)->driver->Init(scalable).ok());
  return std::move(*env);
}

TEST(VtdTraceTest, FaultLineFromTheFaultEpilogue) {
  auto env = Env("sm=off,nfr=1", false);
  ASSERT_TRUE(env->driver->EnableTranslation().ok());
  TraceCapture trace;
  uint64_t v = 0;
  EXPECT_FALSE(env->iommu->ForRequester(0x0508).Write(0x12345678, &v, 8).ok());  // bus 5: no root entry
  EXPECT_FALSE(env->iommu->ForRequester(0x0508).Read(0x2000, &v, 8).ok());       // nfr=1: overflow
  EXPECT_THAT(trace.Lines("vtd fault "),
              ElementsAre("vtd fault rid=05:01.0 pasid=- addr=0x12345678 type=write exec=0 priv=0 at=0 reason=0x1 "
                          "name=root-not-present result=recorded",
                          "vtd fault rid=05:01.0 pasid=- addr=0x2000 type=read exec=0 priv=0 at=0 reason=0x1 "
                          "name=root-not-present result=overflow"));
}

TEST(VtdTraceTest, FilteredClassWritesNothing) {
  auto env = Env("sm=off", false);
  ASSERT_TRUE(env->driver->EnableTranslation().ok());
  TraceCapture trace(trace::kCommand | trace::kInterrupt);
  uint64_t v = 0;
  EXPECT_FALSE(env->iommu->ForRequester(0x0508).Read(0x1000, &v, 8).ok());
  EXPECT_THAT(trace.Lines("vtd fault "), IsEmpty());
}

TEST(VtdTraceTest, QueuedDescriptorsExecuted) {
  auto env = Env("", true);
  TraceCapture trace;
  ASSERT_TRUE(env->driver->Invalidate({testing::IotlbDomain(7)}).ok());
  std::vector<std::string> lines = trace.Lines("vtd qi ");
  ASSERT_EQ(lines.size(), 2u);  // the IOTLB descriptor, then the driver's wait
  EXPECT_THAT(lines[0], HasSubstr("type=2 name=iotlb-inv g=2 did=7 qw0=0x70022 qw1=0x0"));
  EXPECT_THAT(lines[1], HasSubstr("type=5 name=inv-wait g=2 did=0 qw0=0x200000025 qw1=0x2002000"));
  // head= is the descriptor's offset in the queue: the wait follows the IOTLB descriptor.
  auto head = [](const std::string& l) { return std::stoull(l.substr(l.find("head=0x") + 7), nullptr, 16); };
  EXPECT_EQ(head(lines[1]), head(lines[0]) + env->driver->descriptor_bytes());
}

TEST(VtdTraceTest, PageRequestAndResponse) {
  auto env = Env("", true);
  ASSERT_TRUE(env->driver->tables().SetScalableContext(kRid, {.dte = true, .pasid_enable = true, .pre = true}).ok());
  ASSERT_TRUE(env->driver->EnableTranslation().ok());
  ASSERT_TRUE(env->driver->EnablePageRequests(0xfee00000, 0x77).ok());
  iommu_testing::RecordingDmaClient client;
  env->iommu->ForRequester(kRid).SetClient(&client);
  TraceCapture trace;
  PageRequest r;
  r.pasid = 5;
  r.addr = 0x12345000;
  r.access = kDmaRead | kDmaWrite;
  r.group_index = 3;
  ASSERT_TRUE(env->iommu->ForRequester(kRid).SendPageRequest(r).ok());
  ASSERT_TRUE(env->driver->Invalidate({testing::PageGroupResponse(kRid, 5, 0, 3)}).ok());
  EXPECT_THAT(trace.Lines("vtd page-"),
              ElementsAre("vtd page-request rid=00:05.0 pasid=5 addr=0x12345000 access=rw group=3 last=1 result=queue",
                          "vtd page-response rid=00:05.0 pasid=5 group=3 code=0 result=success"));
  // A requester whose context has PRE clear: the request is a fault, answered automatically.
  ASSERT_TRUE(env->iommu->ForRequester(kRid + 1).SendPageRequest(r).ok());
  EXPECT_THAT(trace.Lines("vtd page-request rid=00:05.1"), ElementsAre(HasSubstr("result=fault")));
  EXPECT_THAT(trace.Lines("vtd fault rid=00:05.1"), ElementsAre(HasSubstr("type=page-request")));
  env->iommu->ForRequester(kRid).SetClient(nullptr);
}

TEST(VtdTraceTest, InterruptRemappingDecisions) {
  auto env = Env("", true);
  constexpr uint16_t kDev = 0x0010;
  ASSERT_TRUE(env->driver->EnableInterruptRemapping(8, true).ok());
  ASSERT_TRUE(env->driver->WriteIrte(5, {.vector = 0x61, .dest = 0x12345, .sid = kDev, .svt = 1}).ok());
  TraceCapture trace;
  ASSERT_TRUE(env->iommu->SendMsi(testing::RemappableMsi(5, kDev)).ok());
  ASSERT_TRUE(env->iommu->SendMsi(testing::RemappableMsi(4, kDev)).ok());  // IRTE 4 not present
  std::vector<std::string> lines = trace.Lines("vtd ir ");
  ASSERT_EQ(lines.size(), 2u);
  EXPECT_THAT(lines[0], HasSubstr("sid=00:02.0"));
  EXPECT_THAT(lines[0], HasSubstr("index=5 result=remapped"));
  EXPECT_THAT(lines[0], HasSubstr("out_data=0x61 "));
  // As quoted in the README.
  EXPECT_EQ(lines[1], "vtd ir sid=00:02.0 addr=0xfee00090 data=0x0 index=4 result=blocked out_addr=0x0 out_data=0x0 "
                      "reason=0x22 name=ir-entry-not-present");
  // The blocked interrupt is also a recorded fault, with the index in FI[63:48].
  EXPECT_THAT(trace.Lines("vtd fault "), ElementsAre(HasSubstr("addr=0x4000000000000 type=write")));
}

TEST(VtdTraceTest, DumpShowsEntriesAndTheWalkWithoutWritingGuestMemory) {
  auto env = Env("", true);
  auto fl = iommu_testing::FirstStageTableBuilder::Create(*env->memory, *env->alloc, 4);
  ASSERT_TRUE(fl.ok());
  constexpr uint64_t kIova = 0x7f0000001000;
  ASSERT_TRUE(fl->Map(kIova, 0x200000, kPage4K, kDmaRead | kDmaWrite).ok());  // A/D clear
  ASSERT_TRUE(env->driver->tables().SetScalableContext(kRid, {.dte = true}).ok());
  ASSERT_TRUE(
      env->driver->tables().SetPasidEntry(kRid, 0, {.pgtt = kPgttFirstStage, .did = 3, .flptptr = fl->root()}).ok());
  ASSERT_TRUE(env->driver->EnableTranslation().ok());
  const uint64_t leaf_before = *fl->ReadEntry(kIova, 1);
  const uint64_t top_before = *fl->ReadEntry(kIova, 4);

  std::string dump = env->iommu->DumpTables({kRid, std::nullopt, kIova + 0x10});
  EXPECT_THAT(dump, HasSubstr("vtd dump rid=00:05.0 translation=on"));
  EXPECT_THAT(dump, HasSubstr("mode=scalable"));
  EXPECT_THAT(dump, HasSubstr("pasid 0: raw="));
  EXPECT_THAT(dump, HasSubstr("pgtt=1 did=3"));
  EXPECT_THAT(dump, HasSubstr("walk iova=0x7f0000001010: output=0x200010 page-size=0x1000"));
  // Each first-stage level read is listed, the leaf last.
  EXPECT_THAT(dump, HasSubstr(absl::StrFormat("gpa=0x%x size=8 value=0x%016x", *fl->EntryAddress(kIova, 1), leaf_before)));
  // The walk ran on a memory that discards A/D updates: the guest's entries are unchanged.
  EXPECT_EQ(*fl->ReadEntry(kIova, 1), leaf_before);
  EXPECT_EQ(*fl->ReadEntry(kIova, 4), top_before);
  // A requester without a context entry: the decoder's fault.
  EXPECT_THAT(env->iommu->DumpTables({0x0100, std::nullopt, std::nullopt}),
              HasSubstr("context: fault reason=0x39 sm-root-not-present"));
  // An unmapped IOVA: the walk's fault reason.
  EXPECT_THAT(env->iommu->DumpTables({kRid, std::nullopt, 0x1000}),
              HasSubstr("walk iova=0x1000: fault reason=0x71 sm-fl-not-present"));
  // PASID 5 of a context without PASIDs enabled: the architected fault.
  EXPECT_THAT(env->iommu->DumpTables({kRid, 5, 0x1000}), HasSubstr("fault reason=0x45 sm-pasid-disabled"));
}

TEST(VtdTraceTest, DumpOfAHostileSelfReferencingTableIsBounded) {
  auto env = Env("", true);
  auto fl = iommu_testing::FirstStageTableBuilder::Create(*env->memory, *env->alloc, 4);
  ASSERT_TRUE(fl.ok());
  // Every entry of the top table points at the top table itself (a loop).
  for (uint64_t i = 0; i < 512; ++i) {
    ASSERT_TRUE(env->memory->WriteObj<uint64_t>(fl->root() + 8 * i, fl->root() | fs::kP | fs::kRW | fs::kUS | fs::kA).ok());
  }
  ASSERT_TRUE(env->driver->tables().SetScalableContext(kRid, {.dte = true}).ok());
  ASSERT_TRUE(
      env->driver->tables().SetPasidEntry(kRid, 0, {.pgtt = kPgttFirstStage, .did = 3, .flptptr = fl->root()}).ok());
  ASSERT_TRUE(env->driver->EnableTranslation().ok());
  std::string dump = env->iommu->DumpTables({kRid, std::nullopt, 0x1000});
  EXPECT_THAT(dump, HasSubstr("walk iova=0x1000:"));
  // The walk visits at most one entry per level; the whole dump stays short.
  EXPECT_LT(std::count(dump.begin(), dump.end(), '\n'), 40);
}

TEST(VtdTraceTest, NamesCoverTheSpecCodes) {
  EXPECT_EQ(FaultReasonName(kFrWriteDenied), "write-denied");
  EXPECT_EQ(FaultReasonName(kSmPasidEntryNotPresent), "sm-pasid-entry-not-present");
  EXPECT_EQ(FaultReasonName(0xff), "unknown");
  EXPECT_EQ(DescriptorTypeName(kDescPageGroupResponse), "page-group-response");
  EXPECT_EQ(DescriptorTypeName(0x7f), "unknown");
}

}  // namespace
}  // namespace ionest::vtd
