// Puts every device model on one PIO and one MMIO bus at the addresses the VMM and firmware use
// (uart16550.h, acpi_pm_layout.h, cmos_rtc.h, ioapic.h, pci_layout.h) and checks that nothing
// collides and every device answers at its documented address, including BARs assigned from the
// PCI windows and an interrupt path device → IOAPIC → MSI.
#include <fcntl.h>
#include <unistd.h>

#include <memory>
#include <string>

#include "devices/cmos_rtc.h"
#include "devices/device_test_util.h"
#include "devices/ioapic.h"
#include "devices/pci_host.h"
#include "devices/pci_test_device.h"
#include "devices/power_control.h"
#include "devices/uart16550.h"
#include "devices/virtio_blk.h"
#include "devices/virtio_pci.h"
#include "gtest/gtest.h"
#include "vmm/guest_memory.h"

namespace ionest {
namespace {

uint64_t In(IoBus& bus, uint64_t addr, size_t size) {
  uint8_t b[8];
  EXPECT_TRUE(bus.Read(addr, b, size)) << std::hex << addr;
  uint64_t v = 0;
  for (size_t i = 0; i < size; ++i) v |= uint64_t{b[i]} << (8 * i);
  return v;
}
void Out(IoBus& bus, uint64_t addr, uint64_t v, size_t size) {
  uint8_t b[8];
  for (size_t i = 0; i < size; ++i) b[i] = static_cast<uint8_t>(v >> (8 * i));
  EXPECT_TRUE(bus.Write(addr, b, size)) << std::hex << addr;
}

TEST(DeviceLayoutTest, AllDevicesCoexistAtTheirDocumentedAddresses) {
  auto mem = *GuestMemory::Create({{0, 1 << 20}});
  BypassDmaProvider provider(*mem);
  testing::FakeMsiSink sink;
  IoBus pio("pio"), mmio("mmio");

  Ioapic ioapic(sink, IoapicConfig{.id = 2});
  ASSERT_TRUE(mmio.Register(kIoapicBase, kIoapicMmioSize, &ioapic, "ioapic").ok());
  std::string console;
  Uart16550 uart(ioapic.Line(kCom1Irq), [&](uint8_t b) { console.push_back(static_cast<char>(b)); });
  ASSERT_TRUE(pio.Register(kCom1Base, kUartRegisterSpan, &uart, "com1").ok());
  int shutdowns = 0;
  PowerControl power([&](ShutdownKind) { ++shutdowns; }, ioapic.Line(acpi_pm::kSciIrq));
  ASSERT_TRUE(power.RegisterOn(pio).ok());
  CmosRtc rtc;
  ASSERT_TRUE(pio.Register(kCmosIoBase, kCmosIoLen, &rtc, "rtc").ok());
  PciHost host(mmio, pio, sink, provider);
  ASSERT_TRUE(host.Register().ok());

  char tmpl[] = "/tmp/ionest-layout-XXXXXX";
  const int fd = mkstemp(tmpl);
  ASSERT_EQ(ftruncate(fd, 1 << 20), 0);
  close(fd);
  auto blk = VirtioBlk::Open(tmpl, {});
  unlink(tmpl);
  ASSERT_TRUE(blk.ok());
  auto vblk = VirtioPciDevice::Create("virtio-blk", **blk, VirtioBlk::kPciClass, {});
  ASSERT_TRUE(vblk.ok());
  ASSERT_TRUE(host.AddDevice(0x10, **vblk).ok());
  testing::TestPciDevice testdev;
  ASSERT_TRUE(host.AddDevice(0x18, testdev).ok());
  ASSERT_TRUE(host.AssignResources().ok());
  EXPECT_EQ(mmio.unhandled_accesses(), 0u);

  // Legacy devices.
  Out(pio, kCom1Base + 7, 0x5A, 1);
  EXPECT_EQ(In(pio, kCom1Base + 7, 1), 0x5Au);
  Out(pio, kCom1Base, 'x', 1);
  EXPECT_EQ(console, "x");
  Out(pio, kCmosIoBase, 0x0D, 1);
  EXPECT_EQ(In(pio, kCmosIoBase + 1, 1), 0x80u);
  EXPECT_EQ(In(pio, acpi_pm::kPm1aCntPort, 2) & acpi_pm::kPm1CntSciEn, acpi_pm::kPm1CntSciEn);
  EXPECT_EQ(In(pio, acpi_pm::kI8042CommandPort, 1) & 0x3, 0u);
  Out(mmio, kIoapicBase, 0x01, 1);
  EXPECT_EQ(In(mmio, kIoapicBase + 0x10, 4), 0x00170020u);

  // PCI: the same function through CF8/CFC and ECAM; BARs inside the windows, decoding.
  Out(pio, pci_layout::kConfigAddressPort, 0x80000000u | (0x10u << 8), 4);
  EXPECT_EQ(In(pio, pci_layout::kConfigDataPort, 4), 0x10421AF4u);
  EXPECT_EQ(In(mmio, pci_layout::kEcamBase + (0x10u << 12), 4), 0x10421AF4u);
  const auto virtio_bar = (*vblk)->BarMappedAt(VirtioPciDevice::kVirtioBar);
  ASSERT_TRUE(virtio_bar.has_value());
  EXPECT_GE(*virtio_bar, pci_layout::kMmio64Base);
  EXPECT_LT(*virtio_bar, pci_layout::kMmio64Base + pci_layout::kMmio64Size);
  const auto msix_bar = (*vblk)->BarMappedAt(VirtioPciDevice::kMsixBar);
  ASSERT_TRUE(msix_bar.has_value());
  EXPECT_GE(*msix_bar, pci_layout::kMmio32Base);
  EXPECT_LT(*msix_bar, pci_layout::kMmio32Base + pci_layout::kMmio32Size);
  const auto io_bar = testdev.BarMappedAt(1);
  ASSERT_TRUE(io_bar.has_value());
  EXPECT_GE(*io_bar, pci_layout::kIoBase);
  EXPECT_EQ(In(mmio, *virtio_bar + VirtioPciDevice::kDeviceCfgOffset, 8), (1u << 20) / 512);

  // Interrupt path: UART RX → IOAPIC pin 4 (edge, vector 0x24, dest 0) → MSI.
  Out(mmio, kIoapicBase, 0x10 + 2 * kCom1Irq, 1);
  Out(mmio, kIoapicBase + 0x10, 0x24, 4);
  Out(pio, kCom1Base + 1, 0x01, 1);  // ERBFI
  const uint8_t in[] = {'k'};
  uart.PushInput(in);
  ASSERT_EQ(sink.sent().size(), 1u);
  EXPECT_EQ(sink.sent()[0].data, 0x24u);
  EXPECT_EQ(sink.sent()[0].requester_id, kIoapicDefaultSourceId);
  EXPECT_EQ(shutdowns, 0);
}

}  // namespace
}  // namespace ionest
