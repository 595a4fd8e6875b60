// Machine tests without a vCPU: the dmatest function behind the SMMUv3 model with a stall-enabled
// CD (IHI0070 §3.12.2, CD.S). A "guest" thread plays Linux's event queue thread + IOPF handler
// (arm_smmu_evtq_thread -> iommu_report_device_fault -> arm_smmu_page_response): it drains event
// records with Stall=1 (§7.3), maps the page or not, and answers with CMD_RESUME retry/abort or
// CMD_STALL_TERM (§4.7.2-4.7.3) through the Linux-like test driver. The device runs jobs on its
// worker thread and must wait for those answers, bounded.
#include <atomic>
#include <functional>
#include <memory>
#include <set>
#include <thread>

#include "absl/synchronization/mutex.h"
#include "devices/pci_regs.h"
#include "devices/testdev/dma_test_device.h"
#include "gtest/gtest.h"
#include "iommu/smmuv3/smmuv3_iommu.h"
#include "iommu/smmuv3/testing/smmuv3_driver.h"
#include "iommu/testing/recorders.h"
#include "iommu/testing/vmsa_builder.h"

namespace ionest {
namespace {

using namespace dmatest;
using iommu_testing::PageAllocator;
using iommu_testing::RecordingMsiSink;
using iommu_testing::VmsaTableBuilder;
using smmuv3::Smmuv3Iommu;
using smmuv3::Smmuv3Profile;
using smmuv3::testing::Command;
using smmuv3::testing::EventRecord;
using smmuv3::testing::Smmuv3Driver;

constexpr uint64_t kRam = 256ull << 20;
constexpr uint64_t kTables = 64ull << 20;
constexpr uint64_t kBacking = 128ull << 20;  // where the "OS" puts the pages it faults in
constexpr uint64_t kVa = 0x4000'0000;        // the job's buffer (device virtual addresses)
constexpr uint16_t kSid = 0x0018;            // 00:03.0, as the arm64 machine's first --device
constexpr uint32_t kRW = kDmaRead | kDmaWrite;

class StallTest : public ::testing::Test {
 protected:
  void SetUp() override {
    mem_ = *GuestMemory::Create({{0, kRam}});
    alloc_ = std::make_unique<PageAllocator>(*mem_, kTables, 48ull << 20);
    Smmuv3Profile profile;  // the default: STALL_MODEL 00, STALL_MAX 64
    profile.max_stalls = 48;
    smmu_ = std::make_unique<Smmuv3Iommu>(*mem_, msi_, profile);
    driver_ = std::make_unique<Smmuv3Driver>(*smmu_, *mem_, *alloc_);
    ASSERT_TRUE(driver_->Probe().ok());
    ASSERT_TRUE(driver_->Init().ok());
    // One stage-1 CD with CD.S (Linux's arm_smmu_make_s1_cd for a stall_enabled master).
    table_ = std::make_unique<VmsaTableBuilder>(*VmsaTableBuilder::CreateStage1(*mem_, *alloc_, 48));
    const uint64_t cd_table = *driver_->AllocCdTable(0);
    smmuv3::testing::CdWords cd = smmuv3::testing::CdStage1(table_->root(), 5);
    cd.w[0] |= smmuv3::kCd0S;
    ASSERT_TRUE(driver_->WriteCd(cd_table, 0, smmuv3::kS1FmtLinear, 0, cd).ok());
    ASSERT_TRUE(driver_->WriteSte(kSid, smmuv3::testing::SteStage1(cd_table)).ok());
  }
  void TearDown() override {
    StopGuest();
    device_.reset();
  }

  void MakeDevice(DmaTestDeviceOptions options = {}) {
    device_ = std::make_unique<DmaTestDevice>("dmatest", options);
    ASSERT_TRUE(device_->init_status().ok());
    device_->Attach(PciAttachment{kSid, &msi_, &smmu_->ForRequester(kSid), &mmio_, &pio_});
    const uint16_t cmd = pci::kCommandMemory | pci::kCommandBusMaster;
    uint8_t b[2] = {static_cast<uint8_t>(cmd), static_cast<uint8_t>(cmd >> 8)};
    device_->ConfigWrite(pci::kCommand, b, 2);
  }

