// libFuzzer target: a hostile guest driving ionest-dmatest — random BAR0/SRAM accesses, config
// writes (capabilities, command, MSI-X) and doorbells — with jobs run synchronously against a
// VT-d model in scalable mode whose tables the input also scribbles. Page-response waits are
// bounded by a 1 ms timeout. Must not crash, hang or access memory outside guest RAM.
#include <cstddef>
#include <cstdint>
#include <cstring>

#include "devices/pci_regs.h"
#include "devices/testdev/dma_test_device.h"
#include "iommu/vtd/fuzz/fuzz_input.h"
#include "iommu/vtd/testing/vtd_builders.h"
#include "iommu/vtd/vtd_iommu.h"
#include "vmm/guest_memory.h"

namespace {

using namespace ionest;

constexpr uint64_t kRam = 1ull << 20;
constexpr uint16_t kRid = 0x18;

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
  IdentityDmaSpace identity(ram);  // DMA spaces outlive the device
  DmaTestDeviceOptions o;
  o.synchronous = true;
  o.max_job_length = 64 << 10;
  o.page_response_timeout = absl::Milliseconds(1);
  o.page_response_time_per_request = absl::ZeroDuration();
  o.min_retry_backoff = absl::Microseconds(10);  // fuzz inputs must stay fast
  o.max_retry_backoff = absl::Microseconds(100);
  o.atc_entries = 4;
  DmaTestDevice dev("fuzz", o);
  if (!dev.init_status().ok()) __builtin_trap();
  const bool through_iommu = in.Get<uint8_t>() & 1;
  dev.Attach(PciAttachment{kRid, &iommu, through_iommu ? &iommu.ForRequester(kRid) : &identity, &mmio, &pio});
  if (through_iommu) {
    // Scalable mode on, root table at a fuzz-scribbled page, QI on, PRQ at 0x80000.
    iommu.WriteRegister(vtd::kRtaddrReg, 0x1000 | (1u << 10));
    iommu.WriteRegister(vtd::kGcmdReg, vtd::kGcmdSrtp, 4);
    iommu.WriteRegister(vtd::kPqaReg, 0x80000);
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
      case 0:
      case 1:
        dev.bar(0)->IoWrite(off % dmatest::kBar0Size, b, n);
        break;
      case 2:
        dev.bar(0)->IoRead(off % dmatest::kBar0Size, b, n);
        break;
      case 3:
        dev.ConfigWrite(off % 0x1000, b, n);
        break;
      case 4:  // a job: registers from the input, then the doorbell
        dev.WriteReg(dmatest::kRegSrc, value % (kRam + 0x10000));
        dev.WriteReg(dmatest::kRegDst, (value >> 20) % (kRam + 0x10000));
        dev.WriteReg(dmatest::kRegLen, off * 3);
        dev.WriteReg(dmatest::kRegCtrl, op >> 3 | (uint64_t{b[7]} << 8));
        dev.WriteReg(dmatest::kRegDoorbell, dmatest::kDoorbellStart);
        break;
      case 5:
        ram.Write((value >> 8) % (kRam - 8), &value, 8).IgnoreError();
        break;
      case 6:
        dev.bar(2)->IoWrite(off % dmatest::kBar2Size, b, n);
        break;
      case 7:
        dev.OnDeviceTlbInvalidate((op & 8) ? std::optional<uint32_t>(off) : std::nullopt, value, value >> 40);
        dev.OnPageResponse(PageResponse{kRid, std::nullopt, static_cast<uint16_t>(off & 0x1ff),
                                        static_cast<PageResponseCode>(b[0] % 2)});
        break;
    }
  }
  return 0;
}
