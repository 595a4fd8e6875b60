#include "devices/testdev/dma_test_device.h"

#include <atomic>
#include <cstring>
#include <map>
#include <thread>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "gtest/gtest.h"
#include "vmm/guest_memory.h"

namespace ionest {
namespace {

using namespace dmatest;

constexpr uint64_t kRamSize = 16 << 20;
constexpr uint16_t kRid = 0x0018;

class RecordingMsiSink final : public MsiSink {
 public:
  absl::Status SendMsi(const MsiMessage& msi) override {
    absl::MutexLock l(&mu_);
    msis_.push_back(msi);
    return absl::OkStatus();
  }
  std::vector<MsiMessage> msis() {
    absl::MutexLock l(&mu_);
    return msis_;
  }

 private:
  absl::Mutex mu_;
  std::vector<MsiMessage> msis_;
};

// A scripted DmaSpace: page-granular map iova -> gpa with permissions; page requests are answered
// according to `policy` (optionally mapping the page first).
class FakeDmaSpace final : public DmaSpace {
 public:
  enum class Policy { kMapAndSucceed, kSucceedWithoutMapping, kInvalid, kFailure, kNoResponse, kRefuse,
                      kWrongGroup };
  using DmaSpace::DmaSpace;

  void Map(uint64_t iova, uint64_t gpa, uint32_t perms) {
    absl::MutexLock l(&mu_);
    pages_[iova >> 12] = {gpa & ~0xfffull, perms};
  }
  void Unmap(uint64_t iova) {
    absl::MutexLock l(&mu_);
    pages_.erase(iova >> 12);
  }
  void set_policy(Policy p) {
    absl::MutexLock l(&mu_);
    policy_ = p;
  }
  // The next `n` groups are answered Success without mapping (like the IOMMU's automatic
  // response while its page request queue is full, VT-d 4.1 §7.5.1).
  void set_unmapped_successes(int n) {
    absl::MutexLock l(&mu_);
    unmapped_successes_ = n;
  }
  void set_bad_completion(bool b) {
    absl::MutexLock l(&mu_);
    bad_completion_ = b;
  }
  std::vector<PageRequest> requests() {
    absl::MutexLock l(&mu_);
    return requests_;
  }
  int ats_requests() {
    absl::MutexLock l(&mu_);
    return ats_requests_;
  }
  // Every untranslated request first waits `d` (a slow IOMMU / memory path).
  void set_translate_delay(absl::Duration d) {
    absl::MutexLock l(&mu_);
    translate_delay_ = d;
  }
  int translations() {
    absl::MutexLock l(&mu_);
    return translations_;
  }

  Translation Translate(uint64_t iova, uint64_t len, uint32_t access, const DmaAttrs& attrs) override {
    absl::Duration delay;
    {
      absl::MutexLock l(&mu_);
      delay = translate_delay_;
      ++translations_;
    }
    absl::SleepFor(delay);
    absl::MutexLock l(&mu_);
    Translation t;
    auto it = pages_.find(iova >> 12);
    const uint32_t rw = access & (kDmaRead | kDmaWrite);
    if (it == pages_.end() || (it->second.perms & rw) != rw) {
      t.fault = DmaFault{it == pages_.end() ? DmaFaultKind::kNotPresent : DmaFaultKind::kPermission, iova, access,
                         attrs.pasid, 0x71, true};
      return t;
    }
    const uint64_t n = std::min<uint64_t>(len, 0x1000 - (iova & 0xfff));
    t.regions.push_back({iova, it->second.gpa | (iova & 0xfff), n, it->second.perms});
    return t;
  }
  AtsTranslation AtsTranslate(uint64_t iova, uint32_t access, const DmaAttrs& attrs) override {
    absl::MutexLock l(&mu_);
    ++ats_requests_;
    auto it = pages_.find(iova >> 12);
    if (it == pages_.end()) return {};
    if (bad_completion_) return {true, iova | 0x800, it->second.gpa, 4096, it->second.perms};
    return {true, iova & ~0xfffull, it->second.gpa, 4096, it->second.perms};
  }
  bool AllowTranslatedRequest() override { return true; }
  absl::Status SendPageRequest(const PageRequest& r) override {
    Policy p;
    {
      absl::MutexLock l(&mu_);
      requests_.push_back(r);
      p = policy_;
      if (p == Policy::kMapAndSucceed && unmapped_successes_ > 0) {
        p = Policy::kSucceedWithoutMapping;
        if (r.last) --unmapped_successes_;
      }
      if (p == Policy::kMapAndSucceed) pages_[r.addr >> 12] = {r.addr + 0x100000, kDmaRead | kDmaWrite};
    }
    if (!r.last) return absl::OkStatus();  // PCIe 6.0 §10.4.1: one response per group, after its last request
    if (p == Policy::kRefuse) return absl::FailedPreconditionError("no PRQ");
    if (p == Policy::kNoResponse) return absl::OkStatus();
    PageResponse resp{r.rid, r.pasid, static_cast<uint16_t>(p == Policy::kWrongGroup ? r.group_index ^ 1 : r.group_index),
                      PageResponseCode::kSuccess};
    if (p == Policy::kInvalid) resp.code = PageResponseCode::kInvalidRequest;
    if (p == Policy::kFailure) resp.code = PageResponseCode::kResponseFailure;
    // Respond from another thread, as the IOMMU does when the guest writes the response descriptor.
    std::thread([c = client(), resp] { c->OnPageResponse(resp); }).join();
    return absl::OkStatus();
  }

