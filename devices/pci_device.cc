#include "devices/pci_device.h"

#include <bit>

#include "absl/base/internal/raw_logging.h"
#include "absl/strings/str_format.h"

namespace ionest {

using namespace pci;

namespace {
constexpr uint64_t kIoSpaceEnd = 0x10000;  // x86 I/O port space
constexpr uint64_t kMaxIoBarSize = 256;    // PCI Local Bus 3.0 §6.2.5.1
}  // namespace

PciDevice::PciDevice(std::string name, const PciIdentity& id) : name_(std::move(name)) {
  // Type 0 header reset values and guest write masks (PCIe 6.0 §7.5.1).
  config_.Set16(kVendorId, id.vendor_id);
  config_.Set16(kDeviceId, id.device_id);
  config_.Set8(kRevisionId, id.revision);
  config_.Set(kClassCode, id.class_code & 0xFFFFFF, 3);
  config_.Set8(kHeaderType, 0x00);
  config_.Set16(kSubsystemVendorId, id.subsystem_vendor_id);
  config_.Set16(kSubsystemId, id.subsystem_id);
  config_.SetMasks(kCommand, 2,
                   kCommandIo | kCommandMemory | kCommandBusMaster | kCommandParityErrorResponse | kCommandSerr |
                       kCommandIntxDisable);
  config_.SetMasks(kStatus, 2, 0, kStatusRw1c);
  config_.SetMasks(kCacheLineSize, 1, 0xFF);
  config_.SetMasks(kInterruptLine, 1, 0xFF);
  config_.Set8(kInterruptPin, 0);  // no INTx
}

PciDevice::~PciDevice() {
  // Remove mappings so the buses never dispatch to a destroyed device.
  absl::MutexLock l(&map_mu_);
  for (unsigned i = 0; i < kNumBars; ++i) {
    if (!mapped_[i]) continue;
    IoBus* bus = bars_[i]->is_io() ? attachment_.pio : attachment_.mmio;
    if (bus) bus->Unregister(mapped_[i]->base).IgnoreError();
  }
}

absl::StatusOr<PciBar*> PciDevice::AddBar(unsigned index, PciBarKind kind, uint64_t size, bool prefetchable) {
  const bool is64 = kind == PciBarKind::kMmio64;
  if (attached_) return absl::FailedPreconditionError("AddBar after Attach");
  if (index >= kNumBars || (is64 && index + 1 >= kNumBars))
    return absl::InvalidArgumentError(absl::StrFormat("%s: bad BAR index %u", name_, index));
  if (bars_[index] || (is64 && bars_[index + 1]) || (index > 0 && bars_[index - 1] &&
                                                     bars_[index - 1]->kind() == PciBarKind::kMmio64))
    return absl::AlreadyExistsError(absl::StrFormat("%s: BAR %u already in use", name_, index));
  if (!std::has_single_bit(size) || (kind == PciBarKind::kIo ? (size < 4 || size > kMaxIoBarSize) : size < 16) ||
      (kind == PciBarKind::kMmio32 && size > (uint64_t{1} << 31)))
    return absl::InvalidArgumentError(absl::StrFormat("%s: bad BAR %u size %#x", name_, index, size));
  const uint16_t reg = static_cast<uint16_t>(kBar0 + 4 * index);
  // Size probing falls out of the write mask: address bits below the size are read-only 0
  // (PCIe 6.0 §7.5.1.2.1).
  if (kind == PciBarKind::kIo) {
    config_.Set32(reg, kBarIoSpace);
    config_.SetMasks(reg, 4, static_cast<uint32_t>(~(size - 1)) & ~0x3u);
  } else {
    config_.Set32(reg, (is64 ? kBarMem64 : 0) | (prefetchable ? kBarPrefetchable : 0));
    config_.SetMasks(reg, 4, static_cast<uint32_t>(~(size - 1)) & ~0xFu);
    if (is64) config_.SetMasks(reg + 4, 4, static_cast<uint32_t>(~(size - 1) >> 32));
  }
  bars_[index] = std::make_unique<PciBar>(index, kind, size, prefetchable);
  return bars_[index].get();
}

absl::Status PciDevice::AddMsi(unsigned vectors) {
  if (attached_ || msi_) return absl::FailedPreconditionError("MSI already added or device attached");
  absl::StatusOr<std::unique_ptr<PciMsi>> m = PciMsi::Create(config_, vectors);
  if (!m.ok()) return m.status();
  msi_ = *std::move(m);
  return absl::OkStatus();
}

absl::Status PciDevice::AddMsix(unsigned vectors, unsigned bar, uint32_t table_offset, uint32_t pba_offset) {
  return AddMsix(vectors, bar, table_offset, bar, pba_offset);
}

absl::Status PciDevice::AddMsix(unsigned vectors, unsigned table_bar, uint32_t table_offset, unsigned pba_bar,
                                uint32_t pba_offset) {
  if (attached_ || msix_) return absl::FailedPreconditionError("MSI-X already added or device attached");
  PciBar* tb = this->bar(table_bar);
  PciBar* pb = this->bar(pba_bar);
  if (!tb || tb->is_io())
    return absl::InvalidArgumentError(absl::StrFormat("%s: MSI-X BAR %u is not a memory BAR", name_, table_bar));
  if (!pb || pb->is_io())
    return absl::InvalidArgumentError(absl::StrFormat("%s: MSI-X PBA BAR %u is not a memory BAR", name_, pba_bar));
  const uint64_t table_bytes = uint64_t{vectors} * PciMsix::kEntrySize, pba_bytes = (uint64_t{vectors} + 63) / 64 * 8;
  if (table_offset > tb->size() || table_bytes > tb->size() - table_offset || pba_offset > pb->size() ||
      pba_bytes > pb->size() - pba_offset)
    return absl::OutOfRangeError(
        absl::StrFormat("%s: MSI-X table/PBA do not fit BAR%u/BAR%u", name_, table_bar, pba_bar));
  absl::StatusOr<std::unique_ptr<PciMsix>> m =
      PciMsix::Create(config_, vectors, static_cast<uint8_t>(table_bar), table_offset, static_cast<uint8_t>(pba_bar),
                      pba_offset);
  if (!m.ok()) return m.status();
  if (absl::Status s = tb->AddRegion(table_offset, (*m)->table_size_bytes(), &(*m)->table(), "msix-table"); !s.ok())
    return s;
  if (absl::Status s = pb->AddRegion(pba_offset, (*m)->pba_size_bytes(), &(*m)->pba(), "msix-pba"); !s.ok()) return s;
  msix_ = *std::move(m);
  return absl::OkStatus();
}

void PciDevice::Attach(const PciAttachment& attachment) {
  ABSL_RAW_CHECK(!attached_, "PCI device attached twice");
  attachment_ = attachment;
  attached_ = true;
  const PciMsiRoute route{attachment.msi, attachment.requester_id};
  if (msi_) msi_->SetRoute(route);
  if (msix_) msix_->SetRoute(route);
  UpdateBarMappings();
  OnAttach();
}

DmaSpace& PciDevice::dma() {
  ABSL_RAW_CHECK(attachment_.dma != nullptr, "PCI device DMA before Attach");
  return *attachment_.dma;
}

void PciDevice::ConfigRead(uint64_t offset, uint8_t* data, size_t size) {
  OnConfigRead(offset, size);
  config_.GuestRead(offset, data, size);
}

void PciDevice::ConfigWrite(uint64_t offset, const uint8_t* data, size_t size) {
  config_.GuestWrite(offset, data, size);
  const uint64_t end = offset + size;
  const bool touches_decode = end > offset && offset < kBar0 + 4 * kNumBars && end > kCommand;
  if (touches_decode) UpdateBarMappings();
  if (msi_) msi_->OnConfigWrite();
  if (msix_) msix_->OnConfigWrite();
  OnConfigWrite(offset, size);
}

std::optional<uint64_t> PciDevice::ProgrammedAddress(unsigned index) const {
  const PciBar* b = bars_[index].get();
  if (!b) return std::nullopt;
  const uint16_t reg = static_cast<uint16_t>(kBar0 + 4 * index);
  const uint32_t lo = config_.Get32(reg);
  switch (b->kind()) {
    case PciBarKind::kIo:
      return lo & ~0x3u;
    case PciBarKind::kMmio32:
      return lo & ~0xFu;
    case PciBarKind::kMmio64:
      return (lo & ~0xFull) | uint64_t{config_.Get32(reg + 4)} << 32;
  }
  return std::nullopt;
}

void PciDevice::UpdateBarMappings() {
  if (!attached_) return;
  absl::MutexLock l(&map_mu_);
  const uint16_t cmd = config_.Get16(kCommand);
  for (unsigned i = 0; i < kNumBars; ++i) {
    PciBar* b = bars_[i].get();
    if (!b) continue;
    IoBus* bus = b->is_io() ? attachment_.pio : attachment_.mmio;
    const bool decode = cmd & (b->is_io() ? kCommandIo : kCommandMemory);
    const uint64_t want = ProgrammedAddress(i).value_or(0);
    // Address 0 means "unassigned"; I/O BARs must lie inside the 64 KiB port space.
    const bool map = decode && bus && want != 0 && !(b->is_io() && want + b->size() > kIoSpaceEnd);
    if (mapped_[i] && map && mapped_[i]->base == want) continue;
    if (mapped_[i]) {
      bus->Unregister(mapped_[i]->base).IgnoreError();
      mapped_[i].reset();
    }
    if (!map) continue;
    // Guest-chosen addresses may overlap other devices or wrap; such BARs stay unmapped.
    if (bus->Register(want, b->size(), b, absl::StrFormat("%s BAR%u", name_, i)).ok()) {
      mapped_[i] = BarMapping{want};
    } else {
      ++map_failures_;
    }
  }
}

std::optional<uint64_t> PciDevice::BarMappedAt(unsigned index) const {
  absl::MutexLock l(&map_mu_);
  if (index >= kNumBars || !mapped_[index]) return std::nullopt;
  return mapped_[index]->base;
}

uint64_t PciDevice::bar_map_failures() const {
  absl::MutexLock l(&map_mu_);
  return map_failures_;
}

PciIrqResult PciDevice::SignalVector(unsigned vector) {
  if (msix_ && msix_->enabled()) return msix_->Signal(vector);
  if (msi_ && msi_->enabled()) return msi_->Signal(vector);
  return PciIrqResult::kDisabled;
}

void PciDevice::ResetFunction() {
  // PCIe 6.0 §6.6.2: an FLR returns every register that is not sticky or HwInit to its reset
  // value; the controls that let the function issue requests (Bus Master, MSI/MSI-X Enable) clear.
  config_.Set16(kCommand, 0);
  config_.UpdateBits(kStatus, 2, 0, kStatusRw1c);
  config_.Set8(kCacheLineSize, 0);
  config_.Set8(kInterruptLine, 0);
  for (unsigned i = 0; i < kNumBars; ++i) {
    const PciBar* b = bars_[i].get();
    if (!b) continue;
    // Reset value of a BAR: address 0, the read-only type bits as AddBar set them (§7.5.1.2.1).
    const uint16_t reg = static_cast<uint16_t>(kBar0 + 4 * i);
    const uint32_t type_bits = b->is_io() ? kBarIoSpace
                                          : (b->kind() == PciBarKind::kMmio64 ? kBarMem64 : 0) |
                                                (b->prefetchable() ? kBarPrefetchable : 0);
    config_.Set32(reg, type_bits);
    if (b->kind() == PciBarKind::kMmio64) config_.Set32(reg + 4, 0);
  }
  if (msi_) msi_->Reset();
  if (msix_) msix_->Reset();
  UpdateBarMappings();
}

}  // namespace ionest
