// A 4 KiB PCIe configuration space with per-byte write masks: plain read/write bits and
// write-1-to-clear bits; all other bits are read-only to the guest. Also builds the capability
// list (0x40-0xFF, PCIe 6.0 §7.5.1.1.10) and the extended capability list (0x100-0xFFF, §7.6.3).
//
// Guest accesses may have any offset and size: bytes outside the 4 KiB space read as 0xFF and
// writes to them are dropped.
// Thread safety: all methods may be called concurrently (internal lock).
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "devices/pci_regs.h"

namespace ionest {

class PciConfigSpace {
 public:
  static constexpr size_t kSize = pci::kConfigSpaceSize;

  PciConfigSpace() = default;

  // Guest view: masks applied.
  void GuestRead(uint64_t offset, uint8_t* data, size_t size) const ABSL_LOCKS_EXCLUDED(mu_);
  void GuestWrite(uint64_t offset, const uint8_t* data, size_t size) ABSL_LOCKS_EXCLUDED(mu_);

  // Device view: raw little-endian values, masks ignored. size is 1, 2 or 4; out-of-range bytes read 0
  // and are not written.
  uint32_t Get(uint32_t offset, size_t size) const ABSL_LOCKS_EXCLUDED(mu_);
  uint8_t Get8(uint32_t offset) const { return static_cast<uint8_t>(Get(offset, 1)); }
  uint16_t Get16(uint32_t offset) const { return static_cast<uint16_t>(Get(offset, 2)); }
  uint32_t Get32(uint32_t offset) const { return Get(offset, 4); }
  void Set(uint32_t offset, uint32_t value, size_t size) ABSL_LOCKS_EXCLUDED(mu_);
  void Set8(uint32_t offset, uint8_t v) { Set(offset, v, 1); }
  void Set16(uint32_t offset, uint16_t v) { Set(offset, v, 2); }
  void Set32(uint32_t offset, uint32_t v) { Set(offset, v, 4); }
  // Atomically set/clear bits of a field (device-side status updates).
  void UpdateBits(uint32_t offset, size_t size, uint32_t set, uint32_t clear) ABSL_LOCKS_EXCLUDED(mu_);
  // Guest write behaviour of a field: `writable` bits are RW, `rw1c` bits are write-1-to-clear.
  void SetMasks(uint32_t offset, size_t size, uint32_t writable, uint32_t rw1c = 0) ABSL_LOCKS_EXCLUDED(mu_);

  // Append a capability with `size` bytes (including the 2-byte header) to the list; returns its
  // offset. Sets Status.CAP_LIST. Fails when the 0x40-0xFF area is full.
  absl::StatusOr<uint16_t> AddCapability(uint8_t id, uint8_t size) ABSL_LOCKS_EXCLUDED(mu_);
  // Append an extended capability (4-byte header: id 15:0, version 19:16, next 31:20).
  absl::StatusOr<uint16_t> AddExtCapability(uint16_t id, uint8_t version, uint16_t size) ABSL_LOCKS_EXCLUDED(mu_);

  // Walk the lists (bounded, loop-safe). Return the first match.
  std::optional<uint16_t> FindCapability(uint8_t id) const ABSL_LOCKS_EXCLUDED(mu_);
  std::optional<uint16_t> FindExtCapability(uint16_t id) const ABSL_LOCKS_EXCLUDED(mu_);
  // All (id, offset) pairs in list order.
  std::vector<std::pair<uint16_t, uint16_t>> Capabilities() const ABSL_LOCKS_EXCLUDED(mu_);
  std::vector<std::pair<uint16_t, uint16_t>> ExtCapabilities() const ABSL_LOCKS_EXCLUDED(mu_);

 private:
  uint32_t GetLocked(uint32_t offset, size_t size) const ABSL_SHARED_LOCKS_REQUIRED(mu_);
  void SetLocked(uint32_t offset, uint32_t value, size_t size) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  mutable absl::Mutex mu_;
  std::array<uint8_t, kSize> data_ ABSL_GUARDED_BY(mu_){};
  std::array<uint8_t, kSize> writable_ ABSL_GUARDED_BY(mu_){};
  std::array<uint8_t, kSize> rw1c_ ABSL_GUARDED_BY(mu_){};
  uint16_t next_cap_ ABSL_GUARDED_BY(mu_) = pci::kHeaderEnd;
  uint16_t last_cap_ ABSL_GUARDED_BY(mu_) = 0;
  uint16_t next_ext_ ABSL_GUARDED_BY(mu_) = pci::kExtCapStart;
  uint16_t last_ext_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace ionest
