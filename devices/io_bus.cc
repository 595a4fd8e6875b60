#include "devices/io_bus.h"

#include <algorithm>
#include <cstring>

#include "absl/strings/str_format.h"

namespace ionest {

absl::Status IoBus::Register(uint64_t base, uint64_t len, IoDevice* device, std::string device_name) {
  if (len == 0 || base + len < base || device == nullptr)
    return absl::InvalidArgumentError(
        absl::StrFormat("%s: bad registration of %s at [%#x, +%#x)", name_, device_name, base, len));
  absl::MutexLock l(&mu_);
  const uint64_t end = base + len;  // exclusive; base+len may be 0 only if it wrapped (rejected)
  auto next = entries_.lower_bound(base);
  if (next != entries_.end() && next->first < end)
    return absl::AlreadyExistsError(absl::StrFormat("%s: %s at [%#x, %#x) overlaps %s at %#x", name_, device_name,
                                                    base, end, next->second.name, next->first));
  if (next != entries_.begin()) {
    auto prev = std::prev(next);
    if (prev->first + prev->second.len > base)
      return absl::AlreadyExistsError(absl::StrFormat("%s: %s at [%#x, %#x) overlaps %s at %#x", name_, device_name,
                                                      base, end, prev->second.name, prev->first));
  }
  entries_.emplace(base, Entry{len, device, std::move(device_name)});
  return absl::OkStatus();
}

absl::Status IoBus::Unregister(uint64_t base) {
  absl::MutexLock l(&mu_);
  if (entries_.erase(base) == 0)
    return absl::NotFoundError(absl::StrFormat("%s: nothing registered at %#x", name_, base));
  return absl::OkStatus();
}

const IoBus::Entry* IoBus::Find(uint64_t addr, uint64_t* base) const {
  auto it = entries_.upper_bound(addr);
  if (it == entries_.begin()) return nullptr;
  --it;
  if (addr - it->first >= it->second.len) return nullptr;
  *base = it->first;
  return &it->second;
}

bool IoBus::Read(uint64_t addr, uint8_t* data, size_t size) {
  std::memset(data, 0xff, size);
  IoDevice* dev;
  uint64_t base, n;
  {
    absl::ReaderMutexLock l(&mu_);
    const Entry* e = Find(addr, &base);
    if (!e) {
      unhandled_++;
      return false;
    }
    dev = e->device;
    n = std::min<uint64_t>(size, e->len - (addr - base));
  }
  dev->IoRead(addr - base, data, n);
  return true;
}

bool IoBus::Write(uint64_t addr, const uint8_t* data, size_t size) {
  IoDevice* dev;
  uint64_t base, n;
  {
    absl::ReaderMutexLock l(&mu_);
    const Entry* e = Find(addr, &base);
    if (!e) {
      unhandled_++;
      return false;
    }
    dev = e->device;
    n = std::min<uint64_t>(size, e->len - (addr - base));
  }
  dev->IoWrite(addr - base, data, n);
  return true;
}

uint64_t IoBus::unhandled_accesses() const { return unhandled_.load(); }

}  // namespace ionest
