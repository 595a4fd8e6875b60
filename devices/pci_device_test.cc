#include "devices/pci_device.h"

#include <algorithm>
#include <atomic>
#include <memory>
#include <thread>

#include "devices/device_test_util.h"
#include "devices/pci_express_caps.h"
#include "devices/pci_test_device.h"
#include "gtest/gtest.h"
#include "vmm/guest_memory.h"

namespace ionest {
namespace {

using namespace pci;
using testing::FakeMsiSink;
using testing::ReadN;
using testing::TestPciDevice;
using testing::WriteN;

class PciDeviceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto m = GuestMemory::Create({{0, 1 << 20}});
    ASSERT_TRUE(m.ok());
    mem = *std::move(m);
    dma = std::make_unique<IdentityDmaSpace>(*mem);
    dev.Attach(PciAttachment{0x18, &sink, dma.get(), &mmio, &pio});
  }
  uint32_t Cfg(uint32_t off, size_t size = 4) {
    uint8_t b[4] = {0, 0, 0, 0};
    dev.ConfigRead(off, b, size);
    return b[0] | b[1] << 8 | b[2] << 16 | uint32_t{b[3]} << 24;
  }
  void SetCfg(uint32_t off, uint32_t v, size_t size = 4) {
    const uint8_t b[4] = {static_cast<uint8_t>(v), static_cast<uint8_t>(v >> 8), static_cast<uint8_t>(v >> 16),
                          static_cast<uint8_t>(v >> 24)};
    dev.ConfigWrite(off, b, size);
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
  void EnableMsix(uint64_t table) {
    SetCfg(kBar0 + 8, static_cast<uint32_t>(table));
    SetCfg(kBar0 + 12, static_cast<uint32_t>(table >> 32));
    SetCfg(kCommand, kCommandMemory | kCommandBusMaster, 2);
    const uint16_t off = dev.msix()->offset();
    SetCfg(off + PciMsix::kControl, PciMsix::kControlEnable, 2);
  }

  std::unique_ptr<GuestMemory> mem;
  std::unique_ptr<IdentityDmaSpace> dma;
  FakeMsiSink sink;
  IoBus mmio{"mmio"}, pio{"pio"};
  TestPciDevice dev;
};

TEST_F(PciDeviceTest, HeaderIdentityAndMasks) {
  EXPECT_EQ(Cfg(kVendorId), 0x56781234u);
  EXPECT_EQ(Cfg(kRevisionId) >> 8, 0xFF0000u);
  SetCfg(kVendorId, 0);  // read-only
  EXPECT_EQ(Cfg(kVendorId), 0x56781234u);
  SetCfg(kCommand, 0xFFFF, 2);
  EXPECT_EQ(Cfg(kCommand, 2), 0x0547u);
  dev.config().UpdateBits(kStatus, 2, 0x8000 | 0x2000, 0);  // device reports errors
  SetCfg(kStatus, 0x2000, 2);                               // RW1C one of them
  EXPECT_EQ(Cfg(kStatus, 2) & 0xF900, 0x8000u);
  EXPECT_TRUE(Cfg(kStatus, 2) & kStatusCapList);
  SetCfg(kInterruptLine, 0x0B, 1);
  EXPECT_EQ(Cfg(kInterruptLine, 2), 0x000Bu);  // pin 0: no INTx
  EXPECT_EQ(dev.config_writes, 4);
}

TEST_F(PciDeviceTest, BarSizeProbing) {
  for (unsigned i = 0; i < 6; ++i) SetCfg(kBar0 + 4 * i, 0xFFFFFFFF);
  EXPECT_EQ(Cfg(kBar0 + 0), 0xFFFFF000u);                        // 4 KiB, 32-bit, non-prefetchable
  EXPECT_EQ(Cfg(kBar0 + 4), 0xFFFFFFE1u);                        // 32-byte I/O
  EXPECT_EQ(Cfg(kBar0 + 8), 0xFFFFC000u | kBarMem64 | kBarPrefetchable);  // 16 KiB 64-bit prefetchable
  EXPECT_EQ(Cfg(kBar0 + 12), 0xFFFFFFFFu);                       // upper half
  EXPECT_EQ(Cfg(kBar0 + 16), 0u);                                // unimplemented
  EXPECT_EQ(Cfg(kBar0 + 20), 0u);
  EXPECT_EQ(Cfg(kExpansionRom), 0u);
}

TEST_F(PciDeviceTest, BarMappingFollowsDecodeEnableAndReprogramming) {
  SetCfg(kBar0, 0xC0000000);
  SetCfg(kBar0 + 4, 0xC000);
  EXPECT_FALSE(dev.BarMappedAt(0).has_value());  // decode off
  uint8_t b;
  EXPECT_FALSE(mmio.Read(0xC0000000, &b, 1));
  SetCfg(kCommand, kCommandMemory, 2);
  EXPECT_EQ(dev.BarMappedAt(0), std::optional<uint64_t>(0xC0000000));
  EXPECT_FALSE(dev.BarMappedAt(1).has_value());  // I/O decode still off
  MmioWrite(0xC0000004, 0xDEADBEEF, 4);
  EXPECT_EQ(MmioRead(0xC0000004, 4), 0xDEADBEEFu);
  EXPECT_EQ(MmioRead(0xC0000100, 4), 0xFFFFFFFFu);  // hole in the BAR
  SetCfg(kCommand, kCommandMemory | kCommandIo, 2);
  EXPECT_EQ(dev.BarMappedAt(1), std::optional<uint64_t>(0xC000));
  const uint8_t w = 0x77;
  EXPECT_TRUE(pio.Write(0xC003, &w, 1));
  uint8_t r = 0;
  EXPECT_TRUE(pio.Read(0xC003, &r, 1));
  EXPECT_EQ(r, 0x77);
  // Move BAR0: old address goes away, new one decodes the same registers.
  SetCfg(kBar0, 0xC0100000);
  EXPECT_FALSE(mmio.Read(0xC0000004, &b, 1));
  EXPECT_EQ(MmioRead(0xC0100004, 4), 0xDEADBEEFu);
  // Disable decode: everything unmapped.
  SetCfg(kCommand, 0, 2);
  EXPECT_FALSE(mmio.Read(0xC0100004, &b, 1));
  EXPECT_FALSE(pio.Read(0xC003, &b, 1));
}

TEST_F(PciDeviceTest, HostileBarProgrammingIsContained) {
  testing::ScratchRegs other;
  ASSERT_TRUE(mmio.Register(0xD0000000, 0x1000, &other, "other").ok());
  SetCfg(kCommand, kCommandMemory | kCommandIo, 2);
  SetCfg(kBar0, 0xD0000000);  // overlaps another device: stays unmapped
  EXPECT_FALSE(dev.BarMappedAt(0).has_value());
  EXPECT_GE(dev.bar_map_failures(), 1u);
  // 64-bit BAR at the very top wraps: unmapped, no crash.
  SetCfg(kBar0 + 8, 0xFFFFC000);
  SetCfg(kBar0 + 12, 0xFFFFFFFF);
  EXPECT_FALSE(dev.BarMappedAt(2).has_value());
  // I/O BAR beyond the 64 KiB port space.
  SetCfg(kBar0 + 4, 0xFFFFFFE0);
  EXPECT_FALSE(dev.BarMappedAt(1).has_value());
  // Fix it: maps.
  SetCfg(kBar0 + 8, 0x00000000);
  SetCfg(kBar0 + 12, 0x80);
  EXPECT_EQ(dev.BarMappedAt(2), std::optional<uint64_t>(0x8000000000));
  // Random config garbage everywhere does not crash.
  for (uint32_t off = 0; off < 0x1010; off += 3) SetCfg(off, 0xFFFFFFFF);
  for (uint32_t off = 0; off < 0x1010; off += 5) SetCfg(off, 0);
}

TEST_F(PciDeviceTest, MsiDeliveryMultipleMessagesAndMasking) {
  const uint16_t off = dev.msi()->offset();
  EXPECT_EQ(dev.config().FindCapability(kCapIdMsi), std::optional<uint16_t>(off));
  EXPECT_EQ(Cfg(off + PciMsi::kControl, 2), PciMsi::kControl64Bit | PciMsi::kControlPerVectorMask | 2u << 1);
  EXPECT_EQ(dev.SignalVector(0), PciIrqResult::kDisabled);
  SetCfg(off + PciMsi::kAddressLo, 0xFEE01003);  // low bits are RO 0
  SetCfg(off + PciMsi::kAddressHi, 0);
  SetCfg(off + PciMsi::kData, 0x4020, 2);
  SetCfg(off + PciMsi::kControl, PciMsi::kControlEnable | 2u << PciMsi::kControlMmeShift, 2);  // 4 vectors
  EXPECT_EQ(dev.SignalVector(1), PciIrqResult::kDisabled);  // bus mastering off
  SetCfg(kCommand, kCommandBusMaster, 2);
  EXPECT_EQ(dev.SignalVector(3), PciIrqResult::kSent);
  EXPECT_EQ(dev.SignalVector(4), PciIrqResult::kBadVector);
  ASSERT_EQ(sink.sent().size(), 1u);
  EXPECT_EQ(sink.sent()[0].address, 0xFEE01000u);
  EXPECT_EQ(sink.sent()[0].data, 0x4023u);
  EXPECT_EQ(sink.sent()[0].requester_id, 0x18);
  // Mask vector 2: pending, then delivered on unmask.
  SetCfg(off + PciMsi::kMask, 0x4);
  EXPECT_EQ(Cfg(off + PciMsi::kMask), 0x4u);
  SetCfg(off + PciMsi::kMask, 0xFFFFFFFF);
  EXPECT_EQ(Cfg(off + PciMsi::kMask), 0xFu);  // only implemented vectors
  EXPECT_EQ(dev.SignalVector(2), PciIrqResult::kPending);
  EXPECT_EQ(Cfg(off + PciMsi::kPending), 0x4u);
  SetCfg(off + PciMsi::kPending, 0);  // read-only
  EXPECT_EQ(Cfg(off + PciMsi::kPending), 0x4u);
  SetCfg(off + PciMsi::kMask, 0xB);
  ASSERT_EQ(sink.sent().size(), 2u);
  EXPECT_EQ(sink.sent()[1].data, 0x4022u);
  EXPECT_EQ(Cfg(off + PciMsi::kPending), 0x0u);
}

TEST_F(PciDeviceTest, MsixTableDeliveryMaskingAndPba) {
  constexpr uint64_t kTable = 0x8000000000;
  EnableMsix(kTable);
  const uint16_t off = dev.msix()->offset();
  EXPECT_EQ(Cfg(off + PciMsix::kControl, 2), PciMsix::kControlEnable | 7u);
  EXPECT_EQ(Cfg(off + PciMsix::kTable), 2u);            // offset 0, BIR 2
  EXPECT_EQ(Cfg(off + PciMsix::kPba), 0x2000u | 2u);
  // Entries reset masked.
  EXPECT_EQ(MmioRead(kTable + 5 * 16 + 12, 4), 1u);
  MmioWrite(kTable + 5 * 16 + 0, 0xFEE02000, 4);
  MmioWrite(kTable + 5 * 16 + 4, 0, 4);
  MmioWrite(kTable + 5 * 16 + 8, 0x41, 4);
  EXPECT_EQ(dev.SignalVector(5), PciIrqResult::kPending);
  EXPECT_EQ(MmioRead(kTable + 0x2000, 8), 1u << 5);
  MmioWrite(kTable + 5 * 16 + 12, 0, 4);  // unmask: pending message goes out
  ASSERT_EQ(sink.sent().size(), 1u);
  EXPECT_EQ(sink.sent()[0].address, 0xFEE02000u);
  EXPECT_EQ(sink.sent()[0].data, 0x41u);
  EXPECT_EQ(sink.sent()[0].requester_id, 0x18);
  EXPECT_EQ(MmioRead(kTable + 0x2000, 8), 0u);
  EXPECT_EQ(dev.SignalVector(5), PciIrqResult::kSent);
  // Function mask holds everything; clearing it releases.
  SetCfg(off + PciMsix::kControl, PciMsix::kControlEnable | PciMsix::kControlFunctionMask, 2);
  EXPECT_EQ(dev.SignalVector(5), PciIrqResult::kPending);
  EXPECT_EQ(sink.sent().size(), 2u);
  SetCfg(off + PciMsix::kControl, PciMsix::kControlEnable, 2);
  EXPECT_EQ(sink.sent().size(), 3u);
  EXPECT_EQ(dev.SignalVector(8), PciIrqResult::kBadVector);
  // PBA is read-only; reserved vector-control bits are read-only.
  MmioWrite(kTable + 0x2000, ~uint64_t{0}, 8);
  EXPECT_EQ(MmioRead(kTable + 0x2000, 8), 0u);
  MmioWrite(kTable + 6 * 16 + 12, 0xFFFFFFFE, 4);
  EXPECT_EQ(MmioRead(kTable + 6 * 16 + 12, 4), 0u);
  // MSI-X takes precedence over MSI.
  EXPECT_TRUE(dev.msix()->enabled());
}

TEST_F(PciDeviceTest, ResetFunctionRestoresHeaderAndInterruptState) {
  constexpr uint64_t kTable = 0x8000000000;
  SetCfg(kBar0, 0xC0000000);
  SetCfg(kBar0 + 4, 0xC000);
  EnableMsix(kTable);
  SetCfg(kCommand, kCommandIo | kCommandMemory | kCommandBusMaster | kCommandSerr, 2);
  SetCfg(kCacheLineSize, 0x10, 1);
  SetCfg(kInterruptLine, 0x0B, 1);
  dev.config().UpdateBits(kStatus, 2, 0x8000 | 0x0100, 0);  // detected parity, master data parity
  // MSI programmed (message fields, mask, a pending vector) and enabled.
  const uint16_t msi = dev.msi()->offset();
  SetCfg(msi + PciMsi::kAddressLo, 0xFEE01000);
  SetCfg(msi + PciMsi::kAddressHi, 0x1);
  SetCfg(msi + PciMsi::kData, 0x4020, 2);
  SetCfg(msi + PciMsi::kMask, 0x1);
  SetCfg(msi + PciMsi::kControl, PciMsi::kControlEnable | 2u << PciMsi::kControlMmeShift, 2);
  dev.config().UpdateBits(msi + PciMsi::kPending, 4, 0x1, 0);
  // MSI-X: entry 3 unmasked with a message; function mask set and vector 3 pending.
  const uint16_t msix = dev.msix()->offset();
  MmioWrite(kTable + 3 * 16 + 0, 0xFEE02000, 4);
  MmioWrite(kTable + 3 * 16 + 8, 0x41, 4);
  MmioWrite(kTable + 3 * 16 + 12, 0, 4);
  SetCfg(msix + PciMsix::kControl, PciMsix::kControlEnable | PciMsix::kControlFunctionMask, 2);
  EXPECT_EQ(dev.SignalVector(3), PciIrqResult::kPending);
  ASSERT_TRUE(dev.BarMappedAt(0) && dev.BarMappedAt(1) && dev.BarMappedAt(2));
  MmioWrite(0xC0000000, 0x5A, 1);  // device-specific state is not the framework's to reset

  dev.FunctionLevelReset();

  // PCIe 6.0 §6.6.2: header registers back to their reset values, nothing decodes.
  EXPECT_EQ(Cfg(kCommand, 2), 0u);
  EXPECT_EQ(Cfg(kStatus, 2), kStatusCapList);
  EXPECT_EQ(Cfg(kCacheLineSize, 1), 0u);
  EXPECT_EQ(Cfg(kInterruptLine, 1), 0u);
  EXPECT_EQ(Cfg(kBar0), 0u);
  EXPECT_EQ(Cfg(kBar0 + 4), kBarIoSpace);
  EXPECT_EQ(Cfg(kBar0 + 8), kBarMem64 | kBarPrefetchable);
  EXPECT_EQ(Cfg(kBar0 + 12), 0u);
  EXPECT_EQ(Cfg(kVendorId), 0x56781234u) << "identity is read-only";
  for (unsigned i = 0; i < 3; ++i) EXPECT_FALSE(dev.BarMappedAt(i).has_value()) << i;
  uint8_t b;
  EXPECT_FALSE(mmio.Read(0xC0000000, &b, 1));
  EXPECT_FALSE(mmio.Read(kTable, &b, 1));
  EXPECT_FALSE(pio.Read(0xC000, &b, 1));
  // MSI: disabled, message fields, mask and pending bits 0; capability bits kept.
  EXPECT_EQ(Cfg(msi + PciMsi::kControl, 2), PciMsi::kControl64Bit | PciMsi::kControlPerVectorMask | 2u << 1);
  EXPECT_EQ(Cfg(msi + PciMsi::kAddressLo), 0u);
  EXPECT_EQ(Cfg(msi + PciMsi::kAddressHi), 0u);
  EXPECT_EQ(Cfg(msi + PciMsi::kData, 2), 0u);
  EXPECT_EQ(Cfg(msi + PciMsi::kMask), 0u);
  EXPECT_EQ(Cfg(msi + PciMsi::kPending), 0u);
  EXPECT_FALSE(dev.msi()->enabled());
  // MSI-X: Enable and Function Mask clear (table size kept), every entry masked with a zero
  // message, PBA clear.
  EXPECT_EQ(Cfg(msix + PciMsix::kControl, 2), 7u);
  EXPECT_FALSE(dev.msix()->IsPending(3));
  for (unsigned v = 0; v < dev.msix()->vectors(); ++v) {
    uint8_t e[16];
    dev.msix()->table().IoRead(v * 16, e, 16);
    for (unsigned i = 0; i < 16; ++i)
      EXPECT_EQ(e[i], i == 12 ? PciMsix::kEntryVectorControlMasked : 0u) << v << ":" << i;
  }
  uint8_t pba[8] = {1};
  dev.msix()->pba().IoRead(0, pba, 8);
  EXPECT_EQ(std::count(std::begin(pba), std::end(pba), 0), 8);
  EXPECT_EQ(dev.SignalVector(3), PciIrqResult::kDisabled);
  EXPECT_EQ(sink.sent().size(), 0u);

  // The guest can bring the function back up as after power-on (what pci_restore_state does).
  SetCfg(kBar0, 0xC0000000);
  SetCfg(kCommand, kCommandMemory, 2);
  EXPECT_EQ(dev.BarMappedAt(0), std::optional<uint64_t>(0xC0000000));
  EXPECT_EQ(MmioRead(0xC0000000, 1), 0x5Au);
}

TEST_F(PciDeviceTest, MsixHostileTableAccesses) {
  constexpr uint64_t kTable = 0x8000000000;
  EnableMsix(kTable);
  uint8_t buf[64];
  for (uint64_t off = 0; off < 0x4000; off += 13) {
    mmio.Read(kTable + off, buf, 8);
    std::fill(std::begin(buf), std::end(buf), 0);
    mmio.Write(kTable + off, buf, 8);
  }
  // Entry 0's vector control (byte 12) was never covered by the stride: still masked.
  EXPECT_EQ(dev.SignalVector(0), PciIrqResult::kPending);
  MmioWrite(kTable + 12, 0, 4);  // unmask: delivered to the sink (which judges the zero address)
  ASSERT_EQ(sink.sent().size(), 1u);
  EXPECT_EQ(sink.sent()[0].address, 0u);
  dev.msix()->table().IoWrite(~uint64_t{0} - 3, buf, 8);
  dev.msix()->table().IoRead(~uint64_t{0} - 3, buf, 8);
}

TEST_F(PciDeviceTest, ExpressAndExtendedCapabilities) {
  auto pcie_off = dev.config().FindCapability(kCapIdPcie);
  ASSERT_TRUE(pcie_off.has_value());
  EXPECT_EQ(Cfg(*pcie_off + pcie::kCaps, 2), 0x92u);  // v2, RCiEP
  EXPECT_TRUE(Cfg(*pcie_off + pcie::kDevCap) & pcie::kDevCapRoleBasedErrorReporting);
  auto ats_off = dev.config().FindExtCapability(kExtCapIdAts);
  auto pasid_off = dev.config().FindExtCapability(kExtCapIdPasid);
  auto pri_off = dev.config().FindExtCapability(kExtCapIdPri);
  ASSERT_TRUE(ats_off && pasid_off && pri_off);
  EXPECT_TRUE(Cfg(*ats_off + ats::kCap, 2) & ats::kCapPageAlignedRequest);
  SetCfg(*ats_off + ats::kControl, 0xFFFF, 2);
  EXPECT_EQ(Cfg(*ats_off + ats::kControl, 2), ats::kControlEnable | ats::kControlStuMask);
  EXPECT_EQ(Cfg(*pasid_off + pasid::kCap, 2), 20u << 8);
  SetCfg(*pasid_off + pasid::kControl, 0x7, 2);
  EXPECT_EQ(Cfg(*pasid_off + pasid::kControl, 2), pasid::kControlEnable);  // exec/priv unsupported
  EXPECT_EQ(Cfg(*pri_off + pri::kStatus, 2), pri::kStatusStopped | pri::kStatusPrgResponsePasidRequired);
  dev.config().UpdateBits(*pri_off + pri::kStatus, 2, pri::kStatusResponseFailure, 0);
  SetCfg(*pri_off + pri::kStatus, 0xFFFF, 2);
  EXPECT_EQ(Cfg(*pri_off + pri::kStatus, 2), pri::kStatusStopped | pri::kStatusPrgResponsePasidRequired);
  EXPECT_EQ(Cfg(*pri_off + pri::kCapacity), 512u);
  SetCfg(*pri_off + pri::kCapacity, 1);
  EXPECT_EQ(Cfg(*pri_off + pri::kCapacity), 512u);
  SetCfg(*pri_off + pri::kAllocation, 32);
  EXPECT_EQ(Cfg(*pri_off + pri::kAllocation), 32u);
}

TEST(PciDeviceSetupTest, RejectsBadBars) {
  class Dev final : public PciDevice {
   public:
    Dev() : PciDevice("bad", PciIdentity{}) {}
    using PciDevice::AddBar;
    using PciDevice::AddMsix;
  } d;
  EXPECT_FALSE(d.AddBar(6, PciBarKind::kMmio32, 4096).ok());
  EXPECT_FALSE(d.AddBar(5, PciBarKind::kMmio64, 4096).ok());  // needs two slots
  EXPECT_FALSE(d.AddBar(0, PciBarKind::kMmio32, 3000).ok());
  EXPECT_FALSE(d.AddBar(0, PciBarKind::kIo, 512).ok());
  EXPECT_TRUE(d.AddBar(0, PciBarKind::kMmio64, 4096).ok());
  EXPECT_FALSE(d.AddBar(1, PciBarKind::kMmio32, 4096).ok());  // upper half of BAR0
  EXPECT_FALSE(d.AddMsix(4, 2, 0, 0x800).ok());              // no BAR2
  EXPECT_FALSE(d.AddMsix(512, 0, 0, 0x800).ok());             // table would leave the BAR
}

}  // namespace
}  // namespace ionest

