#include "vmm/mptable.h"

#include <cstring>

#include "absl/strings/str_format.h"

namespace ionest {
namespace {

// MP spec 1.4 §4.1 floating pointer structure.
struct __attribute__((packed)) MpFloating {
  char signature[4];  // "_MP_"
  uint32_t physptr;
  uint8_t length;  // in 16-byte units
  uint8_t spec_rev;
  uint8_t checksum;
  uint8_t feature[5];
};
// §4.2 configuration table header.
struct __attribute__((packed)) MpConfigHeader {
  char signature[4];  // "PCMP"
  uint16_t length;
  uint8_t spec_rev;
  uint8_t checksum;
  char oem[8];
  char product[12];
  uint32_t oem_ptr;
  uint16_t oem_size;
  uint16_t entry_count;
  uint32_t lapic;
  uint16_t ext_length;
  uint8_t ext_checksum;
  uint8_t reserved;
};
// §4.3.1 processor entry.
struct __attribute__((packed)) MpProcessor {
  uint8_t type;  // 0
  uint8_t apic_id;
  uint8_t apic_version;
  uint8_t flags;  // bit0 EN, bit1 BP
  uint32_t signature;
  uint32_t features;
  uint32_t reserved[2];
};
// §4.3.2 bus entry.
struct __attribute__((packed)) MpBus {
  uint8_t type;  // 1
  uint8_t bus_id;
  char bus_type[6];
};
// §4.3.3 I/O APIC entry.
struct __attribute__((packed)) MpIoapic {
  uint8_t type;  // 2
  uint8_t apic_id;
  uint8_t version;
  uint8_t flags;  // bit0 EN
  uint32_t address;
};
// §4.3.4/4.3.5 I/O and local interrupt assignment entries.
struct __attribute__((packed)) MpIntsrc {
  uint8_t type;  // 3 (I/O) or 4 (local)
  uint8_t irq_type;  // 0 INT, 1 NMI, 2 SMI, 3 ExtINT
  uint16_t flags;  // polarity/trigger: 0 = conforms to the bus
  uint8_t src_bus;
  uint8_t src_irq;
  uint8_t dst_apic;
  uint8_t dst_pin;
};

uint8_t Checksum(const uint8_t* p, size_t n) {
  uint8_t sum = 0;
  for (size_t i = 0; i < n; ++i) sum += p[i];
  return static_cast<uint8_t>(-sum);
}

template <typename T>
void Append(std::vector<uint8_t>& out, const T& v) {
  const uint8_t* p = reinterpret_cast<const uint8_t*>(&v);
  out.insert(out.end(), p, p + sizeof(T));
}

}  // namespace

absl::StatusOr<std::vector<uint8_t>> BuildMpTable(int num_cpus, uint64_t base, uint64_t ioapic_base) {
  if (num_cpus < 1 || num_cpus > kMaxMpCpus) {
    return absl::InvalidArgumentError(absl::StrFormat("MP table: %d CPUs (1..%d supported)", num_cpus, kMaxMpCpus));
  }
  if (base + 0x10000 > 0x100000000ull || ioapic_base > 0xffffffffull) {
    return absl::InvalidArgumentError("MP table: addresses must be below 4 GiB");
  }
  const uint8_t ioapic_id = static_cast<uint8_t>(num_cpus);
  std::vector<uint8_t> entries;
  uint16_t count = 0;
  for (int i = 0; i < num_cpus; ++i) {
    MpProcessor p{};
    p.type = 0;
    p.apic_id = static_cast<uint8_t>(i);
    p.apic_version = 0x14;
    p.flags = 1 | (i == 0 ? 2 : 0);
    p.signature = 0x600;  // family 6
    p.features = 0x201;   // FPU, APIC
    Append(entries, p);
    ++count;
  }
  MpBus bus{};
  bus.type = 1;
  bus.bus_id = 0;
  std::memcpy(bus.bus_type, "ISA   ", 6);
  Append(entries, bus);
  ++count;
  MpIoapic io{};
  io.type = 2;
  io.apic_id = ioapic_id;
  io.version = 0x11;
  io.flags = 1;
  io.address = static_cast<uint32_t>(ioapic_base);
  Append(entries, io);
  ++count;
  for (int irq = 0; irq < 16; ++irq) {
    if (irq == 2) continue;  // the cascade: pin 2 carries IRQ0
    MpIntsrc s{};
    s.type = 3;
    s.irq_type = 0;
    s.src_bus = 0;
    s.src_irq = static_cast<uint8_t>(irq);
    s.dst_apic = ioapic_id;
    s.dst_pin = static_cast<uint8_t>(irq == 0 ? 2 : irq);
    Append(entries, s);
    ++count;
  }
  for (int lint = 0; lint < 2; ++lint) {
    MpIntsrc s{};
    s.type = 4;
    s.irq_type = lint == 0 ? 3 : 1;  // LINT0 ExtINT, LINT1 NMI
    s.dst_apic = 0xff;               // all local APICs
    s.dst_pin = static_cast<uint8_t>(lint);
    Append(entries, s);
    ++count;
  }

  MpConfigHeader h{};
  std::memcpy(h.signature, "PCMP", 4);
  h.length = static_cast<uint16_t>(sizeof(h) + entries.size());
  h.spec_rev = 4;
  std::memcpy(h.oem, "IONEST  ", 8);
  std::memcpy(h.product, "IONEST VMM  ", 12);
  h.entry_count = count;
  h.lapic = 0xFEE00000;
  std::vector<uint8_t> config;
  Append(config, h);
  config.insert(config.end(), entries.begin(), entries.end());
  config[offsetof(MpConfigHeader, checksum)] = Checksum(config.data(), config.size());

  MpFloating f{};
  std::memcpy(f.signature, "_MP_", 4);
  f.physptr = static_cast<uint32_t>(base + sizeof(MpFloating));
  f.length = 1;
  f.spec_rev = 4;
  std::vector<uint8_t> out;
  Append(out, f);
  out[offsetof(MpFloating, checksum)] = Checksum(out.data(), out.size());
  out.insert(out.end(), config.begin(), config.end());
  return out;
}

}  // namespace ionest
