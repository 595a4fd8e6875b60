// Common pieces of ACPI system description tables: the 36-byte header (ACPI 6.5 §5.2.6), the
// checksum rule, and the Generic Address Structure (§5.2.3.2).
// Thread-compatible.
#pragma once

#include <cstdint>
#include <string_view>

#include "firmware/byte_writer.h"

namespace ionest {

inline constexpr size_t kAcpiHeaderSize = 36;
inline constexpr char kAcpiOemId[] = "IONEST";       // 6 bytes
inline constexpr char kAcpiOemTableId[] = "IONESTVM";  // 8 bytes
inline constexpr char kAcpiCreatorId[] = "IONS";     // 4 bytes
inline constexpr uint32_t kAcpiOemRevision = 1;
inline constexpr uint32_t kAcpiCreatorRevision = 1;

// Byte that makes the 8-bit sum of `bytes` (with that byte currently 0) zero.
uint8_t AcpiChecksumFor(const uint8_t* bytes, size_t len);
uint8_t AcpiSum(const uint8_t* bytes, size_t len);

// Starts a table: writes the header with Length and Checksum zero. Finish() fills both
// (header offsets 4 and 9).
class AcpiTableWriter {
 public:
  AcpiTableWriter(std::string_view signature, uint8_t revision);
  ByteWriter& body() { return w_; }
  Bytes Finish() &&;

 private:
  ByteWriter w_;
};

// Generic Address Structure (§5.2.3.2).
enum class AddressSpace : uint8_t { kSystemMemory = 0, kSystemIo = 1 };
enum class AccessSize : uint8_t { kUndefined = 0, kByte = 1, kWord = 2, kDword = 3, kQword = 4 };
void WriteGas(ByteWriter& w, AddressSpace space, uint8_t bit_width, AccessSize access, uint64_t address);
inline void WriteNullGas(ByteWriter& w) { w.Zeros(12); }

}  // namespace ionest