namespace ionest {
namespace {

// Signals racing with guest mask/unmask of the entry and the function: nothing is left pending
// once everything is unmasked, and no signal produces more than one message.
TEST_F(PciDeviceTest, MsixSignalRacesWithMasking) {
  constexpr uint64_t kTable = 0x8000000000;
  EnableMsix(kTable);
  MmioWrite(kTable + 0, 0xFEE00000, 4);
  MmioWrite(kTable + 8, 0x50, 4);
  MmioWrite(kTable + 12, 0, 4);
  constexpr int kSignals = 20000;
  std::atomic<int> sent{0};
  std::thread signaller([&] {
    for (int i = 0; i < kSignals; ++i)
      if (dev.SignalVector(0) == PciIrqResult::kSent) sent++;
  });
  const uint16_t ctl = dev.msix()->offset() + PciMsix::kControl;
  for (int i = 0; i < 2000; ++i) {
    MmioWrite(kTable + 12, i & 1, 4);
    SetCfg(ctl, PciMsix::kControlEnable | ((i & 2) ? PciMsix::kControlFunctionMask : 0), 2);
  }
  signaller.join();
  MmioWrite(kTable + 12, 0, 4);
  SetCfg(ctl, PciMsix::kControlEnable, 2);
  EXPECT_FALSE(dev.msix()->IsPending(0));
  const size_t delivered = sink.sent().size();
  EXPECT_GE(delivered, static_cast<size_t>(sent.load()));
  EXPECT_LE(delivered, static_cast<size_t>(kSignals));
}

}  // namespace
}  // namespace ionest
