#include "firmware/acpi_table.h"

namespace ionest {

uint8_t AcpiSum(const uint8_t* bytes, size_t len) {
  uint8_t sum = 0;
  for (size_t i = 0; i < len; ++i) sum = static_cast<uint8_t>(sum + bytes[i]);
  return sum;
}

uint8_t AcpiChecksumFor(const uint8_t* bytes, size_t len) {
  return static_cast<uint8_t>(0x100 - AcpiSum(bytes, len));
}

AcpiTableWriter::AcpiTableWriter(std::string_view signature, uint8_t revision) {
  // ACPI 6.5 §5.2.6 Table 5.4: Signature, Length, Revision, Checksum, OEMID, OEM Table ID,
  // OEM Revision, Creator ID, Creator Revision.
  w_.Chars(signature, 4).U32(0).U8(revision).U8(0);
  w_.Chars(kAcpiOemId, 6).Chars(kAcpiOemTableId, 8).U32(kAcpiOemRevision);
  w_.Chars(kAcpiCreatorId, 4).U32(kAcpiCreatorRevision);
}

Bytes AcpiTableWriter::Finish() && {
  w_.Patch32(4, static_cast<uint32_t>(w_.size()));
  w_.Patch8(9, AcpiChecksumFor(w_.bytes().data(), w_.size()));
  return std::move(w_).Take();
}

void WriteGas(ByteWriter& w, AddressSpace space, uint8_t bit_width, AccessSize access, uint64_t address) {
  // Address Space ID, Register Bit Width, Register Bit Offset (0), Access Size, Address.
  w.U8(static_cast<uint8_t>(space)).U8(bit_width).U8(0).U8(static_cast<uint8_t>(access)).U64(address);
}

}  // namespace ionest
