// Guest-physical memory: memfd-backed regions with bounds-checked access.
//
// Thread safety: the region layout is fixed at creation; Read/Write/CompareExchange64 may be called
// concurrently from any thread (vCPU threads, the event loop, device workers). Concurrent accesses to
// the same bytes race exactly as they would on hardware; CompareExchange64 is atomic.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <type_traits>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace ionest {

// A physical address space something can read and write: guest RAM, or a view of it. Page-table
// walkers and the IOMMU's own table reads take this interface so tests can pass a fake.
class PhysMemory {
 public:
  virtual ~PhysMemory() = default;
  // Fails (OutOfRange) if any byte of [gpa, gpa+len) is not backed; nothing is transferred then.
  virtual absl::Status Read(uint64_t gpa, void* dst, size_t len) const = 0;
  virtual absl::Status Write(uint64_t gpa, const void* src, size_t len) = 0;
  // Atomic 64-bit compare-and-exchange at an 8-byte aligned gpa (for A/D bit updates).
  // Returns true if swapped; false (and *expected updated) if memory held another value.
  virtual absl::StatusOr<bool> CompareExchange64(uint64_t gpa, uint64_t* expected, uint64_t desired) = 0;

  template <typename T>
  absl::StatusOr<T> ReadObj(uint64_t gpa) const {
    static_assert(std::is_trivially_copyable_v<T>);
    T v;
    absl::Status s = Read(gpa, &v, sizeof(T));
    if (!s.ok()) return s;
    return v;
  }
  template <typename T>
  absl::Status WriteObj(uint64_t gpa, const T& v) {
    static_assert(std::is_trivially_copyable_v<T>);
    return Write(gpa, &v, sizeof(T));
  }
};

struct MemoryRegionSpec {
  uint64_t gpa = 0;
  uint64_t size = 0;  // multiple of 4 KiB
};

struct MemoryRegion {
  uint64_t gpa = 0;
  uint64_t size = 0;
  uint8_t* host = nullptr;  // mmap of the memfd
  int memfd = -1;
};

class GuestMemory final : public PhysMemory {
 public:
  // Regions must be page aligned, non-empty, non-overlapping, and not wrap the 64-bit space.
  static absl::StatusOr<std::unique_ptr<GuestMemory>> Create(std::vector<MemoryRegionSpec> specs);
  ~GuestMemory() override;
  GuestMemory(const GuestMemory&) = delete;
  GuestMemory& operator=(const GuestMemory&) = delete;

  absl::Status Read(uint64_t gpa, void* dst, size_t len) const override;
  absl::Status Write(uint64_t gpa, const void* src, size_t len) override;
  absl::StatusOr<bool> CompareExchange64(uint64_t gpa, uint64_t* expected, uint64_t desired) override;

  // Host pointer for [gpa, gpa+len) if the whole range lies in one region, else nullptr.
  uint8_t* HostPointer(uint64_t gpa, uint64_t len) const;
  bool Contains(uint64_t gpa, uint64_t len) const { return HostPointer(gpa, len) != nullptr; }

  const std::vector<MemoryRegion>& regions() const { return regions_; }
  uint64_t total_size() const;

 private:
  GuestMemory() = default;
  // Region containing gpa, or nullptr.
  const MemoryRegion* Find(uint64_t gpa) const;
  std::vector<MemoryRegion> regions_;  // sorted by gpa
};

}  // namespace ionest
