// Port-I/O and MMIO dispatch.
//
// Thread safety: Register/Unregister happen at machine construction (before vCPUs start) or under
// the bus's writer lock; Read/Write may be called concurrently from every vCPU thread. Devices must
// do their own locking (vCPUs may call them concurrently).
#pragma once

#include <cstddef>
#include <cstdint>
#include <atomic>
#include <map>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"

namespace ionest {

class IoDevice {
 public:
  virtual ~IoDevice() = default;
  // `offset` is relative to the registered base; size is 1, 2, 4 or 8 (MMIO may be larger for
  // string ops, devices may reject). Reads fill `data` (bus pre-fills 0xff).
  virtual void IoRead(uint64_t offset, uint8_t* data, size_t size) = 0;
  virtual void IoWrite(uint64_t offset, const uint8_t* data, size_t size) = 0;
};

class IoBus {
 public:
  explicit IoBus(std::string name) : name_(std::move(name)) {}
  // Fails if [base, base+len) is empty, wraps, or overlaps an existing registration.
  absl::Status Register(uint64_t base, uint64_t len, IoDevice* device, std::string device_name)
      ABSL_LOCKS_EXCLUDED(mu_);
  absl::Status Unregister(uint64_t base) ABSL_LOCKS_EXCLUDED(mu_);
  // Returns false if nothing is registered at addr (reads then yield all-ones). An access that
  // starts inside a device but runs past its end is dispatched truncated to the device's end.
  bool Read(uint64_t addr, uint8_t* data, size_t size) ABSL_LOCKS_EXCLUDED(mu_);
  bool Write(uint64_t addr, const uint8_t* data, size_t size) ABSL_LOCKS_EXCLUDED(mu_);
  uint64_t unhandled_accesses() const;

 private:
  struct Entry {
    uint64_t len;
    IoDevice* device;
    std::string name;
  };
  // Entry containing addr; returns device and offset.
  const Entry* Find(uint64_t addr, uint64_t* base) const ABSL_SHARED_LOCKS_REQUIRED(mu_);
  const std::string name_;
  mutable absl::Mutex mu_;
  std::map<uint64_t, Entry> entries_ ABSL_GUARDED_BY(mu_);
  std::atomic<uint64_t> unhandled_{0};
};

}  // namespace ionest
