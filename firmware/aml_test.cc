// Golden AML encodings, hand-derived from ACPI 6.5 §20.2 (derivation in each comment). Where noted,
// the same bytes are what iasl emits for the ASL shown.
#include "firmware/aml.h"

#include "gtest/gtest.h"

namespace ionest::aml {
namespace {

TEST(AmlPkgLength, OneByteUpTo63Total) {
  EXPECT_EQ(PkgLength(0), Bytes({0x01}));   // total = 0 + 1
  EXPECT_EQ(PkgLength(62), Bytes({0x3F}));  // total 63 still fits bits 5:0
}

TEST(AmlPkgLength, TwoBytes) {
  // body 63 → 1-byte form would be 64 (too big) → total 65 = 0x041: lead 0x40 | low nibble 1,
  // next byte 0x04.
  EXPECT_EQ(PkgLength(63), Bytes({0x41, 0x04}));
  // body 4093 → total 4095 = 0xFFF, the largest 2-byte value.
  EXPECT_EQ(PkgLength(4093), Bytes({0x4F, 0xFF}));
}

TEST(AmlPkgLength, ThreeAndFourBytes) {
  // body 4094 → 2-byte total 4096 overflows 12 bits → 3 bytes, total 4097 = 0x1001.
  EXPECT_EQ(PkgLength(4094), Bytes({0x81, 0x00, 0x01}));
  // body 0xFFFFC → 3-byte total 0xFFFFF is the largest 3-byte value (20 bits).
  EXPECT_EQ(PkgLength(0xFFFFC), Bytes({0x8F, 0xFF, 0xFF}));
  // body 0xFFFFD → 4 bytes, total 0x100001.
  EXPECT_EQ(PkgLength(0xFFFFD), Bytes({0xC1, 0x00, 0x00, 0x01}));
}

TEST(AmlInteger, ShortestEncoding) {
  EXPECT_EQ(Integer(0), Bytes({0x00}));  // ZeroOp
  EXPECT_EQ(Integer(1), Bytes({0x01}));  // OneOp
  EXPECT_EQ(Integer(2), Bytes({0x0A, 0x02}));
  EXPECT_EQ(Integer(0xFF), Bytes({0x0A, 0xFF}));
  EXPECT_EQ(Integer(0x100), Bytes({0x0B, 0x00, 0x01}));
  EXPECT_EQ(Integer(0xFFFF), Bytes({0x0B, 0xFF, 0xFF}));
  EXPECT_EQ(Integer(0x10000), Bytes({0x0C, 0x00, 0x00, 0x01, 0x00}));
  EXPECT_EQ(Integer(0x100000000), Bytes({0x0E, 0, 0, 0, 0, 1, 0, 0, 0}));
  EXPECT_EQ(Integer(~uint64_t{0}), Bytes({0xFF}));  // OnesOp
  EXPECT_EQ(Integer(0xFFFFFFFFFFFFFFFE), Bytes({0x0E, 0xFE, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF}));
}

TEST(AmlNameString, SegmentsAndPrefixes) {
  EXPECT_EQ(NameString("_HID"), Bytes({'_', 'H', 'I', 'D'}));
  EXPECT_EQ(NameString("_S5"), Bytes({'_', 'S', '5', '_'}));  // padded with '_'
  EXPECT_EQ(NameString("\\_SB"), Bytes({0x5C, '_', 'S', 'B', '_'}));
  EXPECT_EQ(NameString("\\_SB.PCI0"), Bytes({0x5C, 0x2E, '_', 'S', 'B', '_', 'P', 'C', 'I', '0'}));
  EXPECT_EQ(NameString("\\_SB.PCI0.COM1"),
            Bytes({0x5C, 0x2F, 0x03, '_', 'S', 'B', '_', 'P', 'C', 'I', '0', 'C', 'O', 'M', '1'}));
  EXPECT_EQ(NameString("^^AB"), Bytes({0x5E, 0x5E, 'A', 'B', '_', '_'}));
  EXPECT_EQ(NameString(""), Bytes({0x00}));  // NullName
}

TEST(AmlNameStringDeathTest, RejectsBadSegments) {
  EXPECT_DEATH(NameString("1ABC"), "");   // digit cannot lead
  EXPECT_DEATH(NameString("ABCDE"), "");  // > 4 chars
  EXPECT_DEATH(NameString("abcd"), "");   // lower case
}

TEST(AmlString, NullTerminated) {
  EXPECT_EQ(String("ACPI0007"), Bytes({0x0D, 'A', 'C', 'P', 'I', '0', '0', '0', '7', 0x00}));
}

TEST(AmlEisaId, MatchesAslMacro) {
  // "PNP0A03": P=0x10, N=0x0E, P=0x10 → 0x41D0; product 0x0A03 → 0x41D00A03, stored big-endian
  // → little-endian value 0x030AD041 (the constant iasl emits for EISAID("PNP0A03")).
  EXPECT_EQ(EisaId("PNP0A03"), 0x030AD041u);
  EXPECT_EQ(EisaId("PNP0A08"), 0x080AD041u);
  EXPECT_EQ(EisaId("PNP0501"), 0x0105D041u);
  EXPECT_EQ(EisaId("PNP0C02"), 0x020CD041u);
}

TEST(AmlName, S5Package) {
  // Name (_S5, Package () { 5, 5, 0, 0 }): NameOp, "_S5_", PackageOp, PkgLength, NumElements 4,
  // BytePrefix 5, BytePrefix 5, ZeroOp, ZeroOp. Body after PkgLength = 1 + 2 + 2 + 1 + 1 = 7,
  // so PkgLength = 8.
  EXPECT_EQ(Name("_S5", Package({Integer(5), Integer(5), Integer(0), Integer(0)})),
            Bytes({0x08, '_', 'S', '5', '_', 0x12, 0x08, 0x04, 0x0A, 0x05, 0x0A, 0x05, 0x00, 0x00}));
}

TEST(AmlDevice, ExtOpWithPkgLength) {
  // Device (COM1) { Name (_HID, EISAID ("PNP0501")) }: 5B 82, PkgLength, "COM1",
  // NameOp "_HID" DWordPrefix 41 D0 05 01. Body = 4 + 10 = 14 → PkgLength 15.
  EXPECT_EQ(Device("COM1", Name("_HID", Integer(EisaId("PNP0501")))),
            Bytes({0x5B, 0x82, 0x0F, 'C', 'O', 'M', '1', 0x08, '_', 'H', 'I', 'D', 0x0C, 0x41, 0xD0,
                   0x05, 0x01}));
}

TEST(AmlScope, RootPath) {
  // Scope (\_SB) {}: ScopeOp, PkgLength (body = 5-byte name → 6), '\', "_SB_".
  EXPECT_EQ(Scope("\\_SB", {}), Bytes({0x10, 0x06, 0x5C, '_', 'S', 'B', '_'}));
}

TEST(AmlMethod, FlagsAndBody) {
  // Method (_OSC, 4, NotSerialized) { Return (Arg3) }: MethodOp, PkgLength 8 (4 name + 1 flags +
  // 2 body + 1), "_OSC", flags 0x04, ReturnOp, Arg3Op (0x6B).
  EXPECT_EQ(Method("_OSC", 4, false, Return(Arg(3))),
            Bytes({0x14, 0x08, '_', 'O', 'S', 'C', 0x04, 0xA4, 0x6B}));
  // Serialized sets bit 3.
  EXPECT_EQ(Method("FOO", 1, true, {})[6], 0x09);
}

TEST(AmlBuffer, SizeThenBytes) {
  // Buffer () { 1, 2, 3 }: BufferOp, PkgLength 6 (BytePrefix 3 + 3 bytes + 1), 0A 03, 01 02 03.
  EXPECT_EQ(Buffer({1, 2, 3}), Bytes({0x11, 0x06, 0x0A, 0x03, 0x01, 0x02, 0x03}));
}

TEST(AmlExpressions, OscBuildingBlocks) {
  // CreateDWordField (Arg3, Zero, CDW1) → 8A 6B 00 "CDW1".
  EXPECT_EQ(CreateDWordField(Arg(3), Integer(0), "CDW1"), Bytes({0x8A, 0x6B, 0x00, 'C', 'D', 'W', '1'}));
  // LEqual (Arg0, Arg1) → 93 68 69.
  EXPECT_EQ(LEqual(Arg(0), Arg(1)), Bytes({0x93, 0x68, 0x69}));
  // Or (CDW1, 4, CDW1) → 7D "CDW1" 0A 04 "CDW1".
  EXPECT_EQ(Or(NameString("CDW1"), Integer(4), NameString("CDW1")),
            Bytes({0x7D, 'C', 'D', 'W', '1', 0x0A, 0x04, 'C', 'D', 'W', '1'}));
  // If (Arg0) { Return (Arg1) } → A0, PkgLength 4, 68, A4 69.
  EXPECT_EQ(If(Arg(0), Return(Arg(1))), Bytes({0xA0, 0x04, 0x68, 0xA4, 0x69}));
}

TEST(AmlUuid, ToUuidByteOrder) {
  // ToUUID ("33DB4D5B-1FF7-401C-9657-7441C03DD766"): first three groups byte-swapped.
  EXPECT_EQ(Uuid("33DB4D5B-1FF7-401C-9657-7441C03DD766"),
            Bytes({0x5B, 0x4D, 0xDB, 0x33, 0xF7, 0x1F, 0x1C, 0x40, 0x96, 0x57, 0x74, 0x41, 0xC0, 0x3D,
                   0xD7, 0x66}));
}

TEST(AmlPackage, LargePackageUsesMultiBytePkgLength) {
  std::vector<Bytes> elements(100, Integer(0x1234));  // 3 bytes each → body 301
  Bytes p = Package(elements);
  // PackageOp, 2-byte PkgLength for total 303 = 0x12F: 0x4F, 0x12; NumElements 100.
  ASSERT_GE(p.size(), 4u);
  EXPECT_EQ(p[0], 0x12);
  EXPECT_EQ(p[1], 0x4F);
  EXPECT_EQ(p[2], 0x12);
  EXPECT_EQ(p[3], 100);
  EXPECT_EQ(p.size(), 1u + 303u);
}

}  // namespace
}  // namespace ionest::aml
