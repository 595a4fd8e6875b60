// Test helpers: little-endian field reads from table bytes, and table lookup in an AcpiBlob.
#pragma once

#include <cstdint>
#include <string>

#include "firmware/acpi_table.h"
#include "firmware/acpi_tables.h"
#include "gtest/gtest.h"

namespace ionest::testing {

inline uint64_t ReadLe(const Bytes& b, size_t offset, int n) {
  EXPECT_LE(offset + n, b.size()) << "read past table end at " << offset;
  if (offset + n > b.size()) return 0;
  uint64_t v = 0;
  for (int i = n - 1; i >= 0; --i) v = (v << 8) | b[offset + i];
  return v;
}
inline uint8_t U8(const Bytes& b, size_t o) { return static_cast<uint8_t>(ReadLe(b, o, 1)); }
inline uint16_t U16(const Bytes& b, size_t o) { return static_cast<uint16_t>(ReadLe(b, o, 2)); }
inline uint32_t U32(const Bytes& b, size_t o) { return static_cast<uint32_t>(ReadLe(b, o, 4)); }
inline uint64_t U64(const Bytes& b, size_t o) { return ReadLe(b, o, 8); }
inline std::string Str(const Bytes& b, size_t o, size_t n) {
  return std::string(b.begin() + o, b.begin() + o + n);
}

// Checks the common header (ACPI 6.5 §5.2.6): signature, Length = size, revision, zero sum.
inline void ExpectValidTable(const Bytes& t, const std::string& signature, uint8_t revision) {
  ASSERT_GE(t.size(), kAcpiHeaderSize);
  EXPECT_EQ(Str(t, 0, 4), signature);
  EXPECT_EQ(U32(t, 4), t.size()) << signature;
  EXPECT_EQ(U8(t, 8), revision) << signature;
  EXPECT_EQ(AcpiSum(t.data(), t.size()), 0) << signature << " checksum";
  EXPECT_EQ(Str(t, 10, 6), "IONEST");
}

// Bytes of the table with `signature` in the blob (by its header Length), or empty.
inline Bytes TableAt(const AcpiBlob& blob, uint64_t gpa) {
  const size_t off = gpa - blob.base_gpa;
  if (gpa < blob.base_gpa || off + 8 > blob.bytes.size()) return {};
  const size_t len = static_cast<uint32_t>(blob.bytes[off + 4] | blob.bytes[off + 5] << 8 |
                                           blob.bytes[off + 6] << 16 | blob.bytes[off + 7] << 24);
  if (off + len > blob.bytes.size()) return {};
  return Bytes(blob.bytes.begin() + off, blob.bytes.begin() + off + len);
}
inline const AcpiBlob::Table* FindTable(const AcpiBlob& blob, const std::string& signature) {
  for (const AcpiBlob::Table& t : blob.tables) {
    if (t.signature == signature) return &t;
  }
  return nullptr;
}

// Default config plus VT-d, n CPUs with APIC IDs 0..n-1.
inline AcpiConfig ConfigWithCpus(size_t n) {
  AcpiConfig c;
  c.apic_ids.clear();
  for (size_t i = 0; i < n; ++i) c.apic_ids.push_back(static_cast<uint32_t>(i));
  return c;
}

}  // namespace ionest::testing