 private:
  struct Page {
    uint64_t gpa;
    uint32_t perms;
  };
  absl::Mutex mu_;
  std::map<uint64_t, Page> pages_;
  Policy policy_ = Policy::kMapAndSucceed;
  bool bad_completion_ = false;
  int unmapped_successes_ = 0;
  std::vector<PageRequest> requests_;
  int ats_requests_ = 0;
  absl::Duration translate_delay_;
  int translations_ = 0;
};

class DmaTestDeviceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto m = GuestMemory::Create({{0, kRamSize}});
    ASSERT_TRUE(m.ok());
    memory_ = *std::move(m);
    identity_ = std::make_unique<IdentityDmaSpace>(*memory_);
    fake_ = std::make_unique<FakeDmaSpace>(*memory_);
  }
  std::unique_ptr<DmaTestDevice> MakeDevice(DmaSpace& space, DmaTestDeviceOptions options = {}) {
    options.min_retry_backoff = absl::Milliseconds(1);
    options.max_retry_backoff = absl::Milliseconds(8);
    auto dev = std::make_unique<DmaTestDevice>("dmatest", options);
    EXPECT_TRUE(dev->init_status().ok()) << dev->init_status();
    dev->Attach(PciAttachment{kRid, &msi_, &space, &mmio_, &pio_});
    SetConfig16(*dev, pci::kCommand, pci::kCommandMemory | pci::kCommandBusMaster);
    return dev;
  }
  static void SetConfig16(DmaTestDevice& d, uint16_t off, uint16_t v) {
    uint8_t b[2] = {static_cast<uint8_t>(v), static_cast<uint8_t>(v >> 8)};
    d.ConfigWrite(off, b, 2);
  }
  static void SetConfig32(DmaTestDevice& d, uint16_t off, uint32_t v) {
    uint8_t b[4];
    std::memcpy(b, &v, 4);
    d.ConfigWrite(off, b, 4);
  }
  static uint32_t Config(DmaTestDevice& d, uint16_t off, size_t size) {
    uint8_t b[4] = {};
    d.ConfigRead(off, b, size);
    uint32_t v = 0;
    std::memcpy(&v, b, size);
    return v;
  }
  // What Linux's pcie_flr does (drivers/pci/pci.c): set DEVCTL.BCR_FLR with a read-modify-write.
  static void InitiateFlr(DmaTestDevice& d) {
    const uint16_t devctl = d.cap_offsets().pcie + pcie::kDevCtl;
    SetConfig16(d, devctl, static_cast<uint16_t>(Config(d, devctl, 2) | pcie::kDevCtlInitiateFlr));
  }
  // Guest-visible state a freshly powered-on device reports: config space, BAR0 registers and SRAM.
  static std::vector<uint8_t> ConfigSpace(DmaTestDevice& d) {
    std::vector<uint8_t> c(pci::kConfigSpaceSize);
    d.ConfigRead(0, c.data(), c.size());
    return c;
  }
  static std::vector<uint64_t> Registers(DmaTestDevice& d) {
    std::vector<uint64_t> r;
    for (uint32_t off = 0; off < kRegCount; off += 8) r.push_back(d.ReadReg(off));
    return r;
  }
  static std::vector<uint8_t> Sram(DmaTestDevice& d) {
    std::vector<uint8_t> b(kSramSize);
    d.bar(0)->IoRead(kSramOffset, b.data(), b.size());
    return b;
  }
  static void EnablePri(DmaTestDevice& d, uint32_t alloc = 8) {
    SetConfig32(d, d.cap_offsets().pri + pri::kAllocation, alloc);
    SetConfig16(d, d.cap_offsets().pri + pri::kControl, pri::kControlEnable);
  }
  // Runs a job and returns STATUS once it is finished.
  static uint64_t Run(DmaTestDevice& d, uint32_t op, uint64_t src, uint64_t dst, uint64_t len, uint64_t ctrl = 0,
                      uint64_t pasid = 0) {
    d.WriteReg(kRegSrc, src);
    d.WriteReg(kRegDst, dst);
    d.WriteReg(kRegLen, len);
    d.WriteReg(kRegPasid, pasid);
    d.WriteReg(kRegCtrl, op | ctrl);
    d.WriteReg(kRegDoorbell, kDoorbellStart);
    EXPECT_TRUE(d.WaitIdle(absl::Seconds(30)));
    return d.ReadReg(kRegStatus);
  }
  static uint8_t ErrorOf(uint64_t status) { return static_cast<uint8_t>(status >> kStatusErrorShift); }
  void Fill(uint64_t gpa, uint8_t v, size_t n) {
    std::vector<uint8_t> b(n, v);
    ASSERT_TRUE(memory_->Write(gpa, b.data(), n).ok());
  }
  std::vector<uint8_t> Bytes(uint64_t gpa, size_t n) {
    std::vector<uint8_t> b(n);
    EXPECT_TRUE(memory_->Read(gpa, b.data(), n).ok());
    return b;
  }

  std::unique_ptr<GuestMemory> memory_;
  std::unique_ptr<IdentityDmaSpace> identity_;
  std::unique_ptr<FakeDmaSpace> fake_;
  RecordingMsiSink msi_;
  IoBus mmio_{"mmio"};
  IoBus pio_{"pio"};
};

TEST_F(DmaTestDeviceTest, ConfigSpaceAdvertisesWhatLinuxChecks) {
  auto d = MakeDevice(*identity_);
  EXPECT_EQ(Config(*d, pci::kVendorId, 2), kVendorId);
  EXPECT_EQ(Config(*d, pci::kDeviceId, 2), kDeviceId);
  EXPECT_EQ(Config(*d, pci::kClassCode, 3), kClassCode);
  ASSERT_TRUE(d->config().FindCapability(pci::kCapIdPcie).has_value());
  const uint16_t pcie_off = *d->config().FindCapability(pci::kCapIdPcie);
  EXPECT_EQ((Config(*d, pcie_off + pcie::kCaps, 2) >> 4) & 0xf, 0x9u) << "RC-integrated endpoint";
  EXPECT_TRUE(Config(*d, pcie_off + pcie::kDevCap2, 4) & pcie::kDevCap2EndEndTlpPrefix);
  ASSERT_EQ(d->config().FindExtCapability(pci::kExtCapIdAts), d->cap_offsets().ats);
  EXPECT_TRUE(Config(*d, d->cap_offsets().ats + ats::kCap, 2) & ats::kCapPageAlignedRequest);
  ASSERT_EQ(d->config().FindExtCapability(pci::kExtCapIdPasid), d->cap_offsets().pasid);
  const uint32_t pcap = Config(*d, d->cap_offsets().pasid + pasid::kCap, 2);
  EXPECT_EQ((pcap >> pasid::kCapMaxWidthShift) & 0x1f, 20u);
  EXPECT_TRUE(pcap & pasid::kCapExec);
  EXPECT_TRUE(pcap & pasid::kCapPriv);
  ASSERT_EQ(d->config().FindExtCapability(pci::kExtCapIdPri), d->cap_offsets().pri);
  const uint32_t pst = Config(*d, d->cap_offsets().pri + pri::kStatus, 2);
  EXPECT_TRUE(pst & pri::kStatusStopped);
  EXPECT_TRUE(pst & pri::kStatusPrgResponsePasidRequired);
  EXPECT_EQ(Config(*d, d->cap_offsets().pri + pri::kCapacity, 4), 32u);
  ASSERT_NE(d->msix(), nullptr);
  EXPECT_EQ(d->msix()->vectors(), kNumVectors);
  EXPECT_EQ(d->ReadReg(kRegId), kIdValue);
}

