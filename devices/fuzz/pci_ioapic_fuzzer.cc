// libFuzzer target: hostile guest accesses to the PCI host (ECAM, 0xCF8/0xCFC) with a PCI test
// function behind it, the IOAPIC MMIO window and the legacy devices (UART, PM, RTC).
#include <cstdint>
#include <cstring>
#include <memory>

#include "devices/cmos_rtc.h"
#include "devices/ioapic.h"
#include "devices/pci_host.h"
#include "devices/pci_test_device.h"
#include "devices/power_control.h"
#include "devices/uart16550.h"
#include "iommu/dma_space.h"
#include "vmm/guest_memory.h"

namespace {

using namespace ionest;

class NullSink final : public MsiSink {
 public:
  absl::Status SendMsi(const MsiMessage&) override { return absl::OkStatus(); }
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static auto mem = *GuestMemory::Create({{0, 1 << 20}});
  static BypassDmaProvider provider(*mem);
  NullSink sink;
  IoBus mmio("mmio"), pio("pio");
  PciHost host(mmio, pio, sink, provider);
  if (!host.Register().ok()) abort();
  testing::TestPciDevice dev;
  if (!host.AddDevice(0x18, dev).ok()) abort();
  Ioapic ioapic(sink);
  if (!mmio.Register(kIoapicBase, kIoapicMmioSize, &ioapic, "ioapic").ok()) abort();
  Uart16550 uart(ioapic.Line(4), [](uint8_t) {});
  if (!pio.Register(kCom1Base, kUartRegisterSpan, &uart, "com1").ok()) abort();
  PowerControl power([](ShutdownKind) {}, ioapic.Line(9));
  if (!power.RegisterOn(pio).ok()) abort();
  CmosRtc rtc;
  if (!pio.Register(kCmosIoBase, kCmosIoLen, &rtc, "rtc").ok()) abort();

  size_t i = 0;
  auto take = [&](size_t n) {
    uint64_t v = 0;
    for (size_t k = 0; k < n && i < size; ++k) v |= uint64_t{data[i++]} << (8 * k);
    return v;
  };
  for (int ops = 0; i < size && ops < 4096; ++ops) {
    const uint8_t op = static_cast<uint8_t>(take(1));
    const size_t sz = size_t{1} << (op >> 6);
    uint8_t buf[8];
    const uint64_t v = take(8);
    std::memcpy(buf, &v, 8);
    switch (op & 0x7) {
      case 0: mmio.Write(pci_layout::kEcamBase + (take(3) & 0xFFFFF), buf, sz); break;
      case 1: mmio.Read(pci_layout::kEcamBase + (take(3) & 0xFFFFF), buf, sz); break;
      case 2: pio.Write(0xCF8 + (take(1) & 7), buf, sz); break;
      case 3: pio.Read(0xCF8 + (take(1) & 7), buf, sz); break;
      case 4: mmio.Write(kIoapicBase + (take(2) & 0xFFF), buf, sz); break;
      case 5: ioapic.SetIrq(static_cast<unsigned>(take(1) % 32), take(1) & 1); ioapic.Eoi(static_cast<uint8_t>(take(1))); break;
      case 6: pio.Write(take(2) & 0xFFFF, buf, sz); break;  // any port: UART/PM/RTC/i8042/BARs
      case 7: {
        // Touch whatever the guest mapped in the PCI windows.
        const uint64_t base = (op & 8) ? pci_layout::kMmio64Base : pci_layout::kMmio32Base;
        if (op & 16) {
          mmio.Write(base + (take(3) & 0xFFFFFF), buf, sz);
        } else {
          mmio.Read(base + (take(3) & 0xFFFFFF), buf, sz);
        }
        dev.SignalVector(static_cast<unsigned>(take(1) % 16));
        break;
      }
    }
  }
  return 0;
}
