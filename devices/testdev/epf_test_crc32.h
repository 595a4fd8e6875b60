// crc32_le as Linux computes it (lib/crc32.c): reflected CRC-32 (polynomial 0xEDB88320), caller's
// seed, no final inversion. pci_endpoint_test.c checksums with crc32_le(~0, buf, size).
#pragma once

#include <cstddef>
#include <cstdint>

namespace ionest::epf {

uint32_t Crc32Le(uint32_t crc, const uint8_t* data, size_t len);

}  // namespace ionest::epf
