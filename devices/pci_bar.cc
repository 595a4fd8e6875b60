#include "devices/pci_bar.h"

#include "absl/strings/str_format.h"

namespace ionest {

absl::Status PciBar::AddRegion(uint64_t offset, uint64_t len, IoDevice* device, std::string name) {
  if (offset >= size_ || len > size_ - offset)
    return absl::OutOfRangeError(absl::StrFormat("region %s [%#x, +%#x) outside BAR%u of size %#x", name, offset,
                                                 len, index_, size_));
  return regions_.Register(offset, len, device, std::move(name));
}

void PciBar::IoRead(uint64_t offset, uint8_t* data, size_t size) {
  if (offset >= size_) return;  // leave the caller's all-ones
  regions_.Read(offset, data, size);
}

void PciBar::IoWrite(uint64_t offset, const uint8_t* data, size_t size) {
  if (offset >= size_) return;
  regions_.Write(offset, data, size);
}

}  // namespace ionest
