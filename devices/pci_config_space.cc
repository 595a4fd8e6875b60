#include "devices/pci_config_space.h"

#include "absl/strings/str_format.h"

namespace ionest {

using namespace pci;

void PciConfigSpace::GuestRead(uint64_t offset, uint8_t* data, size_t size) const {
  absl::ReaderMutexLock l(&mu_);
  for (size_t i = 0; i < size; ++i) {
    const uint64_t off = offset + i;
    data[i] = (off >= offset && off < kSize) ? data_[off] : 0xFF;
  }
}

void PciConfigSpace::GuestWrite(uint64_t offset, const uint8_t* data, size_t size) {
  absl::MutexLock l(&mu_);
  for (size_t i = 0; i < size; ++i) {
    const uint64_t off = offset + i;
    if (off < offset || off >= kSize) break;
    uint8_t v = static_cast<uint8_t>((data_[off] & ~writable_[off]) | (data[i] & writable_[off]));
    v &= static_cast<uint8_t>(~(data[i] & rw1c_[off]));
    data_[off] = v;
  }
}

uint32_t PciConfigSpace::GetLocked(uint32_t offset, size_t size) const {
  uint32_t v = 0;
  for (size_t i = 0; i < size && i < 4; ++i)
    if (offset + i < kSize) v |= uint32_t{data_[offset + i]} << (8 * i);
  return v;
}

void PciConfigSpace::SetLocked(uint32_t offset, uint32_t value, size_t size) {
  for (size_t i = 0; i < size && i < 4; ++i)
    if (offset + i < kSize) data_[offset + i] = static_cast<uint8_t>(value >> (8 * i));
}

uint32_t PciConfigSpace::Get(uint32_t offset, size_t size) const {
  absl::ReaderMutexLock l(&mu_);
  return GetLocked(offset, size);
}

void PciConfigSpace::Set(uint32_t offset, uint32_t value, size_t size) {
  absl::MutexLock l(&mu_);
  SetLocked(offset, value, size);
}

void PciConfigSpace::UpdateBits(uint32_t offset, size_t size, uint32_t set, uint32_t clear) {
  absl::MutexLock l(&mu_);
  SetLocked(offset, (GetLocked(offset, size) & ~clear) | set, size);
}

void PciConfigSpace::SetMasks(uint32_t offset, size_t size, uint32_t writable, uint32_t rw1c) {
  absl::MutexLock l(&mu_);
  for (size_t i = 0; i < size && i < 4; ++i) {
    if (offset + i >= kSize) break;
    writable_[offset + i] = static_cast<uint8_t>(writable >> (8 * i));
    rw1c_[offset + i] = static_cast<uint8_t>(rw1c >> (8 * i));
  }
}

absl::StatusOr<uint16_t> PciConfigSpace::AddCapability(uint8_t id, uint8_t size) {
  absl::MutexLock l(&mu_);
  const uint16_t off = next_cap_;
  const uint16_t end = static_cast<uint16_t>((off + size + 3) & ~3u);
  if (size < 2 || end > kExtCapStart)
    return absl::ResourceExhaustedError(absl::StrFormat("PCI capability %#x (%u bytes) does not fit", id, size));
  SetLocked(off, id, 1);
  SetLocked(off + 1, 0, 1);
  if (last_cap_ == 0) {
    SetLocked(kCapabilitiesPointer, off, 1);
    SetLocked(kStatus, GetLocked(kStatus, 2) | kStatusCapList, 2);
  } else {
    SetLocked(last_cap_ + 1, off, 1);
  }
  last_cap_ = off;
  next_cap_ = end;
  return off;
}

absl::StatusOr<uint16_t> PciConfigSpace::AddExtCapability(uint16_t id, uint8_t version, uint16_t size) {
  absl::MutexLock l(&mu_);
  const uint16_t off = next_ext_;
  const uint32_t end = (uint32_t{off} + size + 3) & ~3u;
  if (size < 4 || end > kSize)
    return absl::ResourceExhaustedError(absl::StrFormat("PCIe ext capability %#x (%u bytes) does not fit", id, size));
  SetLocked(off, uint32_t{id} | uint32_t{version & 0xFu} << 16, 4);
  if (last_ext_ != 0) {
    const uint32_t hdr = GetLocked(last_ext_, 4);
    SetLocked(last_ext_, (hdr & 0x000FFFFF) | uint32_t{off} << 20, 4);
  }
  last_ext_ = off;
  next_ext_ = static_cast<uint16_t>(end);
  return off;
}

std::vector<std::pair<uint16_t, uint16_t>> PciConfigSpace::Capabilities() const {
  absl::ReaderMutexLock l(&mu_);
  std::vector<std::pair<uint16_t, uint16_t>> out;
  if (!(GetLocked(kStatus, 2) & kStatusCapList)) return out;
  uint16_t off = GetLocked(kCapabilitiesPointer, 1) & 0xFC;
  // At most 48 capabilities fit in 0x40-0xFF (PCIe 6.0 §7.5.1.1.10); the bound also stops loops.
  for (int n = 0; off >= kHeaderEnd && n < 48; ++n) {
    out.emplace_back(GetLocked(off, 1), off);
    off = GetLocked(off + 1, 1) & 0xFC;
  }
  return out;
}

std::vector<std::pair<uint16_t, uint16_t>> PciConfigSpace::ExtCapabilities() const {
  absl::ReaderMutexLock l(&mu_);
  std::vector<std::pair<uint16_t, uint16_t>> out;
  uint16_t off = kExtCapStart;
  for (size_t n = 0; off >= kExtCapStart && n < (kSize - kExtCapStart) / 4; ++n) {
    const uint32_t hdr = GetLocked(off, 4);
    if (hdr == 0) break;  // empty list (§7.6.3)
    out.emplace_back(static_cast<uint16_t>(hdr & 0xFFFF), off);
    off = static_cast<uint16_t>((hdr >> 20) & 0xFFC);
  }
  return out;
}

std::optional<uint16_t> PciConfigSpace::FindCapability(uint8_t id) const {
  for (auto [cap_id, off] : Capabilities())
    if (cap_id == id) return off;
  return std::nullopt;
}

std::optional<uint16_t> PciConfigSpace::FindExtCapability(uint16_t id) const {
  for (auto [cap_id, off] : ExtCapabilities())
    if (cap_id == id) return off;
  return std::nullopt;
}

}  // namespace ionest
