#include "devices/testdev/epf_test_device.h"

#include <cstring>
#include <set>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "devices/pci_msi.h"
#include "devices/pci_msix.h"
#include "devices/pci_regs.h"
#include "devices/testdev/epf_test_crc32.h"
#include "gtest/gtest.h"
#include "vmm/guest_memory.h"

namespace ionest {
namespace {

using namespace epf;

constexpr uint64_t kRamSize = 4 << 20;
constexpr uint16_t kRid = 0x0010;

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

// Identity translation for the pages in `mapped` only; other pages fault with reason 0x06
// (VT-d "not present"-style code; any non-zero value works for the device).
class PageSetDmaSpace final : public DmaSpace {
 public:
  using DmaSpace::DmaSpace;
  void Map(uint64_t iova) { mapped_.insert(iova >> 12); }
  Translation Translate(uint64_t iova, uint64_t len, uint32_t access, const DmaAttrs& attrs) override {
    Translation t;
    if (!mapped_.count(iova >> 12)) {
      t.fault = DmaFault{DmaFaultKind::kNotPresent, iova, access, attrs.pasid, 0x06, true};
      return t;
    }
    const uint64_t n = std::min<uint64_t>(len, 0x1000 - (iova & 0xfff));
    t.regions.push_back({iova, iova, n, kDmaRead | kDmaWrite});
    return t;
  }

 private:
  std::set<uint64_t> mapped_;
};

uint32_t LinuxCrc(const uint8_t* p, size_t n) { return Crc32Le(~0u, p, n); }

TEST(EpfCrc32Test, MatchesLinuxCrc32Le) {
  // crc32_le(~0, "123456789") = ~0xCBF43926 (the CRC-32/ISO-HDLC check value before the final xor).
  const char* s = "123456789";
  EXPECT_EQ(LinuxCrc(reinterpret_cast<const uint8_t*>(s), 9), 0x340BC6D9u);
  EXPECT_EQ(Crc32Le(0, nullptr, 0), 0u);
}

class EpfTestDeviceTest : public ::testing::TestWithParam<bool> {
 protected:
  void SetUp() override {
    auto m = GuestMemory::Create({{0, kRamSize}});
    ASSERT_TRUE(m.ok());
    memory_ = *std::move(m);
    space_ = std::make_unique<PageSetDmaSpace>(*memory_);
    EpfTestDeviceOptions o;
    o.synchronous = GetParam();
    o.max_transfer = 1 << 20;
    dev_ = std::make_unique<EpfTestDevice>("epf", o);
    ASSERT_TRUE(dev_->init_status().ok()) << dev_->init_status();
    dev_->Attach(PciAttachment{kRid, &msi_, space_.get(), &mmio_, &pio_});
    SetConfig16(pci::kCommand, pci::kCommandMemory | pci::kCommandBusMaster);
  }
  void SetConfig16(uint16_t off, uint16_t v) { dev_->ConfigWrite(off, reinterpret_cast<uint8_t*>(&v), 2); }
  void SetConfig32(uint16_t off, uint32_t v) { dev_->ConfigWrite(off, reinterpret_cast<uint8_t*>(&v), 4); }
  void EnableMsi() {
    const uint16_t cap = dev_->msi()->offset();
    SetConfig32(cap + PciMsi::kAddressLo, 0xfee00000);
    SetConfig32(cap + PciMsi::kAddressHi, 0);
    SetConfig16(cap + PciMsi::kData, 0x40);
    // Enable with Multiple Message Enable = 32 vectors (log2 = 5).
    SetConfig16(cap + PciMsi::kControl, PciMsi::kControlEnable | (5u << PciMsi::kControlMmeShift));
  }
  void MapRange(uint64_t addr, uint64_t len) {
    for (uint64_t p = addr & ~0xfffull; p < addr + len; p += 0x1000) space_->Map(p);
  }
  uint32_t Run(uint32_t command, uint64_t src, uint64_t dst, uint32_t size, uint32_t checksum = 0) {
    dev_->WriteReg32(kRegSrcLo, static_cast<uint32_t>(src));
    dev_->WriteReg32(kRegSrcHi, static_cast<uint32_t>(src >> 32));
    dev_->WriteReg32(kRegDstLo, static_cast<uint32_t>(dst));
    dev_->WriteReg32(kRegDstHi, static_cast<uint32_t>(dst >> 32));
    dev_->WriteReg32(kRegSize, size);
    dev_->WriteReg32(kRegChecksum, checksum);
    dev_->WriteReg32(kRegIrqType, kIrqTypeMsi);
    dev_->WriteReg32(kRegIrqNumber, 1);
    dev_->WriteReg32(kRegCommand, command);
    EXPECT_TRUE(dev_->WaitIdle(absl::Seconds(10)));
    EXPECT_EQ(dev_->ReadReg32(kRegCommand), 0u);  // taken
    return dev_->ReadReg32(kRegStatus);
  }
  std::vector<uint8_t> Bytes(uint64_t addr, size_t n) {
    std::vector<uint8_t> v(n);
    EXPECT_TRUE(memory_->Read(addr, v.data(), n).ok());
    return v;
  }

