#include "devices/vfio/vfio_pci_device.h"

#include <dirent.h>

#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <thread>

#include "devices/device_test_util.h"
#include "devices/pci_express_caps.h"
#include "devices/pci_host.h"
#include "devices/pci_regs.h"
#include "devices/vfio/testing/fake_vfio_device.h"
#include "devices/vfio/vfio_cdev.h"
#include "gtest/gtest.h"
#include "vmm/guest_memory.h"

namespace ionest::vfio {
namespace {

using namespace ::ionest::pci;
using ::ionest::testing::FakeMsiSink;
using testing::FakeDeviceSpec;
using testing::FakeOp;
using testing::FakeVfioDevice;
using testing::FakeVfioDeviceRef;

constexpr uint16_t kRid = 0x18;
constexpr uint64_t kBar0Addr = 0xC0000000;   // where the tests put BAR0 (64-bit, 4 KiB)
constexpr uint64_t kBar2Addr = 0x8000000000;  // BAR2 (64-bit, 16 KiB)

bool WaitFor(const std::function<bool()>& pred) {
  for (int i = 0; i < 5000; ++i) {
    if (pred()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  return pred();
}

int OpenFds() {
  int n = 0;
  DIR* d = opendir("/proc/self/fd");
  if (!d) return -1;
  while (readdir(d)) ++n;
  closedir(d);
  return n;
}

// A VfioPciDevice over a FakeVfioDevice the fixture keeps, attached to its own buses.
class VfioPciDeviceTest : public ::testing::Test {
 protected:
  void Make(const FakeDeviceSpec& spec = {}, VfioPciOptions options = {}) {
    fake = FakeVfioDevice::Typical(spec);
    absl::StatusOr<std::unique_ptr<VfioPciDevice>> d =
        VfioPciDevice::Create("vfio-test", std::make_unique<FakeVfioDeviceRef>(*fake), options);
    ASSERT_TRUE(d.ok()) << d.status();
    dev = *std::move(d);
    dev->Attach(PciAttachment{kRid, &sink, nullptr, &mmio, &pio});
  }
  uint32_t Cfg(uint32_t off, size_t size = 4) {
    uint8_t b[4] = {0, 0, 0, 0};
    dev->ConfigRead(off, b, size);
    return b[0] | b[1] << 8 | b[2] << 16 | uint32_t{b[3]} << 24;
  }
  void SetCfg(uint32_t off, uint32_t v, size_t size = 4) {
    const uint8_t b[4] = {static_cast<uint8_t>(v), static_cast<uint8_t>(v >> 8), static_cast<uint8_t>(v >> 16),
                          static_cast<uint8_t>(v >> 24)};
    dev->ConfigWrite(off, b, size);
  }
  uint64_t MmioRead(uint64_t addr, size_t size) {
    uint8_t b[8];
    mmio.Read(addr, b, size);
    uint64_t v = 0;
    for (size_t i = 0; i < size; ++i) v |= uint64_t{b[i]} << (8 * i);
    return v;
  }
  void MmioWrite(uint64_t addr, uint64_t v, size_t size) {
    uint8_t b[8];
    for (size_t i = 0; i < size; ++i) b[i] = static_cast<uint8_t>(v >> (8 * i));
    mmio.Write(addr, b, size);
  }
  // BAR0 at kBar0Addr, BAR2 at kBar2Addr, memory decoding (and bus mastering) on.
  void MapBars(bool bus_master = true) {
    SetCfg(kBar0, static_cast<uint32_t>(kBar0Addr));
    SetCfg(kBar0 + 4, static_cast<uint32_t>(kBar0Addr >> 32));
    SetCfg(kBar0 + 8, static_cast<uint32_t>(kBar2Addr));
    SetCfg(kBar0 + 12, static_cast<uint32_t>(kBar2Addr >> 32));
    SetCfg(kCommand, kCommandMemory | (bus_master ? kCommandBusMaster : 0), 2);
  }
  void ProgramMsixEntry(unsigned v, uint64_t addr, uint32_t data, bool masked) {
    const uint64_t e = kBar2Addr + testing::kFakeMsixTableOffset + v * 16;
    MmioWrite(e, addr, 8);
    MmioWrite(e + 8, data, 4);
    MmioWrite(e + 12, masked ? 1 : 0, 4);
  }
  void EnableMsix() { SetCfg(dev->msix()->offset() + PciMsix::kControl, PciMsix::kControlEnable, 2); }

  FakeMsiSink sink;
  IoBus mmio{"mmio"}, pio{"pio"};
  std::unique_ptr<FakeVfioDevice> fake;
  std::unique_ptr<VfioPciDevice> dev;
};

TEST_F(VfioPciDeviceTest, IdentityCopiedFromHost) {
  FakeDeviceSpec spec;
  spec.vendor_id = 0x15B3;
  spec.device_id = 0x101E;
  spec.class_code = 0x020000;
  spec.revision = 0x07;
  spec.subsystem_vendor_id = 0x15B4;
  spec.subsystem_id = 0x0042;
  Make(spec);
  EXPECT_EQ(Cfg(kVendorId), 0x101E15B3u);
  EXPECT_EQ(Cfg(kRevisionId), 0x02000007u);
  EXPECT_EQ(Cfg(kSubsystemVendorId), 0x004215B4u);
  EXPECT_EQ(Cfg(kHeaderType, 1), 0u);
  EXPECT_EQ(Cfg(kInterruptPin, 1), 0u);  // no INTx
  EXPECT_EQ(Cfg(kCommand, 2), 0u);
}

TEST_F(VfioPciDeviceTest, BarSizingMatchesHostRegions) {
  FakeDeviceSpec spec;
  spec.io_bar_size = 32;
  Make(spec);
  for (unsigned i = 0; i < 6; ++i) SetCfg(kBar0 + 4 * i, 0xFFFFFFFF);
  EXPECT_EQ(Cfg(kBar0 + 0), 0xFFFFF000u | kBarMem64);                     // 4 KiB, 64-bit
  EXPECT_EQ(Cfg(kBar0 + 4), 0xFFFFFFFFu);                                 // upper half
  EXPECT_EQ(Cfg(kBar0 + 8), 0xFFFFC000u | kBarMem64 | kBarPrefetchable);  // 16 KiB prefetchable
  EXPECT_EQ(Cfg(kBar0 + 12), 0xFFFFFFFFu);
  EXPECT_EQ(Cfg(kBar0 + 16), 0xFFFFFFE0u | kBarIoSpace);  // 32-byte I/O
  EXPECT_EQ(Cfg(kBar0 + 20), 0u);
  EXPECT_EQ(dev->bar(0)->size(), 0x1000u);
  EXPECT_EQ(dev->bar(2)->size(), 0x4000u);
}

TEST_F(VfioPciDeviceTest, MovedBarReachesDeviceThroughPciHost) {
  auto mem = GuestMemory::Create({{0, 1 << 20}});
  ASSERT_TRUE(mem.ok());
  BypassDmaProvider provider(**mem);
  PciHost host(mmio, pio, sink, provider);
  ASSERT_TRUE(host.Register().ok());
  fake = FakeVfioDevice::Typical();
  auto d = VfioPciDevice::Create("vfio-test", std::make_unique<FakeVfioDeviceRef>(*fake));
  ASSERT_TRUE(d.ok()) << d.status();
  dev = *std::move(d);
  ASSERT_TRUE(host.AddDevice(kRid, *dev).ok());
  ASSERT_TRUE(host.AssignResources().ok());
  const std::optional<uint64_t> bar0 = dev->BarMappedAt(0);
  ASSERT_TRUE(bar0.has_value());
  MmioWrite(*bar0 + 0x10, 0x11223344, 4);
  EXPECT_EQ(fake->BarPeek(0, 0x10, 4), 0x11223344u);
  // The guest moves BAR0 (through ECAM); the host BAR never moves.
  const uint64_t moved = *bar0 + 0x100000;
  const uint8_t lo[4] = {static_cast<uint8_t>(moved), static_cast<uint8_t>(moved >> 8),
                         static_cast<uint8_t>(moved >> 16), static_cast<uint8_t>(moved >> 24)};
  mmio.Write(pci_layout::kEcamBase + (uint64_t{kRid} << 12 | kBar0), lo, 4);
  EXPECT_EQ(dev->BarMappedAt(0), std::optional<uint64_t>(moved));
  fake->BarPoke(0, 0x20, 0xCAFEF00D, 4);
  EXPECT_EQ(MmioRead(moved + 0x20, 4), 0xCAFEF00Du);
  MmioWrite(moved + 0x24, 0x5A, 1);
  EXPECT_EQ(fake->BarPeek(0, 0x24, 1), 0x5Au);
  uint8_t b;
  EXPECT_FALSE(mmio.Read(*bar0 + 0x20, &b, 1));  // nothing at the old address
  EXPECT_EQ(fake->GetConfig(kBar0, 4), uint32_t{testing::kFakeBar0HostAddress} | kBarMem64);
  dev.reset();  // before the host bridge goes away
}

TEST_F(VfioPciDeviceTest, MmapAreasUseMappingsTheRestPreadPwrite) {
  Make();
  MapBars();
  EXPECT_EQ(fake->mmap_calls(), 2);  // BAR0 whole, BAR2 past the MSI-X page
  EXPECT_EQ(fake->live_mappings(), 2);
  const uint64_t r0 = fake->region_reads(0), w0 = fake->region_writes(0);
  const uint64_t r2 = fake->region_reads(2), w2 = fake->region_writes(2);
  // BAR0: mapped, every access size and an unaligned one.
  MmioWrite(kBar0Addr + 0x8, 0x0102030405060708ull, 8);
  EXPECT_EQ(fake->BarPeek(0, 0x8, 8), 0x0102030405060708ull);
  MmioWrite(kBar0Addr + 0x40, 0xBEEF, 2);
  MmioWrite(kBar0Addr + 0x43, 0xA5, 1);
  MmioWrite(kBar0Addr + 0x45, 0xDDCCBBAA, 4);  // unaligned
  EXPECT_EQ(fake->BarPeek(0, 0x40, 8), 0xCCBBAA00A500BEEFull);
  EXPECT_EQ(fake->BarPeek(0, 0x48, 1), 0xDDu);
  fake->BarPoke(0, 0x100, 0x8877665544332211ull, 8);
  EXPECT_EQ(MmioRead(kBar0Addr + 0x100, 8), 0x8877665544332211ull);
  EXPECT_EQ(MmioRead(kBar0Addr + 0x102, 2), 0x4433u);
  EXPECT_EQ(fake->region_reads(0), r0);
  EXPECT_EQ(fake->region_writes(0), w0);
  // BAR2 [0x1000, 0x4000): mapped.
  MmioWrite(kBar2Addr + 0x1010, 0xFEEDFACE, 4);
  EXPECT_EQ(fake->BarPeek(2, 0x1010, 4), 0xFEEDFACEu);
  EXPECT_EQ(fake->region_writes(2), w2);
  // BAR2 in the MSI-X page but outside table and PBA: pread/pwrite.
  MmioWrite(kBar2Addr + 0x900, 0x12345678, 4);
  EXPECT_EQ(fake->region_writes(2), w2 + 1);
  EXPECT_EQ(fake->BarPeek(2, 0x900, 4), 0x12345678u);
  fake->BarPoke(2, 0xF00, 0xABCD, 2);
  EXPECT_EQ(MmioRead(kBar2Addr + 0xF00, 2), 0xABCDu);
  EXPECT_EQ(fake->region_reads(2), r2 + 1);
}

TEST_F(VfioPciDeviceTest, MsixTableStaysTrappedWhenTheWholeBarIsMappable) {
  FakeDeviceSpec spec;
  spec.bar2_msix_mappable = true;
  Make(spec);
  MapBars();
  const uint64_t w2 = fake->region_writes(2);
  ProgramMsixEntry(0, 0xFEE01000, 0x4041, /*masked=*/false);
  EXPECT_EQ(MmioRead(kBar2Addr, 4), 0xFEE01000u);
  EXPECT_EQ(fake->BarPeek(2, 0, 8), 0u);  // the host table is untouched
  MmioWrite(kBar2Addr + 0x900, 0x12345678, 4);  // next to the table: through the mapping
  EXPECT_EQ(fake->BarPeek(2, 0x900, 4), 0x12345678u);
  EXPECT_EQ(fake->region_writes(2), w2);
}

TEST_F(VfioPciDeviceTest, WithoutMmapEverythingGoesThroughPreadPwrite) {
  FakeDeviceSpec spec;
  spec.bar0_mmap = false;
  Make(spec);
  MapBars();
  EXPECT_EQ(fake->mmap_calls(), 1);  // BAR2 only
  MmioWrite(kBar0Addr + 0x8, 0x0102030405060708ull, 8);
  EXPECT_EQ(fake->region_writes(0), 1u);
  EXPECT_EQ(MmioRead(kBar0Addr + 0x8, 8), 0x0102030405060708ull);
  EXPECT_EQ(fake->region_reads(0), 1u);
}

TEST_F(VfioPciDeviceTest, MmapFailureFallsBackToPread) {
  fake = FakeVfioDevice::Typical();
  fake->InjectError(FakeOp::kMmap, absl::InternalError("mmap: ENOMEM"));
  auto d = VfioPciDevice::Create("vfio-test", std::make_unique<FakeVfioDeviceRef>(*fake));
  ASSERT_TRUE(d.ok()) << d.status();
  dev = *std::move(d);
  dev->Attach(PciAttachment{kRid, &sink, nullptr, &mmio, &pio});
  MapBars();
  MmioWrite(kBar0Addr + 0x8, 0x77, 1);
  EXPECT_EQ(fake->BarPeek(0, 0x8, 1), 0x77u);
  EXPECT_EQ(fake->region_writes(0), 1u);
}

TEST_F(VfioPciDeviceTest, IoBarForwardedWithPreadPwrite) {
  FakeDeviceSpec spec;
  spec.io_bar_size = 32;
  Make(spec);
  SetCfg(kBar0 + 16, 0xC100);
  SetCfg(kCommand, kCommandIo, 2);
  const uint8_t w[2] = {0x34, 0x12};
  ASSERT_TRUE(pio.Write(0xC104, w, 2));
  EXPECT_EQ(fake->BarPeek(4, 4, 2), 0x1234u);
  EXPECT_EQ(fake->region_writes(4), 1u);
  uint8_t r = 0;
  ASSERT_TRUE(pio.Read(0xC105, &r, 1));
  EXPECT_EQ(r, 0x12);
}

TEST_F(VfioPciDeviceTest, BarErrorsReadAllOnesAndAreCounted) {
  FakeDeviceSpec spec;
  spec.bar0_mmap = false;
  Make(spec);
  MapBars();
  fake->BarPoke(0, 0, 0x1234, 4);
  fake->InjectError(FakeOp::kBarRead, absl::InternalError("pread: EIO"), 2);
  fake->InjectError(FakeOp::kBarWrite, absl::InternalError("pwrite: EIO"), 1);
  EXPECT_EQ(MmioRead(kBar0Addr, 4), 0xFFFFFFFFu);
  EXPECT_EQ(MmioRead(kBar0Addr, 8), ~0ull);
  MmioWrite(kBar0Addr, 0x9999, 4);
  EXPECT_EQ(dev->bar_access_errors(), 3u);
  EXPECT_EQ(MmioRead(kBar0Addr, 4), 0x1234u);  // dropped write, reads work again
}

TEST_F(VfioPciDeviceTest, MsixCapabilityAndTableAreEmulated) {
  FakeDeviceSpec spec;
  spec.msix_vectors = 16;
  Make(spec);
  MapBars();
  const uint16_t m = dev->msix()->offset();
  EXPECT_EQ(Cfg(m) & 0xFF, kCapIdMsix);
  EXPECT_EQ(Cfg(m + PciMsix::kControl, 2), 15u);
  EXPECT_EQ(Cfg(m + PciMsix::kTable), testing::kFakeMsixTableOffset | 2u);
  EXPECT_EQ(Cfg(m + PciMsix::kPba), testing::kFakeMsixPbaOffset | 2u);
  const uint64_t writes = fake->region_writes(2), reads = fake->region_reads(2);
  ProgramMsixEntry(5, 0xFEE01000, 0x4041, /*masked=*/false);
  EXPECT_EQ(MmioRead(kBar2Addr + 5 * 16, 8), 0xFEE01000u);
  EXPECT_EQ(MmioRead(kBar2Addr + 5 * 16 + 8, 4), 0x4041u);
  EXPECT_EQ(MmioRead(kBar2Addr + 6 * 16 + 12, 4), 1u);  // reset: masked
  EXPECT_EQ(MmioRead(kBar2Addr + testing::kFakeMsixPbaOffset, 8), 0u);
  EXPECT_EQ(fake->region_writes(2), writes);  // nothing reached the device
  EXPECT_EQ(fake->region_reads(2), reads);
  EXPECT_EQ(fake->BarPeek(2, 5 * 16, 8), 0u);
}

TEST_F(VfioPciDeviceTest, EnablingMsixRegistersOneEventfdPerVector) {
  Make();
  MapBars();
  EXPECT_TRUE(fake->set_irq_calls().empty());
  EnableMsix();
  const std::vector<FakeVfioDevice::IrqCall> calls = fake->set_irq_calls();
  ASSERT_EQ(calls.size(), 1u);
  EXPECT_EQ(calls[0].index, kIrqMsix);
  EXPECT_EQ(calls[0].start, 0u);
  ASSERT_EQ(calls[0].fds.size(), 8u);
  for (int fd : calls[0].fds) EXPECT_GE(fd, 0);
  EXPECT_EQ(fake->enabled_irq_index(), std::optional<uint32_t>(kIrqMsix));
  EXPECT_EQ(fake->registered_vectors(kIrqMsix), 8u);
  // Function Mask and other control writes that keep Enable do not re-register.
  SetCfg(dev->msix()->offset() + PciMsix::kControl, PciMsix::kControlEnable | PciMsix::kControlFunctionMask, 2);
  SetCfg(dev->msix()->offset() + PciMsix::kControl, PciMsix::kControlEnable, 2);
  EXPECT_EQ(fake->set_irq_calls().size(), 1u);
}

TEST_F(VfioPciDeviceTest, HostInterruptDeliversGuestMessage) {
  Make();
  MapBars();
  ProgramMsixEntry(3, 0xFEE02000, 0x4055, /*masked=*/false);
  EnableMsix();
  ASSERT_TRUE(fake->FireInterrupt(kIrqMsix, 3));
  ASSERT_TRUE(WaitFor([&] { return !sink.sent().empty(); }));
  const std::vector<MsiMessage> sent = sink.sent();
  ASSERT_EQ(sent.size(), 1u);
  EXPECT_EQ(sent[0].address, 0xFEE02000u);
  EXPECT_EQ(sent[0].data, 0x4055u);
  EXPECT_EQ(sent[0].requester_id, kRid);
  EXPECT_EQ(dev->forwarded_interrupts(), 1u);
}

TEST_F(VfioPciDeviceTest, MaskedVectorIsPendingUntilUnmasked) {
  Make();
  MapBars();
  ProgramMsixEntry(2, 0xFEE03000, 0x4066, /*masked=*/true);
  EnableMsix();
  ASSERT_TRUE(fake->FireInterrupt(kIrqMsix, 2));
  ASSERT_TRUE(WaitFor([&] { return dev->forwarded_interrupts() == 1; }));
  EXPECT_TRUE(dev->msix()->IsPending(2));
  EXPECT_EQ(MmioRead(kBar2Addr + testing::kFakeMsixPbaOffset, 8), 1u << 2);
  EXPECT_TRUE(sink.sent().empty());
  MmioWrite(kBar2Addr + 2 * 16 + 12, 0, 4);  // unmask
  ASSERT_EQ(sink.sent().size(), 1u);
  EXPECT_EQ(sink.sent()[0].data, 0x4066u);
  EXPECT_FALSE(dev->msix()->IsPending(2));
}

TEST_F(VfioPciDeviceTest, SynchronousForwardingWithoutThread) {
  Make({}, VfioPciOptions{.forwarding_thread = false});
  MapBars();
  ProgramMsixEntry(0, 0xFEE04000, 0x4077, /*masked=*/false);
  EnableMsix();
  ASSERT_TRUE(fake->FireInterrupt(kIrqMsix, 0));
  ASSERT_TRUE(fake->FireInterrupt(kIrqMsix, 0));  // coalesced in the eventfd counter
  EXPECT_TRUE(sink.sent().empty());
  EXPECT_EQ(dev->ForwardPendingInterrupts(), 1u);
  ASSERT_EQ(sink.sent().size(), 1u);
  EXPECT_EQ(dev->ForwardPendingInterrupts(), 0u);
}

TEST_F(VfioPciDeviceTest, DisablingMsixDisablesHostInterrupts) {
  Make();
  MapBars();
  EnableMsix();
  SetCfg(dev->msix()->offset() + PciMsix::kControl, 0, 2);
  EXPECT_EQ(fake->disable_irq_calls(), std::vector<uint32_t>{kIrqMsix});
  EXPECT_EQ(fake->enabled_irq_index(), std::nullopt);
  EXPECT_FALSE(fake->FireInterrupt(kIrqMsix, 0));
  // Enabling again registers fresh eventfds.
  EnableMsix();
  EXPECT_EQ(fake->set_irq_calls().size(), 2u);
  EXPECT_EQ(fake->registered_vectors(kIrqMsix), 8u);
}

TEST_F(VfioPciDeviceTest, HostRefusingMsixIsCountedAndRetried) {
  Make();
  MapBars();
  fake->InjectError(FakeOp::kSetIrqs, absl::InvalidArgumentError("VFIO_DEVICE_SET_IRQS: EINVAL"), 1);
  EnableMsix();
  EXPECT_EQ(dev->host_config_errors(), 1u);
  EXPECT_EQ(fake->enabled_irq_index(), std::nullopt);
  SetCfg(dev->msix()->offset() + PciMsix::kControl, PciMsix::kControlEnable, 2);  // guest retries
  EXPECT_EQ(fake->enabled_irq_index(), std::optional<uint32_t>(kIrqMsix));
}

TEST_F(VfioPciDeviceTest, MsiUsesHostCountAndMultipleMessageEnable) {
  FakeDeviceSpec spec;
  spec.msix_vectors = 0;
  spec.msi_vectors = 4;
  Make(spec);
  MapBars();
  ASSERT_NE(dev->msi(), nullptr);
  EXPECT_EQ(dev->msix(), nullptr);
  const uint16_t m = dev->msi()->offset();
  EXPECT_EQ((Cfg(m + PciMsi::kControl, 2) >> PciMsi::kControlMmcShift) & 7, 2u);  // 4 vectors
  SetCfg(m + PciMsi::kAddressLo, 0xFEE05000);
  SetCfg(m + PciMsi::kAddressHi, 0);
  SetCfg(m + PciMsi::kData, 0x4080, 2);
  SetCfg(m + PciMsi::kControl, PciMsi::kControlEnable | 2u << PciMsi::kControlMmeShift, 2);
  std::vector<FakeVfioDevice::IrqCall> calls = fake->set_irq_calls();
  ASSERT_EQ(calls.size(), 1u);
  EXPECT_EQ(calls[0].index, kIrqMsi);
  EXPECT_EQ(calls[0].fds.size(), 4u);
  ASSERT_TRUE(fake->FireInterrupt(kIrqMsi, 1));
  ASSERT_TRUE(WaitFor([&] { return !sink.sent().empty(); }));
  EXPECT_EQ(sink.sent()[0].address, 0xFEE05000u);
  EXPECT_EQ(sink.sent()[0].data, 0x4081u);
  SetCfg(m + PciMsi::kControl, 0, 2);
  EXPECT_EQ(fake->disable_irq_calls(), std::vector<uint32_t>{kIrqMsi});
}

TEST_F(VfioPciDeviceTest, VendorSpecificCapabilitiesCopiedReadOnly) {
  // virtio's structure locations (virtio 1.2 §4.1.4): without them Linux's virtio-pci finds no modern
  // interface ("leaving for legacy driver"), as the arm64 passthrough suite first showed.
  FakeDeviceSpec spec;
  spec.virtio_caps = true;
  Make(spec);
  std::vector<uint16_t> vendor;
  for (auto [id, off] : dev->config().Capabilities())
    if (id == kCapIdVendor) vendor.push_back(off);
  ASSERT_EQ(vendor.size(), 2u);
  const uint16_t host[2] = {testing::kFakeVirtioCommonCap, testing::kFakeVirtioNotifyCap};
  const unsigned len[2] = {16, 20};
  for (int c = 0; c < 2; ++c) {
    EXPECT_EQ(Cfg(vendor[c] + 2, 1), len[c]);
    for (unsigned i = 2; i < len[c]; ++i)
      EXPECT_EQ(Cfg(vendor[c] + i, 1), fake->GetConfig(host[c] + i, 1)) << "cap " << c << " byte " << i;
  }
  // Read-only: a guest write changes neither the view nor the host function.
  const uint32_t before = Cfg(vendor[0] + 8);
  SetCfg(vendor[0] + 8, 0xDEADBEEF);
  EXPECT_EQ(Cfg(vendor[0] + 8), before);
  EXPECT_EQ(fake->GetConfig(testing::kFakeVirtioCommonCap + 8, 4), 0u);
}

TEST_F(VfioPciDeviceTest, AtsPriPasidShowHostValues) {
  Make();
  ASSERT_NE(dev->ats_offset(), 0);
  ASSERT_NE(dev->pri_offset(), 0);
  ASSERT_NE(dev->pasid_offset(), 0);  // hidden by vfio-pci: from the unfiltered config
  EXPECT_EQ(dev->config().FindExtCapability(kExtCapIdAts), std::optional<uint16_t>(dev->ats_offset()));
  EXPECT_EQ(dev->config().FindExtCapability(kExtCapIdPri), std::optional<uint16_t>(dev->pri_offset()));
  EXPECT_EQ(dev->config().FindExtCapability(kExtCapIdPasid), std::optional<uint16_t>(dev->pasid_offset()));
  EXPECT_EQ(Cfg(dev->ats_offset() + ats::kCap, 2), 0x0065u);
  EXPECT_EQ(Cfg(dev->pri_offset() + pri::kCapacity), 0x100u);
  EXPECT_TRUE(Cfg(dev->pri_offset() + pri::kStatus, 2) & pri::kStatusPrgResponsePasidRequired);
  EXPECT_EQ(Cfg(dev->pasid_offset() + pasid::kCap, 2), 0x1002u);
  // The fake really hides PASID from the VFIO config region (ATS's Next skips it).
  uint32_t hdr = 0;
  ASSERT_TRUE(fake->RegionRead(kConfigRegion, testing::kFakeAtsCap, &hdr, 4).ok());
  EXPECT_EQ(hdr >> 20, testing::kFakePriCap);
  // PCIe capability: an RCiEP with the host's DEVCAP and FLR (the device can reset).
  const std::optional<uint16_t> p = dev->config().FindCapability(kCapIdPcie);
  ASSERT_TRUE(p.has_value());
  EXPECT_EQ((Cfg(*p + pcie::kCaps, 2) >> 4) & 0xF, static_cast<uint32_t>(PcieDeviceType::kRcIntegratedEndpoint));
  EXPECT_EQ(Cfg(*p + pcie::kDevCap), FakeDeviceSpec{}.devcap);
  EXPECT_TRUE(Cfg(*p + pcie::kDevCap2) & pcie::kDevCap2EndEndTlpPrefix);
}

TEST_F(VfioPciDeviceTest, PasidHiddenWithoutUnfilteredConfigStaysHidden) {
  FakeDeviceSpec spec;
  spec.unfiltered_config = false;
  Make(spec);
  EXPECT_NE(dev->ats_offset(), 0);
  EXPECT_NE(dev->pri_offset(), 0);
  EXPECT_EQ(dev->pasid_offset(), 0);
}

TEST_F(VfioPciDeviceTest, ExtCapControlWritesKeptAndWrittenThrough) {
  Make();
  const size_t before = fake->config_writes().size();
  SetCfg(dev->ats_offset() + ats::kControl, ats::kControlEnable | 0x3, 2);
  SetCfg(dev->pasid_offset() + pasid::kControl, pasid::kControlEnable | pasid::kControlExec, 2);
  SetCfg(dev->pri_offset() + pri::kAllocation, 0x40);
  SetCfg(dev->pri_offset() + pri::kControl, pri::kControlEnable, 2);
  const std::vector<FakeVfioDevice::ConfigWrite> w = fake->config_writes();
  // PASID Control is not written to the device: the host IOMMU driver owns PASID Enable.
  ASSERT_EQ(w.size(), before + 3);
  EXPECT_EQ(w[before].offset, testing::kFakeAtsCap + ats::kControl);
  EXPECT_EQ(w[before].Value(), ats::kControlEnable | 0x3u);
  EXPECT_EQ(w[before + 1].offset, testing::kFakePriCap + pri::kAllocation);
  EXPECT_EQ(w[before + 1].Value(), 0x40u);
  EXPECT_EQ(w[before + 2].offset, testing::kFakePriCap + pri::kControl);
  // Emulated copies hold the guest's values, whatever the host did with them.
  EXPECT_EQ(Cfg(dev->ats_offset() + ats::kControl, 2), ats::kControlEnable | 0x3u);
  EXPECT_EQ(Cfg(dev->pasid_offset() + pasid::kControl, 2), pasid::kControlEnable | pasid::kControlExec);
  EXPECT_EQ(fake->GetConfig(testing::kFakeAtsCap + ats::kControl, 2), 0u);  // vfio-pci dropped it
  EXPECT_EQ(fake->GetConfig(testing::kFakePasidCap + pasid::kControl, 2), 0u);  // host value untouched
  EXPECT_FALSE(Cfg(dev->pri_offset() + pri::kStatus, 2) & pri::kStatusStopped);
  // PRI Reset reads 0; disabling sets Stopped again.
  SetCfg(dev->pri_offset() + pri::kControl, pri::kControlReset, 2);
  EXPECT_EQ(Cfg(dev->pri_offset() + pri::kControl, 2), 0u);
  EXPECT_TRUE(Cfg(dev->pri_offset() + pri::kStatus, 2) & pri::kStatusStopped);
  // A host failure is counted; the emulated value stays.
  fake->InjectError(FakeOp::kConfigWrite, absl::InternalError("pwrite: EIO"));
  SetCfg(dev->ats_offset() + ats::kControl, 0, 2);
  EXPECT_EQ(dev->host_config_errors(), 1u);
  EXPECT_EQ(Cfg(dev->ats_offset() + ats::kControl, 2), 0u);
}

TEST_F(VfioPciDeviceTest, CommandDecodeAndBusMasterWrittenThrough) {
  Make();
  // Creation put the host in line with the guest's power-on Command (0); other bits are kept.
  EXPECT_EQ(fake->GetConfig(kCommand, 2) & 0x7, 0u);
  fake->SetConfig(kCommand, kCommandIntxDisable, 2);
  SetCfg(kCommand, kCommandMemory | kCommandBusMaster | kCommandSerr, 2);
  EXPECT_EQ(fake->GetConfig(kCommand, 2), kCommandIntxDisable | kCommandMemory | kCommandBusMaster);
  const std::vector<FakeVfioDevice::ConfigWrite> w = fake->config_writes();
  ASSERT_FALSE(w.empty());
  EXPECT_EQ(w.back().offset, kCommand);
  EXPECT_EQ(w.back().data.size(), 2u);
  SetCfg(kCommand, kCommandMemory, 2);
  EXPECT_EQ(fake->GetConfig(kCommand, 2), kCommandIntxDisable | kCommandMemory);
  const size_t n = fake->config_writes().size();
  SetCfg(kCacheLineSize, 0x10, 1);  // not Command: nothing forwarded
  SetCfg(kCommand, kCommandMemory, 2);  // unchanged: nothing written
  EXPECT_EQ(fake->config_writes().size(), n);
}

TEST_F(VfioPciDeviceTest, FlrResetsDeviceAndEmulatedState) {
  Make();
  MapBars();
  ProgramMsixEntry(1, 0xFEE06000, 0x4090, /*masked=*/false);
  EnableMsix();
  SetCfg(dev->ats_offset() + ats::kControl, ats::kControlEnable, 2);
  const uint16_t p = *dev->config().FindCapability(kCapIdPcie);
  EXPECT_TRUE(Cfg(p + pcie::kDevCap) & pcie::kDevCapFlr);
  SetCfg(p + pcie::kDevCtl, 0x1 << 5, 2);  // Max_Payload_Size 256 B
  SetCfg(p + pcie::kDevCtl, Cfg(p + pcie::kDevCtl, 2) | pcie::kDevCtlInitiateFlr, 2);
  EXPECT_EQ(fake->reset_calls(), 1);
  EXPECT_EQ(fake->disable_irq_calls(), std::vector<uint32_t>{kIrqMsix});
  EXPECT_EQ(fake->enabled_irq_index(), std::nullopt);
  EXPECT_FALSE(dev->msix()->enabled());
  EXPECT_EQ(Cfg(p + pcie::kDevCtl, 2), (pcie::kDevCtlResetValue & ~pcie::kDevCtlMaxPayloadMask) | 0x1u << 5);
  EXPECT_EQ(Cfg(kCommand, 2), 0u);
  EXPECT_EQ(fake->GetConfig(kCommand, 2) & 0x7, 0u);
  EXPECT_EQ(Cfg(dev->ats_offset() + ats::kControl, 2), 0u);
  EXPECT_EQ(MmioRead(kBar2Addr + 16 + 12, 4), 0xFFFFFFFFu);  // decode off
  EXPECT_EQ(Cfg(kBar0) & ~0xFu, static_cast<uint32_t>(kBar0Addr));  // BARs kept (FLR)
  SetCfg(kCommand, kCommandMemory, 2);
  EXPECT_EQ(MmioRead(kBar2Addr + 16 + 12, 4), 1u);  // table entry masked again
  EXPECT_EQ(MmioRead(kBar2Addr + 16, 4), 0u);
}

TEST_F(VfioPciDeviceTest, GuestResetClearsBars) {
  Make();
  MapBars();
  ASSERT_TRUE(dev->Reset(/*keep_bars=*/false).ok());
  EXPECT_EQ(fake->reset_calls(), 1);
  EXPECT_EQ(Cfg(kBar0), kBarMem64);
  EXPECT_EQ(Cfg(kBar0 + 4), 0u);
  EXPECT_FALSE(dev->BarMappedAt(0).has_value());
}

TEST_F(VfioPciDeviceTest, NoFlrWithoutHostReset) {
  FakeDeviceSpec spec;
  spec.can_reset = false;
  Make(spec);
  const uint16_t p = *dev->config().FindCapability(kCapIdPcie);
  EXPECT_FALSE(Cfg(p + pcie::kDevCap) & pcie::kDevCapFlr);
  SetCfg(p + pcie::kDevCtl, pcie::kDevCtlInitiateFlr, 2);
  EXPECT_EQ(fake->reset_calls(), 0);
  EXPECT_FALSE(dev->Reset().ok());  // emulated state is still reset
  EXPECT_EQ(fake->reset_calls(), 0);
}

TEST_F(VfioPciDeviceTest, DestructionReleasesEverything) {
  const int fds_before = OpenFds();
  fake = FakeVfioDevice::Typical();
  auto d = VfioPciDevice::Create("vfio-test", std::make_unique<FakeVfioDeviceRef>(*fake));
  ASSERT_TRUE(d.ok()) << d.status();
  dev = *std::move(d);
  dev->Attach(PciAttachment{kRid, &sink, nullptr, &mmio, &pio});
  MapBars();
  ProgramMsixEntry(0, 0xFEE07000, 0x40A0, false);
  EnableMsix();
  ASSERT_TRUE(fake->FireInterrupt(kIrqMsix, 0));
  ASSERT_TRUE(WaitFor([&] { return sink.sent().size() == 1; }));
  EXPECT_GT(OpenFds(), fds_before);  // eventfds, epoll, the fake's dups
  dev.reset();
  EXPECT_EQ(fake->disable_irq_calls(), std::vector<uint32_t>{kIrqMsix});
  EXPECT_EQ(fake->live_mappings(), 0);
  EXPECT_EQ(OpenFds(), fds_before);
  uint8_t b;
  EXPECT_FALSE(mmio.Read(kBar0Addr, &b, 1));  // BARs unregistered
}

TEST_F(VfioPciDeviceTest, CreateRejectsWhatCannotBeVirtualised) {
  auto create = [](std::unique_ptr<FakeVfioDevice> f) {
    return VfioPciDevice::Create("vfio-bad", std::move(f)).status();
  };
  {
    auto f = FakeVfioDevice::Typical();
    f->SetDeviceInfo(DeviceInfo{0, 9, 5});
    absl::Status s = create(std::move(f));
    EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition);
    EXPECT_NE(s.message().find("not a PCI device"), std::string::npos) << s;
  }
  {
    auto f = FakeVfioDevice::Typical();
    f->SetRegion(RegionInfo{0, 3, 0x3000, {}});
    absl::Status s = create(std::move(f));
    EXPECT_NE(s.message().find("not a power of two"), std::string::npos) << s;
    EXPECT_NE(s.message().find("BAR0"), std::string::npos) << s;
  }
  {
    auto f = FakeVfioDevice::Typical();
    f->SetConfig(kHeaderType, 1, 1);
    absl::Status s = create(std::move(f));
    EXPECT_NE(s.message().find("header type"), std::string::npos) << s;
  }
  {
    auto f = FakeVfioDevice::Typical();
    f->SetConfig(kBar0 + 20, 0x4, 4);  // BAR5 claims 64-bit
    f->SetRegion(RegionInfo{5, 3, 0x1000, {}});
    absl::Status s = create(std::move(f));
    EXPECT_NE(s.message().find("BAR5"), std::string::npos) << s;
  }
  {
    auto f = FakeVfioDevice::Typical();
    f->InjectError(FakeOp::kGetInfo, absl::PermissionDeniedError("VFIO_DEVICE_GET_INFO: EPERM"));
    EXPECT_EQ(create(std::move(f)).code(), absl::StatusCode::kPermissionDenied);
  }
  {
    auto f = FakeVfioDevice::Typical();
    f->InjectError(FakeOp::kConfigRead, absl::InternalError("pread config: EIO"));
    EXPECT_FALSE(create(std::move(f)).ok());
  }
  {
    auto f = FakeVfioDevice::Typical();
    f->SetConfig(testing::kFakeMsixCap + PciMsix::kTable, 4, 4);  // table in BAR4: no such BAR
    absl::Status s = create(std::move(f));
    EXPECT_NE(s.message().find("MSI-X"), std::string::npos) << s;
  }
  {
    auto f = FakeVfioDevice::Typical();
    f->SetConfig(testing::kFakePcieCap + pcie::kCaps, 0x2 | 0x4 << 4, 2);  // a Root Port
    absl::Status s = create(std::move(f));
    EXPECT_NE(s.message().find("not an endpoint"), std::string::npos) << s;
  }
}

TEST_F(VfioPciDeviceTest, HostileConfigWritesAreHarmless) {
  Make({}, VfioPciOptions{.forwarding_thread = false});
  MapBars();
  uint32_t x = 12345;
  for (uint32_t off = 0; off < 4100; ++off) {
    for (size_t size : {1, 2, 4, 8}) {
      x = x * 1103515245 + 12345;
      uint8_t b[8];
      for (size_t i = 0; i < 8; ++i) b[i] = static_cast<uint8_t>(x >> (i * 3));
      dev->ConfigWrite(off, b, size);
      dev->ConfigRead(off, b, size);
    }
  }
  dev->ConfigWrite(~uint64_t{0} - 2, reinterpret_cast<const uint8_t*>(&x), 4);
  for (unsigned v = 0; v < 8; ++v) fake->FireInterrupt(kIrqMsix, v);
  dev->ForwardPendingInterrupts();
  ASSERT_TRUE(dev->Reset().ok());
}

// The test double's PASID attach (what the nesting backend is tested against): 6.15+ by default,
// 6.12 on request with the message VfioCdev gives.
TEST(FakeVfioDevicePasidTest, RecordsAttachesAndCanActLikeLinux612) {
  FakeVfioDevice f("fake0");
  ASSERT_TRUE(f.AttachPasid(1, 10).ok());
  ASSERT_TRUE(f.AttachPasid(2, 11).ok());
  ASSERT_TRUE(f.AttachPasid(1, 12).ok());  // replaces
  ASSERT_TRUE(f.DetachPasid(2).ok());
  ASSERT_TRUE(f.DetachPasid(9).ok());  // never attached: fine, as in vfio
  EXPECT_EQ(f.attached_pasids(), (std::map<uint32_t, uint32_t>{{1, 12}}));
  using Call = FakeVfioDevice::PasidCall;
  EXPECT_EQ(f.pasid_calls(), (std::vector<Call>{{true, 1, 10}, {true, 2, 11}, {true, 1, 12}, {false, 2, 0},
                                                {false, 9, 0}}));

  f.SetPasidAttachSupported(false);
  absl::Status s = f.AttachPasid(3, 13);
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(s, NoPasidAttachError(PasidAttachWhat("fake0", 3, 13)));
  EXPECT_EQ(f.DetachPasid(1), NoPasidAttachError(PasidDetachWhat("fake0", 1)));
  EXPECT_EQ(f.attached_pasids(), (std::map<uint32_t, uint32_t>{{1, 12}}));  // unchanged
  EXPECT_EQ(f.pasid_calls().size(), 7u);

  f.SetPasidAttachSupported(true);
  f.InjectError(FakeOp::kAttachPasid, absl::PermissionDeniedError("no"), 1);
  EXPECT_EQ(f.AttachPasid(3, 13).code(), absl::StatusCode::kPermissionDenied);
  EXPECT_TRUE(f.AttachPasid(3, 13).ok());
  FakeVfioDeviceRef ref(f);
  EXPECT_TRUE(ref.DetachPasid(3).ok());
  EXPECT_EQ(f.attached_pasids().count(3), 0u);
}

}  // namespace
}  // namespace ionest::vfio
