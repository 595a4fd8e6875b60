#include "firmware/aml_resources.h"

#include "absl/base/internal/raw_logging.h"
#include "firmware/aml.h"

namespace ionest::aml {
namespace {

// Address space resource types (§6.4.3.5, Table 6.49 "Resource Type").
constexpr uint8_t kMemoryRange = 0;
constexpr uint8_t kIoRange = 1;
constexpr uint8_t kBusNumberRange = 2;
// General flags: bit 3 _MAF, bit 2 _MIF, bit 1 _DEC (0 = positive), bit 0 consumer(1)/producer(0).
constexpr uint8_t kMinMaxFixed = 0x0C;
constexpr uint8_t kConsumer = 0x01;
// Memory type-specific flags (Table 6.50): bit 0 _RW; bits 2:1 _MEM (0 non-cacheable, 1 cacheable).
constexpr uint8_t kMemReadWrite = 0x01;
constexpr uint8_t kMemCacheable = 0x02;
// I/O type-specific flags (Table 6.51): bits 1:0 _RNG = 3 (ISA and non-ISA ranges).
constexpr uint8_t kIoEntireRange = 0x03;

// Large resource header: tag byte, 16-bit length of the rest (§6.4.3).
void LargeHeader(ByteWriter& w, uint8_t tag, uint16_t rest_len) { w.U8(tag).U16(rest_len); }

}  // namespace

Bytes IoPort(uint16_t min, uint16_t max, uint8_t align, uint8_t len) {
  ByteWriter w;
  // Small item, type 0x08, length 7 → 0x47; information byte bit 0 = 16-bit decode.
  w.U8(0x47).U8(0x01).U16(min).U16(max).U8(align).U8(len);
  return std::move(w).Take();
}

Bytes IrqNoFlags(std::vector<uint8_t> irqs) {
  uint16_t mask = 0;
  for (uint8_t irq : irqs) {
    ABSL_RAW_CHECK(irq < 16, "irq < 16");
    mask |= static_cast<uint16_t>(1u << irq);
  }
  ByteWriter w;
  w.U8(0x22).U16(mask);  // small item, type 0x04, length 2
  return std::move(w).Take();
}

Bytes WordBusNumber(uint16_t min, uint16_t max) {
  ABSL_RAW_CHECK(min <= max, "min <= max");
  ByteWriter w;
  LargeHeader(w, 0x88, 13);
  w.U8(kBusNumberRange).U8(kMinMaxFixed).U8(0);
  w.U16(0).U16(min).U16(max).U16(0).U16(static_cast<uint16_t>(max - min + 1));
  return std::move(w).Take();
}

Bytes WordIo(uint16_t min, uint16_t max) {
  ABSL_RAW_CHECK(min <= max, "min <= max");
  ByteWriter w;
  LargeHeader(w, 0x88, 13);
  w.U8(kIoRange).U8(kMinMaxFixed).U8(kIoEntireRange);
  w.U16(0).U16(min).U16(max).U16(0).U16(static_cast<uint16_t>(max - min + 1));
  return std::move(w).Take();
}

Bytes DWordMemory(uint32_t min, uint32_t max, bool cacheable) {
  ABSL_RAW_CHECK(min <= max, "min <= max");
  ByteWriter w;
  LargeHeader(w, 0x87, 23);
  w.U8(kMemoryRange).U8(kMinMaxFixed).U8(kMemReadWrite | (cacheable ? kMemCacheable : 0));
  w.U32(0).U32(min).U32(max).U32(0).U32(max - min + 1);
  return std::move(w).Take();
}

Bytes QWordMemory(uint64_t min, uint64_t max, bool cacheable, bool producer) {
  ABSL_RAW_CHECK(min <= max, "min <= max");
  ByteWriter w;
  LargeHeader(w, 0x8A, 43);
  w.U8(kMemoryRange).U8(kMinMaxFixed | (producer ? 0 : kConsumer));
  w.U8(kMemReadWrite | (cacheable ? kMemCacheable : 0));
  w.U64(0).U64(min).U64(max).U64(0).U64(max - min + 1);
  return std::move(w).Take();
}

Bytes ResourceTemplate(const std::vector<Bytes>& descriptors) {
  ByteWriter w;
  for (const Bytes& d : descriptors) w.Append(d);
  w.U8(0x79).U8(0x00);  // End Tag, checksum 0
  return Buffer(w.bytes());
}

}  // namespace ionest::aml
