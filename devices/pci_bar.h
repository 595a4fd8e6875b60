// One PCI Base Address Register's address range as seen by the device: an IoDevice that
// dispatches to sub-regions (device registers, MSI-X table, PBA...) at BAR-relative offsets.
// Holes read as all-ones and ignore writes.
//
// Thread safety: AddRegion before the device is attached; IoRead/IoWrite from any vCPU thread
// (regions do their own locking).
#pragma once

#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "devices/io_bus.h"

namespace ionest {

enum class PciBarKind { kMmio32, kMmio64, kIo };

class PciBar final : public IoDevice {
 public:
  PciBar(unsigned index, PciBarKind kind, uint64_t size, bool prefetchable)
      : index_(index), kind_(kind), size_(size), prefetchable_(prefetchable), regions_("bar") {}

  // Fails if the region leaves the BAR or overlaps another one.
  absl::Status AddRegion(uint64_t offset, uint64_t len, IoDevice* device, std::string name);

  void IoRead(uint64_t offset, uint8_t* data, size_t size) override;
  void IoWrite(uint64_t offset, const uint8_t* data, size_t size) override;

  unsigned index() const { return index_; }
  PciBarKind kind() const { return kind_; }
  uint64_t size() const { return size_; }
  bool prefetchable() const { return prefetchable_; }
  bool is_io() const { return kind_ == PciBarKind::kIo; }

 private:
  const unsigned index_;
  const PciBarKind kind_;
  const uint64_t size_;
  const bool prefetchable_;
  IoBus regions_;
};

}  // namespace ionest
