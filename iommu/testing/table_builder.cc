#include "iommu/testing/table_builder.h"

#include <vector>

#include "absl/strings/str_format.h"

namespace ionest::iommu_testing {

absl::StatusOr<uint64_t> PageAllocator::AllocPage() {
  if (next_ + kPage4K > end_ || next_ + kPage4K < next_)
    return absl::ResourceExhaustedError(absl::StrFormat("page allocator exhausted at %#x", next_));
  const uint64_t page = next_;
  static const std::vector<uint8_t> zeros(kPage4K, 0);
  if (absl::Status s = memory_.Write(page, zeros.data(), zeros.size()); !s.ok()) return s;
  next_ += kPage4K;
  return page;
}

absl::StatusOr<uint64_t> TableBuilder::EntryAddress(uint64_t iova, int level) const {
  if (level < 1 || level > levels_) return absl::InvalidArgumentError(absl::StrFormat("bad level %d", level));
  uint64_t table = root_;
  for (int l = levels_;; --l) {
    const uint64_t addr = table + ((iova >> (12 + 9 * (l - 1))) & 511) * 8;
    if (l == level) return addr;
    absl::StatusOr<uint64_t> e = memory_.ReadObj<uint64_t>(addr);
    if (!e.ok()) return e.status();
    if (!IsPresent(*e) || (l <= 3 && (*e & PsBit())))
      return absl::NotFoundError(absl::StrFormat("no table below level %d for %#x", l, iova));
    table = *e & AddrMask();
  }
}

absl::StatusOr<uint64_t> TableBuilder::ReadEntry(uint64_t iova, int level) const {
  absl::StatusOr<uint64_t> addr = EntryAddress(iova, level);
  if (!addr.ok()) return addr.status();
  return memory_.ReadObj<uint64_t>(*addr);
}

absl::Status TableBuilder::WriteEntry(uint64_t iova, int level, uint64_t value) {
  absl::StatusOr<uint64_t> addr = EntryAddress(iova, level);
  if (!addr.ok()) return addr.status();
  return memory_.WriteObj(*addr, value);
}

absl::Status TableBuilder::SetEntryBits(uint64_t iova, int level, uint64_t set, uint64_t clear) {
  absl::StatusOr<uint64_t> e = ReadEntry(iova, level);
  if (!e.ok()) return e.status();
  return WriteEntry(iova, level, (*e & ~clear) | set);
}

absl::Status TableBuilder::MapRange(uint64_t iova, uint64_t pa, uint64_t size, uint64_t page_size,
                                    uint64_t leaf_flags) {
  int leaf_level = page_size == kPage4K ? 1 : page_size == kPage2M ? 2 : page_size == kPage1G ? 3 : 0;
  if (leaf_level == 0) return absl::InvalidArgumentError(absl::StrFormat("bad page size %#x", page_size));
  if (iova % page_size || pa % page_size || size % page_size || size == 0)
    return absl::InvalidArgumentError(
        absl::StrFormat("map iova=%#x pa=%#x size=%#x not aligned to %#x", iova, pa, size, page_size));
  for (uint64_t off = 0; off < size; off += page_size) {
    uint64_t table = root_;
    for (int l = levels_; l > leaf_level; --l) {
      const uint64_t addr = table + (((iova + off) >> (12 + 9 * (l - 1))) & 511) * 8;
      absl::StatusOr<uint64_t> e = memory_.ReadObj<uint64_t>(addr);
      if (!e.ok()) return e.status();
      if (!IsPresent(*e)) {
        absl::StatusOr<uint64_t> page = alloc_.AllocPage();
        if (!page.ok()) return page.status();
        *e = TableEntry(*page);
        if (absl::Status s = memory_.WriteObj(addr, *e); !s.ok()) return s;
      } else if (l <= 3 && (*e & PsBit())) {
        return absl::FailedPreconditionError(absl::StrFormat("%#x already mapped by a superpage", iova + off));
      }
      table = *e & AddrMask();
    }
    const uint64_t addr = table + (((iova + off) >> (12 + 9 * (leaf_level - 1))) & 511) * 8;
    const uint64_t ps = leaf_level > 1 ? PsBit() : 0;
    if (absl::Status s = memory_.WriteObj(addr, (pa + off) | leaf_flags | ps); !s.ok()) return s;
  }
  return absl::OkStatus();
}

absl::StatusOr<FirstStageTableBuilder> FirstStageTableBuilder::Create(PhysMemory& memory, PageAllocator& alloc,
                                                                      int levels) {
  if (levels != 4 && levels != 5) return absl::InvalidArgumentError("first stage needs 4 or 5 levels");
  absl::StatusOr<uint64_t> root = alloc.AllocPage();
  if (!root.ok()) return root.status();
  return FirstStageTableBuilder(memory, alloc, levels, *root);
}

uint64_t FirstStageTableBuilder::LeafFlags(uint32_t perms) {
  uint64_t f = fs::kP;
  if (perms & kDmaWrite) f |= fs::kRW;
  if (!(perms & kDmaExec)) f |= fs::kXD;
  if (!(perms & kDmaPriv)) f |= fs::kUS;
  return f;
}

absl::Status FirstStageTableBuilder::Map(uint64_t iova, uint64_t pa, uint64_t size, uint32_t perms,
                                         uint64_t page_size, uint64_t extra) {
  return MapRange(iova, pa, size, page_size, LeafFlags(perms) | extra);
}

absl::StatusOr<SecondStageTableBuilder> SecondStageTableBuilder::Create(PhysMemory& memory, PageAllocator& alloc,
                                                                        int levels) {
  if (levels < 3 || levels > 5) return absl::InvalidArgumentError("second stage needs 3, 4 or 5 levels");
  absl::StatusOr<uint64_t> root = alloc.AllocPage();
  if (!root.ok()) return root.status();
  return SecondStageTableBuilder(memory, alloc, levels, *root);
}

uint64_t SecondStageTableBuilder::LeafFlags(uint32_t perms) {
  uint64_t f = 0;
  if (perms & kDmaRead) f |= ss::kR;
  if (perms & kDmaWrite) f |= ss::kW;
  if (perms & kDmaExec) f |= ss::kX;
  return f;
}

absl::Status SecondStageTableBuilder::Map(uint64_t iova, uint64_t pa, uint64_t size, uint32_t perms,
                                          uint64_t page_size, uint64_t extra) {
  return MapRange(iova, pa, size, page_size, LeafFlags(perms) | extra);
}

}  // namespace ionest::iommu_testing
