// Userspace I/O APIC for KVM's split irqchip (Intel 82093AA data sheet; version 0x20 adds the
// EOI register at 0x40). 24 pins; MMIO at kIoapicBase: IOREGSEL 0x00, IOWIN 0x10, EOI 0x40.
//
// Interrupts leave as MSI writes through an MsiSink with requester_id = the configured source-id
// (the DMAR IOAPIC device-scope source-id), in one of two RTE formats:
//  - compatibility: address 0xFEE00000 | dest<<12 | DM<<2, data vector | delivery mode<<8 | trigger<<15
//  - remappable (VT-d 5.0 §5.1.5.1, RTE bit 48 = 1): address 0xFEE00000 | index[14:0]<<5 | 1<<4 |
//    1<<3 (SHV) | index[15]<<2, data 0 (subhandle); index[14:0] = RTE 63:49, index[15] = RTE bit 11.
// Edge pins deliver on a rising assertion (latched while masked, delivered on unmask). Level pins
// deliver while asserted and Remote IRR is clear; Eoi(vector) (guest write to the EOI register, or the
// VMM on KVM_EXIT_IOAPIC_EOI) clears Remote IRR and re-delivers if the pin is still asserted.
// SetIrq takes the logical assertion: polarity (bit 13) is stored for the guest but not applied.
//
// Thread safety: all methods may be called concurrently from any thread (vCPU threads, device
// threads). MsiSink::SendMsi is called with the IOAPIC lock held (it must not call back into the
// IOAPIC). The route-change listener is called without the lock.
#pragma once

#include <array>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "devices/io_bus.h"
#include "devices/irq_line.h"
#include "iommu/msi.h"

namespace ionest {

inline constexpr uint64_t kIoapicBase = 0xFEC00000;
inline constexpr uint64_t kIoapicMmioSize = 0x1000;
inline constexpr unsigned kIoapicPins = 24;
inline constexpr uint32_t kIoapicVersion = 0x20;
// Source-id of the IOAPIC for its DMAR device scope (bus 0xF0, devfn 0xF8 as on QEMU's q35).
inline constexpr uint16_t kIoapicDefaultSourceId = 0xF0F8;

struct IoapicConfig {
  uint8_t id = 0;  // IOAPIC ID (MADT IOAPIC structure, DMAR scope enumeration ID)
  uint16_t source_id = kIoapicDefaultSourceId;
};

class Ioapic final : public IoDevice {
 public:
  // Called after the guest changes pin's RTE (so the VMM can refresh KVM GSI routes, which KVM uses
  // to decide which vectors cause KVM_EXIT_IOAPIC_EOI).
  using RouteChangeFn = std::function<void(unsigned pin)>;

  Ioapic(MsiSink& sink, IoapicConfig config = {});

  void IoRead(uint64_t offset, uint8_t* data, size_t size) override ABSL_LOCKS_EXCLUDED(mu_);
  void IoWrite(uint64_t offset, const uint8_t* data, size_t size) override ABSL_LOCKS_EXCLUDED(mu_);

  // Drive input pin `pin` (logical assertion). Out-of-range pins are ignored.
  void SetIrq(unsigned pin, bool asserted) ABSL_LOCKS_EXCLUDED(mu_);
  // End of interrupt for `vector` (all level-triggered RTEs with that vector).
  void Eoi(uint8_t vector) ABSL_LOCKS_EXCLUDED(mu_);

  // An IrqLine driving `pin` (pin < kIoapicPins), owned by the IOAPIC.
  IrqLine& Line(unsigned pin);

  uint64_t Rte(unsigned pin) const ABSL_LOCKS_EXCLUDED(mu_);
  // The MSI the pin would send now (regardless of mask), nullopt for an invalid pin.
  std::optional<MsiMessage> ComposeMsi(unsigned pin) const ABSL_LOCKS_EXCLUDED(mu_);
  void SetRouteChangeListener(RouteChangeFn fn) ABSL_LOCKS_EXCLUDED(mu_);
  // Deliveries the MsiSink rejected with a host error.
  uint64_t failed_deliveries() const ABSL_LOCKS_EXCLUDED(mu_);

  // RTE fields (82093AA §3.2.4).
  static constexpr uint64_t kRteVector = 0xFF;
  static constexpr unsigned kRteDeliveryModeShift = 8;
  static constexpr uint64_t kRteDestModeLogical = 1ull << 11;  // compat: DM; remappable: index[15]
  static constexpr uint64_t kRteDeliveryStatus = 1ull << 12;
  static constexpr uint64_t kRtePolarityLow = 1ull << 13;
  static constexpr uint64_t kRteRemoteIrr = 1ull << 14;
  static constexpr uint64_t kRteLevel = 1ull << 15;
  static constexpr uint64_t kRteMasked = 1ull << 16;
  static constexpr uint64_t kRteRemapFormat = 1ull << 48;  // VT-d 5.0 §5.1.5.1
  static constexpr unsigned kRteDestShift = 56;

 private:
  class PinLine final : public IrqLine {
   public:
    PinLine(Ioapic& ioapic, unsigned pin) : ioapic_(ioapic), pin_(pin) {}
    void SetLevel(bool asserted) override { ioapic_.SetIrq(pin_, asserted); }

   private:
    Ioapic& ioapic_;
    const unsigned pin_;
  };

  uint32_t ReadIndexed(uint8_t index) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Returns the pin whose RTE changed, if any.
  std::optional<unsigned> WriteIndexed(uint8_t index, uint32_t value) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  MsiMessage ComposeLocked(unsigned pin) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Deliver pin if its state calls for it (asserted/latched, unmasked, Remote IRR clear).
  void Service(unsigned pin) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void EoiLocked(uint8_t vector) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  MsiSink& sink_;
  const IoapicConfig config_;
  std::vector<std::unique_ptr<PinLine>> lines_;
  mutable absl::Mutex mu_;
  uint8_t ioregsel_ ABSL_GUARDED_BY(mu_) = 0;
  uint8_t id_ ABSL_GUARDED_BY(mu_) = 0;
  std::array<uint64_t, kIoapicPins> rte_ ABSL_GUARDED_BY(mu_);
  uint32_t asserted_ ABSL_GUARDED_BY(mu_) = 0;  // pin input levels
  uint32_t irr_ ABSL_GUARDED_BY(mu_) = 0;       // edge pins: latched rising edges not yet delivered
  RouteChangeFn route_change_ ABSL_GUARDED_BY(mu_);
  uint64_t failed_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace ionest
