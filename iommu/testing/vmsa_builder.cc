#include "iommu/testing/vmsa_builder.h"

#include "absl/strings/str_format.h"

namespace ionest::iommu_testing {

absl::StatusOr<VmsaTableBuilder> VmsaTableBuilder::Create(PhysMemory& memory, PageAllocator& alloc, int input_bits,
                                                          int start_level) {
  if (start_level < 0 || start_level > 3 || input_bits <= Shift(start_level) || input_bits > 48)
    return absl::InvalidArgumentError(absl::StrFormat("bad geometry: %d bits from level %d", input_bits, start_level));
  const int extra = input_bits - Shift(start_level) - 9;  // concatenated tables: 2^extra
  const uint64_t pages = extra > 0 ? uint64_t{1} << extra : 1;
  if (pages > 16) return absl::InvalidArgumentError("more than 16 concatenated tables");
  // Align the first page to the concatenated size.
  while (alloc.next() % (pages * kPage4K)) {
    if (absl::StatusOr<uint64_t> p = alloc.AllocPage(); !p.ok()) return p.status();
  }
  uint64_t root = 0;
  for (uint64_t i = 0; i < pages; ++i) {
    absl::StatusOr<uint64_t> p = alloc.AllocPage();
    if (!p.ok()) return p.status();
    if (i == 0) root = *p;
  }
  return VmsaTableBuilder(memory, alloc, input_bits, start_level, root);
}

absl::StatusOr<VmsaTableBuilder> VmsaTableBuilder::CreateStage1(PhysMemory& memory, PageAllocator& alloc,
                                                                int input_bits) {
  const int levels = (input_bits - 12 + 8) / 9;
  return Create(memory, alloc, input_bits, 4 - levels);
}

uint64_t VmsaTableBuilder::Index(uint64_t va, int level) const {
  const int bits = level == start_level_ ? input_bits_ - Shift(level) : 9;
  return (va >> Shift(level)) & ((uint64_t{1} << bits) - 1);
}

uint64_t VmsaTableBuilder::Stage1Attrs(uint32_t perms) {
  uint64_t a = vmsa::kAf;
  if (!(perms & kDmaWrite)) a |= vmsa::kAp2;
  if (!(perms & kDmaPriv)) a |= vmsa::kAp1;
  if (!(perms & kDmaExec)) a |= vmsa::kUxn | vmsa::kPxn;
  return a;
}

uint64_t VmsaTableBuilder::Stage2Attrs(uint32_t perms) {
  uint64_t a = vmsa::kAf;
  if (perms & kDmaRead) a |= vmsa::kS2apRead;
  if (perms & kDmaWrite) a |= vmsa::kS2apWrite;
  if (!(perms & kDmaExec)) a |= vmsa::kUxn;
  return a;
}

absl::StatusOr<uint64_t> VmsaTableBuilder::EntryAddress(uint64_t va, int level) const {
  if (level < start_level_ || level > 3) return absl::InvalidArgumentError(absl::StrFormat("bad level %d", level));
  uint64_t table = root_;
  for (int l = start_level_;; ++l) {
    const uint64_t addr = table + Index(va, l) * 8;
    if (l == level) return addr;
    absl::StatusOr<uint64_t> e = memory_->ReadObj<uint64_t>(addr);
    if (!e.ok()) return e.status();
    if ((*e & 3) != 3) return absl::NotFoundError(absl::StrFormat("no table below level %d for %#x", l, va));
    table = *e & 0x0000'FFFF'FFFF'F000ull;
  }
}

absl::StatusOr<uint64_t> VmsaTableBuilder::ReadEntry(uint64_t va, int level) const {
  absl::StatusOr<uint64_t> addr = EntryAddress(va, level);
  if (!addr.ok()) return addr.status();
  return memory_->ReadObj<uint64_t>(*addr);
}

absl::Status VmsaTableBuilder::SetEntryBits(uint64_t va, int level, uint64_t set, uint64_t clear) {
  absl::StatusOr<uint64_t> addr = EntryAddress(va, level);
  if (!addr.ok()) return addr.status();
  absl::StatusOr<uint64_t> e = memory_->ReadObj<uint64_t>(*addr);
  if (!e.ok()) return e.status();
  return memory_->WriteObj(*addr, (*e & ~clear) | set);
}

absl::Status VmsaTableBuilder::Map(uint64_t va, uint64_t pa, uint64_t size, uint64_t attrs, uint64_t page_size) {
  const int leaf = page_size == kPage4K ? 3 : page_size == kPage2M ? 2 : page_size == kPage1G ? 1 : -1;
  if (leaf < start_level_) return absl::InvalidArgumentError(absl::StrFormat("bad page size %#x", page_size));
  if (va % page_size || pa % page_size || size % page_size || size == 0)
    return absl::InvalidArgumentError("unaligned mapping");
  for (uint64_t off = 0; off < size; off += page_size) {
    uint64_t table = root_;
    for (int l = start_level_; l < leaf; ++l) {
      const uint64_t addr = table + Index(va + off, l) * 8;
      absl::StatusOr<uint64_t> e = memory_->ReadObj<uint64_t>(addr);
      if (!e.ok()) return e.status();
      if (!(*e & vmsa::kValid)) {
        absl::StatusOr<uint64_t> page = alloc_->AllocPage();
        if (!page.ok()) return page.status();
        *e = *page | vmsa::kValid | vmsa::kTableOrPage;
        if (absl::Status s = memory_->WriteObj(addr, *e); !s.ok()) return s;
      } else if (!(*e & vmsa::kTableOrPage)) {
        return absl::FailedPreconditionError(absl::StrFormat("%#x already mapped by a block", va + off));
      }
      table = *e & 0x0000'FFFF'FFFF'F000ull;
    }
    const uint64_t desc = (pa + off) | attrs | vmsa::kValid | (leaf == 3 ? vmsa::kTableOrPage : 0);
    if (absl::Status s = memory_->WriteObj(table + Index(va + off, leaf) * 8, desc); !s.ok()) return s;
  }
  return absl::OkStatus();
}

}  // namespace ionest::iommu_testing