TEST_F(DmaTestDeviceTest, PriStoppedTracksEnableAndResetBitReadsZero) {
  auto d = MakeDevice(*identity_);
  const uint16_t st = d->cap_offsets().pri + pri::kStatus;
  EnablePri(*d);
  EXPECT_FALSE(Config(*d, st, 2) & pri::kStatusStopped);
  SetConfig16(*d, d->cap_offsets().pri + pri::kControl, pri::kControlReset);
  EXPECT_TRUE(Config(*d, st, 2) & pri::kStatusStopped);
  EXPECT_EQ(Config(*d, d->cap_offsets().pri + pri::kControl, 2) & pri::kControlReset, 0u);
}

TEST_F(DmaTestDeviceTest, CopyFillReadCompareWriteThroughIdentity) {
  auto d = MakeDevice(*identity_);
  std::vector<uint8_t> src(10000);
  for (size_t i = 0; i < src.size(); ++i) src[i] = static_cast<uint8_t>(i * 7 + 3);
  ASSERT_TRUE(memory_->Write(0x10123, src.data(), src.size()).ok());

  uint64_t st = Run(*d, kOpCopy, 0x10123, 0x40ff0, src.size());
  EXPECT_EQ(st & (kStatusDone | kStatusError | kStatusBusy), kStatusDone);
  EXPECT_EQ(Bytes(0x40ff0, src.size()), src);
  EXPECT_EQ(d->ReadReg(kRegBytesDone), src.size());

  st = Run(*d, kOpCompare, 0x10123, 0x40ff0, src.size());
  EXPECT_EQ(d->ReadReg(kRegResult), 0u);
  Fill(0x40ff0 + 5000, 0xee, 1);
  st = Run(*d, kOpCompare, 0x10123, 0x40ff0, src.size());
  EXPECT_EQ(d->ReadReg(kRegResult), (1ull << 63) | 5000);

  uint64_t fnv = 0xcbf29ce484222325ull;
  for (uint8_t b : src) fnv = (fnv ^ b) * 0x100000001b3ull;
  Run(*d, kOpRead, 0x10123, 0, src.size());
  EXPECT_EQ(d->ReadReg(kRegResult), fnv);
  uint8_t sram0 = 0;
  d->bar(0)->IoRead(kSramOffset + 9, &sram0, 1);
  EXPECT_EQ(sram0, src[9]);

  d->WriteReg(kRegPattern, 0x0807060504030201ull);
  Run(*d, kOpFill, 0, 0x80001, 11);
  EXPECT_EQ(Bytes(0x80001, 11), (std::vector<uint8_t>{1, 2, 3, 4, 5, 6, 7, 8, 1, 2, 3}));

  const uint8_t pattern[3] = {0xaa, 0xbb, 0xcc};
  d->bar(0)->IoWrite(kSramOffset, pattern, 3);
  Run(*d, kOpWrite, 0, 0x90000 - 1, 3);
  EXPECT_EQ(Bytes(0x90000 - 1, 3), (std::vector<uint8_t>{0xaa, 0xbb, 0xcc}));
  EXPECT_EQ((d->ReadReg(kRegStatus) >> kStatusJobsShift) & 0xffff, 6u);
}

TEST_F(DmaTestDeviceTest, RejectsBadJobs) {
  DmaTestDeviceOptions o;
  o.max_job_length = 1 << 20;
  auto d = MakeDevice(*identity_, o);
  EXPECT_EQ(ErrorOf(Run(*d, 9, 0, 0, 16)), kErrBadOp);
  EXPECT_EQ(ErrorOf(Run(*d, kOpCopy, 0, 0x1000, (1 << 20) + 1)), kErrBadLength);
  EXPECT_EQ(ErrorOf(Run(*d, kOpCopy, ~0ull - 4, 0x1000, 16)), kErrBadLength);
  EXPECT_EQ(ErrorOf(Run(*d, kOpFill, 0, ~0ull - 4, 16)), kErrBadLength);
  EXPECT_EQ(ErrorOf(Run(*d, kOpCopy, 0, 0x1000, 16, 0, kPasidValid | 1)), kErrPasidDisabled);
  EXPECT_EQ(ErrorOf(Run(*d, kOpCopy, 0, 0x1000, 16, kCtrlUseAts)), kErrAtsDisabled);
  EXPECT_EQ(ErrorOf(Run(*d, kOpCopy, kRamSize - 8, 0x1000, 16)), kErrMemory);
  SetConfig16(*d, pci::kCommand, pci::kCommandMemory);
  EXPECT_EQ(ErrorOf(Run(*d, kOpCopy, 0, 0x1000, 16)), kErrBusMaster);
  // Error bits are RW1C and clear the error code with them.
  d->WriteReg(kRegStatus, kStatusError);
  EXPECT_EQ(d->ReadReg(kRegStatus) & (kStatusError | 0xff00), 0u);
}

TEST_F(DmaTestDeviceTest, RegisterMasksAndPartialAccesses) {
  auto d = MakeDevice(*identity_);
  d->WriteReg(kRegId, 0);
  EXPECT_EQ(d->ReadReg(kRegId), kIdValue);
  d->WriteReg(kRegCtrl, ~0ull);
  EXPECT_EQ(d->ReadReg(kRegCtrl), kCtrlMask);
  d->WriteReg(kRegPasid, ~0ull);
  EXPECT_EQ(d->ReadReg(kRegPasid), kPasidRegMask);
  const uint8_t hi[4] = {0x11, 0x22, 0x33, 0x44};
  d->bar(0)->IoWrite(kRegSrc + 4, hi, 4);
  EXPECT_EQ(d->ReadReg(kRegSrc) >> 32, 0x44332211u);
  uint8_t out[4] = {};
  d->bar(0)->IoRead(kRegSrc + 4, out, 4);
  EXPECT_EQ(out[3], 0x44);
  d->bar(0)->IoRead(0x7f8, out, 4);  // unimplemented
  EXPECT_EQ(out[0], 0);
}

