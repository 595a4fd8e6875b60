#include "devices/ioapic.h"

namespace ionest {
namespace {

// MMIO register offsets (82093AA §3.1; EOI register: IOAPIC version 0x20).
constexpr uint64_t kIoregsel = 0x00;
constexpr uint64_t kIowin = 0x10;
constexpr uint64_t kEoiReg = 0x40;
constexpr uint64_t kRegWidth = 4;

// Indexed registers.
constexpr uint8_t kIdIndex = 0x00;
constexpr uint8_t kVersionIndex = 0x01;
constexpr uint8_t kArbIndex = 0x02;
constexpr uint8_t kRteIndexBase = 0x10;

constexpr unsigned kIdShift = 24;
constexpr uint32_t kIdMask = 0x0F;
// Guest-writable RTE bits: vector, delivery mode, DM, polarity, trigger, mask, and 63:48
// (destination, or format + interrupt index). Delivery status and Remote IRR are read-only.
constexpr uint64_t kRteWritable = 0xFFFF'0000'0001'AFFFull;
constexpr uint64_t kRteReset = Ioapic::kRteMasked;
constexpr uint64_t kMsiAddressBase = 0xFEE00000;

}  // namespace

Ioapic::Ioapic(MsiSink& sink, IoapicConfig config) : sink_(sink), config_(config) {
  rte_.fill(kRteReset);
  id_ = config.id & kIdMask;
  for (unsigned pin = 0; pin < kIoapicPins; ++pin) lines_.push_back(std::make_unique<PinLine>(*this, pin));
}

IrqLine& Ioapic::Line(unsigned pin) { return *lines_.at(pin); }

uint32_t Ioapic::ReadIndexed(uint8_t index) const {
  if (index == kIdIndex || index == kArbIndex) return uint32_t{id_} << kIdShift;
  if (index == kVersionIndex) return kIoapicVersion | ((kIoapicPins - 1) << 16);  // max redirection entry
  if (index >= kRteIndexBase && index < kRteIndexBase + 2 * kIoapicPins) {
    const uint64_t rte = rte_[(index - kRteIndexBase) / 2];
    return static_cast<uint32_t>((index & 1) ? rte >> 32 : rte);
  }
  return 0;
}

std::optional<unsigned> Ioapic::WriteIndexed(uint8_t index, uint32_t value) {
  if (index == kIdIndex) {
    id_ = (value >> kIdShift) & kIdMask;
    return std::nullopt;
  }
  if (index < kRteIndexBase || index >= kRteIndexBase + 2 * kIoapicPins) return std::nullopt;  // RO/unused
  const unsigned pin = (index - kRteIndexBase) / 2;
  const uint64_t old = rte_[pin];
  const uint64_t field = (index & 1) ? uint64_t{value} << 32 : uint64_t{value};
  const uint64_t field_mask = (index & 1) ? 0xFFFFFFFF'00000000ull : 0x00000000'FFFFFFFFull;
  uint64_t rte = (old & ~(field_mask & kRteWritable)) | (field & field_mask & kRteWritable);
  if (!(rte & kRteLevel)) rte &= ~kRteRemoteIrr;  // switching to edge clears Remote IRR
  rte_[pin] = rte;
  Service(pin);  // an unmask may release a pending interrupt
  return pin;
}

MsiMessage Ioapic::ComposeLocked(unsigned pin) const {
  const uint64_t rte = rte_[pin];
  MsiMessage msi;
  msi.requester_id = config_.source_id;
  if (rte & kRteRemapFormat) {
    // Remappable format (VT-d 5.0 §5.1.5.1 / §5.1.2.2): handle in address, SHV=1, subhandle 0.
    const uint64_t index_lo = (rte >> 49) & 0x7FFF;
    const uint64_t index_15 = (rte >> 11) & 1;
    msi.address = kMsiAddressBase | index_lo << 5 | 1u << 4 | 1u << 3 | index_15 << 2;
    msi.data = 0;
  } else {
    // Compatibility format (Intel SDM vol. 3 §11.11.1/§11.11.2).
    const uint64_t dest = (rte >> kRteDestShift) & 0xFF;
    const uint64_t dm = (rte & kRteDestModeLogical) ? 1 : 0;
    msi.address = kMsiAddressBase | dest << 12 | dm << 2;
    msi.data = static_cast<uint32_t>((rte & kRteVector) | ((rte >> kRteDeliveryModeShift) & 7) << 8 |
                                     ((rte & kRteLevel) ? 1u : 0u) << 15);
  }
  return msi;
}

void Ioapic::Service(unsigned pin) {
  uint64_t& rte = rte_[pin];
  if (rte & kRteMasked) return;
  const uint32_t bit = 1u << pin;
  if (rte & kRteLevel) {
    if (!(asserted_ & bit) || (rte & kRteRemoteIrr)) return;
    rte |= kRteRemoteIrr;  // cleared by EOI
  } else {
    if (!(irr_ & bit)) return;
    irr_ &= ~bit;
  }
  if (!sink_.SendMsi(ComposeLocked(pin)).ok()) ++failed_;
}

void Ioapic::SetIrq(unsigned pin, bool asserted) {
  if (pin >= kIoapicPins) return;
  absl::MutexLock l(&mu_);
  const uint32_t bit = 1u << pin;
  const bool was = asserted_ & bit;
  if (asserted) {
    asserted_ |= bit;
  } else {
    asserted_ &= ~bit;
  }
  if (rte_[pin] & kRteLevel) {
    if (asserted) Service(pin);
  } else if (asserted && !was) {
    irr_ |= bit;  // rising edge
    Service(pin);
  }
}

void Ioapic::Eoi(uint8_t vector) {
  absl::MutexLock l(&mu_);
  EoiLocked(vector);
}

void Ioapic::EoiLocked(uint8_t vector) {
  for (unsigned pin = 0; pin < kIoapicPins; ++pin) {
    uint64_t& rte = rte_[pin];
    if ((rte & kRteVector) != vector || !(rte & kRteLevel) || !(rte & kRteRemoteIrr)) continue;
    rte &= ~kRteRemoteIrr;
    Service(pin);  // still asserted ⇒ deliver again
  }
}

void Ioapic::IoRead(uint64_t offset, uint8_t* data, size_t size) {
  absl::MutexLock l(&mu_);
  const uint32_t window = ReadIndexed(ioregsel_);
  for (size_t i = 0; i < size; ++i) {
    const uint64_t off = offset + i;
    if (off < offset) break;  // wrapped
    if (off >= kIoregsel && off < kIoregsel + kRegWidth) {
      data[i] = off == kIoregsel ? ioregsel_ : 0;
    } else if (off >= kIowin && off < kIowin + kRegWidth) {
      data[i] = static_cast<uint8_t>(window >> (8 * (off - kIowin)));
    } else {
      data[i] = 0;  // EOI register is write-only; the rest of the page is reserved
    }
  }
}

void Ioapic::IoWrite(uint64_t offset, const uint8_t* data, size_t size) {
  std::optional<unsigned> changed;
  RouteChangeFn listener;
  {
    absl::MutexLock l(&mu_);
    uint32_t window = ReadIndexed(ioregsel_);
    bool window_written = false;
    std::optional<uint8_t> eoi_vector;
    for (size_t i = 0; i < size; ++i) {
      const uint64_t off = offset + i;
      if (off < offset) break;
      if (off == kIoregsel) {
        ioregsel_ = data[i];
      } else if (off >= kIowin && off < kIowin + kRegWidth) {
        const unsigned shift = static_cast<unsigned>(8 * (off - kIowin));
        window = (window & ~(0xFFu << shift)) | (uint32_t{data[i]} << shift);
        window_written = true;
      } else if (off == kEoiReg) {
        eoi_vector = data[i];
      }
    }
    if (window_written) changed = WriteIndexed(ioregsel_, window);
    if (changed) listener = route_change_;
    if (eoi_vector) EoiLocked(*eoi_vector);
  }
  if (changed && listener) listener(*changed);
}

uint64_t Ioapic::Rte(unsigned pin) const {
  if (pin >= kIoapicPins) return 0;
  absl::MutexLock l(&mu_);
  return rte_[pin];
}

std::optional<MsiMessage> Ioapic::ComposeMsi(unsigned pin) const {
  if (pin >= kIoapicPins) return std::nullopt;
  absl::MutexLock l(&mu_);
  return ComposeLocked(pin);
}

void Ioapic::SetRouteChangeListener(RouteChangeFn fn) {
  absl::MutexLock l(&mu_);
  route_change_ = std::move(fn);
}

uint64_t Ioapic::failed_deliveries() const {
  absl::MutexLock l(&mu_);
  return failed_;
}

}  // namespace ionest
