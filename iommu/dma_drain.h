// Draining of DMA in flight (VT-d §6.5.5 "Draining of Requests to Memory"): an invalidation that
// completes must not leave a device still moving data through the translation it removed.
//
// A DMA is "in flight" from before its Translate until its last byte reached memory: the device
// model brackets the Translate and the copies with Enter/Exit (DmaSpace::InFlight does it). Drain
// returns once every DMA that entered before it was called has exited; DMA entering meanwhile is
// not waited for, so a steady stream of new DMA never starves it.
//
// Counters indexed by the parity of an epoch (SRCU-style). Enter increments the counter of the
// current epoch, Exit decrements the same one; Drain (one drainer at a time) waits for the
// inactive parity to reach zero (stragglers that read the epoch before the previous flip), flips
// the epoch, then waits for the formerly current parity.
//
// Hit-path cost: each thread owns a slot (a cache line with both parities) in every tracker,
// picked by a process-wide thread ordinal; only that thread writes it, so Enter/Exit are a plain
// load and store on a line the thread already owns, no atomic read-modify-write and no line shared
// with other devices. Threads beyond kOwnedSlots share one slot with atomic increments. The drainer
// sums the slots of the ordinals handed out so far. Ordinals of exited threads are reused.
//
// Why a DMA whose Translate predated the invalidation is always waited for: its Enter store is
// sequenced before its Translate, and Translate and the invalidation serialise on the model's
// lock (every model here takes it on Translate; a lock-free Translate would need a seq_cst fence
// after Enter). If the Translate's critical section came first, the store happens before the
// drainer's loads and is seen by both waits, whatever parity it went to; otherwise the Translate
// ran after the invalidation and cannot use what it removed.
//
// Thread safety: Enter/Exit from any thread (device threads, vCPUs doing virtio DMA); Drain from
// any thread, concurrent drainers serialise on mu_. Drain must not be called from inside an
// Enter/Exit bracket of the same tracker (it would wait for itself until the deadline), nor while
// holding a lock that in-flight DMA can need (the model's lock: Translate takes it).
#pragma once

#include <atomic>
#include <cstdint>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

namespace ionest {

class DmaDrain {
 public:
  static constexpr int kOwnedSlots = 64;

  // Registers a DMA in flight; returns the token to pass to Exit (on the same thread).
  uint32_t Enter() noexcept {
    const uint32_t parity = static_cast<uint32_t>(epoch_.load(std::memory_order_relaxed) & 1);
    const int ordinal = ThreadOrdinal();
    if (ordinal < kOwnedSlots) {
      std::atomic<int64_t>& c = owned_[ordinal].count[parity];
      c.store(c.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
    } else {
      shared_.count[parity].fetch_add(1, std::memory_order_relaxed);
    }
    return parity;
  }
  // Release: the DMA's memory writes are visible to the drainer that sees the count drop.
  void Exit(uint32_t parity) noexcept {
    const int ordinal = ThreadOrdinal();
    if (ordinal < kOwnedSlots) {
      std::atomic<int64_t>& c = owned_[ordinal].count[parity];
      c.store(c.load(std::memory_order_relaxed) - 1, std::memory_order_release);
    } else {
      shared_.count[parity].fetch_sub(1, std::memory_order_release);
    }
  }

  // Waits until every DMA that entered before this call has exited, or until `deadline`. Returns
  // false at the deadline (DMA still in flight: the caller decides what that means).
  bool Drain(absl::Time deadline) ABSL_LOCKS_EXCLUDED(mu_);

  // DMA currently in flight (both parities): for tests and statistics.
  int64_t in_flight() const noexcept { return Count(0) + Count(1); }

 private:
  // This thread's process-wide ordinal (0, 1, ...; reused after the thread exits).
  static int ThreadOrdinal() noexcept {
    const int o = t_ordinal_;
    return o >= 0 ? o : AssignOrdinal();
  }
  static int AssignOrdinal();
  int64_t Count(uint32_t parity) const noexcept;
  bool WaitForParity(uint32_t parity, absl::Time deadline);

  struct alignas(64) Slot {  // one writer (its thread): its own cache line
    std::atomic<int64_t> count[2] = {0, 0};
  };
  static thread_local int t_ordinal_;
  absl::Mutex mu_;                  // serialises drainers; never taken on the DMA path
  std::atomic<uint64_t> epoch_{0};  // written only under mu_
  Slot owned_[kOwnedSlots];
  Slot shared_;
};

}  // namespace ionest