TEST_F(DmaTestDeviceTest, FaultWithoutPriEndsJobWithFaultInfo) {
  auto d = MakeDevice(*fake_);
  fake_->Map(0x5000, 0x5000, kDmaRead);
  const uint64_t st = Run(*d, kOpCopy, 0x5000, 0x9000, 64);
  EXPECT_EQ(ErrorOf(st), kErrTranslation);
  EXPECT_EQ(d->ReadReg(kRegFaultAddr), 0x9000u);
  const uint64_t info = d->ReadReg(kRegFaultInfo);
  EXPECT_EQ(info & 0xff, 0x71u);
  EXPECT_EQ((info >> kFaultKindShift) & 0xf, static_cast<uint32_t>(DmaFaultKind::kNotPresent) + 1);
  EXPECT_TRUE(info & kFaultRecorded);
  EXPECT_TRUE(fake_->requests().empty());
}

TEST_F(DmaTestDeviceTest, PageRequestResolvesFaultAndJobCompletes) {
  auto d = MakeDevice(*fake_);
  SetConfig16(*d, d->cap_offsets().pasid + pasid::kControl, pasid::kControlEnable);
  EnablePri(*d);
  Fill(0x105000, 0x5a, 0x1000);  // the fake maps iova X to X + 1 MiB on a page request
  const uint64_t st = Run(*d, kOpCopy, 0x5000, 0x9000, 0x1000, 0, kPasidValid | 7);
  EXPECT_EQ(st & (kStatusDone | kStatusError), kStatusDone) << ErrorOf(st);
  EXPECT_EQ(Bytes(0x109000, 0x1000), std::vector<uint8_t>(0x1000, 0x5a));
  auto reqs = fake_->requests();
  ASSERT_EQ(reqs.size(), 2u);
  EXPECT_EQ(reqs[0].addr, 0x5000u);
  EXPECT_EQ(reqs[0].access, kDmaRead);
  EXPECT_EQ(reqs[0].pasid, 7u);
  EXPECT_EQ(reqs[0].rid, kRid);
  EXPECT_TRUE(reqs[0].last);
  EXPECT_EQ(reqs[1].addr, 0x9000u);
  EXPECT_EQ(reqs[1].access, kDmaWrite);
  EXPECT_NE(reqs[0].group_index, reqs[1].group_index);
  EXPECT_EQ(d->ReadReg(kRegPageRequests), 2u);
}

TEST_F(DmaTestDeviceTest, PageResponseCodesEndJob) {
  auto d = MakeDevice(*fake_);
  EnablePri(*d);
  fake_->set_policy(FakeDmaSpace::Policy::kInvalid);
  uint64_t st = Run(*d, kOpFill, 0, 0x3000, 8);
  EXPECT_EQ(ErrorOf(st), kErrPageInvalid);
  EXPECT_EQ((d->ReadReg(kRegFaultInfo) >> kFaultResponseShift) & 0xf, 1u);

  fake_->set_policy(FakeDmaSpace::Policy::kSucceedWithoutMapping);
  st = Run(*d, kOpFill, 0, 0x3000, 8);
  EXPECT_EQ(ErrorOf(st), kErrRetryExhausted);
  EXPECT_EQ(fake_->requests().size(), 1u + DmaTestDeviceOptions{}.max_retries_per_page);

  fake_->set_policy(FakeDmaSpace::Policy::kRefuse);
  EXPECT_EQ(ErrorOf(Run(*d, kOpFill, 0, 0x3000, 8)), kErrPriUnavailable);

  fake_->set_policy(FakeDmaSpace::Policy::kFailure);
  EXPECT_EQ(ErrorOf(Run(*d, kOpFill, 0, 0x3000, 8)), kErrPageFailure);
  const uint16_t st_off = d->cap_offsets().pri + pri::kStatus;
  EXPECT_TRUE(Config(*d, st_off, 2) & pri::kStatusResponseFailure);
  const size_t sent = fake_->requests().size();
  EXPECT_EQ(ErrorOf(Run(*d, kOpFill, 0, 0x3000, 8)), kErrPriUnavailable) << "RF stops PRI";
  EXPECT_EQ(fake_->requests().size(), sent);
  SetConfig16(*d, st_off, pri::kStatusResponseFailure);  // RW1C
  EXPECT_FALSE(Config(*d, st_off, 2) & pri::kStatusResponseFailure);
}

TEST_F(DmaTestDeviceTest, NoPriFlagAndZeroAllocationPreventRequests) {
  auto d = MakeDevice(*fake_);
  EnablePri(*d, 0);
  EXPECT_EQ(ErrorOf(Run(*d, kOpFill, 0, 0x3000, 8)), kErrPriUnavailable);
  EnablePri(*d, 4);
  EXPECT_EQ(ErrorOf(Run(*d, kOpFill, 0, 0x3000, 8, kCtrlNoPri)), kErrTranslation);
  EXPECT_TRUE(fake_->requests().empty());
}

TEST_F(DmaTestDeviceTest, PageResponseWaitIsBoundedAndAbortable) {
  DmaTestDeviceOptions o;
  o.page_response_timeout = absl::Milliseconds(50);
  auto d = MakeDevice(*fake_, o);
  EnablePri(*d);
  fake_->set_policy(FakeDmaSpace::Policy::kNoResponse);
  EXPECT_EQ(ErrorOf(Run(*d, kOpFill, 0, 0x3000, 8)), kErrPageTimeout);

  DmaTestDeviceOptions slow;
  slow.page_response_timeout = absl::Seconds(60);
  auto d2 = MakeDevice(*fake_, slow);
  EnablePri(*d2);
  d2->WriteReg(kRegDst, 0x3000);
  d2->WriteReg(kRegLen, 8);
  d2->WriteReg(kRegCtrl, kOpFill);
  d2->WriteReg(kRegDoorbell, kDoorbellStart);
  while (d2->ReadReg(kRegPageRequests) == 0) absl::SleepFor(absl::Milliseconds(1));
  EXPECT_TRUE(d2->ReadReg(kRegStatus) & kStatusBusy);
  const absl::Time start = absl::Now();
  d2->WriteReg(kRegDoorbell, kDoorbellAbort);
  ASSERT_TRUE(d2->WaitIdle(absl::Seconds(10)));
  EXPECT_LT(absl::Now() - start, absl::Seconds(10));
  EXPECT_EQ(ErrorOf(d2->ReadReg(kRegStatus)), kErrAborted);
}

