// MSI-X capability, table and pending-bit array (PCIe 6.0 §7.7.2). The table and PBA are IoDevices
// that the owning PciDevice registers inside one of its memory BARs.
//
// Thread safety: Signal may be called from any thread; table/PBA MMIO from vCPU threads; the
// MsiSink is called with the MSI-X lock held.
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "devices/io_bus.h"
#include "devices/pci_config_space.h"
#include "devices/pci_interrupts.h"

namespace ionest {

class PciMsix {
 public:
  static constexpr uint16_t kControl = 0x02;
  static constexpr uint16_t kTable = 0x04;
  static constexpr uint16_t kPba = 0x08;
  static constexpr uint16_t kCapSize = 0x0C;
  static constexpr uint16_t kControlFunctionMask = 1u << 14;
  static constexpr uint16_t kControlEnable = 1u << 15;
  static constexpr unsigned kEntrySize = 16;
  static constexpr uint32_t kEntryVectorControlMasked = 1u << 0;
  static constexpr unsigned kMaxVectors = 2048;

  // Adds the capability. Table and PBA offsets must be 8-byte aligned; BIRs in [0, 5].
  static absl::StatusOr<std::unique_ptr<PciMsix>> Create(PciConfigSpace& config, unsigned vectors,
                                                         uint8_t table_bir, uint32_t table_offset,
                                                         uint8_t pba_bir, uint32_t pba_offset);

  uint16_t offset() const { return offset_; }
  unsigned vectors() const { return vectors_; }
  uint64_t table_size_bytes() const { return uint64_t{vectors_} * kEntrySize; }
  uint64_t pba_size_bytes() const { return (uint64_t{vectors_} + 63) / 64 * 8; }
  IoDevice& table() { return table_io_; }
  IoDevice& pba() { return pba_io_; }

  bool enabled() const;
  void SetRoute(PciMsiRoute route) ABSL_LOCKS_EXCLUDED(mu_);
  PciIrqResult Signal(unsigned vector) ABSL_LOCKS_EXCLUDED(mu_);
  // Deliver pending vectors that became unmasked (call after guest config writes).
  void OnConfigWrite() ABSL_LOCKS_EXCLUDED(mu_);
  bool IsPending(unsigned vector) const ABSL_LOCKS_EXCLUDED(mu_);
  // Function Level Reset (PCIe 6.0 §6.6.2, §7.7.2): MSI-X Enable and Function Mask clear, every
  // table entry masked with address and data 0, no pending bits.
  void Reset() ABSL_LOCKS_EXCLUDED(mu_);

 private:
  class TableIo final : public IoDevice {
   public:
    explicit TableIo(PciMsix& m) : m_(m) {}
    void IoRead(uint64_t offset, uint8_t* data, size_t size) override;
    void IoWrite(uint64_t offset, const uint8_t* data, size_t size) override;

   private:
    PciMsix& m_;
  };
  class PbaIo final : public IoDevice {
   public:
    explicit PbaIo(PciMsix& m) : m_(m) {}
    void IoRead(uint64_t offset, uint8_t* data, size_t size) override;
    void IoWrite(uint64_t, const uint8_t*, size_t) override {}  // read-only (§7.7.2.10)

   private:
    PciMsix& m_;
  };

  PciMsix(PciConfigSpace& config, uint16_t offset, unsigned vectors);
  bool FunctionMasked() const;
  bool EntryMasked(unsigned v) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  PciIrqResult SendLocked(unsigned v) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void DeliverPendingLocked(unsigned first, unsigned last) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void ResetTableLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  PciConfigSpace& config_;
  const uint16_t offset_;
  const unsigned vectors_;
  TableIo table_io_{*this};
  PbaIo pba_io_{*this};
  mutable absl::Mutex mu_;
  std::vector<uint8_t> table_ ABSL_GUARDED_BY(mu_);
  std::vector<uint64_t> pba_ ABSL_GUARDED_BY(mu_);
  PciMsiRoute route_ ABSL_GUARDED_BY(mu_);
};

}  // namespace ionest
