// ACPI resource descriptors (ACPI 6.5 §6.4) for _CRS buffers, and ResourceTemplate().
// Thread-compatible free functions; inputs are host-built.
#pragma once

#include <cstdint>
#include <vector>

#include "firmware/byte_writer.h"

namespace ionest::aml {

// §6.4.2.5 I/O Port Descriptor, 16-bit decode: IO(Decode16, min, max, align, len).
Bytes IoPort(uint16_t min, uint16_t max, uint8_t align, uint8_t len);
// §6.4.2.1 IRQ Descriptor, 2-byte form (edge, active-high, exclusive): IRQNoFlags(){irqs...}.
Bytes IrqNoFlags(std::vector<uint8_t> irqs);

// Address-space descriptors (§6.4.3.5). Windows are MinFixed/MaxFixed/PosDecode, length =
// max - min + 1, translation 0. `producer` = ResourceProducer (a bridge window) vs consumer.
Bytes WordBusNumber(uint16_t min, uint16_t max);                     // §6.4.3.5.3, producer
Bytes WordIo(uint16_t min, uint16_t max);                            // §6.4.3.5.3, EntireRange, producer
Bytes DWordMemory(uint32_t min, uint32_t max, bool cacheable);       // §6.4.3.5.2, RW, producer
Bytes QWordMemory(uint64_t min, uint64_t max, bool cacheable, bool producer);  // §6.4.3.5.1, RW

// Buffer holding the descriptors followed by an End Tag (§6.4.2.9) with checksum 0 ("treated as
// correct"), as ASL's ResourceTemplate() emits it.
Bytes ResourceTemplate(const std::vector<Bytes>& descriptors);

}  // namespace ionest::aml
