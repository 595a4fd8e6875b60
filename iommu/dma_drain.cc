#include "iommu/dma_drain.h"

#include <thread>
#include <vector>

namespace ionest {

namespace {

// Process-wide thread ordinals. An ordinal is owned by one live thread at a time: the owner is
// the only writer of its slot in every DmaDrain, which is what lets Enter/Exit use plain stores.
ABSL_CONST_INIT absl::Mutex ordinals_mu(absl::kConstInit);
std::vector<int>& FreeOrdinals() ABSL_EXCLUSIVE_LOCKS_REQUIRED(ordinals_mu) {
  static std::vector<int>* free = new std::vector<int>();
  return *free;
}
int next_ordinal ABSL_GUARDED_BY(ordinals_mu) = 0;
std::atomic<int> ordinals_in_use{0};  // high-water mark: the drainer scans [0, this)

}  // namespace

thread_local int DmaDrain::t_ordinal_ = -1;

int DmaDrain::AssignOrdinal() {
  // Gives the ordinal back when the thread exits. Its brackets are RAII on its stack, so every
  // slot of the ordinal is balanced by then; the mutex orders the old owner's last stores before
  // the new owner's first loads.
  struct Releaser {
    int ordinal = -1;
    ~Releaser() {
      if (ordinal < 0) return;
      absl::MutexLock l(&ordinals_mu);
      FreeOrdinals().push_back(ordinal);
      t_ordinal_ = -1;
    }
  };
  static thread_local Releaser releaser;
  absl::MutexLock l(&ordinals_mu);
  int o;
  if (!FreeOrdinals().empty()) {
    o = FreeOrdinals().back();
    FreeOrdinals().pop_back();
  } else {
    o = next_ordinal++;
    if (o < kOwnedSlots) ordinals_in_use.store(o + 1, std::memory_order_release);
  }
  releaser.ordinal = o;
  t_ordinal_ = o;
  return o;
}

int64_t DmaDrain::Count(uint32_t parity) const noexcept {
  int64_t n = shared_.count[parity].load(std::memory_order_acquire);
  const int used = ordinals_in_use.load(std::memory_order_acquire);
  for (int i = 0; i < used; ++i) n += owned_[i].count[parity].load(std::memory_order_acquire);
  return n;
}

bool DmaDrain::WaitForParity(uint32_t parity, absl::Time deadline) {
  // DMA copies are short (microseconds): spin with yields first, then sleep in small steps so a
  // slow device does not cost a whole core while the vCPU waits. Every count is >= 0 (each
  // thread's own brackets), so a zero sum means every slot was zero when read.
  for (int spins = 0; Count(parity) != 0; ++spins) {
    if (spins < 64) {
      std::this_thread::yield();
      continue;
    }
    if (absl::Now() >= deadline) return false;
    absl::SleepFor(absl::Microseconds(spins < 256 ? 10 : 100));
  }
  return true;
}

bool DmaDrain::Drain(absl::Time deadline) {
  absl::MutexLock l(&mu_);
  std::atomic_thread_fence(std::memory_order_seq_cst);
  const uint64_t epoch = epoch_.load(std::memory_order_relaxed);
  const uint32_t current = static_cast<uint32_t>(epoch & 1);
  // Stragglers: DMA that read the epoch before the previous flip and counted in the now inactive
  // parity. New DMA does not go there, so this wait is bounded by the DMA already started.
  if (!WaitForParity(current ^ 1, deadline)) return false;
  epoch_.store(epoch + 1, std::memory_order_seq_cst);
  // New DMA counts in the other parity from here on: this one only drops.
  return WaitForParity(current, deadline);
}

}  // namespace ionest
