// Fuzzes the register interface together with guest memory contents, DMA, interrupts and page
// requests: a hostile guest programming the VT-d unit arbitrarily must not crash or hang the VMM.
#include <cstdint>

#include "iommu/vtd/fuzz/fuzz_input.h"
#include "iommu/vtd/testing/vtd_test_env.h"

using ionest::vtd::fuzz::FuzzInput;
using ionest::vtd::testing::VtdTestEnv;

namespace {
constexpr uint64_t kFuzzRam = VtdTestEnv::kTablePool + (4ull << 20);  // 36 MiB
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  FuzzInput in(data, size);
  static const char* kProfiles[] = {"", "sm=off", "sm=off,cm=off,qi=off,ir=off", "aw=57,nfr=3"};
  auto env = VtdTestEnv::Create(kProfiles[in.Get<uint8_t>() % 4], kFuzzRam);
  if (!env.ok()) return 0;
  ionest::vtd::VtdIommu& iommu = *(*env)->iommu;
  ionest::GuestMemory& mem = *(*env)->memory;
  const uint32_t window = iommu.mmio_size();
  for (int ops = 0; ops < 2000 && !in.empty(); ++ops) {
    switch (in.Get<uint8_t>() % 8) {
      case 0: {  // MMIO write: offsets concentrate on the register area
        uint32_t off = in.Get<uint16_t>() % window;
        uint32_t size = (in.Get<uint8_t>() & 1) ? 8 : 4;
        iommu.WriteRegister(off & ~(size - 1), in.Get<uint64_t>(), size);
        break;
      }
      case 1: {
        uint32_t off = in.Get<uint16_t>() % window;
        (void)iommu.ReadRegister(off & ~3u, 4);
        break;
      }
      case 2: {  // guest memory write anywhere in the first 64 MiB (tables, queues)
        uint64_t addr = (in.Get<uint32_t>() % kFuzzRam) & ~7ull;
        (void)mem.WriteObj<uint64_t>(addr, in.Get<uint64_t>());
        break;
      }
      case 3: {  // DMA
        uint16_t rid = in.Get<uint16_t>();
        uint64_t iova = in.Get<uint64_t>();
        uint8_t flags = in.Get<uint8_t>();
        ionest::DmaAttrs attrs;
        if (flags & 1) attrs.pasid = in.Get<uint32_t>() & 0xfffff;
        uint8_t buf[64];
        ionest::DmaSpace& s = iommu.ForRequester(rid);
        if (flags & 2) {
          (void)s.Write(iova, buf, 1 + flags % 64, attrs);
        } else {
          (void)s.Read(iova, buf, 1 + flags % 64, attrs);
        }
        break;
      }
      case 4: {
        ionest::MsiMessage m{in.Get<uint64_t>(), in.Get<uint32_t>(), in.Get<uint16_t>()};
        (void)iommu.SendMsi(m);
        break;
      }
      case 5: {
        ionest::PageRequest r;
        r.rid = in.Get<uint16_t>();
        if (in.Get<uint8_t>() & 1) r.pasid = in.Get<uint32_t>() & 0xfffff;
        r.addr = in.Get<uint64_t>() & ~0xfffull;
        r.access = in.Get<uint8_t>() & 0xf;
        r.last = in.Get<uint8_t>() & 1;
        r.group_index = in.Get<uint16_t>() & 0x1ff;
        (void)iommu.InjectPageRequest(r);
        break;
      }
      case 6: {
        ionest::DmaSpace& s = iommu.ForRequester(in.Get<uint16_t>());
        (void)s.AtsTranslate(in.Get<uint64_t>(), in.Get<uint8_t>() & 0xf, {});
        (void)s.AllowTranslatedRequest();
        break;
      }
      case 7: {  // Linux-like bring-up, to reach deeper states quickly
        (void)(*env)->driver->Init(in.Get<uint8_t>() & 1);
        break;
      }
    }
  }
  return 0;
}