TEST_F(DmaTestDeviceTest, UnexpectedResponseSetsUprgi) {
  DmaTestDeviceOptions o;
  o.page_response_timeout = absl::Milliseconds(50);
  auto d = MakeDevice(*fake_, o);
  EnablePri(*d);
  fake_->set_policy(FakeDmaSpace::Policy::kWrongGroup);
  EXPECT_EQ(ErrorOf(Run(*d, kOpFill, 0, 0x3000, 8)), kErrPageTimeout);
  EXPECT_TRUE(Config(*d, d->cap_offsets().pri + pri::kStatus, 2) & pri::kStatusUprgi);
}

TEST_F(DmaTestDeviceTest, AtsCachesTranslationsUntilInvalidated) {
  auto d = MakeDevice(*fake_);
  SetConfig16(*d, d->cap_offsets().ats + ats::kControl, ats::kControlEnable);
  fake_->Map(0x7000, 0x20000, kDmaRead | kDmaWrite);
  d->WriteReg(kRegPattern, 0x1111111111111111ull);
  EXPECT_EQ(Run(*d, kOpFill, 0, 0x7000, 16, kCtrlUseAts) & kStatusDone, kStatusDone);
  EXPECT_EQ(Bytes(0x20000, 1)[0], 0x11);
  EXPECT_EQ(fake_->ats_requests(), 1);

  // The IOMMU mapping changes; the device keeps using its ATC entry until invalidated (§10.3).
  fake_->Map(0x7000, 0x30000, kDmaRead | kDmaWrite);
  d->WriteReg(kRegPattern, 0x2222222222222222ull);
  Run(*d, kOpFill, 0, 0x7000, 16, kCtrlUseAts);
  EXPECT_EQ(Bytes(0x20000, 1)[0], 0x22);
  EXPECT_EQ(fake_->ats_requests(), 1);
  EXPECT_EQ(d->ReadReg(kRegAtcHits), 1u);

  d->OnDeviceTlbInvalidate(3, 0x7000, 0x1000);  // other PASID: no effect
  Run(*d, kOpFill, 0, 0x7000, 16, kCtrlUseAts);
  EXPECT_EQ(fake_->ats_requests(), 1);
  d->OnDeviceTlbInvalidate(std::nullopt, 0x7000, 0x1000);
  d->WriteReg(kRegPattern, 0x3333333333333333ull);
  Run(*d, kOpFill, 0, 0x7000, 16, kCtrlUseAts);
  EXPECT_EQ(fake_->ats_requests(), 2);
  EXPECT_EQ(Bytes(0x30000, 1)[0], 0x33);
  EXPECT_EQ(Bytes(0x20000, 1)[0], 0x22);
  EXPECT_EQ(d->ReadReg(kRegAtcInvalidations), 2u);

  // Disabling ATS (or ATC_CTRL) drops the ATC.
  d->WriteReg(kRegAtcCtrl, 1);
  EXPECT_EQ(d->atc().size(), 0u);
}

TEST_F(DmaTestDeviceTest, AtsWithoutTranslationUsesPri) {
  auto d = MakeDevice(*fake_);
  SetConfig16(*d, d->cap_offsets().ats + ats::kControl, ats::kControlEnable);
  EnablePri(*d);
  Fill(0x104000, 0x66, 16);
  EXPECT_EQ(Run(*d, kOpCopy, 0x4000, 0x4000, 16, kCtrlUseAts) & kStatusDone, kStatusDone);
  EXPECT_EQ(Bytes(0x104000, 16), std::vector<uint8_t>(16, 0x66));
  EXPECT_EQ(fake_->requests().size(), 1u) << "one page request makes the page RW for both accesses";
  EXPECT_TRUE(d->ReadReg(kRegFaultInfo) == 0);
}

TEST_F(DmaTestDeviceTest, PageRequestGroupCoversMissingPagesUpToAllocation) {
  auto d = MakeDevice(*fake_);
  SetConfig16(*d, d->cap_offsets().ats + ats::kControl, ats::kControlEnable);
  EnablePri(*d, 8);
  fake_->Map(0x22000, 0x122000, kDmaRead | kDmaWrite);  // present: not requested
  const uint64_t st = Run(*d, kOpFill, 0, 0x20000, 12 * 0x1000 + 8);
  ASSERT_EQ(st & (kStatusDone | kStatusError), kStatusDone) << int{ErrorOf(st)};
  auto reqs = fake_->requests();
  // PCIe 6.0 §10.5.2.5: at most the allocation (8) outstanding; one group per wait (§10.4.1).
  ASSERT_EQ(reqs.size(), 12u);
  for (size_t i = 0; i < 8; ++i) {
    EXPECT_EQ(reqs[i].group_index, reqs[0].group_index);
    EXPECT_EQ(reqs[i].last, i == 7);
    EXPECT_EQ(reqs[i].access, kDmaWrite);
  }
  EXPECT_EQ(reqs[0].addr, 0x20000u);
  EXPECT_EQ(reqs[1].addr, 0x21000u);
  EXPECT_EQ(reqs[2].addr, 0x23000u) << "skips the present page";
  EXPECT_EQ(reqs[7].addr, 0x28000u);
  EXPECT_EQ(reqs[8].addr, 0x29000u);
  EXPECT_NE(reqs[8].group_index, reqs[0].group_index);
  EXPECT_TRUE(reqs[11].last);
  EXPECT_EQ(reqs[11].addr, 0x2c000u);
  EXPECT_EQ(d->ReadReg(kRegPageRequests), 12u);
  EXPECT_EQ(Bytes(0x12c000, 8), std::vector<uint8_t>(8, 0));
}

