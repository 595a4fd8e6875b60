// Driver-side helper for virtqueue tests: lays out a split ring in fake guest memory and makes
// chains available the way a driver would. Test-only.
#pragma once

#include <cstdint>
#include <cstring>
#include <vector>

#include "devices/virtqueue.h"
#include "vmm/guest_memory.h"

namespace ionest::testing {

class FakeDriverRing {
 public:
  struct Seg {
    uint64_t addr;
    uint32_t len;
    bool write;
  };
  FakeDriverRing(GuestMemory& mem, uint64_t base, uint16_t size) : mem_(mem), size_(size) {
    layout_.size = size;
    layout_.desc = base;
    layout_.avail = base + 16ull * size;
    layout_.used = (layout_.avail + 6 + 2ull * size + 3) & ~3ull;
  }
  const VirtqueueLayout& layout() const { return layout_; }

  void WriteDesc(uint64_t table, uint16_t i, uint64_t addr, uint32_t len, uint16_t flags, uint16_t next) {
    uint8_t raw[16];
    std::memcpy(raw, &addr, 8);
    std::memcpy(raw + 8, &len, 4);
    std::memcpy(raw + 12, &flags, 2);
    std::memcpy(raw + 14, &next, 2);
    (void)mem_.Write(table + 16ull * i, raw, 16);
  }
  // Chain of segments at descriptors starting at `first` (consecutive), published in the avail ring.
  uint16_t AddChain(const std::vector<Seg>& segs, uint16_t first) {
    for (size_t i = 0; i < segs.size(); ++i) {
      const bool last = i + 1 == segs.size();
      WriteDesc(layout_.desc, static_cast<uint16_t>(first + i), segs[i].addr, segs[i].len,
                static_cast<uint16_t>((segs[i].write ? SplitVirtqueue::kDescFlagWrite : 0) |
                                      (last ? 0 : SplitVirtqueue::kDescFlagNext)),
                static_cast<uint16_t>(first + i + 1));
    }
    Publish(first);
    return first;
  }
  void Publish(uint16_t head) {
    (void)mem_.WriteObj<uint16_t>(layout_.avail + 4 + 2ull * (avail_idx_ % size_), head);
    ++avail_idx_;
    (void)mem_.WriteObj<uint16_t>(layout_.avail + 2, avail_idx_);
  }
  void SetAvailIdx(uint16_t idx) {
    avail_idx_ = idx;
    (void)mem_.WriteObj<uint16_t>(layout_.avail + 2, idx);
  }
  void SetAvailFlags(uint16_t f) { (void)mem_.WriteObj<uint16_t>(layout_.avail, f); }
  uint16_t UsedIdx() const { return *mem_.ReadObj<uint16_t>(layout_.used + 2); }
  std::pair<uint32_t, uint32_t> UsedElem(uint16_t i) const {
    const uint64_t a = layout_.used + 4 + 8ull * (i % size_);
    return {*mem_.ReadObj<uint32_t>(a), *mem_.ReadObj<uint32_t>(a + 4)};
  }

 private:
  GuestMemory& mem_;
  uint16_t size_;
  VirtqueueLayout layout_;
  uint16_t avail_idx_ = 0;
};

}  // namespace ionest::testing
