#include "devices/pci_msi.h"

#include <bit>

#include "absl/strings/str_format.h"

namespace ionest {

absl::StatusOr<std::unique_ptr<PciMsi>> PciMsi::Create(PciConfigSpace& config, unsigned vectors) {
  if (vectors == 0 || vectors > 32 || !std::has_single_bit(vectors))
    return absl::InvalidArgumentError(absl::StrFormat("MSI vector count %u is not a power of two <= 32", vectors));
  absl::StatusOr<uint16_t> off = config.AddCapability(pci::kCapIdMsi, kCapSize);
  if (!off.ok()) return off.status();
  const uint16_t mmc = static_cast<uint16_t>(std::countr_zero(vectors));
  config.Set16(*off + kControl, static_cast<uint16_t>(kControl64Bit | kControlPerVectorMask | mmc << kControlMmcShift));
  config.SetMasks(*off + kControl, 2, kControlEnable | 0x7u << kControlMmeShift);
  config.SetMasks(*off + kAddressLo, 4, 0xFFFFFFFC);  // DWORD aligned
  config.SetMasks(*off + kAddressHi, 4, 0xFFFFFFFF);
  config.SetMasks(*off + kData, 2, 0xFFFF);
  const uint32_t implemented = vectors == 32 ? 0xFFFFFFFF : (1u << vectors) - 1;
  config.SetMasks(*off + kMask, 4, implemented);
  // Pending bits are read-only to the guest.
  return std::unique_ptr<PciMsi>(new PciMsi(config, *off, vectors));
}

bool PciMsi::enabled() const { return config_.Get16(offset_ + kControl) & kControlEnable; }

unsigned PciMsi::EnabledVectors() const {
  const unsigned mme = (config_.Get16(offset_ + kControl) >> kControlMmeShift) & 7;
  // MME beyond MMC is undefined (§7.7.1.2); clamp to what we implement.
  return std::min(vectors_, 1u << std::min(mme, 5u));
}

void PciMsi::SetRoute(PciMsiRoute route) {
  absl::MutexLock l(&mu_);
  route_ = route;
}

PciIrqResult PciMsi::SendLocked(unsigned vector) {
  if (!route_.sink) return PciIrqResult::kDisabled;
  const uint64_t address = config_.Get32(offset_ + kAddressLo) | uint64_t{config_.Get32(offset_ + kAddressHi)} << 32;
  const uint32_t enabled_vectors = EnabledVectors();
  // Multiple Message Enable: the function modifies the low log2(n) bits of the data (§7.7.1.5).
  const uint32_t data = (config_.Get16(offset_ + kData) & ~(enabled_vectors - 1)) | vector;
  const MsiMessage msi{address, data, route_.requester_id};
  return route_.sink->SendMsi(msi).ok() ? PciIrqResult::kSent : PciIrqResult::kSinkError;
}

PciIrqResult PciMsi::Signal(unsigned vector) {
  absl::MutexLock l(&mu_);
  if (!enabled()) return PciIrqResult::kDisabled;
  if (!(config_.Get16(pci::kCommand) & pci::kCommandBusMaster)) return PciIrqResult::kDisabled;
  if (vector >= EnabledVectors()) return PciIrqResult::kBadVector;
  const uint32_t bit = 1u << vector;
  if (config_.Get32(offset_ + kMask) & bit) {
    config_.UpdateBits(offset_ + kPending, 4, bit, 0);
    return PciIrqResult::kPending;
  }
  return SendLocked(vector);
}

void PciMsi::OnConfigWrite() {
  absl::MutexLock l(&mu_);
  if (!enabled() || !(config_.Get16(pci::kCommand) & pci::kCommandBusMaster)) return;
  const uint32_t deliverable = config_.Get32(offset_ + kPending) & ~config_.Get32(offset_ + kMask);
  for (unsigned v = 0; v < EnabledVectors(); ++v) {
    if (!(deliverable & (1u << v))) continue;
    config_.UpdateBits(offset_ + kPending, 4, 0, 1u << v);
    SendLocked(v);
  }
}

void PciMsi::Reset() {
  absl::MutexLock l(&mu_);
  config_.UpdateBits(offset_ + kControl, 2, 0, kControlEnable | 0x7u << kControlMmeShift);
  config_.Set32(offset_ + kAddressLo, 0);
  config_.Set32(offset_ + kAddressHi, 0);
  config_.Set32(offset_ + kData, 0);
  config_.Set32(offset_ + kMask, 0);
  config_.Set32(offset_ + kPending, 0);
}

}  // namespace ionest