TEST_F(DmaTestDeviceTest, UnresolvedSuccessRetriesWithHalvedGroupsAfterBackoff) {
  auto d = MakeDevice(*fake_);
  SetConfig16(*d, d->cap_offsets().ats + ats::kControl, ats::kControlEnable);
  EnablePri(*d, 16);
  fake_->set_unmapped_successes(2);  // two groups "lost" (answered Success, nothing mapped)
  const absl::Time start = absl::Now();
  const uint64_t st = Run(*d, kOpFill, 0, 0x40000, 16 * 0x1000, 0);
  ASSERT_EQ(st & (kStatusDone | kStatusError), kStatusDone) << int{ErrorOf(st)};
  EXPECT_GE(absl::Now() - start, absl::Milliseconds(3)) << "backoff 1 ms + 2 ms before the retries";
  auto reqs = fake_->requests();
  // Groups: 16 (lost), 8 (lost), 4, then the rest page by page is not needed: after the third
  // group the remaining 12 pages go out as one group again (fresh page, fresh budget).
  ASSERT_GE(reqs.size(), 16u + 8u + 4u);
  EXPECT_TRUE(reqs[15].last);
  EXPECT_TRUE(reqs[23].last);
  EXPECT_TRUE(reqs[27].last);
  EXPECT_EQ(reqs[16].addr, 0x40000u);
  EXPECT_EQ(reqs[24].addr, 0x40000u);
  for (uint64_t p = 0; p < 16; ++p) EXPECT_EQ(Bytes(0x140000 + p * 0x1000, 8), std::vector<uint8_t>(8, 0));
}

TEST_F(DmaTestDeviceTest, MalformedAtsCompletionIsRejected) {
  auto d = MakeDevice(*fake_);
  SetConfig16(*d, d->cap_offsets().ats + ats::kControl, ats::kControlEnable);
  fake_->Map(0x7000, 0x20000, kDmaRead | kDmaWrite);
  fake_->set_bad_completion(true);
  EXPECT_EQ(ErrorOf(Run(*d, kOpFill, 0, 0x7000, 16, kCtrlUseAts)), kErrBadCompletion);
  EXPECT_EQ(d->atc().size(), 0u);
}

TEST_F(DmaTestDeviceTest, CompletionInterruptThroughMsix) {
  auto d = MakeDevice(*identity_);
  // MSI-X entry 2: address, data, unmasked; then enable MSI-X.
  const uint32_t entry[4] = {0xfee00000, 0, 0x4242, 0};
  d->msix()->table().IoWrite(2 * 16, reinterpret_cast<const uint8_t*>(entry), 16);
  SetConfig16(*d, d->msix()->offset() + PciMsix::kControl, PciMsix::kControlEnable);
  Run(*d, kOpFill, 0, 0x1000, 8, kCtrlIrq | (2u << kCtrlVectorShift));
  Run(*d, kOpFill, 0, 0x1000, 8);  // no IRQ requested
  Run(*d, 9, 0, 0x1000, 8, kCtrlIrq | (2u << kCtrlVectorShift));  // errors interrupt too
  auto msis = msi_.msis();
  ASSERT_EQ(msis.size(), 2u);
  EXPECT_EQ(msis[0].data, 0x4242u);
  EXPECT_EQ(msis[0].requester_id, kRid);
  EXPECT_EQ(d->ReadReg(kRegIrqCount), 2u);
}

TEST_F(DmaTestDeviceTest, SynchronousModeRunsOnDoorbellThread) {
  DmaTestDeviceOptions o;
  o.synchronous = true;
  auto d = MakeDevice(*identity_, o);
  Fill(0x2000, 0x77, 32);
  d->WriteReg(kRegSrc, 0x2000);
  d->WriteReg(kRegDst, 0x3000);
  d->WriteReg(kRegLen, 32);
  d->WriteReg(kRegCtrl, kOpCopy);
  d->WriteReg(kRegDoorbell, kDoorbellStart);
  EXPECT_EQ(d->ReadReg(kRegStatus) & (kStatusBusy | kStatusDone), kStatusDone);
  EXPECT_EQ(Bytes(0x3000, 32), std::vector<uint8_t>(32, 0x77));
}

// ---- Function Level Reset (PCIe 6.0 §6.6.2) -------------------------------------------------

TEST_F(DmaTestDeviceTest, FlrAdvertisedAndInitiateBitReadsZero) {
  auto d = MakeDevice(*identity_);
  const uint16_t pcie_off = d->cap_offsets().pcie;
  ASSERT_EQ(d->config().FindCapability(pci::kCapIdPcie), std::optional<uint16_t>(pcie_off));
  // pcie_flr (Linux 6.12) requires DEVCAP.FLR and waits for DEVSTA.TransPend to clear.
  EXPECT_TRUE(Config(*d, pcie_off + pcie::kDevCap, 4) & pcie::kDevCapFlr);
  EXPECT_EQ(Config(*d, pcie_off + pcie::kDevSta, 2) & pcie::kDevStaTransactionsPending, 0u);
  d->WriteReg(kRegPattern, 0x1234);
  InitiateFlr(*d);
  EXPECT_EQ(Config(*d, pcie_off + pcie::kDevCtl, 2), pcie::kDevCtlResetValue) << "Initiate FLR reads 0";
  EXPECT_EQ(d->ReadReg(kRegPattern), 0u);
  EXPECT_EQ(Config(*d, pci::kCommand, 2), 0u);
  // pci_dev_wait polls until the function answers config reads again: it never stops answering.
  EXPECT_EQ(Config(*d, pci::kVendorId, 2), kVendorId);

  // Without the capability the bit is read-only 0 and nothing is reset.
  DmaTestDeviceOptions o;
  o.caps.flr = false;
  auto n = MakeDevice(*identity_, o);
  EXPECT_FALSE(Config(*n, n->cap_offsets().pcie + pcie::kDevCap, 4) & pcie::kDevCapFlr);
  n->WriteReg(kRegPattern, 0x1234);
  InitiateFlr(*n);
  EXPECT_EQ(Config(*n, n->cap_offsets().pcie + pcie::kDevCtl, 2) & pcie::kDevCtlInitiateFlr, 0u);
  EXPECT_EQ(n->ReadReg(kRegPattern), 0x1234u);
  EXPECT_TRUE(n->bus_master_enabled());
}

