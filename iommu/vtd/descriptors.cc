#include "iommu/vtd/descriptors.h"

namespace ionest::vtd {

AtcRange DeviceTlbRange(uint64_t addr_field, bool size_bit) {
  uint64_t page = addr_field & ~uint64_t{0xfff};
  if (!size_bit) return {page, 4096};
  // Count trailing ones from bit 12.
  int n = 0;
  while (n < 52 && ((page >> (12 + n)) & 1)) ++n;
  if (n >= 51) return {0, 0};  // whole address space
  uint64_t size = uint64_t{1} << (13 + n);
  return {page & ~(size - 1), size};
}

namespace {

constexpr uint64_t Bits(int hi, int lo) { return ((hi == 63 ? ~uint64_t{0} : ((uint64_t{1} << (hi + 1)) - 1))) & ~((uint64_t{1} << lo) - 1); }

}  // namespace

IqeiCode ValidateDescriptor(const InvDescriptor& d, uint32_t mamv, bool scalable) {
  const uint64_t q0 = d.qw[0], q1 = d.qw[1];
  uint64_t r0 = 0, r1 = 0;  // reserved masks
  bool upper_reserved = true;  // qw2/qw3 of 256-bit descriptors
  switch (d.type()) {
    case kDescContextCache:  // §6.5.2.1
      r0 = Bits(8, 6) | Bits(15, 12) | Bits(63, 50);
      r1 = ~uint64_t{0};
      if (d.granularity() == 0) return kIqeiReservedField;
      break;
    case kDescIotlb:  // §6.5.2.3
      r0 = Bits(8, 8) | Bits(15, 12) | Bits(63, 32);
      r1 = Bits(11, 7);
      if (d.granularity() == 0) return kIqeiReservedField;
      break;  // AM > MAMV is undefined (§6.5.2.3): executed as domain-selective
    case kDescDeviceTlb:  // §6.5.2.5
      r0 = Bits(8, 4) | Bits(31, 21) | Bits(51, 48);
      r1 = Bits(11, 1);
      break;
    case kDescIec:  // §6.5.2.7
      r0 = Bits(8, 5) | Bits(26, 12) | Bits(63, 48);
      r1 = ~uint64_t{0};
      break;
    case kDescWait:  // §6.5.2.8
      r0 = Bits(8, 8) | Bits(31, 12);
      r1 = Bits(1, 0);
      break;
    case kDescPasidIotlb:  // §6.5.2.4
      r0 = Bits(8, 6) | Bits(15, 12) | Bits(63, 52);
      r1 = Bits(11, 7);
      if (d.granularity() < 2) return kIqeiReservedField;
      break;  // AM > MAMV: executed as PASID-selective
    case kDescPasidCache:  // §6.5.2.2
      r0 = Bits(8, 6) | Bits(15, 12) | Bits(63, 52);
      r1 = ~uint64_t{0};
      if (d.granularity() == 2) return kIqeiReservedField;
      break;
    case kDescPasidDeviceTlb:  // §6.5.2.6
      r0 = 0;
      r1 = Bits(10, 1);
      break;
    case kDescPageGroupResponse:  // §6.5.2.9; qw2/qw3 carry private data
      r0 = Bits(8, 5) | Bits(63, 52);
      r1 = Bits(1, 0) | Bits(63, 12);
      upper_reserved = false;
      break;
    default:
      return kIqeiInvalidType;
  }
  if (d.type() >= kDescPasidIotlb && !scalable) return kIqeiInvalidType;
  if ((q0 & r0) || (q1 & r1)) return kIqeiReservedField;
  if (d.wide && upper_reserved && (d.qw[2] || d.qw[3])) return kIqeiReservedField;
  return kIqeiNone;
}

}  // namespace ionest::vtd
