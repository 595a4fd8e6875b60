// MSI capability with 64-bit addresses and per-vector masking (PCIe 6.0 §7.7.1).
//
// Thread safety: Signal may be called from any thread concurrently with guest config writes
// (followed by OnConfigWrite). The MsiSink is called with the MSI lock held.
#pragma once

#include <cstdint>
#include <memory>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "devices/pci_config_space.h"
#include "devices/pci_interrupts.h"

namespace ionest {

class PciMsi {
 public:
  // Register offsets relative to the capability (64-bit, per-vector masking layout).
  static constexpr uint16_t kControl = 0x02;
  static constexpr uint16_t kAddressLo = 0x04;
  static constexpr uint16_t kAddressHi = 0x08;
  static constexpr uint16_t kData = 0x0C;
  static constexpr uint16_t kMask = 0x10;
  static constexpr uint16_t kPending = 0x14;
  static constexpr uint16_t kCapSize = 0x18;
  // Message Control bits.
  static constexpr uint16_t kControlEnable = 1u << 0;
  static constexpr unsigned kControlMmcShift = 1;
  static constexpr unsigned kControlMmeShift = 4;
  static constexpr uint16_t kControl64Bit = 1u << 7;
  static constexpr uint16_t kControlPerVectorMask = 1u << 8;

  // Adds the capability. `vectors` must be a power of two in [1, 32].
  static absl::StatusOr<std::unique_ptr<PciMsi>> Create(PciConfigSpace& config, unsigned vectors);

  uint16_t offset() const { return offset_; }
  bool enabled() const;
  void SetRoute(PciMsiRoute route) ABSL_LOCKS_EXCLUDED(mu_);
  PciIrqResult Signal(unsigned vector) ABSL_LOCKS_EXCLUDED(mu_);
  // Deliver vectors that are pending and no longer masked (call after guest config writes).
  void OnConfigWrite() ABSL_LOCKS_EXCLUDED(mu_);
  // Function Level Reset (PCIe 6.0 §6.6.2): MSI Enable and Multiple Message Enable clear, message
  // address/data 0, no vector masked or pending.
  void Reset() ABSL_LOCKS_EXCLUDED(mu_);

 private:
  PciMsi(PciConfigSpace& config, uint16_t offset, unsigned vectors)
      : config_(config), offset_(offset), vectors_(vectors) {}
  PciIrqResult SendLocked(unsigned vector) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  unsigned EnabledVectors() const;

  PciConfigSpace& config_;
  const uint16_t offset_;
  const unsigned vectors_;
  absl::Mutex mu_;
  PciMsiRoute route_ ABSL_GUARDED_BY(mu_);
};

}  // namespace ionest