  // What the guest does with a stalled access at `va`: map it and retry, abort, or say nothing.
  enum class Answer { kMapAndRetry, kAbort, kStallTerm, kNone };
  // Starts the guest thread; `policy` decides per faulting page.
  void StartGuest(std::function<Answer(uint64_t va)> policy) {
    guest_ = std::thread([this, policy] {
      while (!stop_.load()) {
        std::vector<EventRecord> events = driver_->DrainEvents();
        if (events.empty()) {
          absl::SleepFor(absl::Microseconds(200));
          continue;
        }
        std::vector<Command> answers;
        for (const EventRecord& e : events) {
          if (!(e[1] & smmuv3::kEvt1Stall)) {
            ++unstalled_events_;
            continue;
          }
          const uint16_t stag = static_cast<uint16_t>(e[1] & 0xFFFF);
          EXPECT_EQ(e[0] >> 32, kSid);
          const uint64_t page = e[2] & ~0xFFFull;
          {
            absl::MutexLock l(&mu_);
            stalled_pages_.push_back(page);
          }
          switch (policy(page)) {
            case Answer::kMapAndRetry:
              if (!mapped_.contains(page)) {
                // handle_mm_fault(): a fresh zeroed page.
                const uint64_t pa = kBacking + (page - kVa);
                EXPECT_TRUE(table_->Map(page, pa, 0x1000, VmsaTableBuilder::Stage1Attrs(kRW)).ok());
                mapped_.insert(page);
              }
              answers.push_back(Resume(stag, smmuv3::kResumeRetry));
              break;
            case Answer::kAbort:
              answers.push_back(Resume(stag, smmuv3::kResumeAbort));
              break;
            case Answer::kStallTerm:
              answers.push_back(Command{smmuv3::kCmdStallTerm | uint64_t{kSid} << 32, 0});
              break;
            case Answer::kNone:
              break;
          }
        }
        // arm_smmu_page_response() issues RESUME without a CMD_SYNC.
        if (!answers.empty()) EXPECT_TRUE(driver_->Submit(answers, /*sync=*/false).ok());
      }
    });
  }
  void StopGuest() {
    stop_.store(true);
    if (guest_.joinable()) guest_.join();
  }
  static Command Resume(uint16_t stag, uint32_t action) {
    return Command{smmuv3::kCmdResume | uint64_t{action} << 12 | uint64_t{kSid} << 32, stag};
  }
  uint64_t Run(uint32_t op, uint64_t src, uint64_t dst, uint64_t len, uint64_t pattern = 0,
               absl::Duration timeout = absl::Seconds(30)) {
    device_->WriteReg(kRegSrc, src);
    device_->WriteReg(kRegDst, dst);
    device_->WriteReg(kRegLen, len);
    device_->WriteReg(kRegPattern, pattern);
    device_->WriteReg(kRegCtrl, op);
    device_->WriteReg(kRegDoorbell, kDoorbellStart);
    EXPECT_TRUE(device_->WaitIdle(timeout));
    return device_->ReadReg(kRegStatus);
  }
  static uint8_t ErrorOf(uint64_t status) { return static_cast<uint8_t>(status >> kStatusErrorShift); }
  uint64_t Phys64(uint64_t pa) { return *mem_->ReadObj<uint64_t>(pa); }
  std::vector<uint64_t> StalledPages() {
    absl::MutexLock l(&mu_);
    return stalled_pages_;
  }

