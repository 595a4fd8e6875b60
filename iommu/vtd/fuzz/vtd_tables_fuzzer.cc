// libFuzzer target: table decoding. The input fills a pool of guest pages that holds the root table,
// context tables, PASID directories/tables and page tables; every 64-bit word whose low bit is set
// gets its address field redirected into the pool so walks go deep (reserved and flag bits stay
// fuzzed). Then DMA, ATS translations, page requests and invalidations run against it. Invariants:
// no crash, regions are a contiguous in-order prefix of the request, granted perms cover the access.
#include <cstddef>
#include <cstdint>
#include <cstring>

#include "iommu/vtd/fuzz/fuzz_input.h"
#include "iommu/vtd/registers.h"
#include "iommu/vtd/testing/linux_vtd_driver.h"
#include "iommu/vtd/testing/vtd_builders.h"
#include "iommu/vtd/vtd_iommu.h"
#include "vmm/guest_memory.h"

namespace {

using namespace ionest;
using namespace ionest::vtd;

constexpr uint64_t kRam = 4ull << 20;
constexpr uint64_t kDriverPool = 3ull << 20;  // queue etc. [3 MiB, 4 MiB)
constexpr uint64_t kTables = 1ull << 20;      // fuzzed pages [1 MiB, 1 MiB + 64 pages)
constexpr uint64_t kTablePages = 64;

GuestMemory& Ram() {
  static GuestMemory* m = GuestMemory::Create({{0, kRam}}).value().release();
  return *m;
}

void Check(bool ok) {
  if (!ok) __builtin_trap();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  fuzz::FuzzInput in(data, size);
  GuestMemory& ram = Ram();
  std::memset(ram.HostPointer(0, kRam), 0, kRam);
  const uint8_t flags = in.Get<uint8_t>();
  VtdProfile profile;
  profile.scalable_mode = flags & 1;
  profile.aw = (flags & 2) ? 57 : 48;
  profile.caching_mode = flags & 4;
  profile.iotlb_entries = 64;
  testing::RecordingMsiSink cpu;
  VtdIommu iommu(ram, cpu, profile);
  iommu_testing::PageAllocator alloc(ram, kDriverPool, kRam - kDriverPool);
  testing::LinuxVtdDriver driver(iommu, ram, alloc);
  Check(driver.Init(profile.scalable_mode).ok());

  // Fill the table pool: a table-size prefix of the input, pointer-ised.
  uint8_t* pool = ram.HostPointer(kTables, kTablePages * 4096);
  const size_t n = std::min<size_t>(in.remaining() / 2, kTablePages * 4096);
  std::memcpy(pool, in.cursor(), n);
  in.Skip(n);
  for (size_t off = 0; off + 8 <= n; off += 8) {
    uint64_t w;
    std::memcpy(&w, pool + off, 8);
    if ((w & 1) && !(w & (1ull << 11))) {  // keep ~half of the "present" words pointing into the pool
      const uint64_t page = (w >> 12) % kTablePages;
      w = (w & ~0x000ffffffffff000ull) | (kTables + page * 4096);
      std::memcpy(pool + off, &w, 8);
    }
  }
  // Root table = first pool page.
  iommu.WriteRegister(kRtaddrReg, kTables | (profile.scalable_mode ? (1u << 10) : 0u));
  iommu.WriteRegister(kGcmdReg, kGcmdQie | kGcmdSrtp, 4);
  iommu.WriteRegister(kGcmdReg, kGcmdQie | kGcmdTe, 4);

  for (int ops = 0; ops < 64 && !in.empty(); ++ops) {
    const uint8_t op = in.Get<uint8_t>();
    const uint16_t rid = in.Get<uint8_t>();  // bus 0
    uint64_t iova = in.Get<uint64_t>();
    DmaAttrs attrs;
    if (op & 0x10) attrs.pasid = in.Get<uint32_t>() & 0xfffff;
    const uint32_t access = 1u + ((op >> 5) & 7) % 7 + 0;  // R/W/X combinations, never 0
    DmaSpace& space = iommu.ForRequester(rid);
    switch (op & 3) {
      case 0: {
        const uint64_t len = 1 + (op >> 2 & 3) * 0x1800;
        Translation t = space.Translate(iova, len, access, attrs);
        uint64_t next = iova, total = 0;
        for (const DmaRegion& r : t.regions) {
          Check(r.iova == next && r.len > 0);
          Check((r.perms & access & (kDmaRead | kDmaWrite)) == (access & (kDmaRead | kDmaWrite)));
          next += r.len;
          total += r.len;
        }
        Check(total <= len);
        break;
      }
      case 1: {
        uint8_t buf[256];
        const size_t len = 1 + (op >> 2) % sizeof(buf);
        if (access & kDmaWrite)
          space.Write(iova, buf, len, attrs).IgnoreError();
        else
          space.Read(iova, buf, len, attrs).IgnoreError();
        break;
      }
      case 2: {
        AtsTranslation a = space.AtsTranslate(iova, access, attrs);
        if (a.success) Check(a.size >= 4096 && (a.size & (a.size - 1)) == 0 && a.iova % a.size == 0);
        break;
      }
      case 3: {
        // Invalidations in between (both mode's flavours) keep the caches honest.
        std::vector<InvDescriptor> inv = {testing::CcGlobal(), testing::IotlbGlobal()};
        if (profile.scalable_mode) inv.push_back(testing::PasidCacheInv(3, 0, 0));
        driver.Invalidate(inv, testing::QiErrors::kLeave).IgnoreError();
        PageRequest r{rid, attrs.pasid, iova & ~0xfffull, access, true, static_cast<uint16_t>(op)};
        space.SendPageRequest(r).IgnoreError();
        break;
      }
    }
  }
  return 0;
}
