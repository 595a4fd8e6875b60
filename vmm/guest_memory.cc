#include "vmm/guest_memory.h"

#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstring>

#include "absl/strings/str_format.h"

namespace ionest {

namespace {
constexpr uint64_t kPageSize = 4096;
}

absl::StatusOr<std::unique_ptr<GuestMemory>> GuestMemory::Create(std::vector<MemoryRegionSpec> specs) {
  std::sort(specs.begin(), specs.end(), [](auto& a, auto& b) { return a.gpa < b.gpa; });
  std::unique_ptr<GuestMemory> mem(new GuestMemory());
  uint64_t prev_end = 0;
  bool first = true;
  for (const auto& s : specs) {
    if (s.size == 0 || s.size % kPageSize || s.gpa % kPageSize)
      return absl::InvalidArgumentError(
          absl::StrFormat("memory region gpa=%#x size=%#x is empty or not 4 KiB aligned", s.gpa, s.size));
    if (s.gpa + s.size < s.gpa)
      return absl::InvalidArgumentError(absl::StrFormat("memory region gpa=%#x size=%#x wraps", s.gpa, s.size));
    if (!first && s.gpa < prev_end)
      return absl::InvalidArgumentError(absl::StrFormat("memory region gpa=%#x overlaps the previous one", s.gpa));
    first = false;
    prev_end = s.gpa + s.size;
    int fd = memfd_create("ionest-guest-ram", MFD_CLOEXEC);
    if (fd < 0) return absl::ErrnoToStatus(errno, "memfd_create for guest RAM");
    if (ftruncate(fd, static_cast<off_t>(s.size)) != 0) {
      int e = errno;
      close(fd);
      return absl::ErrnoToStatus(e, absl::StrFormat("ftruncate guest RAM to %d bytes", s.size));
    }
    void* p = mmap(nullptr, s.size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_NORESERVE, fd, 0);
    if (p == MAP_FAILED) {
      int e = errno;
      close(fd);
      return absl::ErrnoToStatus(e, absl::StrFormat("mmap %d bytes of guest RAM", s.size));
    }
    mem->regions_.push_back({s.gpa, s.size, static_cast<uint8_t*>(p), fd});
  }
  return mem;
}

GuestMemory::~GuestMemory() {
  for (auto& r : regions_) {
    munmap(r.host, r.size);
    close(r.memfd);
  }
}

uint64_t GuestMemory::total_size() const {
  uint64_t t = 0;
  for (auto& r : regions_) t += r.size;
  return t;
}

const MemoryRegion* GuestMemory::Find(uint64_t gpa) const {
  auto it = std::upper_bound(regions_.begin(), regions_.end(), gpa,
                             [](uint64_t g, const MemoryRegion& r) { return g < r.gpa; });
  if (it == regions_.begin()) return nullptr;
  --it;
  if (gpa - it->gpa >= it->size) return nullptr;
  return &*it;
}

uint8_t* GuestMemory::HostPointer(uint64_t gpa, uint64_t len) const {
  const MemoryRegion* r = Find(gpa);
  if (!r) return nullptr;
  uint64_t off = gpa - r->gpa;
  if (len > r->size - off) return nullptr;
  return r->host + off;
}

absl::Status GuestMemory::Read(uint64_t gpa, void* dst, size_t len) const {
  if (len == 0) return absl::OkStatus();
  uint8_t* p = HostPointer(gpa, len);
  if (!p) return absl::OutOfRangeError(absl::StrFormat("guest read [%#x, +%#x) is outside guest RAM", gpa, len));
  std::memcpy(dst, p, len);
  return absl::OkStatus();
}

absl::Status GuestMemory::Write(uint64_t gpa, const void* src, size_t len) {
  if (len == 0) return absl::OkStatus();
  uint8_t* p = HostPointer(gpa, len);
  if (!p) return absl::OutOfRangeError(absl::StrFormat("guest write [%#x, +%#x) is outside guest RAM", gpa, len));
  std::memcpy(p, src, len);
  return absl::OkStatus();
}

absl::StatusOr<bool> GuestMemory::CompareExchange64(uint64_t gpa, uint64_t* expected, uint64_t desired) {
  if (gpa % 8) return absl::InvalidArgumentError(absl::StrFormat("unaligned 64-bit cmpxchg at %#x", gpa));
  uint8_t* p = HostPointer(gpa, 8);
  if (!p) return absl::OutOfRangeError(absl::StrFormat("guest cmpxchg at %#x is outside guest RAM", gpa));
  std::atomic_ref<uint64_t> ref(*reinterpret_cast<uint64_t*>(p));
  return ref.compare_exchange_strong(*expected, desired);
}

}  // namespace ionest
