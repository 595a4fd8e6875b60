// Minimal AML (ACPI Machine Language) encoder for the DSDT: just the terms ionest's tables use.
// Encodings follow ACPI 6.5 §20.2 "AML Grammar Definition". Every function returns the complete
// encoded term. Inputs are built by ionest itself (never by the guest); malformed names or
// oversized packages are host bugs and CHECK-fail.
// Thread-compatible free functions.
#pragma once

#include <cstdint>
#include <initializer_list>
#include <string_view>
#include <vector>

#include "firmware/byte_writer.h"

namespace ionest::aml {

// Opcodes (ACPI 6.5 §20.2.5 and §20.3 opcode table).
inline constexpr uint8_t kZeroOp = 0x00;
inline constexpr uint8_t kOneOp = 0x01;
inline constexpr uint8_t kNameOp = 0x08;
inline constexpr uint8_t kBytePrefix = 0x0A;
inline constexpr uint8_t kWordPrefix = 0x0B;
inline constexpr uint8_t kDWordPrefix = 0x0C;
inline constexpr uint8_t kStringPrefix = 0x0D;
inline constexpr uint8_t kQWordPrefix = 0x0E;
inline constexpr uint8_t kScopeOp = 0x10;
inline constexpr uint8_t kBufferOp = 0x11;
inline constexpr uint8_t kPackageOp = 0x12;
inline constexpr uint8_t kMethodOp = 0x14;
inline constexpr uint8_t kDualNamePrefix = 0x2E;
inline constexpr uint8_t kMultiNamePrefix = 0x2F;
inline constexpr uint8_t kExtOpPrefix = 0x5B;
inline constexpr uint8_t kDeviceOp = 0x82;  // after kExtOpPrefix
inline constexpr uint8_t kRootChar = 0x5C;  // '\'
inline constexpr uint8_t kParentPrefixChar = 0x5E;  // '^'
inline constexpr uint8_t kArg0Op = 0x68;
inline constexpr uint8_t kOrOp = 0x7D;
inline constexpr uint8_t kCreateDWordFieldOp = 0x8A;
inline constexpr uint8_t kLEqualOp = 0x93;
inline constexpr uint8_t kIfOp = 0xA0;
inline constexpr uint8_t kReturnOp = 0xA4;
inline constexpr uint8_t kOnesOp = 0xFF;

// PkgLength (§20.2.4) for a term whose bytes after the PkgLength field number `body_len`; the
// encoded value counts the PkgLength bytes themselves. Max encodable total is 2^28 - 1.
Bytes PkgLength(size_t body_len);

// NameString (§20.2.2): optional leading '\' or '^'s, then dot-separated NameSegs of 1-4 chars
// ([A-Z_] then [A-Z0-9_]), each padded with '_' to 4. "" encodes NullName.
Bytes NameString(std::string_view path);

// Shortest ComputationalData for an integer (§20.2.3): ZeroOp, OneOp, OnesOp (only for
// 0xFFFFFFFFFFFFFFFF), then Byte/Word/DWord/QWord prefixes.
Bytes Integer(uint64_t value);

// String (§20.2.3): StringPrefix, ASCII chars (1-0x7F), NullChar.
Bytes String(std::string_view s);

// EISA ID "PNP0A03" → 32-bit value as emitted by ASL's EISAID() macro (§19.6.35).
uint32_t EisaId(std::string_view id);

Bytes Name(std::string_view path, const Bytes& data_object);                 // §20.2.5.1 DefName
Bytes Package(const std::vector<Bytes>& elements);                           // §20.2.5.4 DefPackage
Bytes Buffer(const Bytes& data);                                             // §20.2.5.4 DefBuffer
Bytes Scope(std::string_view path, const Bytes& term_list);                  // §20.2.5.1 DefScope
Bytes Device(std::string_view path, const Bytes& term_list);                 // §20.2.5.2 DefDevice
// §20.2.5.2 DefMethod; arg_count 0-7; SyncLevel 0.
Bytes Method(std::string_view path, int arg_count, bool serialized, const Bytes& term_list);
Bytes Return(const Bytes& arg);                                              // §20.2.5.3 DefReturn
Bytes If(const Bytes& predicate, const Bytes& term_list);  // §20.2.5.3 DefIfElse without Else
Bytes LEqual(const Bytes& a, const Bytes& b);                                // §20.2.5.4 DefLEqual
// DefOr (§20.2.5.4): target = a | b.
Bytes Or(const Bytes& a, const Bytes& b, const Bytes& target);
// DefCreateDWordField (§20.2.5.2): DWord field `name` of `source_buffer` at byte `byte_index`.
Bytes CreateDWordField(const Bytes& source_buffer, const Bytes& byte_index, std::string_view name);
Bytes Arg(int n);    // ArgObj Arg0-Arg6 (§20.2.6.1)

// ToUUID("xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx") as the 16-byte buffer contents (§19.6.142 byte
// order: first three groups little-endian, the rest as written).
Bytes Uuid(std::string_view uuid);

// Concatenation of terms into a TermList.
Bytes Join(std::initializer_list<Bytes> parts);

}  // namespace ionest::aml
