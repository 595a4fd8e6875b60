// Test doubles shared by the device tests (test-only; not linked into the VMM).
#pragma once

#include <cstdint>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "devices/io_bus.h"
#include "devices/irq_line.h"
#include "iommu/msi.h"

namespace ionest::testing {

class FakeIrqLine final : public IrqLine {
 public:
  void SetLevel(bool asserted) override {
    absl::MutexLock l(&mu_);
    if (asserted && !level_) ++rising_edges_;
    level_ = asserted;
  }
  bool level() const {
    absl::MutexLock l(&mu_);
    return level_;
  }
  int rising_edges() const {
    absl::MutexLock l(&mu_);
    return rising_edges_;
  }

 private:
  mutable absl::Mutex mu_;
  bool level_ = false;
  int rising_edges_ = 0;
};

class FakeMsiSink final : public MsiSink {
 public:
  absl::Status SendMsi(const MsiMessage& msi) override {
    absl::MutexLock l(&mu_);
    sent_.push_back(msi);
    return absl::OkStatus();
  }
  std::vector<MsiMessage> sent() const {
    absl::MutexLock l(&mu_);
    return sent_;
  }
  void clear() {
    absl::MutexLock l(&mu_);
    sent_.clear();
  }

 private:
  mutable absl::Mutex mu_;
  std::vector<MsiMessage> sent_;
};

// Little-endian register access helpers on an IoDevice.
inline uint64_t ReadN(IoDevice& d, uint64_t off, size_t size) {
  uint8_t buf[8];
  for (auto& b : buf) b = 0xff;
  d.IoRead(off, buf, size);
  uint64_t v = 0;
  for (size_t i = 0; i < size; ++i) v |= uint64_t{buf[i]} << (8 * i);
  return v;
}
inline void WriteN(IoDevice& d, uint64_t off, uint64_t v, size_t size) {
  uint8_t buf[8];
  for (size_t i = 0; i < size; ++i) buf[i] = static_cast<uint8_t>(v >> (8 * i));
  d.IoWrite(off, buf, size);
}
inline uint8_t Read8(IoDevice& d, uint64_t off) { return static_cast<uint8_t>(ReadN(d, off, 1)); }
inline void Write8(IoDevice& d, uint64_t off, uint8_t v) { WriteN(d, off, v, 1); }

}  // namespace ionest::testing
