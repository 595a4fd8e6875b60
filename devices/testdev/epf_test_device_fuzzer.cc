// libFuzzer target: a hostile guest driving pci-epf-test — random BAR0 register/scratch/MSI-X
// accesses, config writes (command, MSI, MSI-X) and commands — run synchronously against a VT-d
// model whose tables the input scribbles, or an identity space. Must not crash, hang or touch
// memory outside guest RAM.
#include <cstddef>
#include <cstdint>
#include <cstring>

#include "devices/pci_regs.h"
#include "devices/testdev/epf_test_device.h"
#include "iommu/vtd/fuzz/fuzz_input.h"
#include "iommu/vtd/testing/vtd_builders.h"
#include "iommu/vtd/vtd_iommu.h"
#include "vmm/guest_memory.h"

namespace {

using namespace ionest;

constexpr uint64_t kRam = 1ull << 20;
constexpr uint16_t kRid = 0x10;

GuestMemory& Ram() {
  static GuestMemory* m = GuestMemory::Create({{0, kRam}}).value().release();
  return *m;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  vtd::fuzz::FuzzInput in(data, size);
  GuestMemory& ram = Ram();
  std::memset(ram.HostPointer(0, kRam), 0, kRam);
  vtd::testing::RecordingMsiSink cpu;
  vtd::VtdIommu iommu(ram, cpu, vtd::VtdProfile{});
  IoBus mmio("mmio"), pio("pio");
  IdentityDmaSpace identity(ram);
  EpfTestDeviceOptions o;
  o.synchronous = true;
  o.max_transfer = 64 << 10;
  EpfTestDevice dev("fuzz", o);
  if (!dev.init_status().ok()) __builtin_trap();
  const bool through_iommu = in.Get<uint8_t>() & 1;
  dev.Attach(PciAttachment{kRid, &iommu, through_iommu ? &iommu.ForRequester(kRid) : &identity, &mmio, &pio});
  if (through_iommu) {
    iommu.WriteRegister(vtd::kRtaddrReg, 0x1000 | (1u << 10));
    iommu.WriteRegister(vtd::kGcmdReg, vtd::kGcmdSrtp, 4);
    iommu.WriteRegister(vtd::kGcmdReg, vtd::kGcmdTe, 4);
  }
  for (int ops = 0; ops < 64 && !in.empty(); ++ops) {
    const uint8_t op = in.Get<uint8_t>();
    const uint16_t off = in.Get<uint16_t>();
    const uint64_t value = in.Get<uint64_t>();
    uint8_t b[8];
    std::memcpy(b, &value, 8);
    const size_t n = size_t{1} << ((op >> 4) & 3);
    switch (op & 7) {
      case 0:  // register window (COMMAND runs synchronously)
        dev.bar(0)->IoWrite(off % epf::kBar0Size, b, n);
        break;
      case 1:
        dev.bar(0)->IoRead(off % epf::kBar0Size, b, n);
        break;
      case 2:  // config space, incl. command / MSI / MSI-X control
        dev.ConfigWrite(off % 4096, b, n);
        break;
      case 3:
        dev.ConfigRead(off % 4096, b, n);
        break;
      case 4: {  // a well-formed transfer with fuzzed parameters
        dev.WriteReg32(epf::kRegSrcLo, static_cast<uint32_t>(value));
        dev.WriteReg32(epf::kRegDstLo, static_cast<uint32_t>(value >> 20));
        dev.WriteReg32(epf::kRegSize, off * 37);
        dev.WriteReg32(epf::kRegIrqType, op >> 6);
        dev.WriteReg32(epf::kRegIrqNumber, off & 0x3f);
        dev.WriteReg32(epf::kRegCommand, 1u << (off % 6));
        break;
      }
      case 5: {  // other BARs
        const unsigned bar = 1 + off % 5;
        dev.bar(bar)->IoWrite(value % epf::kBarSizes[bar], b, n);
        break;
      }
      case 6:  // scribble guest memory (IOMMU tables live there)
        std::memcpy(ram.HostPointer((value & (kRam - 1)) & ~7ull, 8), b, 8);
        break;
      default: {
        uint16_t cmd = pci::kCommandMemory | pci::kCommandBusMaster;
        dev.ConfigWrite(pci::kCommand, reinterpret_cast<uint8_t*>(&cmd), 2);
        break;
      }
    }
  }
  if (!dev.WaitIdle(absl::Seconds(5))) __builtin_trap();
  return 0;
}
