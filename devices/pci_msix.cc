#include "devices/pci_msix.h"

#include <cstring>

#include "absl/strings/str_format.h"

namespace ionest {
namespace {

// Guest-writable bits per byte of a table entry (§7.7.2.6-7.7.2.9): address (DWORD aligned),
// upper address, data, and the Mask bit of Vector Control.
constexpr uint8_t kEntryWritable[PciMsix::kEntrySize] = {0xFC, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF,
                                                         0xFF, 0xFF, 0xFF, 0xFF, 0x01, 0x00, 0x00, 0x00};

uint32_t Le32(const uint8_t* p) { return p[0] | p[1] << 8 | p[2] << 16 | uint32_t{p[3]} << 24; }

}  // namespace

absl::StatusOr<std::unique_ptr<PciMsix>> PciMsix::Create(PciConfigSpace& config, unsigned vectors,
                                                         uint8_t table_bir, uint32_t table_offset,
                                                         uint8_t pba_bir, uint32_t pba_offset) {
  if (vectors == 0 || vectors > kMaxVectors)
    return absl::InvalidArgumentError(absl::StrFormat("MSI-X table size %u not in [1, 2048]", vectors));
  if (table_bir > 5 || pba_bir > 5 || (table_offset & 7) || (pba_offset & 7))
    return absl::InvalidArgumentError("MSI-X BIR must be 0-5 and offsets 8-byte aligned");
  absl::StatusOr<uint16_t> off = config.AddCapability(pci::kCapIdMsix, kCapSize);
  if (!off.ok()) return off.status();
  config.Set16(*off + kControl, static_cast<uint16_t>(vectors - 1));
  config.SetMasks(*off + kControl, 2, kControlFunctionMask | kControlEnable);
  config.Set32(*off + kTable, table_offset | table_bir);
  config.Set32(*off + kPba, pba_offset | pba_bir);
  return std::unique_ptr<PciMsix>(new PciMsix(config, *off, vectors));
}

PciMsix::PciMsix(PciConfigSpace& config, uint16_t offset, unsigned vectors)
    : config_(config), offset_(offset), vectors_(vectors) {
  absl::MutexLock l(&mu_);
  ResetTableLocked();
}

void PciMsix::ResetTableLocked() {
  table_.assign(table_size_bytes(), 0);
  for (unsigned v = 0; v < vectors_; ++v) table_[v * kEntrySize + 12] = kEntryVectorControlMasked;  // reset: masked
  pba_.assign((vectors_ + 63) / 64, 0);
}

void PciMsix::Reset() {
  absl::MutexLock l(&mu_);
  config_.UpdateBits(offset_ + kControl, 2, 0, kControlEnable | kControlFunctionMask);
  ResetTableLocked();
}

bool PciMsix::enabled() const { return config_.Get16(offset_ + kControl) & kControlEnable; }
bool PciMsix::FunctionMasked() const { return config_.Get16(offset_ + kControl) & kControlFunctionMask; }
bool PciMsix::EntryMasked(unsigned v) const { return table_[v * kEntrySize + 12] & kEntryVectorControlMasked; }

void PciMsix::SetRoute(PciMsiRoute route) {
  absl::MutexLock l(&mu_);
  route_ = route;
}

PciIrqResult PciMsix::SendLocked(unsigned v) {
  if (!route_.sink) return PciIrqResult::kDisabled;
  const uint8_t* e = &table_[v * kEntrySize];
  const MsiMessage msi{Le32(e) | uint64_t{Le32(e + 4)} << 32, Le32(e + 8), route_.requester_id};
  return route_.sink->SendMsi(msi).ok() ? PciIrqResult::kSent : PciIrqResult::kSinkError;
}

PciIrqResult PciMsix::Signal(unsigned vector) {
  absl::MutexLock l(&mu_);
  if (!enabled() || !(config_.Get16(pci::kCommand) & pci::kCommandBusMaster)) return PciIrqResult::kDisabled;
  if (vector >= vectors_) return PciIrqResult::kBadVector;
  if (FunctionMasked() || EntryMasked(vector)) {
    pba_[vector / 64] |= uint64_t{1} << (vector % 64);
    return PciIrqResult::kPending;
  }
  return SendLocked(vector);
}

void PciMsix::DeliverPendingLocked(unsigned first, unsigned last) {
  if (!enabled() || FunctionMasked() || !(config_.Get16(pci::kCommand) & pci::kCommandBusMaster)) return;
  for (unsigned v = first; v <= last && v < vectors_; ++v) {
    const uint64_t bit = uint64_t{1} << (v % 64);
    if (!(pba_[v / 64] & bit) || EntryMasked(v)) continue;
    pba_[v / 64] &= ~bit;
    SendLocked(v);
  }
}

void PciMsix::OnConfigWrite() {
  absl::MutexLock l(&mu_);
  DeliverPendingLocked(0, vectors_ - 1);
}

bool PciMsix::IsPending(unsigned vector) const {
  absl::MutexLock l(&mu_);
  return vector < vectors_ && (pba_[vector / 64] >> (vector % 64)) & 1;
}

void PciMsix::TableIo::IoRead(uint64_t offset, uint8_t* data, size_t size) {
  absl::MutexLock l(&m_.mu_);
  for (size_t i = 0; i < size; ++i) {
    const uint64_t off = offset + i;
    data[i] = (off >= offset && off < m_.table_.size()) ? m_.table_[off] : 0xFF;
  }
}

void PciMsix::TableIo::IoWrite(uint64_t offset, const uint8_t* data, size_t size) {
  absl::MutexLock l(&m_.mu_);
  if (offset >= m_.table_.size()) return;
  size_t n = 0;
  for (; n < size; ++n) {
    const uint64_t off = offset + n;
    if (off >= m_.table_.size()) break;
    const uint8_t mask = kEntryWritable[off % kEntrySize];
    m_.table_[off] = static_cast<uint8_t>((m_.table_[off] & ~mask) | (data[n] & mask));
  }
  if (n == 0) return;
  // Unmasking an entry releases its pending message (§7.7.2.9).
  m_.DeliverPendingLocked(static_cast<unsigned>(offset / kEntrySize), static_cast<unsigned>((offset + n - 1) / kEntrySize));
}

void PciMsix::PbaIo::IoRead(uint64_t offset, uint8_t* data, size_t size) {
  absl::MutexLock l(&m_.mu_);
  const uint64_t bytes = m_.pba_.size() * 8;
  for (size_t i = 0; i < size; ++i) {
    const uint64_t off = offset + i;
    data[i] = (off >= offset && off < bytes) ? static_cast<uint8_t>(m_.pba_[off / 8] >> (8 * (off % 8))) : 0;
  }
}

}  // namespace ionest
