// Fuzzes table decoding: the input becomes the guest memory holding the root, context, PASID and
// paging tables (all pointers land in a small window), then DMA, ATS and interrupt requests walk it.
#include <cstdint>
#include <cstring>

#include "iommu/vtd/fuzz/fuzz_input.h"
#include "iommu/vtd/pasid.h"
#include "iommu/vtd/registers.h"
#include "iommu/vtd/root_context.h"
#include "iommu/vtd/testing/vtd_test_env.h"

using ionest::vtd::fuzz::FuzzInput;
using ionest::vtd::testing::VtdTestEnv;

namespace {
constexpr uint64_t kFuzzRam = VtdTestEnv::kTablePool + (4ull << 20);  // 36 MiB
}  // namespace

namespace {
constexpr uint64_t kWindow = 64 * 4096;  // fuzzed tables live in [0, 256 KiB)
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  FuzzInput in(data, size);
  const uint8_t mode = in.Get<uint8_t>();
  auto env = VtdTestEnv::Create((mode & 1) ? "sm=off" : ((mode & 2) ? "aw=57" : ""), kFuzzRam);
  if (!env.ok()) return 0;
  VtdTestEnv& e = **env;
  // Table bytes: pointers are folded into the window so the fuzzer controls every level.
  std::vector<uint64_t> words(kWindow / 8);
  for (uint64_t& w : words) {
    if (in.empty()) break;
    w = in.Get<uint64_t>();
    if (mode & 4) w = (w & 0xfff0000000000fffull) | (w & 0x3f000);  // pointers into the window
  }
  (void)e.memory->Write(0, words.data(), words.size() * 8);
  if (!e.driver->Init(!(mode & 1)).ok()) return 0;
  // Point the root table into the fuzzed window.
  e.iommu->WriteRegister(ionest::vtd::kRtaddrReg, ((mode >> 3) & 0x3f) * 4096 | ((mode & 1) ? 0 : (1u << 10)));
  e.iommu->WriteRegister(ionest::vtd::kGcmdReg, ionest::vtd::kGcmdSrtp | ionest::vtd::kGcmdQie, 4);
  e.iommu->WriteRegister(ionest::vtd::kGcmdReg, ionest::vtd::kGcmdTe | ionest::vtd::kGcmdQie, 4);
  e.iommu->WriteRegister(ionest::vtd::kIrtaReg, 0x10000 | 0x800 | 7);
  e.iommu->WriteRegister(ionest::vtd::kGcmdReg,
                         ionest::vtd::kGcmdTe | ionest::vtd::kGcmdQie | ionest::vtd::kGcmdSirtp | ionest::vtd::kGcmdIre, 4);
  for (int ops = 0; ops < 64 && !in.empty(); ++ops) {
    uint16_t rid = in.Get<uint8_t>() | (in.Get<uint8_t>() & 1) << 8;
    uint64_t iova = in.Get<uint64_t>();
    uint8_t flags = in.Get<uint8_t>();
    ionest::DmaAttrs attrs;
    if (flags & 1) attrs.pasid = in.Get<uint16_t>() & 0x3ff;
    ionest::DmaSpace& s = e.iommu->ForRequester(rid);
    uint32_t access = (flags >> 1) & 0xf;
    ionest::Translation t = s.Translate(iova, 1 + (flags >> 5) * 4096, access ? access : 1, attrs);
    for (const ionest::DmaRegion& r : t.regions) {
      // A granted region must grant the requested access.
      if (!(r.perms & (access ? access : 1) & 3)) __builtin_trap();
    }
    (void)s.AtsTranslate(iova, access, attrs);
    (void)e.iommu->SendMsi({0xfee00010ull | (uint64_t{in.Get<uint8_t>()} << 5), 0, rid});
    ionest::vtd::Decoded<ionest::vtd::ContextEntry> c =
        ionest::vtd::ReadContextEntry(*e.memory, e.iommu->profile(), e.iommu->ReadRegister(ionest::vtd::kRtaddrReg), rid);
    if (c.ok() && c.entry->scalable) {
      (void)ionest::vtd::ReadPasidEntry(*e.memory, e.iommu->profile(), *c.entry, attrs.pasid.value_or(0));
    }
    if (flags & 0x80)
      (void)e.driver->Invalidate({ionest::vtd::testing::CcGlobal(), ionest::vtd::testing::IotlbGlobal()},
                                 ionest::vtd::testing::QiErrors::kLeave);
  }
  return 0;
}
