// libFuzzer target for the page-table walkers and the IOTLB: random table memory, configs,
// addresses and access types. A walk must never crash, hang or return an inconsistent result.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>

#include "iommu/iotlb.h"
#include "iommu/nested.h"

namespace {

using namespace ionest;

constexpr uint64_t kRamPages = 16;
constexpr uint64_t kRamSize = kRamPages * kPage4K;
constexpr size_t kHeader = 32;

void Fail(const char* what) {
  std::fprintf(stderr, "invariant violated: %s\n", what);
  std::abort();
}

GuestMemory& Memory() {
  static GuestMemory* mem = GuestMemory::Create({{0, kRamSize}}).value().release();
  return *mem;
}

struct Reader {
  const uint8_t* data;
  size_t size;
  size_t pos = 0;
  uint64_t Take(int bytes) {
    uint64_t v = 0;
    for (int i = 0; i < bytes; ++i) v |= uint64_t{pos < size ? data[pos++] : uint8_t{0}} << (8 * i);
    return v;
  }
};

void CheckResult(const WalkResult& r, uint64_t input, uint32_t access, bool first_stage_involved,
                 bool second_only) {
  if (r.ok) {
    if (r.page_size != kPage4K && r.page_size != kPage2M && r.page_size != kPage1G) Fail("page size");
    if ((r.output ^ input) & (r.page_size - 1)) Fail("offset not preserved");
    if ((r.user_perms | r.supervisor_perms | r.perms) & ~kDmaRwx) Fail("perms outside RWX");
    if ((access & kDmaRwx) & ~r.perms) Fail("granted access not in perms");
    const uint32_t same = (access & kDmaPriv) ? r.supervisor_perms : r.user_perms;
    if (r.perms != same) Fail("perms != rights of the request's privilege");
    return;
  }
  if (r.fault.level < 0 || r.fault.level > 5) Fail("fault level");
  if (second_only && r.fault.stage != WalkStage::kSecond) Fail("second-stage walk reported another stage");
  if (!first_stage_involved && r.fault.stage == WalkStage::kSecondForFirstTable) Fail("stage");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  GuestMemory& mem = Memory();
  Reader in{data, size};
  const uint64_t flags = in.Take(4);
  const uint64_t iova_raw = in.Take(8);
  const uint64_t roots = in.Take(2);
  const uint64_t widths = in.Take(2);
  in.pos = std::min(size, kHeader);

  // Table memory: the rest of the input, zero-padded. Optionally squash every entry's address
  // into guest RAM so walks go deep instead of stopping at the first out-of-RAM pointer.
  static uint8_t image[kRamSize];
  std::memset(image, 0, sizeof(image));
  const size_t body = std::min<size_t>(size - in.pos, kRamSize);
  std::memcpy(image, data + in.pos, body);
  if (flags & (1u << 20)) {
    for (size_t off = 0; off + 8 <= body; off += 8) {
      uint64_t e;
      std::memcpy(&e, image + off, 8);
      const uint64_t addr = ((e & 0x000F'FFFF'FFFF'F000ull) % kRamSize) & ~0xFFFull;
      e = (e & ~0x000F'FFFF'FFFF'F000ull) | addr;
      std::memcpy(image + off, &e, 8);
    }
  }
  if (!mem.Write(0, image, sizeof(image)).ok()) Fail("memory write");

  FirstStageConfig fs;
  fs.root = (roots & 0xF) * kPage4K + ((roots & 0x20) ? (1ull << 40) : 0);
  fs.levels = (flags & 1) ? 5 : 4;
  fs.sre = flags & 2;
  fs.wpe = flags & 4;
  fs.ere = flags & 8;
  fs.eafe = flags & 16;
  fs.update_ad = !(flags & 32);
  fs.allow_1g = flags & 64;
  fs.haw_bits = 12 + static_cast<int>(widths & 0x3F);  // 12..75: invalid ones must be rejected cleanly

  SecondStageConfig ss;
  ss.root = ((roots >> 8) & 0xF) * kPage4K + ((roots & 0x10) ? kRamSize : 0);
  ss.levels = 2 + static_cast<int>((flags >> 7) & 3);  // 2..5 (2 is invalid)
  ss.aw_bits = 12 + static_cast<int>((widths >> 6) & 0x3F);
  ss.ad_enabled = flags & (1u << 9);
  ss.superpage_mask = (flags >> 10) & 3;
  ss.haw_bits = 30 + static_cast<int>((widths >> 12) & 0xF) * 2;

  uint32_t access = (flags >> 12) & 0xF;
  uint64_t iova = iova_raw;
  if (flags & (1u << 21)) iova &= 0x0000'0000'FFFF'FFFFull;  // keep it canonical and within AW often

  WalkResult r;
  const int mode = (flags >> 16) & 3;
  if (mode == 0) {
    r = WalkFirstStage(mem, fs, iova, access);
    CheckResult(r, iova, access, true, false);
    if (!r.ok && r.fault.stage != WalkStage::kFirst) Fail("first-stage walk reported another stage");
  } else if (mode == 1) {
    r = WalkSecondStage(mem, ss, iova, access);
    CheckResult(r, iova, access, false, true);
  } else {
    r = WalkNested(mem, fs, ss, iova, access);
    CheckResult(r, iova, access, true, false);
  }

  // A cached successful walk must come back identically.
  static Iotlb* tlb = new Iotlb(64);
  const uint16_t did = static_cast<uint16_t>(roots >> 13);
  tlb->InvalidateAll();  // entries of earlier inputs may overlap with other page sizes
  tlb->Insert(did, kNoPasid, iova, r, IotlbType::kNested, tlb->generation());
  auto hit = tlb->Lookup(did, kNoPasid, iova, access);
  if (r.ok) {
    if (!hit || hit->output != r.output || hit->page_size != r.page_size) Fail("iotlb lost or changed a result");
  }
  if (flags & (1u << 22)) tlb->InvalidatePages(did, std::nullopt, iova, static_cast<unsigned>(widths >> 10) & 63, false);
  if (flags & (1u << 23)) tlb->InvalidateAll();
  return 0;
}
