// Builder of VMSAv8-64 translation tables (Arm ARM D8.3) with a 4 KiB granule in a (fake) guest
// memory, for the VMSA walker's and the SMMUv3 model's tests, benchmarks and fuzzers. Stage 1 and
// stage 2 (with concatenated start-level tables). Host-side test tooling: inputs are trusted.
// Not thread-safe.
#pragma once

#include <cstdint>

#include "absl/status/statusor.h"
#include "iommu/testing/table_builder.h"
#include "iommu/vmsa_walk.h"

namespace ionest::iommu_testing {

class VmsaTableBuilder {
 public:
  // Tables for `input_bits`-bit inputs starting at `start_level` (0..3); the start table spans
  // 2^(input_bits - shift(start_level)) entries (more than 512 = concatenated stage-2 tables).
  static absl::StatusOr<VmsaTableBuilder> Create(PhysMemory& memory, PageAllocator& alloc, int input_bits,
                                                 int start_level);
  // Stage 1 geometry of a region with TxSZ = 64 - input_bits.
  static absl::StatusOr<VmsaTableBuilder> CreateStage1(PhysMemory& memory, PageAllocator& alloc, int input_bits);

  // Maps [va, va+size) to pa with 4 KiB pages or 2 MiB / 1 GiB blocks; `attrs` is OR-ed into each
  // leaf (use Stage1Attrs / Stage2Attrs).
  absl::Status Map(uint64_t va, uint64_t pa, uint64_t size, uint64_t attrs, uint64_t page_size = kPage4K);
  absl::StatusOr<uint64_t> EntryAddress(uint64_t va, int level) const;
  absl::StatusOr<uint64_t> ReadEntry(uint64_t va, int level) const;
  absl::Status SetEntryBits(uint64_t va, int level, uint64_t set, uint64_t clear = 0);

  uint64_t root() const { return root_; }
  int start_level() const { return start_level_; }

  // Leaf attributes with AF set: perms kDmaRead always; kDmaWrite clears AP[2]; kDmaExec clears
  // UXN/PXN; without kDmaPriv the page is also EL0-accessible (AP[1]).
  static uint64_t Stage1Attrs(uint32_t perms);
  // S2AP from kDmaRead/kDmaWrite, XN unless kDmaExec, AF set.
  static uint64_t Stage2Attrs(uint32_t perms);

 private:
  VmsaTableBuilder(PhysMemory& memory, PageAllocator& alloc, int input_bits, int start_level, uint64_t root)
      : memory_(&memory), alloc_(&alloc), input_bits_(input_bits), start_level_(start_level), root_(root) {}
  static int Shift(int level) { return 12 + 9 * (3 - level); }
  uint64_t Index(uint64_t va, int level) const;

  PhysMemory* memory_;
  PageAllocator* alloc_;
  int input_bits_;
  int start_level_;
  uint64_t root_;
};

}  // namespace ionest::iommu_testing
