// Machine-level page requests: the test device (ATS + PRI + PASID) faults on an unmapped page,
// sends a page request, the Linux-like driver services the page request queue (prq.c) and answers
// with a page group response descriptor; the device retries and completes. Also Invalid / Failure
// responses, requests without PASID, PRE=0, and queue overflow (VT-d §7.5, PCIe 6.0 §10.4).
#include <memory>

#include "gtest/gtest.h"
#include "iommu/first_stage.h"
#include "iommu/vtd/fault_reasons.h"
#include "iommu/vtd/registers.h"
#include "tests/machine/machine_fixture.h"

namespace ionest::machine_test {
namespace {

using namespace dmatest;
using namespace vtd;
using iommu_testing::FirstStageTableBuilder;
using vtd::testing::PasidEntrySpec;

constexpr uint32_t kPasid = 5;
constexpr uint16_t kDid = 3;
constexpr uint64_t kSrcIova = 0x10000000;
constexpr uint64_t kDstIova = 0x20000000;
constexpr uint64_t kLen = 0x2800;  // 3 source pages, 3 destination pages
constexpr uint32_t kPrqData = 0x4b;

class PrqTest : public ::testing::Test {
 protected:
  void Boot(bool pre = true, uint32_t prq_order = 4, uint32_t pri_requests = 32) {
    MachineOptions o;
    o.device.page_response_timeout = absl::Seconds(10);
    o.device.min_retry_backoff = absl::Milliseconds(1);
    o.device.max_retry_backoff = absl::Milliseconds(8);
    auto m = TestMachine::Create(o);
    ASSERT_TRUE(m.ok()) << m.status();
    m_ = *std::move(m);
    BootOptions b;
    b.prq_order = prq_order;
    b.prq_msi_data = kPrqData;
    ASSERT_TRUE(m_->driver().Boot(b).ok());
    auto fl = FirstStageTableBuilder::Create(m_->memory(), m_->alloc(), 4);
    ASSERT_TRUE(fl.ok());
    fl_.emplace(*std::move(fl));
    ASSERT_TRUE(m_->driver().AttachScalable(m_->rid(), {true, true, pre}).ok());
    PasidEntrySpec pe;
    pe.pgtt = 1;
    pe.did = kDid;
    pe.flptptr = fl_->root();
    ASSERT_TRUE(m_->driver().SetPasid(m_->rid(), kPasid, pe, true).ok());
    ASSERT_TRUE(m_->driver().SetPasid(m_->rid(), 0, pe, true).ok());
    ASSERT_TRUE(m_->driver().EnableTranslation().ok());
    // Linux: PASID, then ATS, then PRI (iommu.c:4014, 4188-4234).
    m_->EnableBusMaster();
    m_->EnablePasid();
    m_->EnableAts();
    m_->EnablePri(pri_requests);
    for (uint64_t i = 0; i < kLen; ++i) src_.push_back(static_cast<uint8_t>(i * 31 + 7));
    ASSERT_TRUE(m_->memory().Write(GpaOf(kSrcIova), src_.data(), kLen).ok());
    m_->cpu().Take();
  }
  // Where the "fault handler" maps an IOVA.
  static uint64_t GpaOf(uint64_t iova) { return TestMachine::kDataBase + (iova - kSrcIova) / 2; }
  static uint64_t DstGpa(uint64_t iova) { return TestMachine::kDataBase + 0x400000 + (iova - kDstIova); }

  // Services the PRQ until the device finishes, like iopf handling in the guest.
  TestMachine::JobResult ServeUntilDone(const std::function<uint8_t(const PageRequestSeen&)>& handler) {
    const absl::Time deadline = absl::Now() + absl::Seconds(30);
    while (absl::Now() < deadline) {
      seen_ = m_->driver().ServicePageRequests(handler);
      for (const auto& s : seen_) all_seen_.push_back(s);
      if (!(m_->DevRead(kRegStatus) & kStatusBusy)) break;
      absl::SleepFor(absl::Microseconds(200));
    }
    return m_->WaitJob();
  }
  uint8_t MapOnDemand(const PageRequestSeen& r) {
    const uint64_t page = r.addr;
    const uint64_t gpa = page >= kDstIova ? DstGpa(page) : GpaOf(page);
    EXPECT_TRUE(fl_->Map(page, gpa & ~0xfffull, 0x1000, kDmaRead | kDmaWrite, kPage4K, fs::kA | fs::kD).ok());
    return 0;
  }

