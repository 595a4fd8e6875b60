#include "devices/pci_host.h"

#include <algorithm>
#include <vector>

#include "absl/strings/str_format.h"

namespace ionest {

using namespace pci;

namespace {
constexpr uint32_t kConfigAddressEnable = 1u << 31;
constexpr uint32_t kConfigAddressMask = 0x80FFFFFC;  // enable, bus, device, function, dword register
constexpr uint64_t kFunctionConfigSize = 4096;
}  // namespace

PciHostBridge::PciHostBridge()
    : PciDevice("host-bridge", PciIdentity{.vendor_id = pci_layout::kHostBridgeVendorId,
                                           .device_id = pci_layout::kHostBridgeDeviceId,
                                           .class_code = 0x060000,
                                           .subsystem_vendor_id = pci_layout::kHostBridgeVendorId,
                                           .subsystem_id = 0x1100}) {}

PciHost::PciHost(IoBus& mmio, IoBus& pio, MsiSink& msi, DmaSpaceProvider& dma)
    : mmio_(mmio), pio_(pio), msi_(msi), dma_(dma) {
  AddDevice(pci_layout::kHostBridgeDevfn, bridge_).IgnoreError();  // slot 0 is free at construction
}

PciHost::~PciHost() {
  if (ecam_base_) mmio_.Unregister(*ecam_base_).IgnoreError();
  pio_.Unregister(pci_layout::kConfigAddressPort).IgnoreError();
  pio_.Unregister(pci_layout::kConfigDataPort).IgnoreError();
}

absl::Status PciHost::Register(uint64_t ecam_base, uint64_t ecam_size) {
  if (ecam_size == 0 || ecam_size > pci_layout::kEcamSize || ecam_size % (1u << 20))
    return absl::InvalidArgumentError(absl::StrFormat("bad ECAM size %#x", ecam_size));
  if (absl::Status s = mmio_.Register(ecam_base, ecam_size, &ecam_, "pci-ecam"); !s.ok()) return s;
  ecam_base_ = ecam_base;
  if (absl::Status s = pio_.Register(pci_layout::kConfigAddressPort, 4, &address_port_, "pci-cf8"); !s.ok())
    return s;
  return pio_.Register(pci_layout::kConfigDataPort, 4, &data_port_, "pci-cfc");
}

absl::Status PciHost::AddDevice(uint8_t devfn, PciDevice& device) {
  {
    absl::MutexLock l(&mu_);
    if (devices_[devfn]) return absl::AlreadyExistsError(absl::StrFormat("PCI 00:%02x.%x is taken", devfn >> 3, devfn & 7));
    if (device.attached()) return absl::FailedPreconditionError(device.name() + " is already attached");
  }
  device.Attach(PciAttachment{devfn, &msi_, &dma_.ForRequester(devfn), &mmio_, &pio_});
  absl::MutexLock l(&mu_);
  devices_[devfn] = &device;
  PciDevice* fn0 = devices_[devfn & ~7u];
  // Multi-function bit (PCIe 6.0 §7.5.1.1.9) so enumeration looks past function 0.
  if ((devfn & 7) && fn0) fn0->config().UpdateBits(kHeaderType, 1, 0x80, 0);
  if (!(devfn & 7)) {
    for (unsigned f = 1; f < 8; ++f)
      if (devices_[devfn | f]) device.config().UpdateBits(kHeaderType, 1, 0x80, 0);
  }
  return absl::OkStatus();
}

PciDevice* PciHost::Find(uint16_t rid) const {
  if (rid >> 8) return nullptr;  // only bus 0
  absl::MutexLock l(&mu_);
  return devices_[rid & 0xFF];
}

void PciHost::ConfigRead(uint16_t rid, uint32_t reg, uint8_t* data, size_t size) {
  PciDevice* d = Find(rid);
  if (!d) {
    std::fill(data, data + size, 0xFF);  // no function: master abort reads all-ones
    return;
  }
  d->ConfigRead(reg, data, size);
}

void PciHost::ConfigWrite(uint16_t rid, uint32_t reg, const uint8_t* data, size_t size) {
  if (PciDevice* d = Find(rid)) d->ConfigWrite(reg, data, size);
}

// ECAM: offset = bus << 20 | devfn << 12 | register. Accesses are clipped at the function's 4 KiB.
void PciHost::Ecam::IoRead(uint64_t offset, uint8_t* data, size_t size) {
  const uint64_t reg = offset % kFunctionConfigSize;
  const size_t n = static_cast<size_t>(std::min<uint64_t>(size, kFunctionConfigSize - reg));
  h_.ConfigRead(static_cast<uint16_t>(offset >> 12), static_cast<uint32_t>(reg), data, n);
}

void PciHost::Ecam::IoWrite(uint64_t offset, const uint8_t* data, size_t size) {
  const uint64_t reg = offset % kFunctionConfigSize;
  const size_t n = static_cast<size_t>(std::min<uint64_t>(size, kFunctionConfigSize - reg));
  h_.ConfigWrite(static_cast<uint16_t>(offset >> 12), static_cast<uint32_t>(reg), data, n);
}

// 0xCF8 latches only on 32-bit accesses (byte accesses belong to other functions such as 0xCF9).
void PciHost::AddressPort::IoRead(uint64_t offset, uint8_t* data, size_t size) {
  if (offset != 0 || size != 4) return;
  absl::MutexLock l(&h_.mu_);
  for (size_t i = 0; i < 4; ++i) data[i] = static_cast<uint8_t>(h_.config_address_ >> (8 * i));
}

void PciHost::AddressPort::IoWrite(uint64_t offset, const uint8_t* data, size_t size) {
  if (offset != 0 || size != 4) return;
  absl::MutexLock l(&h_.mu_);
  h_.config_address_ = (data[0] | data[1] << 8 | data[2] << 16 | uint32_t{data[3]} << 24) & kConfigAddressMask;
}

std::optional<std::pair<uint16_t, uint32_t>> PciHost::DecodeDataPort(uint64_t offset) const {
  absl::MutexLock l(&mu_);
  const uint32_t a = config_address_;
  if (!(a & kConfigAddressEnable)) return std::nullopt;
  return std::make_pair(static_cast<uint16_t>((a >> 8) & 0xFFFF), static_cast<uint32_t>((a & 0xFC) + offset));
}

void PciHost::DataPort::IoRead(uint64_t offset, uint8_t* data, size_t size) {
  auto target = h_.DecodeDataPort(offset);
  if (!target || offset >= 4) return;  // bus pre-filled all-ones
  h_.ConfigRead(target->first, target->second, data, std::min<size_t>(size, 4 - offset));
}

void PciHost::DataPort::IoWrite(uint64_t offset, const uint8_t* data, size_t size) {
  auto target = h_.DecodeDataPort(offset);
  if (!target || offset >= 4) return;
  h_.ConfigWrite(target->first, target->second, data, std::min<size_t>(size, 4 - offset));
}

absl::Status PciHost::AssignResources(const PciWindows& w) {
  struct Request {
    PciDevice* dev;
    unsigned bar;
    uint64_t size;
    PciBarKind kind;
  };
  std::vector<Request> reqs;
  std::vector<PciDevice*> devices;
  {
    absl::MutexLock l(&mu_);
    for (PciDevice* d : devices_) {
      if (!d) continue;
      devices.push_back(d);
      for (unsigned i = 0; i < kNumBars; ++i)
        if (PciBar* b = d->bar(i)) reqs.push_back({d, i, b->size(), b->kind()});
    }
  }
  // Largest first keeps natural alignment without holes.
  std::stable_sort(reqs.begin(), reqs.end(), [](const Request& a, const Request& b) { return a.size > b.size; });
  uint64_t next32 = w.mmio32_base, next64 = w.mmio64_base, next_io = w.io_base;
  for (const Request& r : reqs) {
    uint64_t* next = r.kind == PciBarKind::kIo ? &next_io : r.kind == PciBarKind::kMmio64 ? &next64 : &next32;
    const uint64_t base = r.kind == PciBarKind::kIo ? w.io_base : r.kind == PciBarKind::kMmio64 ? w.mmio64_base : w.mmio32_base;
    const uint64_t limit = base + (r.kind == PciBarKind::kIo ? w.io_size : r.kind == PciBarKind::kMmio64 ? w.mmio64_size : w.mmio32_size);
    const uint64_t addr = (*next + r.size - 1) & ~(r.size - 1);
    if (addr < *next || addr + r.size > limit || addr + r.size < addr)
      return absl::ResourceExhaustedError(absl::StrFormat("no room for %s BAR%u (%#x bytes)", r.dev->name(), r.bar, r.size));
    *next = addr + r.size;
    const uint8_t lo[4] = {static_cast<uint8_t>(addr), static_cast<uint8_t>(addr >> 8), static_cast<uint8_t>(addr >> 16),
                           static_cast<uint8_t>(addr >> 24)};
    r.dev->ConfigWrite(kBar0 + 4 * r.bar, lo, 4);
    if (r.kind == PciBarKind::kMmio64) {
      const uint8_t hi[4] = {static_cast<uint8_t>(addr >> 32), static_cast<uint8_t>(addr >> 40),
                             static_cast<uint8_t>(addr >> 48), static_cast<uint8_t>(addr >> 56)};
      r.dev->ConfigWrite(kBar0 + 4 * r.bar + 4, hi, 4);
    }
  }
  for (PciDevice* d : devices) {
    const uint16_t cmd = d->config().Get16(kCommand) | kCommandIo | kCommandMemory;
    const uint8_t v[2] = {static_cast<uint8_t>(cmd), static_cast<uint8_t>(cmd >> 8)};
    d->ConfigWrite(kCommand, v, 2);
  }
  return absl::OkStatus();
}

}  // namespace ionest