TEST_F(DmaTestDeviceTest, FlrRestoresPowerOnRegistersCapabilitiesAndHeader) {
  DmaTestDevice fresh("fresh");  // never touched: the power-on state
  ASSERT_TRUE(fresh.init_status().ok());
  auto d = MakeDevice(*fake_);
  const CapOffsets caps = d->cap_offsets();
  // Header: BARs assigned and decoding, bus mastering, SERR, cache line, interrupt line, an error bit.
  SetConfig32(*d, pci::kBar0, 0xE0000000);
  SetConfig32(*d, pci::kBar0 + 8, 0xE0010000);
  SetConfig16(*d, pci::kCommand, pci::kCommandMemory | pci::kCommandBusMaster | pci::kCommandSerr);
  uint8_t byte = 0x10;
  d->ConfigWrite(pci::kCacheLineSize, &byte, 1);
  byte = 0x0B;
  d->ConfigWrite(pci::kInterruptLine, &byte, 1);
  d->config().UpdateBits(pci::kStatus, 2, 0x8000, 0);
  ASSERT_EQ(d->BarMappedAt(0), std::optional<uint64_t>(0xE0000000));
  ASSERT_EQ(d->BarMappedAt(2), std::optional<uint64_t>(0xE0010000));
  // PCI Express: error reporting + extended tags, completion timeout disable, an error detected.
  SetConfig16(*d, caps.pcie + pcie::kDevCtl, pcie::kDevCtlResetValue | 0x000F | 1u << 8);
  SetConfig16(*d, caps.pcie + pcie::kDevCtl2, 1u << 4);
  d->config().UpdateBits(caps.pcie + pcie::kDevSta, 2, 0x1, 0);
  // ATS (STU 1), PASID with exec/priv, PRI with an allocation.
  SetConfig16(*d, caps.ats + ats::kControl, ats::kControlEnable | 1);
  SetConfig16(*d, caps.pasid + pasid::kControl, pasid::kControlEnable | pasid::kControlExec | pasid::kControlPriv);
  EnablePri(*d, 8);
  // MSI-X vector 1 programmed and unmasked (through the mapped BAR2), MSI-X enabled.
  const uint32_t entry[4] = {0xfee00000, 0, 0x4242, 0};
  ASSERT_TRUE(mmio_.Write(0xE0010000 + 16, reinterpret_cast<const uint8_t*>(entry), 16));
  SetConfig16(*d, d->msix()->offset() + PciMsix::kControl, PciMsix::kControlEnable);
  // Jobs: a translated fill (ATC filled), a page request, an interrupt, a read into SRAM, a fault.
  fake_->Map(0x7000, 0x20000, kDmaRead | kDmaWrite);
  d->WriteReg(kRegPattern, 0x1111111111111111ull);
  ASSERT_EQ(Run(*d, kOpFill, 0, 0x7000, 16, kCtrlUseAts | kCtrlIrq | (1u << kCtrlVectorShift)) & kStatusDone,
            kStatusDone);
  ASSERT_GT(d->atc().size(), 0u);
  ASSERT_EQ(msi_.msis().size(), 1u);
  Fill(0x109000, 0x5a, 64);  // the fake maps 0x9000 to 0x109000 on the page request
  ASSERT_EQ(Run(*d, kOpRead, 0x9000, 0, 64) & kStatusDone, kStatusDone);
  ASSERT_EQ(Sram(*d)[0], 0x5a);
  ASSERT_EQ(ErrorOf(Run(*d, kOpCopy, 0x7000, 0x50000, 64, kCtrlNoPri)), kErrTranslation);
  d->OnPageResponse(PageResponse{kRid, std::nullopt, 0x1ff, PageResponseCode::kSuccess});  // sets UPRGI
  ASSERT_TRUE(Config(*d, caps.pri + pri::kStatus, 2) & pri::kStatusUprgi);
  const uint8_t sram[4] = {1, 2, 3, 4};
  d->bar(0)->IoWrite(kSramOffset + 0x100, sram, 4);
  d->WriteReg(kRegSrc, 0x1000);
  d->WriteReg(kRegDst, 0x2000);
  d->WriteReg(kRegLen, 0x3000);
  d->WriteReg(kRegPasid, kPasidValid | 5);
  d->WriteReg(kRegCtrl, kOpCopy | kCtrlIrq);
  ASSERT_NE(Registers(*d), Registers(fresh));
  ASSERT_NE(ConfigSpace(*d), ConfigSpace(fresh));

  InitiateFlr(*d);

  // Everything the guest can read is as at power-on: config space byte for byte (Command 0, BARs
  // unassigned, DEVCTL/DEVCTL2/DEVSTA, ATS/PASID/PRI control 0, PRI Stopped, MSI-X disabled), BAR0
  // registers (counters too) and SRAM.
  const std::vector<uint8_t> cfg = ConfigSpace(*d), want = ConfigSpace(fresh);
  for (size_t i = 0; i < cfg.size(); ++i) EXPECT_EQ(cfg[i], want[i]) << "config byte " << std::hex << i;
  EXPECT_EQ(Registers(*d), Registers(fresh));
  EXPECT_EQ(Sram(*d), std::vector<uint8_t>(kSramSize, 0));
  EXPECT_TRUE(Config(*d, caps.pri + pri::kStatus, 2) & pri::kStatusStopped);
  // Nothing decodes, the ATC is empty, MSI-X entries are masked with a zero message.
  EXPECT_FALSE(d->BarMappedAt(0).has_value());
  EXPECT_FALSE(d->BarMappedAt(2).has_value());
  uint8_t b;
  EXPECT_FALSE(mmio_.Read(0xE0000000, &b, 1));
  EXPECT_EQ(d->atc().size(), 0u);
  for (unsigned v = 0; v < kNumVectors; ++v) {
    uint8_t e[16];
    d->msix()->table().IoRead(v * 16, e, 16);
    for (unsigned i = 0; i < 16; ++i)
      EXPECT_EQ(e[i], i == 12 ? PciMsix::kEntryVectorControlMasked : 0u) << "vector " << v << " byte " << i;
  }
  EXPECT_FALSE(d->msix()->IsPending(1));

  // Restored like pci_restore_state, the function works again and counts jobs from 0.
  SetConfig32(*d, pci::kBar0, 0xE0000000);
  SetConfig16(*d, pci::kCommand, pci::kCommandMemory | pci::kCommandBusMaster);
  EXPECT_EQ(d->BarMappedAt(0), std::optional<uint64_t>(0xE0000000));
  fake_->Map(0x8000, 0x30000, kDmaRead | kDmaWrite);
  d->WriteReg(kRegPattern, 0x2222222222222222ull);
  const uint64_t st = Run(*d, kOpFill, 0, 0x8000, 8);
  EXPECT_EQ(st & (kStatusDone | kStatusError), kStatusDone) << int{ErrorOf(st)};
  EXPECT_EQ((st >> kStatusJobsShift) & 0xffffffff, 1u);
  EXPECT_EQ(Bytes(0x30000, 8), std::vector<uint8_t>(8, 0x22));
}

