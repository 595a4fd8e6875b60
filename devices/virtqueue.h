// Split virtqueue, device side (virtio 1.2 §2.7). Rings and descriptors are read and written ONLY
// through the device's DmaSpace, and everything in them is guest-controlled: head and next indices
// are range-checked, chains are bounded (queue size descriptors, one level of indirection, at most
// kMaxChainBytes in total) which also catches loops, and every length sum is overflow-checked.
// A malformed ring yields an error status (the transport then sets DEVICE_NEEDS_RESET).
//
// Thread safety: none; the owning transport serializes all calls (its lock).
#pragma once

#include <cstdint>
#include <optional>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "iommu/dma_space.h"

namespace ionest {

struct VirtqueueLayout {
  uint16_t size = 0;  // power of two, 1..32768
  uint64_t desc = 0;  // descriptor table (16-byte aligned)
  uint64_t avail = 0; // driver area (2-byte aligned)
  uint64_t used = 0;  // device area (4-byte aligned)
};

struct VirtqBuffer {
  uint64_t addr = 0;  // IOVA in the device's DMA space
  uint32_t len = 0;
};

// One available descriptor chain: device-readable buffers, then device-writable ones (§2.7.4.2).
struct VirtqChain {
  uint16_t head = 0;
  std::vector<VirtqBuffer> readable;
  std::vector<VirtqBuffer> writable;
  uint64_t readable_bytes = 0;
  uint64_t writable_bytes = 0;
};

class SplitVirtqueue {
 public:
  static constexpr uint16_t kMaxSize = 32768;
  static constexpr uint64_t kMaxChainBytes = 64ull << 20;
  static constexpr uint16_t kDescFlagNext = 1, kDescFlagWrite = 2, kDescFlagIndirect = 4;
  static constexpr uint16_t kAvailFlagNoInterrupt = 1;

  // Validates the layout (size, alignment, ring ranges not wrapping).
  static absl::StatusOr<SplitVirtqueue> Create(DmaSpace& dma, const VirtqueueLayout& layout);

  // Next available chain, nullopt if the driver has not made more available. An error means the
  // ring is malformed or not accessible (DMA fault); the queue should be considered broken.
  absl::StatusOr<std::optional<VirtqChain>> Pop();
  // Return a chain with `written` bytes written to its writable buffers.
  absl::Status Push(uint16_t head, uint32_t written);
  // Whether the driver wants an interrupt now (VIRTQ_AVAIL_F_NO_INTERRUPT clear); also resets the
  // "used buffers added" flag.
  bool TakeNotification();

  // Gather `len` bytes from the chain's readable buffers starting at byte `offset`.
  absl::Status ReadFrom(const VirtqChain& chain, uint64_t offset, void* dst, uint64_t len);
  // Scatter into the writable buffers starting at byte `offset`.
  absl::Status WriteTo(const VirtqChain& chain, uint64_t offset, const void* src, uint64_t len);

  const VirtqueueLayout& layout() const { return layout_; }
  uint16_t last_avail_idx() const { return last_avail_; }
  uint16_t used_idx() const { return used_idx_; }

 private:
  SplitVirtqueue(DmaSpace& dma, const VirtqueueLayout& layout) : dma_(&dma), layout_(layout) {}
  struct Desc {
    uint64_t addr;
    uint32_t len;
    uint16_t flags;
    uint16_t next;
  };
  absl::StatusOr<Desc> ReadDesc(uint64_t table, uint32_t index);
  absl::Status AddBuffer(VirtqChain& chain, const Desc& d);
  absl::Status WalkIndirect(VirtqChain& chain, const Desc& d);

  DmaSpace* dma_;
  VirtqueueLayout layout_;
  uint16_t last_avail_ = 0;
  uint16_t used_idx_ = 0;
  bool used_added_ = false;
};

}  // namespace ionest
