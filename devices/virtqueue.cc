#include "devices/virtqueue.h"

#include <algorithm>
#include <atomic>
#include <bit>
#include <cstring>

#include "absl/strings/str_format.h"

namespace ionest {
namespace {

constexpr uint64_t kDescSize = 16;
constexpr uint64_t kAvailHeader = 4;  // flags, idx
constexpr uint64_t kUsedHeader = 4;
constexpr uint64_t kUsedElemSize = 8;
// Indirect tables: at most this many descriptors (virtio 1.2 §2.7.5.3.1 bounds chains by the
// queue size; indirect tables are bounded here independently).
constexpr uint32_t kMaxIndirect = 1024;

bool RangeOk(uint64_t base, uint64_t len) { return base + len >= base; }

}  // namespace

absl::StatusOr<SplitVirtqueue> SplitVirtqueue::Create(DmaSpace& dma, const VirtqueueLayout& l) {
  if (l.size == 0 || l.size > kMaxSize || !std::has_single_bit(l.size))
    return absl::InvalidArgumentError(absl::StrFormat("virtqueue size %u is not a power of two <= 32768", l.size));
  // Alignment (§2.7, Table "Virtqueue Part Alignment").
  if (l.desc % 16 || l.avail % 2 || l.used % 4)
    return absl::InvalidArgumentError("virtqueue ring addresses misaligned");
  const uint64_t desc_len = kDescSize * l.size;
  const uint64_t avail_len = kAvailHeader + 2ull * l.size + 2;
  const uint64_t used_len = kUsedHeader + kUsedElemSize * l.size + 2;
  if (!RangeOk(l.desc, desc_len) || !RangeOk(l.avail, avail_len) || !RangeOk(l.used, used_len))
    return absl::InvalidArgumentError("virtqueue ring wraps the address space");
  return SplitVirtqueue(dma, l);
}

absl::StatusOr<SplitVirtqueue::Desc> SplitVirtqueue::ReadDesc(uint64_t table, uint32_t index) {
  uint8_t raw[kDescSize];
  if (absl::Status s = dma_->Read(table + kDescSize * index, raw, sizeof(raw)); !s.ok()) return s;
  Desc d;
  std::memcpy(&d.addr, raw, 8);
  std::memcpy(&d.len, raw + 8, 4);
  std::memcpy(&d.flags, raw + 12, 2);
  std::memcpy(&d.next, raw + 14, 2);
  return d;
}

absl::Status SplitVirtqueue::AddBuffer(VirtqChain& chain, const Desc& d) {
  if (!RangeOk(d.addr, d.len)) return absl::InvalidArgumentError("descriptor buffer wraps the address space");
  if (d.flags & kDescFlagWrite) {
    chain.writable.push_back({d.addr, d.len});
    chain.writable_bytes += d.len;
  } else {
    // Device-readable after device-writable is forbidden (§2.7.4.2).
    if (!chain.writable.empty()) return absl::InvalidArgumentError("readable descriptor after writable one");
    chain.readable.push_back({d.addr, d.len});
    chain.readable_bytes += d.len;
  }
  if (chain.readable_bytes + chain.writable_bytes > kMaxChainBytes)
    return absl::InvalidArgumentError("descriptor chain longer than the device limit");
  return absl::OkStatus();
}

absl::Status SplitVirtqueue::WalkIndirect(VirtqChain& chain, const Desc& d) {
  // §2.7.5.3: len is a multiple of 16; no nested indirection; NEXT links within the table.
  if (d.len == 0 || d.len % kDescSize || d.len / kDescSize > kMaxIndirect)
    return absl::InvalidArgumentError(absl::StrFormat("bad indirect table length %u", d.len));
  if (!RangeOk(d.addr, d.len)) return absl::InvalidArgumentError("indirect table wraps the address space");
  const uint32_t n = d.len / kDescSize;
  uint32_t idx = 0;
  for (uint32_t steps = 0;; ++steps) {
    if (steps >= n) return absl::InvalidArgumentError("indirect descriptor chain loops");
    absl::StatusOr<Desc> e = ReadDesc(d.addr, idx);
    if (!e.ok()) return e.status();
    if (e->flags & kDescFlagIndirect) return absl::InvalidArgumentError("nested indirect descriptor");
    if (absl::Status s = AddBuffer(chain, *e); !s.ok()) return s;
    if (!(e->flags & kDescFlagNext)) return absl::OkStatus();
    if (e->next >= n) return absl::InvalidArgumentError("indirect next index out of range");
    idx = e->next;
  }
}

absl::StatusOr<std::optional<VirtqChain>> SplitVirtqueue::Pop() {
  uint16_t avail_idx;
  if (absl::Status s = dma_->Read(layout_.avail + 2, &avail_idx, 2); !s.ok()) return s;
  const uint16_t pending = static_cast<uint16_t>(avail_idx - last_avail_);
  if (pending == 0) return std::nullopt;
  if (pending > layout_.size)
    return absl::InvalidArgumentError(absl::StrFormat("avail idx %u runs %u entries ahead of a %u-entry ring", avail_idx,
                                                      pending, layout_.size));
  std::atomic_thread_fence(std::memory_order_acquire);  // ring entries after the index (§2.7.13)
  uint16_t head;
  const uint64_t slot = layout_.avail + kAvailHeader + 2ull * (last_avail_ % layout_.size);
  if (absl::Status s = dma_->Read(slot, &head, 2); !s.ok()) return s;
  if (head >= layout_.size)
    return absl::InvalidArgumentError(absl::StrFormat("avail ring head %u >= queue size %u", head, layout_.size));
  VirtqChain chain;
  chain.head = head;
  uint16_t idx = head;
  for (uint32_t steps = 0;; ++steps) {
    if (steps >= layout_.size) return absl::InvalidArgumentError("descriptor chain loops or exceeds queue size");
    absl::StatusOr<Desc> d = ReadDesc(layout_.desc, idx);
    if (!d.ok()) return d.status();
    if (d->flags & kDescFlagIndirect) {
      if (d->flags & kDescFlagNext) return absl::InvalidArgumentError("indirect descriptor with NEXT");
      if (absl::Status s = WalkIndirect(chain, *d); !s.ok()) return s;
      break;
    }
    if (absl::Status s = AddBuffer(chain, *d); !s.ok()) return s;
    if (!(d->flags & kDescFlagNext)) break;
    if (d->next >= layout_.size) return absl::InvalidArgumentError("descriptor next index out of range");
    idx = d->next;
  }
  ++last_avail_;
  return chain;
}

absl::Status SplitVirtqueue::Push(uint16_t head, uint32_t written) {
  const uint64_t elem = layout_.used + kUsedHeader + kUsedElemSize * (used_idx_ % layout_.size);
  uint8_t raw[kUsedElemSize];
  const uint32_t id = head;
  std::memcpy(raw, &id, 4);
  std::memcpy(raw + 4, &written, 4);
  if (absl::Status s = dma_->Write(elem, raw, sizeof(raw)); !s.ok()) return s;
  std::atomic_thread_fence(std::memory_order_release);  // element before index (§2.7.8)
  const uint16_t next = static_cast<uint16_t>(used_idx_ + 1);
  if (absl::Status s = dma_->Write(layout_.used + 2, &next, 2); !s.ok()) return s;
  used_idx_ = next;
  used_added_ = true;
  return absl::OkStatus();
}

bool SplitVirtqueue::TakeNotification() {
  if (!used_added_) return false;
  used_added_ = false;
  std::atomic_thread_fence(std::memory_order_seq_cst);  // used idx visible before reading flags
  uint16_t flags = 0;
  if (!dma_->Read(layout_.avail, &flags, 2).ok()) return true;  // cannot tell: interrupt
  return !(flags & kAvailFlagNoInterrupt);
}

absl::Status SplitVirtqueue::ReadFrom(const VirtqChain& chain, uint64_t offset, void* dst, uint64_t len) {
  uint8_t* out = static_cast<uint8_t*>(dst);
  if (offset > chain.readable_bytes || len > chain.readable_bytes - offset)
    return absl::OutOfRangeError("read beyond the chain's readable buffers");
  for (const VirtqBuffer& b : chain.readable) {
    if (len == 0) break;
    if (offset >= b.len) {
      offset -= b.len;
      continue;
    }
    const uint64_t n = std::min<uint64_t>(b.len - offset, len);
    if (absl::Status s = dma_->Read(b.addr + offset, out, n); !s.ok()) return s;
    out += n;
    len -= n;
    offset = 0;
  }
  return absl::OkStatus();
}

absl::Status SplitVirtqueue::WriteTo(const VirtqChain& chain, uint64_t offset, const void* src, uint64_t len) {
  const uint8_t* in = static_cast<const uint8_t*>(src);
  if (offset > chain.writable_bytes || len > chain.writable_bytes - offset)
    return absl::OutOfRangeError("write beyond the chain's writable buffers");
  for (const VirtqBuffer& b : chain.writable) {
    if (len == 0) break;
    if (offset >= b.len) {
      offset -= b.len;
      continue;
    }
    const uint64_t n = std::min<uint64_t>(b.len - offset, len);
    if (absl::Status s = dma_->Write(b.addr + offset, in, n); !s.ok()) return s;
    in += n;
    len -= n;
    offset = 0;
  }
  return absl::OkStatus();
}

}  // namespace ionest
