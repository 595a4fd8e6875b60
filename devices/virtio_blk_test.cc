#include "devices/virtio_blk.h"

#include <fcntl.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "devices/device_test_util.h"
#include "devices/virtio_pci.h"
#include "devices/virtqueue_test_util.h"
#include "gtest/gtest.h"
#include "vmm/guest_memory.h"

namespace ionest {
namespace {

using namespace pci;
using testing::FakeDriverRing;
using testing::FakeMsiSink;

constexpr uint64_t kMemSize = 4 << 20;
constexpr uint64_t kRing = 0x10000;
constexpr uint64_t kBuf = 0x100000;
constexpr uint64_t kBar4 = 0x8000000000;
constexpr uint64_t kBar1 = 0xC0000000;
constexpr uint64_t kImageSectors = 64;

class TempImage {
 public:
  explicit TempImage(uint64_t bytes) {
    char tmpl[] = "/tmp/ionest-blk-XXXXXX";
    const int fd = mkstemp(tmpl);
    path = tmpl;
    std::vector<uint8_t> data(bytes);
    for (uint64_t i = 0; i < bytes; ++i) data[i] = static_cast<uint8_t>(i / 512 + i);
    EXPECT_EQ(write(fd, data.data(), bytes), static_cast<ssize_t>(bytes));
    close(fd);
  }
  ~TempImage() { unlink(path.c_str()); }
  std::vector<uint8_t> Read(uint64_t off, uint64_t len) const {
    std::vector<uint8_t> out(len);
    const int fd = open(path.c_str(), O_RDONLY);
    EXPECT_EQ(pread(fd, out.data(), len, off), static_cast<ssize_t>(len));
    close(fd);
    return out;
  }
  std::string path;
};

class VirtioBlkTest : public ::testing::Test {
 protected:
  void SetUp() override { Build({}); }
  void Build(VirtioBlk::Options blk_opts, VirtioPciDevice::Options pci_opts = {}) {
    dev.reset();
    blk.reset();
    mmio = std::make_unique<IoBus>("mmio");
    pio = std::make_unique<IoBus>("pio");
    auto m = GuestMemory::Create({{0, kMemSize}});
    ASSERT_TRUE(m.ok());
    mem = *std::move(m);
    dma = std::make_unique<IdentityDmaSpace>(*mem);
    auto b = VirtioBlk::Open(image.path, blk_opts);
    ASSERT_TRUE(b.ok()) << b.status();
    blk = *std::move(b);
    auto d = VirtioPciDevice::Create("virtio-blk", *blk, VirtioBlk::kPciClass, pci_opts);
    ASSERT_TRUE(d.ok()) << d.status();
    dev = *std::move(d);
    dev->Attach(PciAttachment{0x20, &sink, dma.get(), mmio.get(), pio.get()});
    ring = std::make_unique<FakeDriverRing>(*mem, kRing, 16);
  }
  void Cfg32(uint32_t off, uint32_t v) {
    const uint8_t b[4] = {static_cast<uint8_t>(v), static_cast<uint8_t>(v >> 8), static_cast<uint8_t>(v >> 16),
                          static_cast<uint8_t>(v >> 24)};
    dev->ConfigWrite(off, b, 4);
  }
  uint32_t ReadCfg32(uint32_t off) {
    uint8_t b[4];
    dev->ConfigRead(off, b, 4);
    return b[0] | b[1] << 8 | b[2] << 16 | uint32_t{b[3]} << 24;
  }
  uint64_t Rd(uint64_t addr, size_t size) {
    uint8_t b[8];
    mmio->Read(addr, b, size);
    uint64_t v = 0;
    for (size_t i = 0; i < size; ++i) v |= uint64_t{b[i]} << (8 * i);
    return v;
  }
  void Wr(uint64_t addr, uint64_t v, size_t size) {
    uint8_t b[8];
    for (size_t i = 0; i < size; ++i) b[i] = static_cast<uint8_t>(v >> (8 * i));
    mmio->Write(addr, b, size);
  }
  uint8_t Status() { return static_cast<uint8_t>(Rd(kBar4 + 0x14, 1)); }
  // PCI enumeration + MSI-X enable as a driver would.
  void EnablePci() {
    Cfg32(kBar0 + 4 * VirtioPciDevice::kMsixBar, static_cast<uint32_t>(kBar1));
    Cfg32(kBar0 + 4 * VirtioPciDevice::kVirtioBar, static_cast<uint32_t>(kBar4));
    Cfg32(kBar0 + 4 * VirtioPciDevice::kVirtioBar + 4, static_cast<uint32_t>(kBar4 >> 32));
    Cfg32(kCommand, kCommandMemory | kCommandBusMaster);
    const uint16_t msix = dev->msix()->offset();
    Cfg32(msix, uint32_t{PciMsix::kControlEnable} << 16 | ReadCfg32(msix) );
    for (unsigned v = 0; v < 2; ++v) {
      Wr(kBar1 + 16 * v, 0xFEE00000, 4);
      Wr(kBar1 + 16 * v + 8, 0x30 + v, 4);
      Wr(kBar1 + 16 * v + 12, 0, 4);  // unmask
    }
  }
  // virtio 1.2 §3.1.1 initialization; returns whether FEATURES_OK stuck.
  bool Negotiate(uint64_t features) {
    Wr(kBar4 + 0x14, 0, 1);
    Wr(kBar4 + 0x14, VirtioPciDevice::kStatusAcknowledge | VirtioPciDevice::kStatusDriver, 1);
    Wr(kBar4 + 0x08, 0, 4);
    Wr(kBar4 + 0x0C, static_cast<uint32_t>(features), 4);
    Wr(kBar4 + 0x08, 1, 4);
    Wr(kBar4 + 0x0C, static_cast<uint32_t>(features >> 32), 4);
    Wr(kBar4 + 0x14, 0x3 | VirtioPciDevice::kStatusFeaturesOk, 1);
    return Status() & VirtioPciDevice::kStatusFeaturesOk;
  }
  void SetupQueue() {
    Wr(kBar4 + 0x16, 0, 2);       // queue_select
    Wr(kBar4 + 0x18, 16, 2);      // queue_size
    Wr(kBar4 + 0x1A, 1, 2);       // queue_msix_vector
    Wr(kBar4 + 0x10, 0, 2);       // config_msix_vector
    Wr(kBar4 + 0x20, ring->layout().desc, 8);
    Wr(kBar4 + 0x28, ring->layout().avail, 4);  // two 32-bit halves
    Wr(kBar4 + 0x2C, ring->layout().avail >> 32, 4);
    Wr(kBar4 + 0x30, ring->layout().used, 8);
    Wr(kBar4 + 0x1C, 1, 2);       // queue_enable
    Wr(kBar4 + 0x14, 0xF, 1);     // DRIVER_OK
  }
  void Start() {
    EnablePci();
    ASSERT_TRUE(Negotiate(kVirtioFVersion1 | kVirtioFAccessPlatform | VirtioBlk::kFFlush));
    SetupQueue();
  }
  // Submits header + data + status; returns the status byte. Uses descriptors starting at `first`.
  uint8_t Request(uint32_t type, uint64_t sector, uint64_t data_addr, uint32_t data_len, bool data_write,
                  uint16_t first = 0) {
    uint8_t hdr[16] = {};
    std::memcpy(hdr, &type, 4);
    std::memcpy(hdr + 8, &sector, 8);
    EXPECT_TRUE(mem->Write(kBuf, hdr, 16).ok());
    EXPECT_TRUE(mem->WriteObj<uint8_t>(kBuf + 0x20, 0xEE).ok());
    std::vector<FakeDriverRing::Seg> segs = {{kBuf, 16, false}};
    if (data_len) segs.push_back({data_addr, data_len, data_write});
    segs.push_back({kBuf + 0x20, 1, true});
    ring->AddChain(segs, first);
    Wr(kBar4 + VirtioPciDevice::kNotifyOffset + 0, 0, 2);  // notify queue 0
    return *mem->ReadObj<uint8_t>(kBuf + 0x20);
  }

