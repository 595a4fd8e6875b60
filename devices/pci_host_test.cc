#include "devices/pci_host.h"

#include <memory>

#include "devices/device_test_util.h"
#include "devices/pci_test_device.h"
#include "gtest/gtest.h"
#include "vmm/guest_memory.h"

namespace ionest {
namespace {

using namespace pci;
using testing::FakeMsiSink;
using testing::TestPciDevice;

// Records which requester IDs asked for a DMA space.
class RecordingProvider final : public DmaSpaceProvider {
 public:
  explicit RecordingProvider(PhysMemory& m) : space(m) {}
  DmaSpace& ForRequester(uint16_t rid) override {
    rids.push_back(rid);
    return space;
  }
  IdentityDmaSpace space;
  std::vector<uint16_t> rids;
};

class PciHostTest : public ::testing::Test {
 protected:
  PciHostTest() : mem(*GuestMemory::Create({{0, 1 << 20}})), provider(*mem), host(mmio, pio, sink, provider) {
    EXPECT_TRUE(host.Register().ok());
  }
  uint32_t In32(uint16_t port) {
    uint8_t b[4];
    pio.Read(port, b, 4);
    return b[0] | b[1] << 8 | b[2] << 16 | uint32_t{b[3]} << 24;
  }
  void Out32(uint16_t port, uint32_t v) {
    const uint8_t b[4] = {static_cast<uint8_t>(v), static_cast<uint8_t>(v >> 8), static_cast<uint8_t>(v >> 16),
                          static_cast<uint8_t>(v >> 24)};
    pio.Write(port, b, 4);
  }
  uint64_t Ecam(uint8_t bus, uint8_t devfn, uint32_t reg, size_t size = 4) {
    uint8_t b[8];
    mmio.Read(pci_layout::kEcamBase + (uint64_t{bus} << 20 | uint64_t{devfn} << 12 | reg), b, size);
    uint64_t v = 0;
    for (size_t i = 0; i < size; ++i) v |= uint64_t{b[i]} << (8 * i);
    return v;
  }
  void EcamWrite(uint8_t devfn, uint32_t reg, uint32_t v, size_t size = 4) {
    uint8_t b[4];
    for (size_t i = 0; i < size; ++i) b[i] = static_cast<uint8_t>(v >> (8 * i));
    mmio.Write(pci_layout::kEcamBase + (uint64_t{devfn} << 12 | reg), b, size);
  }

  std::unique_ptr<GuestMemory> mem;
  RecordingProvider provider;
  FakeMsiSink sink;
  IoBus mmio{"mmio"}, pio{"pio"};
  PciHost host;
};

TEST_F(PciHostTest, HostBridgeVisibleThroughEcamAndCf8) {
  EXPECT_EQ(Ecam(0, 0, 0), uint32_t{pci_layout::kHostBridgeDeviceId} << 16 | pci_layout::kHostBridgeVendorId);
  EXPECT_EQ(Ecam(0, 0, kRevisionId) >> 8, 0x060000u);
  Out32(0xCF8, 0x80000000);
  EXPECT_EQ(In32(0xCF8), 0x80000000u);
  EXPECT_EQ(In32(0xCFC), uint32_t{pci_layout::kHostBridgeDeviceId} << 16 | pci_layout::kHostBridgeVendorId);
  // Byte read of the upper half of the vendor/device dword through 0xCFE.
  uint8_t b;
  pio.Read(0xCFE, &b, 1);
  EXPECT_EQ(b, pci_layout::kHostBridgeDeviceId & 0xFF);
  // Enable bit clear: data port reads all-ones.
  Out32(0xCF8, 0x00000000);
  EXPECT_EQ(In32(0xCFC), 0xFFFFFFFFu);
  EXPECT_EQ(provider.rids, std::vector<uint16_t>{0});
}

TEST_F(PciHostTest, AbsentFunctionsAndOtherBusesReadAllOnes) {
  EXPECT_EQ(Ecam(0, 0x08, 0), 0xFFFFFFFFu);
  EXPECT_EQ(Ecam(1, 0x00, 0), 0xFFFFFFFFu);
  EXPECT_EQ(Ecam(255, 0xFF, 0xFFC), 0xFFFFFFFFu);
  EcamWrite(0x08, 0x04, 0xFFFF);  // no crash
  Out32(0xCF8, 0x80FFFFFC);
  EXPECT_EQ(In32(0xCFC), 0xFFFFFFFFu);
}

TEST_F(PciHostTest, DeviceAttachAssignAndConfigure) {
  TestPciDevice dev;
  ASSERT_TRUE(host.AddDevice(0x18, dev).ok());  // 00:03.0
  EXPECT_EQ(dev.requester_id(), 0x18);
  EXPECT_EQ(provider.rids.back(), 0x18);
  EXPECT_FALSE(host.AddDevice(0x18, dev).ok());
  EXPECT_EQ(host.Find(0x18), &dev);
  EXPECT_EQ(host.Find(0x118), nullptr);
  EXPECT_EQ(Ecam(0, 0x18, 0), 0x56781234u);
  // Legacy mechanism reaches the same function: bus 0, device 3, register 0x2C.
  Out32(0xCF8, 0x80000000 | 3u << 11 | 0x00);
  EXPECT_EQ(In32(0xCFC), 0x56781234u);
  ASSERT_TRUE(host.AssignResources().ok());
  // Largest first: BAR2 (16 KiB, 64-bit) from the 64-bit window, BAR0 from the 32-bit window.
  EXPECT_EQ(dev.BarMappedAt(2), std::optional<uint64_t>(pci_layout::kMmio64Base));
  EXPECT_EQ(dev.BarMappedAt(0), std::optional<uint64_t>(pci_layout::kMmio32Base));
  EXPECT_EQ(dev.BarMappedAt(1), std::optional<uint64_t>(pci_layout::kIoBase));
  EXPECT_EQ(Ecam(0, 0x18, kCommand, 2) & (kCommandIo | kCommandMemory), kCommandIo | kCommandMemory);
  EXPECT_EQ(Ecam(0, 0x18, kCommand, 2) & kCommandBusMaster, 0u);
  // BAR register write through ECAM remaps.
  EcamWrite(0x18, kBar0, 0xC1000000);
  EXPECT_EQ(dev.BarMappedAt(0), std::optional<uint64_t>(0xC1000000));
  // An ECAM access crossing into the next function is clipped.
  uint8_t buf[8];
  mmio.Read(pci_layout::kEcamBase + (0x18u << 12) + 0xFFC, buf, 8);
  EXPECT_EQ(buf[4], 0xFF);
}

TEST_F(PciHostTest, MultiFunctionBit) {
  TestPciDevice f0, f1;
  ASSERT_TRUE(host.AddDevice(0x20, f0).ok());
  EXPECT_EQ(Ecam(0, 0x20, kHeaderType, 1), 0x00u);
  ASSERT_TRUE(host.AddDevice(0x21, f1).ok());
  EXPECT_EQ(Ecam(0, 0x20, kHeaderType, 1), 0x80u);
}

TEST_F(PciHostTest, RegisterRejectsBadEcamAndOverlap) {
  IoBus mmio2("m2"), pio2("p2");
  PciHost h2(mmio2, pio2, sink, provider);
  EXPECT_FALSE(h2.Register(0xE0000000, 0x1234).ok());
  EXPECT_TRUE(h2.Register(0xE0000000, 1 << 20).ok());  // one bus
  PciHost h3(mmio2, pio2, sink, provider);
  EXPECT_FALSE(h3.Register(0xE0000000, 1 << 20).ok());
}

}  // namespace
}  // namespace ionest
