// Builders of page tables in a (fake) guest memory, for tests, benchmarks and fuzzers:
// x86 first-stage (VT-d §9.7) and VT-d second-stage (§9.8) tables, with table pages taken from a
// bump allocator. Host-side test tooling: errors are absl::Status, inputs are trusted.
// Not thread-safe.
#pragma once

#include <cstdint>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "iommu/first_stage.h"
#include "iommu/second_stage.h"
#include "vmm/guest_memory.h"

namespace ionest::iommu_testing {

// Hands out zeroed 4 KiB pages from [base, base + size) of `memory`.
class PageAllocator {
 public:
  PageAllocator(PhysMemory& memory, uint64_t base, uint64_t size) : memory_(memory), next_(base), end_(base + size) {}
  absl::StatusOr<uint64_t> AllocPage();
  uint64_t next() const { return next_; }

 private:
  PhysMemory& memory_;
  uint64_t next_;
  uint64_t end_;
};

// `base` seen shifted: address a of this view is address a + offset of `base`. Lets a test write
// first-stage tables at guest-physical addresses that a second stage maps elsewhere.
class OffsetPhysMemory final : public PhysMemory {
 public:
  OffsetPhysMemory(PhysMemory& base, uint64_t offset) : base_(base), offset_(offset) {}
  absl::Status Read(uint64_t gpa, void* dst, size_t len) const override { return base_.Read(gpa + offset_, dst, len); }
  absl::Status Write(uint64_t gpa, const void* src, size_t len) override { return base_.Write(gpa + offset_, src, len); }
  absl::StatusOr<bool> CompareExchange64(uint64_t gpa, uint64_t* expected, uint64_t desired) override {
    return base_.CompareExchange64(gpa + offset_, expected, desired);
  }

 private:
  PhysMemory& base_;
  uint64_t offset_;
};

// Format-independent radix-table builder (9 bits per level, 4 KiB tables).
class TableBuilder {
 public:
  absl::StatusOr<uint64_t> EntryAddress(uint64_t iova, int level) const;
  absl::StatusOr<uint64_t> ReadEntry(uint64_t iova, int level) const;
  absl::Status WriteEntry(uint64_t iova, int level, uint64_t value);
  absl::Status SetEntryBits(uint64_t iova, int level, uint64_t set, uint64_t clear = 0);
  uint64_t root() const { return root_; }
  int levels() const { return levels_; }

 protected:
  TableBuilder(PhysMemory& memory, PageAllocator& alloc, int levels, uint64_t root)
      : memory_(memory), alloc_(alloc), levels_(levels), root_(root) {}
  // Maps [iova, iova+size) to pa in pages of page_size (4 KiB, 2 MiB, 1 GiB), creating tables.
  absl::Status MapRange(uint64_t iova, uint64_t pa, uint64_t size, uint64_t page_size, uint64_t leaf_flags);
  virtual uint64_t TableEntry(uint64_t table) const = 0;
  virtual bool IsPresent(uint64_t entry) const = 0;
  virtual uint64_t PsBit() const = 0;
  virtual uint64_t AddrMask() const = 0;

  PhysMemory& memory_;
  PageAllocator& alloc_;
  int levels_;
  uint64_t root_;
};

class FirstStageTableBuilder final : public TableBuilder {
 public:
  // levels: 4 or 5.
  static absl::StatusOr<FirstStageTableBuilder> Create(PhysMemory& memory, PageAllocator& alloc, int levels);
  // perms (DmaAccess): mapping is always readable; kDmaWrite sets R/W; kDmaExec clears XD;
  // kDmaPriv makes it supervisor-only (U/S=0). `extra` is OR-ed into each leaf (e.g. fs::kA|fs::kD).
  // Non-leaf entries are P|RW|US (A clear).
  absl::Status Map(uint64_t iova, uint64_t pa, uint64_t size, uint32_t perms, uint64_t page_size = kPage4K,
                   uint64_t extra = 0);
  static uint64_t LeafFlags(uint32_t perms);

 private:
  using TableBuilder::TableBuilder;
  uint64_t TableEntry(uint64_t table) const override { return table | fs::kP | fs::kRW | fs::kUS; }
  bool IsPresent(uint64_t e) const override { return e & fs::kP; }
  uint64_t PsBit() const override { return fs::kPS; }
  uint64_t AddrMask() const override { return fs::kAddrMask; }
};

class SecondStageTableBuilder final : public TableBuilder {
 public:
  // levels: 3, 4 or 5.
  static absl::StatusOr<SecondStageTableBuilder> Create(PhysMemory& memory, PageAllocator& alloc, int levels);
  // perms: kDmaRead/kDmaWrite/kDmaExec → R/W/X. Non-leaf entries are R|W|X (A clear).
  absl::Status Map(uint64_t iova, uint64_t pa, uint64_t size, uint32_t perms, uint64_t page_size = kPage4K,
                   uint64_t extra = 0);
  static uint64_t LeafFlags(uint32_t perms);

 private:
  using TableBuilder::TableBuilder;
  uint64_t TableEntry(uint64_t table) const override { return table | ss::kR | ss::kW | ss::kX; }
  bool IsPresent(uint64_t e) const override { return e & (ss::kR | ss::kW | ss::kX); }
  uint64_t PsBit() const override { return ss::kPS; }
  uint64_t AddrMask() const override { return ss::kAddrMask; }
};

}  // namespace ionest::iommu_testing
