// libFuzzer target: the invalidation queue. A Linux-like driver sets up QI (and IR, PRQ) in legacy
// or scalable mode; the input becomes descriptors in guest memory, followed by IQT writes
// (including bogus tails) and FSTS clears, as a hostile guest could issue them.
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
constexpr uint64_t kPool = 1ull << 20;

GuestMemory& Ram() {
  static GuestMemory* m = GuestMemory::Create({{0, kRam}}).value().release();
  return *m;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  fuzz::FuzzInput in(data, size);
  GuestMemory& ram = Ram();
  std::memset(ram.HostPointer(0, kRam), 0, kRam);
  const uint8_t flags = in.Get<uint8_t>();
  VtdProfile profile;
  profile.scalable_mode = flags & 1;
  testing::RecordingMsiSink cpu;
  VtdIommu iommu(ram, cpu, profile);
  testing::RecordingDmaClient client;
  iommu.ForRequester(0x18).SetClient(&client);
  iommu_testing::PageAllocator alloc(ram, kPool, kRam - kPool);
  testing::LinuxVtdDriver driver(iommu, ram, alloc);
  if (!driver.Init(profile.scalable_mode).ok()) __builtin_trap();  // a valid setup must work
  if (flags & 2) driver.EnableInterruptRemapping(4).IgnoreError();
  if ((flags & 4) && profile.scalable_mode) driver.EnablePageRequests(0xfee00000, 0x40).IgnoreError();
  if (flags & 8) driver.EnableTranslation().IgnoreError();
  const uint64_t qbase = driver.queue_base();
  const uint32_t dbytes = driver.descriptor_bytes();
  const uint32_t qbytes = 8192;
  uint32_t tail = static_cast<uint32_t>(iommu.ReadRegister(kIqtReg));
  for (int rounds = 0; rounds < 16 && !in.empty(); ++rounds) {
    const uint8_t count = in.Get<uint8_t>() % 32;
    for (uint8_t i = 0; i < count && !in.empty(); ++i) {
      uint64_t qw[4] = {in.Get<uint64_t>(), in.Get<uint64_t>(), 0, 0};
      if (dbytes == 32) {
        qw[2] = in.Get<uint64_t>();
        qw[3] = in.Get<uint64_t>();
      }
      // Keep wait-descriptor status writes inside RAM most of the time.
      if ((qw[0] & 0xf) == kDescWait && !(qw[0] & 0x100)) qw[1] %= kRam;
      ram.Write(qbase + tail, qw, dbytes).IgnoreError();
      tail = (tail + dbytes) % qbytes;
    }
    const uint8_t action = in.Get<uint8_t>();
    if (action & 1) iommu.WriteRegister(kFstsReg, 0x7f, 4);  // clear IQE/ITE/ICE and fault bits
    if (action & 2) {
      iommu.WriteRegister(kIqtReg, in.Get<uint32_t>(), 4);  // bogus tail
    } else {
      iommu.WriteRegister(kIqtReg, tail);
    }
    if (action & 4) iommu.WriteRegister(kIqaReg, qbase | (dbytes == 32 ? (1u << 11) : 0u) | (action >> 7));
    if (action & 8) {
      PageRequest r{0x18, 5u, 0x1000, kDmaRead, true, static_cast<uint16_t>(action)};
      iommu.ForRequester(0x18).SendPageRequest(r).IgnoreError();
    }
    const uint64_t head = iommu.ReadRegister(kIqhReg);
    if (head >= qbytes) __builtin_trap();  // IQH must stay inside the queue
  }
  iommu.ForRequester(0x18).SetClient(nullptr);
  return 0;
}