  TempImage image{kImageSectors * 512};
  FakeMsiSink sink;
  std::unique_ptr<IoBus> mmio, pio;
  std::unique_ptr<GuestMemory> mem;
  std::unique_ptr<IdentityDmaSpace> dma;
  std::unique_ptr<VirtioBlk> blk;
  std::unique_ptr<VirtioPciDevice> dev;
  std::unique_ptr<FakeDriverRing> ring;
};

TEST_F(VirtioBlkTest, PciIdentityAndVirtioCapabilities) {
  EXPECT_EQ(ReadCfg32(kVendorId), 0x1042u << 16 | 0x1AF4u);
  EXPECT_EQ(ReadCfg32(kRevisionId) & 0xFF, 1u);
  std::vector<uint8_t> types;
  for (auto [id, off] : dev->config().Capabilities()) {
    if (id != kCapIdVendor) continue;
    types.push_back(dev->config().Get8(off + 3));
    if (dev->config().Get8(off + 3) == 2) {
      EXPECT_EQ(dev->config().Get32(off + 16), 4u);  // notify multiplier
    }
  }
  EXPECT_EQ(types, (std::vector<uint8_t>{1, 2, 3, 4, 5}));
  EXPECT_TRUE(dev->config().FindCapability(kCapIdMsix).has_value());
}

TEST_F(VirtioBlkTest, FeatureNegotiation) {
  EnablePci();
  Wr(kBar4 + 0x00, 1, 4);
  EXPECT_EQ(Rd(kBar4 + 0x04, 4), 0x3u);  // VERSION_1 | ACCESS_PLATFORM
  Wr(kBar4 + 0x00, 0, 4);
  const uint32_t lo = static_cast<uint32_t>(Rd(kBar4 + 0x04, 4));
  EXPECT_TRUE(lo & VirtioBlk::kFFlush);
  EXPECT_TRUE(lo & VirtioBlk::kFSegMax);
  EXPECT_TRUE(lo & VirtioBlk::kFSizeMax);
  EXPECT_FALSE(lo & VirtioBlk::kFRo);
  EXPECT_FALSE(Negotiate(VirtioBlk::kFFlush));                             // no VERSION_1
  EXPECT_FALSE(Negotiate(kVirtioFVersion1));                               // no ACCESS_PLATFORM
  EXPECT_FALSE(Negotiate(kVirtioFVersion1 | kVirtioFAccessPlatform | (1ull << 40)));  // not offered
  EXPECT_TRUE(Negotiate(kVirtioFVersion1 | kVirtioFAccessPlatform));
  EXPECT_EQ(Rd(kBar4 + 0x12, 2), 1u);  // num_queues
  Build({}, VirtioPciDevice::Options{.require_access_platform = false});
  EnablePci();
  EXPECT_TRUE(Negotiate(kVirtioFVersion1));
}

TEST_F(VirtioBlkTest, ConfigSpaceCapacity) {
  EnablePci();
  EXPECT_EQ(Rd(kBar4 + VirtioPciDevice::kDeviceCfgOffset, 8), kImageSectors);
  EXPECT_EQ(Rd(kBar4 + VirtioPciDevice::kDeviceCfgOffset + 8, 4), VirtioBlk::kSizeMax);
  EXPECT_EQ(Rd(kBar4 + VirtioPciDevice::kDeviceCfgOffset + 12, 4), VirtioBlk::kSegMax);
  EXPECT_EQ(Rd(kBar4 + VirtioPciDevice::kDeviceCfgOffset + 20, 4), 512u);
  EXPECT_EQ(Rd(kBar4 + VirtioPciDevice::kDeviceCfgOffset + 0x100, 4), 0xFFFFFFFFu);  // beyond config
}

TEST_F(VirtioBlkTest, ReadWriteRoundTripFlushAndGetId) {
  Start();
  // Read sectors 2-3.
  ASSERT_EQ(Request(VirtioBlk::kTypeIn, 2, kBuf + 0x1000, 1024, true), VirtioBlk::kStatusOk);
  std::vector<uint8_t> got(1024);
  ASSERT_TRUE(mem->Read(kBuf + 0x1000, got.data(), 1024).ok());
  EXPECT_EQ(got, image.Read(1024, 1024));
  EXPECT_EQ(ring->UsedElem(0), (std::pair<uint32_t, uint32_t>{0, 1025}));
  ASSERT_EQ(sink.sent().size(), 1u);  // queue vector 1
  EXPECT_EQ(sink.sent()[0].data, 0x31u);
  EXPECT_EQ(sink.sent()[0].requester_id, 0x20);
  EXPECT_EQ(Rd(kBar4 + VirtioPciDevice::kIsrOffset, 1), 1u);  // queue interrupt, cleared by read
  EXPECT_EQ(Rd(kBar4 + VirtioPciDevice::kIsrOffset, 1), 0u);
  // Write sector 5 and read it back from the file.
  std::vector<uint8_t> pattern(512);
  for (size_t i = 0; i < 512; ++i) pattern[i] = static_cast<uint8_t>(0xA5 ^ i);
  ASSERT_TRUE(mem->Write(kBuf + 0x2000, pattern.data(), 512).ok());
  ASSERT_EQ(Request(VirtioBlk::kTypeOut, 5, kBuf + 0x2000, 512, false, 3), VirtioBlk::kStatusOk);
  EXPECT_EQ(image.Read(5 * 512, 512), pattern);
  EXPECT_EQ(ring->UsedElem(1).second, 1u);  // only the status byte was written
  ASSERT_EQ(Request(VirtioBlk::kTypeFlush, 0, 0, 0, false, 6), VirtioBlk::kStatusOk);
  ASSERT_EQ(Request(VirtioBlk::kTypeGetId, 0, kBuf + 0x3000, 20, true, 8), VirtioBlk::kStatusOk);
  char id[21] = {};
  ASSERT_TRUE(mem->Read(kBuf + 0x3000, id, 20).ok());
  EXPECT_STREQ(id, "ionest-blk");
  EXPECT_EQ(Request(99, 0, 0, 0, false, 10), VirtioBlk::kStatusUnsupported);
  EXPECT_EQ(blk->requests_completed(), 5u);
}

TEST_F(VirtioBlkTest, IndirectScatterReadAsLinuxIssuesIt) {
  Start();
  // Header, eight 1 KiB data segments scattered in memory, status: all in one indirect table.
  constexpr uint64_t kTable = 0x30000;
  uint8_t hdr[16] = {};  // IN, sector 8
  hdr[8] = 8;
  ASSERT_TRUE(mem->Write(kBuf, hdr, 16).ok());
  ring->WriteDesc(kTable, 0, kBuf, 16, SplitVirtqueue::kDescFlagNext, 1);
  for (uint16_t i = 0; i < 8; ++i)
    ring->WriteDesc(kTable, static_cast<uint16_t>(1 + i), kBuf + 0x10000 + 0x2000ull * (7 - i), 1024,
                    SplitVirtqueue::kDescFlagWrite | SplitVirtqueue::kDescFlagNext, static_cast<uint16_t>(2 + i));
  ring->WriteDesc(kTable, 9, kBuf + 0x20, 1, SplitVirtqueue::kDescFlagWrite, 0);
  ring->WriteDesc(ring->layout().desc, 5, kTable, 10 * 16, SplitVirtqueue::kDescFlagIndirect, 0);
  ring->Publish(5);
  Wr(kBar4 + VirtioPciDevice::kNotifyOffset, 0, 2);
  EXPECT_EQ(*mem->ReadObj<uint8_t>(kBuf + 0x20), VirtioBlk::kStatusOk);
  const std::vector<uint8_t> want = image.Read(8 * 512, 8 * 1024);
  for (unsigned i = 0; i < 8; ++i) {
    std::vector<uint8_t> got(1024);
    ASSERT_TRUE(mem->Read(kBuf + 0x10000 + 0x2000ull * (7 - i), got.data(), 1024).ok());
    EXPECT_EQ(got, std::vector<uint8_t>(want.begin() + 1024 * i, want.begin() + 1024 * (i + 1))) << i;
  }
  EXPECT_EQ(ring->UsedElem(0), (std::pair<uint32_t, uint32_t>{5, 8 * 1024 + 1}));
}

TEST_F(VirtioBlkTest, OutOfRangeAndMisalignedRequestsFail) {
  Start();
  EXPECT_EQ(Request(VirtioBlk::kTypeIn, kImageSectors - 1, kBuf + 0x1000, 1024, true), VirtioBlk::kStatusIoErr);
  EXPECT_EQ(Request(VirtioBlk::kTypeIn, ~uint64_t{0} - 1, kBuf + 0x1000, 1024, true, 3), VirtioBlk::kStatusIoErr);
  EXPECT_EQ(Request(VirtioBlk::kTypeIn, 0, kBuf + 0x1000, 100, true, 6), VirtioBlk::kStatusIoErr);
  EXPECT_EQ(Request(VirtioBlk::kTypeOut, kImageSectors, kBuf + 0x1000, 512, false, 9), VirtioBlk::kStatusIoErr);
  // Data buffer outside guest RAM: the DMA fails, the request reports an I/O error.
  EXPECT_EQ(Request(VirtioBlk::kTypeIn, 0, kMemSize - 256, 512, true, 12), VirtioBlk::kStatusIoErr);
  EXPECT_EQ(dev->status() & VirtioPciDevice::kStatusNeedsReset, 0);
}

TEST_F(VirtioBlkTest, ReadOnlyImageRejectsWrites) {
  Build(VirtioBlk::Options{.read_only = true});
  EnablePci();
  ASSERT_TRUE(Negotiate(kVirtioFVersion1 | kVirtioFAccessPlatform | VirtioBlk::kFRo));
  SetupQueue();
  const auto before = image.Read(0, 512);
  EXPECT_EQ(Request(VirtioBlk::kTypeOut, 0, kBuf + 0x2000, 512, false), VirtioBlk::kStatusIoErr);
  EXPECT_EQ(image.Read(0, 512), before);
}

TEST_F(VirtioBlkTest, MalformedRingSetsNeedsResetAndRaisesConfigInterrupt) {
  Start();
  ring->WriteDesc(ring->layout().desc, 0, kBuf, 16, SplitVirtqueue::kDescFlagNext, 0);  // self loop
  ring->Publish(0);
  Wr(kBar4 + VirtioPciDevice::kNotifyOffset, 0, 2);
  EXPECT_TRUE(dev->status() & VirtioPciDevice::kStatusNeedsReset);
  ASSERT_FALSE(sink.sent().empty());
  EXPECT_EQ(sink.sent().back().data, 0x30u);  // config vector 0
  EXPECT_EQ(Rd(kBar4 + VirtioPciDevice::kIsrOffset, 1), 2u);
  // Further notifies do nothing until reset.
  const size_t n = sink.sent().size();
  Wr(kBar4 + VirtioPciDevice::kNotifyOffset, 0, 2);
  EXPECT_EQ(sink.sent().size(), n);
  // Reset clears it; the device can be brought up again.
  Wr(kBar4 + 0x14, 0, 1);
  EXPECT_EQ(Status(), 0);
  ring = std::make_unique<FakeDriverRing>(*mem, kRing + 0x4000, 16);
  ASSERT_TRUE(Negotiate(kVirtioFVersion1 | kVirtioFAccessPlatform));
  SetupQueue();
  EXPECT_EQ(Request(VirtioBlk::kTypeIn, 0, kBuf + 0x1000, 512, true), VirtioBlk::kStatusOk);
}

TEST_F(VirtioBlkTest, InvalidQueueConfigurationIsContained) {
  EnablePci();
  ASSERT_TRUE(Negotiate(kVirtioFVersion1 | kVirtioFAccessPlatform));
  Wr(kBar4 + 0x16, 0, 2);
  Wr(kBar4 + 0x18, 1000, 2);  // not a power of two and above the maximum
  Wr(kBar4 + 0x1C, 1, 2);
  EXPECT_TRUE(Status() & VirtioPciDevice::kStatusNeedsReset);
  EXPECT_EQ(Rd(kBar4 + 0x1C, 2), 0u);
  Wr(kBar4 + 0x16, 7, 2);  // nonexistent queue
  EXPECT_EQ(Rd(kBar4 + 0x18, 2), 0u);
  Wr(kBar4 + 0x18, 16, 2);
  Wr(kBar4 + 0x1C, 1, 2);
  Wr(kBar4 + VirtioPciDevice::kNotifyOffset + 4 * 7, 0, 2);  // outside notify region: unhandled
  Wr(kBar4 + 0x1A, 500, 2);  // vector beyond MSI-X table
  Wr(kBar4 + 0x16, 0, 2);
  Wr(kBar4 + 0x1A, 500, 2);
  EXPECT_EQ(Rd(kBar4 + 0x1A, 2), VirtioPciDevice::kNoVector);
  // Garbage over the whole common config and device config regions.
  for (uint64_t off = 0; off < 0x40; ++off) Wr(kBar4 + off, 0xFFFFFFFFFFFFFFFF, 8);
  for (uint64_t off = 0; off < 0x40; ++off) Wr(kBar4 + 0x2000 + off, 0xFFFFFFFFFFFFFFFF, 8);
  EXPECT_EQ(Rd(kBar4 + 0x2000, 8), kImageSectors);
}

TEST_F(VirtioBlkTest, PciCfgCapabilityWindowReachesBar) {
  EnablePci();
  uint16_t cap = 0;
  for (auto [id, off] : dev->config().Capabilities())
    if (id == kCapIdVendor && dev->config().Get8(off + 3) == 5) cap = off;
  ASSERT_NE(cap, 0);
  // Read device config capacity (BAR4 + 0x2000) through the window.
  uint8_t bar = VirtioPciDevice::kVirtioBar;
  dev->ConfigWrite(cap + 4, &bar, 1);
  Cfg32(cap + 8, VirtioPciDevice::kDeviceCfgOffset);
  Cfg32(cap + 12, 4);
  EXPECT_EQ(ReadCfg32(cap + 16), kImageSectors);
  // Write device_status through the window.
  Cfg32(cap + 8, 0x14);
  Cfg32(cap + 12, 1);
  Cfg32(cap + 16, VirtioPciDevice::kStatusAcknowledge);
  EXPECT_EQ(dev->status(), VirtioPciDevice::kStatusAcknowledge);
  // Bogus window parameters are ignored.
  Cfg32(cap + 12, 3);
  Cfg32(cap + 16, 0);
  Cfg32(cap + 8, 0xFFFFFFFC);
  Cfg32(cap + 12, 4);
  Cfg32(cap + 16, 0);
  EXPECT_EQ(dev->status(), VirtioPciDevice::kStatusAcknowledge);
}

TEST(VirtioBlkOpen, RefusesWhatIsNeitherAFileNorABlockDeviceNamingTheFix) {
  for (const char* path : {"/dev/null", "/dev/zero"}) {
    auto b = VirtioBlk::Open(path, {});
    ASSERT_FALSE(b.ok()) << path;
    EXPECT_EQ(b.status().code(), absl::StatusCode::kInvalidArgument) << b.status();
    EXPECT_TRUE(absl::StrContains(b.status().message(), "give --disk an image file")) << b.status();
  }
}

}  // namespace
}  // namespace ionest