  std::unique_ptr<TestMachine> m_;
  std::optional<FirstStageTableBuilder> fl_;
  std::vector<uint8_t> src_;
  std::vector<PageRequestSeen> seen_, all_seen_;
};

TEST_F(PrqTest, PageRequestRoundTripWithRetry) {
  Boot();
  m_->StartJob(kOpCopy, kSrcIova, kDstIova, kLen, kCtrlUseAts, kPasid);
  TestMachine::JobResult r = ServeUntilDone([&](const PageRequestSeen& s) { return MapOnDemand(s); });
  ASSERT_TRUE(r.done()) << int(r.error) << " fault " << std::hex << r.fault_addr;
  EXPECT_EQ(m_->Bytes(DstGpa(kDstIova), kLen), src_);
  ASSERT_EQ(all_seen_.size(), 6u);  // 3 source + 3 destination pages
  // The device asks for the missing pages of a range in one group (PCIe 6.0 §10.4.1): LPIG on the last.
  size_t groups = 0;
  for (const PageRequestSeen& s : all_seen_) {
    EXPECT_EQ(s.rid, m_->rid());
    EXPECT_EQ(s.pasid, kPasid);
    groups += s.last;
    EXPECT_EQ(s.write, s.addr >= kDstIova);
    EXPECT_EQ(s.read, s.addr < kDstIova);
  }
  EXPECT_EQ(groups, 2u);
  EXPECT_FALSE(all_seen_[0].last);
  EXPECT_EQ(all_seen_[1].group, all_seen_[0].group);
  EXPECT_TRUE(all_seen_[2].last);
  EXPECT_EQ(m_->DevRead(kRegPageRequests), 6u);
  size_t prq_msis = 0;
  for (const MsiMessage& msi : m_->cpu().Take()) prq_msis += msi.data == kPrqData;
  EXPECT_GE(prq_msis, 1u) << "page request event interrupt";
  EXPECT_TRUE(m_->driver().ReadAndClearFaults().empty()) << "translation requests report faults in the completion";
}

TEST_F(PrqTest, InvalidResponseFailsTheJob) {
  Boot();
  m_->StartJob(kOpRead, kSrcIova, 0, 16, kCtrlUseAts, kPasid);
  TestMachine::JobResult r = ServeUntilDone([](const PageRequestSeen&) { return uint8_t{1}; });
  EXPECT_EQ(r.error, kErrPageInvalid);
  EXPECT_EQ(r.fault_addr, kSrcIova);
  EXPECT_EQ((r.fault_info >> kFaultResponseShift) & 0xf, 1u);
}

TEST_F(PrqTest, FailureResponseStopsPri) {
  Boot();
  m_->StartJob(kOpRead, kSrcIova, 0, 16, kCtrlUseAts, kPasid);
  TestMachine::JobResult r = ServeUntilDone([](const PageRequestSeen&) { return uint8_t{0xf}; });
  EXPECT_EQ(r.error, kErrPageFailure);
  EXPECT_TRUE(m_->ConfigRead(m_->device().cap_offsets().pri + pri::kStatus, 2) & pri::kStatusResponseFailure);
}

TEST_F(PrqTest, RequestWithoutPasidIsAnsweredInvalid) {
  Boot();
  m_->StartJob(kOpRead, kSrcIova, 0, 16, kCtrlUseAts);  // untagged (RID_PASID)
  bool handler_called = false;
  TestMachine::JobResult r = ServeUntilDone([&](const PageRequestSeen&) {
    handler_called = true;
    return uint8_t{0};
  });
  EXPECT_EQ(r.error, kErrPageInvalid);
  EXPECT_FALSE(handler_called);
  ASSERT_EQ(all_seen_.size(), 1u);
  EXPECT_FALSE(all_seen_[0].pasid.has_value());
}

TEST_F(PrqTest, PageRequestWithPreClearIsRefusedAndRecorded) {
  Boot(/*pre=*/false);
  TestMachine::JobResult r = m_->RunJob(kOpRead, kSrcIova, 0, 16, kCtrlUseAts, kPasid);
  EXPECT_EQ(r.error, kErrPageFailure) << "the IOMMU answers Response Failure itself";
  std::vector<FaultRecord> f = m_->driver().ReadAndClearFaults();
  ASSERT_EQ(f.size(), 1u);
  EXPECT_EQ(f[0].reason, kSmPreClear);
  EXPECT_TRUE(f[0].page_request);
  EXPECT_EQ(f[0].pasid, kPasid);
}

TEST_F(PrqTest, OverflowAutoRespondsAndRecoversAfterDrain) {
  Boot(true, /*prq_order=*/0);  // 4 KiB queue: 128 descriptors
  // Requests (injected as if from an earlier burst of the same function) fill the queue while the
  // guest is not looking.
  const uint32_t capacity = 4096 / 32;
  for (uint32_t i = 0; i < capacity + 3; ++i) {
    PageRequest req{m_->rid(), 9u, 0x1000ull * i, kDmaRead, true, static_cast<uint16_t>((i + 256) & 0x1ff)};
    ASSERT_TRUE(m_->iommu().InjectPageRequest(req).ok());
  }
  EXPECT_TRUE(m_->driver().Read32(kPrsReg) & kPrsPro);
  EXPECT_GT(m_->iommu().stats().page_request_overflows, 0u);
  // The device's request is answered Success by the hardware, but the page stays unmapped: the
  // device retries a bounded number of times and gives up.
  TestMachine::JobResult r = m_->RunJob(kOpRead, kSrcIova, 0, 16, kCtrlUseAts, kPasid);
  EXPECT_EQ(r.error, kErrRetryExhausted);
  // Drain (prq_event_thread answers everything, clears PRO), then the device's faults get served.
  std::vector<PageRequestSeen> drained = m_->driver().ServicePageRequests([](const PageRequestSeen&) { return uint8_t{1}; });
  EXPECT_LE(drained.size(), capacity);
  EXPECT_GE(drained.size(), capacity - 1);
  EXPECT_FALSE(m_->driver().Read32(kPrsReg) & kPrsPro);
  m_->StartJob(kOpRead, kSrcIova, 0, 16, kCtrlUseAts, kPasid);
  r = ServeUntilDone([&](const PageRequestSeen& s) { return MapOnDemand(s); });
  EXPECT_TRUE(r.done()) << int(r.error);
}

// A device granted more outstanding page requests than the queue holds sends one group larger than
// the queue: VT-d 4.1 §7.5.1 — PRO set, the dropped last-in-group request answered Success by
// hardware; the device backs off and retries with smaller groups once software has drained the
// queue and cleared PRO (prq.c), and the job completes with every page written.
TEST_F(PrqTest, GroupLargerThanQueueOverflowsAndJobStillCompletes) {
  Boot(true, /*prq_order=*/0, /*pri_requests=*/256);  // 127 usable descriptors
  constexpr uint64_t kPages = 160;
  const std::vector<uint8_t> ones(kPages * 0x1000, 0xff);
  ASSERT_TRUE(m_->memory().Write(DstGpa(kDstIova), ones.data(), ones.size()).ok());
  m_->StartJob(kOpFill, 0, kDstIova, kPages * 0x1000, kCtrlUseAts, kPasid);
  const absl::Time deadline = absl::Now() + absl::Seconds(10);
  while (!(m_->driver().Read32(kPrsReg) & kPrsPro) && absl::Now() < deadline) absl::SleepFor(absl::Microseconds(100));
  ASSERT_TRUE(m_->driver().Read32(kPrsReg) & kPrsPro) << "a 160-request group must overflow a 128-entry queue";
  TestMachine::JobResult r = ServeUntilDone([&](const PageRequestSeen& s) { return MapOnDemand(s); });
  EXPECT_TRUE(r.done()) << int(r.error);
  EXPECT_GT(m_->iommu().stats().page_request_overflows, 0u);
  EXPECT_FALSE(m_->driver().Read32(kPrsReg) & kPrsPro);
  EXPECT_GE(m_->DevRead(kRegPageRequests), kPages);
  for (uint64_t p = 0; p < kPages; p += 7) {
    uint64_t v = 1;
    ASSERT_TRUE(m_->memory().Read(DstGpa(kDstIova + p * 0x1000), &v, 8).ok());
    EXPECT_EQ(v, 0u) << "page " << p;  // FILL with PATTERN 0
  }
}

}  // namespace
}  // namespace ionest::machine_test
