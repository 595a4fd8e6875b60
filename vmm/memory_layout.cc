#include "vmm/memory_layout.h"

#include <string>

#include "absl/strings/numbers.h"
#include "absl/strings/str_format.h"

namespace ionest {

absl::StatusOr<MemoryLayout> ComputeMemoryLayout(uint64_t memory_size) {
  if (memory_size < kMinMemory) {
    return absl::InvalidArgumentError(absl::StrFormat("memory size %d is below the minimum 32 MiB", memory_size));
  }
  if (memory_size % (2ull << 20) != 0) {
    return absl::InvalidArgumentError("memory size must be a multiple of 2 MiB");
  }
  if (memory_size > (1ull << 40)) {
    return absl::InvalidArgumentError("memory size above 1 TiB is not supported");
  }
  MemoryLayout l;
  l.memory_size = memory_size;
  l.low_ram_end = memory_size < kPciHoleStart ? memory_size : kPciHoleStart;
  l.high_ram_size = memory_size - l.low_ram_end;
  l.ram.push_back({0, l.low_ram_end});
  if (l.high_ram_size) l.ram.push_back({kHighRamStart, l.high_ram_size});

  l.e820.push_back({0, kEbdaStart, E820Type::kRam});
  l.e820.push_back({kEbdaStart, kBiosEnd - kEbdaStart, E820Type::kReserved});
  l.e820.push_back({kBiosEnd, l.low_ram_end - kBiosEnd, E820Type::kRam});
  // PCIe ECAM must be reserved in the memory map for Linux to trust MCFG (PCI Firmware spec 3.3 §4.1.2).
  l.e820.push_back({kEcamBase, kEcamSize, E820Type::kReserved});
  l.e820.push_back({kLayoutIoapicBase, kLayoutIoapicSize, E820Type::kReserved});
  l.e820.push_back({kVtdBase, kVtdSize, E820Type::kReserved});
  l.e820.push_back({kLapicBase, kLapicSize, E820Type::kReserved});
  if (l.high_ram_size) l.e820.push_back({kHighRamStart, l.high_ram_size, E820Type::kRam});
  return l;
}

absl::StatusOr<uint64_t> ParseMemorySize(const std::string& text) {
  if (text.empty()) return absl::InvalidArgumentError("empty memory size");
  uint64_t shift = 0;
  std::string digits = text;
  switch (text.back()) {
    case 'k': case 'K': shift = 10; break;
    case 'm': case 'M': shift = 20; break;
    case 'g': case 'G': shift = 30; break;
    case 't': case 'T': shift = 40; break;
    default: break;
  }
  if (shift) digits.pop_back();
  uint64_t value = 0;
  if (digits.empty() || !absl::SimpleAtoi(digits, &value) || digits[0] == '-' || digits[0] == '+') {
    return absl::InvalidArgumentError(absl::StrFormat("bad memory size '%s' (use e.g. 512M, 2G)", text));
  }
  if (shift && value > (~0ull >> shift)) {
    return absl::InvalidArgumentError(absl::StrFormat("memory size '%s' overflows", text));
  }
  return value << shift;
}

}  // namespace ionest
