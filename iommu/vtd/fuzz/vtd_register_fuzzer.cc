// libFuzzer target: random sequences of VT-d register reads/writes interleaved with DMA, ATS,
// page requests and interrupts against a model over a small guest RAM. Whatever the guest
// programs, the model must neither crash nor touch memory outside guest RAM (ASan/UBSan).
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>

#include "iommu/vtd/fuzz/fuzz_input.h"
#include "iommu/vtd/testing/vtd_builders.h"
#include "iommu/vtd/vtd_iommu.h"
#include "vmm/guest_memory.h"

namespace {

using namespace ionest;
using namespace ionest::vtd;

constexpr uint64_t kRam = 1ull << 20;

GuestMemory& Ram() {
  static GuestMemory* m = GuestMemory::Create({{0, kRam}}).value().release();
  return *m;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  fuzz::FuzzInput in(data, size);
  GuestMemory& ram = Ram();
  std::memset(ram.HostPointer(0, kRam), 0, kRam);
  VtdProfile profile;
  const uint8_t flags = in.Get<uint8_t>();
  profile.scalable_mode = flags & 1;
  profile.aw = (flags & 2) ? 57 : 48;
  profile.caching_mode = flags & 4;
  profile.nfr = 1 + ((flags >> 3) & 7);
  testing::RecordingMsiSink cpu;
  VtdIommu iommu(ram, cpu, profile);
  testing::RecordingDmaClient client;
  iommu.ForRequester(0x10).SetClient(&client);
  const uint32_t window = iommu.mmio_size();
  for (int ops = 0; ops < 256 && !in.empty(); ++ops) {
    const uint8_t op = in.Get<uint8_t>();
    const uint32_t offset = in.Get<uint16_t>() % window;
    const uint64_t value = in.Get<uint64_t>();
    switch (op % 8) {
      case 0:
      case 1: {  // register write of 4 or 8 bytes (any alignment, as a hostile guest may)
        const size_t n = (op & 8) ? 8 : 4;
        uint8_t b[8];
        std::memcpy(b, &value, 8);
        iommu.IoWrite(offset, b, n);
        break;
      }
      case 2: {
        uint8_t b[8];
        iommu.IoRead(offset, b, (op & 8) ? 8 : 4);
        break;
      }
      case 3: {  // guest memory scribble (tables, queues)
        ram.Write((value >> 8) % (kRam - 8), &value, 8).IgnoreError();
        break;
      }
      case 4: {  // DMA through the requester's space
        DmaSpace& space = iommu.ForRequester(static_cast<uint16_t>(offset));
        uint8_t buf[64];
        DmaAttrs attrs;
        if (op & 0x10) attrs.pasid = static_cast<uint32_t>(value >> 44) & 0xfffff;
        if (op & 8)
          space.Write(value, buf, (op >> 5) + 1, attrs).IgnoreError();
        else
          space.Read(value, buf, (op >> 5) + 1, attrs).IgnoreError();
        break;
      }
      case 5: {
        DmaAttrs attrs;
        if (op & 0x10) attrs.pasid = static_cast<uint32_t>(value >> 44) & 0xfffff;
        iommu.ForRequester(static_cast<uint16_t>(offset)).AtsTranslate(value, kDmaRead | ((op & 8) ? kDmaWrite : 0), attrs);
        break;
      }
      case 6: {
        PageRequest r;
        r.rid = static_cast<uint16_t>(offset);
        if (op & 0x10) r.pasid = static_cast<uint32_t>(value >> 44) & 0xfffff;
        r.addr = value & ~0xfffull;
        r.access = (op >> 5) & 0xf;
        r.last = op & 8;
        r.group_index = offset & 0x1ff;
        iommu.ForRequester(r.rid).SendPageRequest(r).IgnoreError();
        break;
      }
      case 7: {
        MsiMessage m{0xfee00000ull | (value & 0xfffff), static_cast<uint32_t>(value >> 32), static_cast<uint16_t>(offset)};
        iommu.SendMsi(m).IgnoreError();
        break;
      }
    }
  }
  iommu.ForRequester(0x10).SetClient(nullptr);
  return 0;
}