  RecordingMsiSink msi_;
  IoBus mmio_{"mmio"};
  IoBus pio_{"pio"};
  std::unique_ptr<GuestMemory> mem_;
  std::unique_ptr<PageAllocator> alloc_;
  std::unique_ptr<Smmuv3Iommu> smmu_;
  std::unique_ptr<Smmuv3Driver> driver_;
  std::unique_ptr<VmsaTableBuilder> table_;
  std::unique_ptr<DmaTestDevice> device_;
  std::thread guest_;
  std::atomic<bool> stop_{false};
  std::atomic<int> unstalled_events_{0};
  std::set<uint64_t> mapped_;  // guest thread only
  absl::Mutex mu_;
  std::vector<uint64_t> stalled_pages_ ABSL_GUARDED_BY(mu_);
};

TEST_F(StallTest, StallResumeRetrySucceeds) {
  MakeDevice();
  StartGuest([](uint64_t) { return Answer::kMapAndRetry; });
  const uint64_t status = Run(kOpFill, 0, kVa, 0x1000, 0x1122334455667788ull);
  EXPECT_EQ(status & (kStatusDone | kStatusError), kStatusDone) << ErrorOf(status);
  EXPECT_EQ(Phys64(kBacking), 0x1122334455667788ull);
  EXPECT_EQ(Phys64(kBacking + 0xff8), 0x1122334455667788ull);
  EXPECT_EQ(device_->ReadReg(kRegStalls), 1u);
  EXPECT_EQ(device_->ReadReg(kRegStallPeak), 1u);
  EXPECT_EQ(StalledPages(), std::vector<uint64_t>{kVa});
  StopGuest();
  EXPECT_EQ(unstalled_events_.load(), 0);
  const smmuv3::Smmuv3Stats st = smmu_->stats();
  EXPECT_EQ(st.stalls, 1u);
  EXPECT_EQ(st.stalls_resumed, 1u);
  // Present now: no further stall.
  EXPECT_EQ(Run(kOpRead, kVa, 0, 0x1000) & kStatusError, 0u);
  EXPECT_EQ(device_->ReadReg(kRegStalls), 1u);
}

TEST_F(StallTest, AbortEndsTheJobWithATranslationError) {
  MakeDevice();
  // The first page is the process's; the second is not (an invalid address): abort.
  StartGuest([](uint64_t va) { return va == kVa ? Answer::kMapAndRetry : Answer::kAbort; });
  const uint64_t status = Run(kOpFill, 0, kVa, 0x2000, 0x5a5a5a5a5a5a5a5aull);
  EXPECT_EQ(status & (kStatusDone | kStatusError), kStatusError);
  EXPECT_EQ(ErrorOf(status), kErrTranslation);
  EXPECT_EQ(device_->ReadReg(kRegFaultAddr), kVa + 0x1000);
  const uint64_t info = device_->ReadReg(kRegFaultInfo);
  EXPECT_EQ((info >> kFaultKindShift) & 0xf, static_cast<uint64_t>(DmaFaultKind::kStalled) + 1);
  EXPECT_EQ((info >> kFaultResponseShift) & 0xf, 0xfu);  // abort
  EXPECT_EQ(Phys64(kBacking), 0x5a5a5a5a5a5a5a5aull);     // the bytes before the fault were written
  StopGuest();
  EXPECT_EQ(smmu_->stats().stalls_terminated, smmu_->stats().stalls - smmu_->stats().stalls_resumed);
  // CMD_STALL_TERM ends it the same way.
  stop_.store(false);
  StartGuest([](uint64_t) { return Answer::kStallTerm; });
  const uint64_t term = Run(kOpRead, kVa + 0x5000, 0, 0x1000);
  EXPECT_EQ(ErrorOf(term), kErrTranslation);
}

TEST_F(StallTest, GuestThatNeverAnswersIsBounded) {
  DmaTestDeviceOptions o;
  o.stall_response_timeout = absl::Milliseconds(200);
  o.stall_response_time_per_stall = absl::Milliseconds(1);
  o.max_stalls_in_flight = 4;
  MakeDevice(o);
  StartGuest([](uint64_t) { return Answer::kNone; });
  const absl::Time start = absl::Now();
  const uint64_t status = Run(kOpFill, 0, kVa, 0x10000, 1);
  const absl::Duration took = absl::Now() - start;
  EXPECT_EQ(ErrorOf(status), kErrPageTimeout);
  EXPECT_LT(took, absl::Seconds(5));
  EXPECT_EQ(device_->ReadReg(kRegStallPeak), 4u);  // the faulting page + 3 looked ahead
  StopGuest();
  // The device abandoned its held accesses: the SMMU's stall slots are free again.
  smmuv3::Smmuv3Stats st = smmu_->stats();
  EXPECT_EQ(st.stalls, 4u);
  EXPECT_EQ(st.stalls_abandoned, 4u);
  // A RESUME after the timeout is ignored; the next job stalls and succeeds normally.
  ASSERT_TRUE(driver_->Submit({Resume(0, smmuv3::kResumeRetry)}).ok());
  EXPECT_EQ(smmu_->stats().stalls_resumed, 0u);
  stop_.store(false);
  StartGuest([](uint64_t) { return Answer::kMapAndRetry; });
  EXPECT_EQ(Run(kOpFill, 0, kVa, 0x1000, 2) & kStatusError, 0u);
  // An abort doorbell while the device waits ends the job at once and frees the slots too.
  StopGuest();
  stop_.store(false);
  StartGuest([](uint64_t) { return Answer::kNone; });
  DmaTestDeviceOptions slow = o;
  slow.stall_response_timeout = absl::Seconds(60);
  MakeDevice(slow);
  device_->WriteReg(kRegDst, kVa + 0x20000);
  device_->WriteReg(kRegLen, 0x1000);
  device_->WriteReg(kRegCtrl, kOpFill);
  device_->WriteReg(kRegDoorbell, kDoorbellStart);
  while (device_->ReadReg(kRegStalls) == 0) absl::SleepFor(absl::Milliseconds(1));
  device_->WriteReg(kRegDoorbell, kDoorbellAbort);
  ASSERT_TRUE(device_->WaitIdle(absl::Seconds(5)));
  EXPECT_EQ(ErrorOf(device_->ReadReg(kRegStatus)), kErrAborted);
  st = smmu_->stats();
  EXPECT_EQ(st.stalls, st.stalls_resumed + st.stalls_terminated + st.stalls_abandoned);
}

TEST_F(StallTest, ManyStallsInFlight) {
  DmaTestDeviceOptions o;
  o.max_stalls_in_flight = 32;
  MakeDevice(o);
  // The guest answers out of order: it collects a batch before mapping, like an IOPF workqueue.
  StartGuest([](uint64_t) { return Answer::kMapAndRetry; });
  constexpr uint64_t kPages = 256;
  const uint64_t status = Run(kOpFill, 0, kVa, kPages * 0x1000, 0x0123456789abcdefull);
  EXPECT_EQ(status & (kStatusDone | kStatusError), kStatusDone) << ErrorOf(status);
  for (uint64_t p = 0; p < kPages; ++p) ASSERT_EQ(Phys64(kBacking + p * 0x1000 + 8), 0x0123456789abcdefull) << p;
  EXPECT_GE(device_->ReadReg(kRegStalls), kPages);
  EXPECT_EQ(device_->ReadReg(kRegStallPeak), 32u);
  StopGuest();
  EXPECT_EQ(unstalled_events_.load(), 0);  // never more than STALL_MAX held: no terminated fault
  const smmuv3::Smmuv3Stats st = smmu_->stats();
  EXPECT_EQ(st.stalls, st.stalls_resumed);
  EXPECT_EQ(st.stalls_abandoned, 0u);
  // Every page stalled exactly once.
  std::vector<uint64_t> pages = StalledPages();
  EXPECT_EQ(std::set<uint64_t>(pages.begin(), pages.end()).size(), kPages);
  EXPECT_EQ(pages.size(), kPages);
}

// A retried access that stalls again (the OS mapped the page read-only, the device writes) is
// retried a bounded number of times, then the job ends and the last held access is abandoned.
TEST_F(StallTest, RetriesOfAnAccessAreBounded) {
  DmaTestDeviceOptions o;
  o.max_stall_retries_per_access = 3;
  MakeDevice(o);
  ASSERT_TRUE(table_->Map(kVa, kBacking, 0x1000, VmsaTableBuilder::Stage1Attrs(kDmaRead)).ok());
  mapped_.insert(kVa);
  StartGuest([](uint64_t) { return Answer::kMapAndRetry; });  // already "mapped": just retry
  const uint64_t status = Run(kOpFill, 0, kVa, 0x1000, 3);
  EXPECT_EQ(ErrorOf(status), kErrRetryExhausted);
  EXPECT_EQ(device_->ReadReg(kRegStalls), 3u);
  StopGuest();
  const smmuv3::Smmuv3Stats st = smmu_->stats();
  EXPECT_EQ(st.stalls, 4u);  // 3 answered retry, the 4th abandoned
  EXPECT_EQ(st.stalls_resumed, 3u);
  EXPECT_EQ(st.stalls_abandoned, 1u);
}

// The guest may answer before the device registered its stall (the answer races the worker between
// its Translate and the wait): the answer is kept, not lost. A space that answers inside Translate.
class AnswersFirstSpace final : public DmaSpace {
 public:
  using DmaSpace::DmaSpace;
  Translation Translate(uint64_t iova, uint64_t len, uint32_t access, const DmaAttrs& attrs) override {
    Translation t;
    if (stalled_.insert(iova & ~0xFFFull).second) {
      const uint16_t stag = next_stag_++;
      t.fault = DmaFault{DmaFaultKind::kStalled, iova, access, attrs.pasid, stag, true};
      PageResponse r{0x18, std::nullopt, stag, PageResponseCode::kSuccess, /*stall=*/true};
      std::thread([c = client(), r] { c->OnPageResponse(r); }).join();
      return t;
    }
    t.regions.push_back({iova, iova, std::min<uint64_t>(len, 0x1000 - (iova & 0xFFF)), kDmaRead | kDmaWrite});
    return t;
  }