  std::unique_ptr<GuestMemory> memory_;
  std::unique_ptr<PageSetDmaSpace> space_;
  RecordingMsiSink msi_;
  IoBus mmio_{"mmio"}, pio_{"pio"};
  std::unique_ptr<EpfTestDevice> dev_;
};

TEST_P(EpfTestDeviceTest, IdentityBarsAndCapabilities) {
  uint8_t id[4];
  dev_->ConfigRead(0, id, 4);
  EXPECT_EQ(id[0] | id[1] << 8, kVendorId);
  EXPECT_EQ(id[2] | id[3] << 8, kDeviceId);
  for (unsigned i = 0; i < 6; ++i) {
    ASSERT_NE(dev_->bar(i), nullptr) << i;
    EXPECT_EQ(dev_->bar(i)->size(), kBarSizes[i]);
  }
  ASSERT_NE(dev_->msi(), nullptr);
  ASSERT_NE(dev_->msix(), nullptr);
  // BAR test semantics: the driver writes a pattern to MAGIC (test register BAR) and to whole
  // other BARs and reads it back.
  dev_->WriteReg32(kRegMagic, 0xA0A0A0A0);
  EXPECT_EQ(dev_->ReadReg32(kRegMagic), 0xA0A0A0A0u);
  for (unsigned i = 1; i < 6; ++i) {
    const uint64_t v = 0xA1A1A1A1A1A1A1A1ull + i;
    dev_->bar(i)->IoWrite(kBarSizes[i] - 8, reinterpret_cast<const uint8_t*>(&v), 8);
    uint64_t r = 0;
    dev_->bar(i)->IoRead(kBarSizes[i] - 8, reinterpret_cast<uint8_t*>(&r), 8);
    EXPECT_EQ(r, v) << "BAR" << i;
  }
}

TEST_P(EpfTestDeviceTest, ReadCommandChecksHostChecksumAndRaisesMsi) {
  EnableMsi();
  std::vector<uint8_t> data(3000);
  for (size_t i = 0; i < data.size(); ++i) data[i] = static_cast<uint8_t>(i * 7 + 1);
  const uint64_t src = 0x10800;  // crosses a page
  ASSERT_TRUE(memory_->Write(src, data.data(), data.size()).ok());
  MapRange(src, data.size());
  EXPECT_EQ(Run(kCmdRead, src, 0, data.size(), LinuxCrc(data.data(), data.size())),
            kStatusReadSuccess | kStatusIrqRaised);
  ASSERT_EQ(msi_.msis().size(), 1u);
  EXPECT_EQ(msi_.msis()[0].data, 0x40u);  // vector irq_number - 1 = 0
  EXPECT_EQ(msi_.msis()[0].requester_id, kRid);
  // Wrong checksum: READ_FAIL, still an interrupt.
  EXPECT_EQ(Run(kCmdRead, src, 0, data.size(), 0x1234), kStatusReadFail | kStatusIrqRaised);
  EXPECT_EQ(msi_.msis().size(), 2u);
}

TEST_P(EpfTestDeviceTest, WriteCommandFillsDstAndReportsItsChecksum) {
  const uint64_t dst = 0x20000;
  MapRange(dst, 5000);
  EXPECT_EQ(Run(kCmdWrite, 0, dst, 5000), kStatusWriteSuccess | kStatusIrqRaised);
  auto written = Bytes(dst, 5000);
  EXPECT_EQ(dev_->ReadReg32(kRegChecksum), LinuxCrc(written.data(), written.size()));
  EXPECT_NE(written, std::vector<uint8_t>(5000, 0));
}

TEST_P(EpfTestDeviceTest, CopyCommandCopies) {
  std::vector<uint8_t> data(6000);
  for (size_t i = 0; i < data.size(); ++i) data[i] = static_cast<uint8_t>(i ^ 0x5a);
  ASSERT_TRUE(memory_->Write(0x30100, data.data(), data.size()).ok());
  MapRange(0x30100, data.size());
  MapRange(0x50f00, data.size());
  EXPECT_EQ(Run(kCmdCopy, 0x30100, 0x50f00, data.size()), kStatusCopySuccess | kStatusIrqRaised);
  EXPECT_EQ(Bytes(0x50f00, data.size()), data);
}

TEST_P(EpfTestDeviceTest, FaultsSetAddrInvalidBits) {
  MapRange(0x30000, 0x1000);
  // DST page after the first is unmapped: the copy stops there.
  MapRange(0x60000, 0x1000);
  EXPECT_EQ(Run(kCmdCopy, 0x30000, 0x60000, 0x1000), kStatusCopySuccess | kStatusIrqRaised);
  EXPECT_EQ(Run(kCmdCopy, 0x30000, 0x60800, 0x1000), kStatusCopyFail | kStatusDstAddrInvalid | kStatusIrqRaised);
  EXPECT_EQ(dev_->stats().last_fault.iova, 0x61000u);
  EXPECT_EQ(dev_->stats().last_fault.reason, 0x06u);
  EXPECT_EQ(Run(kCmdCopy, 0x90000, 0x60000, 16), kStatusCopyFail | kStatusSrcAddrInvalid | kStatusIrqRaised);
  EXPECT_EQ(Run(kCmdRead, 0x90000, 0, 16), kStatusReadFail | kStatusSrcAddrInvalid | kStatusIrqRaised);
  EXPECT_EQ(Run(kCmdWrite, 0, 0x90000, 16), kStatusWriteFail | kStatusDstAddrInvalid | kStatusIrqRaised);
  EXPECT_EQ(dev_->stats().dma_faults, 4u);
}

TEST_P(EpfTestDeviceTest, HostileParametersFailWithoutDma) {
  MapRange(0, 0x1000);
  EXPECT_EQ(Run(kCmdWrite, 0, 0, 0), kStatusWriteFail | kStatusIrqRaised);                 // empty
  EXPECT_EQ(Run(kCmdWrite, 0, 0, (1 << 20) + 1), kStatusWriteFail | kStatusIrqRaised);     // > max_transfer
  EXPECT_EQ(Run(kCmdRead, ~0ull - 4, 0, 16), kStatusReadFail | kStatusIrqRaised);          // wraps
  EXPECT_EQ(Run(kCmdCopy, 0, ~0ull - 4, 16), kStatusCopyFail | kStatusIrqRaised);
  SetConfig16(pci::kCommand, pci::kCommandMemory);  // Bus Master Enable off: no DMA at all
  EXPECT_EQ(Run(kCmdWrite, 0, 0, 16), kStatusWriteFail | kStatusIrqRaised);
  EXPECT_EQ(dev_->stats().dma_faults, 0u);
  EXPECT_EQ(Bytes(0, 16), std::vector<uint8_t>(16, 0));
}

TEST_P(EpfTestDeviceTest, RaiseIrqCommandsHonourTypeAndNumber) {
  EnableMsi();
  dev_->WriteReg32(kRegIrqType, kIrqTypeMsi);
  dev_->WriteReg32(kRegIrqNumber, 3);
  dev_->WriteReg32(kRegCommand, kCmdRaiseMsi);
  ASSERT_TRUE(dev_->WaitIdle(absl::Seconds(10)));
  EXPECT_EQ(dev_->ReadReg32(kRegStatus), kStatusIrqRaised);
  ASSERT_EQ(msi_.msis().size(), 1u);
  EXPECT_EQ(msi_.msis()[0].data, 0x42u);  // vector 2
  // Number 0 or beyond the vectors: no interrupt.
  for (uint32_t bad : {0u, 33u, 0xffffffffu}) {
    dev_->WriteReg32(kRegIrqNumber, bad);
    dev_->WriteReg32(kRegCommand, kCmdRaiseMsi);
    ASSERT_TRUE(dev_->WaitIdle(absl::Seconds(10)));
  }
  // MSI-X type while only MSI is enabled: dropped.
  dev_->WriteReg32(kRegIrqType, kIrqTypeMsix);
  dev_->WriteReg32(kRegIrqNumber, 1);
  dev_->WriteReg32(kRegCommand, kCmdRaiseMsix);
  ASSERT_TRUE(dev_->WaitIdle(absl::Seconds(10)));
  EXPECT_EQ(msi_.msis().size(), 1u);
  EXPECT_EQ(dev_->stats().irqs_sent, 1u);
  EXPECT_EQ(dev_->stats().irqs_dropped, 4u);
}

TEST_P(EpfTestDeviceTest, MsixVectorsComeFromTheTable) {
  // MSI-X table entry 1 in BAR0 at kMsixTableOffset + 16: address, data, vector control (unmasked).
  const uint32_t entry[4] = {0xfee01000, 0, 0x77, 0};
  dev_->bar(0)->IoWrite(kMsixTableOffset + 16, reinterpret_cast<const uint8_t*>(entry), 16);
  const uint16_t cap = dev_->msix()->offset();
  SetConfig16(cap + 2, PciMsix::kControlEnable);
  dev_->WriteReg32(kRegIrqType, kIrqTypeMsix);
  dev_->WriteReg32(kRegIrqNumber, 2);
  dev_->WriteReg32(kRegCommand, kCmdRaiseMsix);
  ASSERT_TRUE(dev_->WaitIdle(absl::Seconds(10)));
  ASSERT_EQ(msi_.msis().size(), 1u);
  EXPECT_EQ(msi_.msis()[0].address, 0xfee01000u);
  EXPECT_EQ(msi_.msis()[0].data, 0x77u);
}

TEST_P(EpfTestDeviceTest, DestroyWhileCommandLatchedIsClean) {
  MapRange(0, 1 << 20);
  dev_->WriteReg32(kRegSize, 1 << 20);
  dev_->WriteReg32(kRegCommand, kCmdWrite);
  dev_.reset();  // joins the worker; must not hang or crash
}

INSTANTIATE_TEST_SUITE_P(WorkerAndSynchronous, EpfTestDeviceTest, ::testing::Bool());

}  // namespace
}  // namespace ionest