TEST_F(DmaTestDeviceTest, FlrDuringLongJobStopsItsDma) {
  auto d = MakeDevice(*fake_);
  constexpr uint64_t kLen = 1 << 20, kDst = 0x100000;
  for (uint64_t p = 0; p < kLen; p += 0x1000) fake_->Map(kDst + p, kDst + p, kDmaRead | kDmaWrite);
  const uint32_t entry[4] = {0xfee00000, 0, 0x4242, 0};
  d->msix()->table().IoWrite(0, reinterpret_cast<const uint8_t*>(entry), 16);
  SetConfig16(*d, d->msix()->offset() + PciMsix::kControl, PciMsix::kControlEnable);
  fake_->set_translate_delay(absl::Milliseconds(2));  // 256 pages: > 0.5 s
  d->WriteReg(kRegPattern, 0xababababababababull);
  d->WriteReg(kRegDst, kDst);
  d->WriteReg(kRegLen, kLen);
  d->WriteReg(kRegCtrl, kOpFill | kCtrlIrq);
  d->WriteReg(kRegDoorbell, kDoorbellStart);
  while (d->ReadReg(kRegBytesDone) < 0x4000) absl::SleepFor(absl::Milliseconds(1));
  ASSERT_TRUE(d->ReadReg(kRegStatus) & kStatusBusy);

  const absl::Time start = absl::Now();
  InitiateFlr(*d);
  const absl::Duration flr_time = absl::Now() - start;
  const std::vector<uint8_t> after_flr = Bytes(kDst, kLen);
  const int translations = fake_->translations();

  EXPECT_LT(flr_time, absl::Milliseconds(500)) << "the vCPU is not held for the rest of the job";
  EXPECT_TRUE(d->WaitIdle(absl::Milliseconds(1)));
  EXPECT_EQ(d->ReadReg(kRegStatus), 0u) << "the aborted job leaves no status";
  EXPECT_EQ(d->ReadReg(kRegBytesDone), 0u);
  absl::SleepFor(absl::Milliseconds(50));  // the job would have written ~25 more pages by now
  EXPECT_EQ(Bytes(kDst, kLen), after_flr) << "no DMA after the FLR";
  EXPECT_EQ(fake_->translations(), translations) << "no request after the FLR";
  EXPECT_EQ(after_flr[kLen - 1], 0) << "the job was cut short";
  EXPECT_EQ(after_flr[0], 0xab);
  EXPECT_TRUE(msi_.msis().empty()) << "no completion interrupt";
  EXPECT_EQ(d->ReadReg(kRegStatus), 0u);
}

TEST_F(DmaTestDeviceTest, FlrCancelsPageRequestWait) {
  DmaTestDeviceOptions o;
  o.page_response_timeout = absl::Seconds(60);
  auto d = MakeDevice(*fake_, o);
  EnablePri(*d);
  fake_->set_policy(FakeDmaSpace::Policy::kNoResponse);
  d->WriteReg(kRegDst, 0x3000);
  d->WriteReg(kRegLen, 8);
  d->WriteReg(kRegCtrl, kOpFill);
  d->WriteReg(kRegDoorbell, kDoorbellStart);
  while (d->ReadReg(kRegPageRequests) == 0) absl::SleepFor(absl::Milliseconds(1));
  const uint16_t pri_status = d->cap_offsets().pri + pri::kStatus;
  EXPECT_FALSE(Config(*d, pri_status, 2) & pri::kStatusStopped);
  const absl::Time start = absl::Now();
  InitiateFlr(*d);
  EXPECT_LT(absl::Now() - start, absl::Milliseconds(500));
  EXPECT_TRUE(d->WaitIdle(absl::Milliseconds(1)));
  EXPECT_EQ(Config(*d, d->cap_offsets().pri + pri::kControl, 2), 0u);
  EXPECT_EQ(Config(*d, d->cap_offsets().pri + pri::kAllocation, 4), 0u);
  EXPECT_EQ(Config(*d, pri_status, 2), pri::kStatusStopped | pri::kStatusPrgResponsePasidRequired);
  EXPECT_EQ(d->ReadReg(kRegStatus), 0u);
  EXPECT_EQ(d->ReadReg(kRegPageRequests), 0u);
  EXPECT_EQ(fake_->requests().size(), 1u);
}

TEST_F(DmaTestDeviceTest, FlrRacingWithJobsAndDoorbells) {
  auto d = MakeDevice(*identity_);
  std::atomic<bool> stop{false};
  std::thread guest([&] {
    while (!stop.load()) {
      SetConfig16(*d, pci::kCommand, pci::kCommandMemory | pci::kCommandBusMaster);
      d->WriteReg(kRegDst, 0x200000);
      d->WriteReg(kRegLen, 64 << 10);
      d->WriteReg(kRegCtrl, kOpFill | kCtrlIrq);
      d->WriteReg(kRegDoorbell, kDoorbellStart);
      std::this_thread::yield();
    }
  });
  for (int i = 0; i < 50; ++i) {
    InitiateFlr(*d);
    absl::SleepFor(absl::Microseconds(200));
  }
  stop = true;
  guest.join();
  InitiateFlr(*d);
  EXPECT_TRUE(d->WaitIdle(absl::Seconds(1)));
  EXPECT_EQ(Registers(*d)[kRegStatus / 8], 0u);
  SetConfig16(*d, pci::kCommand, pci::kCommandBusMaster);
  EXPECT_EQ(Run(*d, kOpFill, 0, 0x300000, 16) & (kStatusDone | kStatusError), kStatusDone);
}

}  // namespace
}  // namespace ionest