 private:
  std::set<uint64_t> stalled_;  // the device's worker only
  uint16_t next_stag_ = 7;
};

TEST(StallRaceTest, AnswerBeforeRegistrationIsKept) {
  std::unique_ptr<GuestMemory> mem = *GuestMemory::Create({{0, 16ull << 20}});
  AnswersFirstSpace space(*mem);
  RecordingMsiSink msi;
  IoBus mmio{"mmio"}, pio{"pio"};
  DmaTestDeviceOptions o;
  o.stall_response_timeout = absl::Seconds(20);
  DmaTestDevice d("dmatest", o);
  d.Attach(PciAttachment{0x18, &msi, &space, &mmio, &pio});
  const uint16_t cmd = pci::kCommandMemory | pci::kCommandBusMaster;
  uint8_t b[2] = {static_cast<uint8_t>(cmd), static_cast<uint8_t>(cmd >> 8)};
  d.ConfigWrite(pci::kCommand, b, 2);
  d.WriteReg(kRegDst, 0x10000);
  d.WriteReg(kRegLen, 0x4000);
  d.WriteReg(kRegPattern, 0x77);
  d.WriteReg(kRegCtrl, kOpFill);
  const absl::Time start = absl::Now();
  d.WriteReg(kRegDoorbell, kDoorbellStart);
  ASSERT_TRUE(d.WaitIdle(absl::Seconds(30)));
  EXPECT_LT(absl::Now() - start, absl::Seconds(5));  // no stall waited out its timeout
  EXPECT_EQ(d.ReadReg(kRegStatus) & (kStatusDone | kStatusError), kStatusDone);
  EXPECT_EQ(d.ReadReg(kRegStalls), 4u);
  EXPECT_EQ(*mem->ReadObj<uint64_t>(0x13000), 0x77u);
}

}  // namespace
}  // namespace ionest
