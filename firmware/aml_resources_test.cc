// Golden resource descriptors (ACPI 6.5 §6.4), hand-derived; each equals what iasl emits for the
// ASL in the comment (cross-checked by disassembly in dsdt_test).
#include "firmware/aml_resources.h"

#include "gtest/gtest.h"

namespace ionest::aml {
namespace {

TEST(AmlResources, IoPortDecode16) {
  // IO (Decode16, 0x3F8, 0x3F8, 0x00, 0x08): tag 0x47 (small, type 8, len 7), info 1, min, max,
  // align, length.
  EXPECT_EQ(IoPort(0x3F8, 0x3F8, 0, 8), Bytes({0x47, 0x01, 0xF8, 0x03, 0xF8, 0x03, 0x00, 0x08}));
}

TEST(AmlResources, IrqNoFlagsMask) {
  // IRQNoFlags () {4}: tag 0x22 (small, type 4, len 2), mask bit 4.
  EXPECT_EQ(IrqNoFlags({4}), Bytes({0x22, 0x10, 0x00}));
  EXPECT_EQ(IrqNoFlags({1, 12}), Bytes({0x22, 0x02, 0x10}));
}

TEST(AmlResources, WordBusNumber) {
  // WordBusNumber (ResourceProducer, MinFixed, MaxFixed, PosDecode, 0, 0, 0xFF, 0, 0x100):
  // tag 0x88, length 13, type 2 (bus), general flags 0x0C, type flags 0, then 5 words.
  EXPECT_EQ(WordBusNumber(0, 255), Bytes({0x88, 0x0D, 0x00, 0x02, 0x0C, 0x00, 0x00, 0x00, 0x00, 0x00,
                                          0xFF, 0x00, 0x00, 0x00, 0x00, 0x01}));
}

TEST(AmlResources, WordIoEntireRange) {
  // WordIO (..., EntireRange, 0, 0, 0xCF7, 0, 0xCF8): type 1 (I/O), type flags 3.
  EXPECT_EQ(WordIo(0, 0xCF7), Bytes({0x88, 0x0D, 0x00, 0x01, 0x0C, 0x03, 0x00, 0x00, 0x00, 0x00,
                                     0xF7, 0x0C, 0x00, 0x00, 0xF8, 0x0C}));
}

TEST(AmlResources, DWordMemory) {
  // DWordMemory (ResourceProducer, PosDecode, MinFixed, MaxFixed, NonCacheable, ReadWrite,
  // 0, 0xC0000000, 0xDFFFFFFF, 0, 0x20000000): tag 0x87, length 23, type 0, flags 0x0C, RW 0x01.
  EXPECT_EQ(DWordMemory(0xC0000000, 0xDFFFFFFF, false),
            Bytes({0x87, 0x17, 0x00, 0x00, 0x0C, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0xC0,
                   0xFF, 0xFF, 0xFF, 0xDF, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x20}));
}

TEST(AmlResources, QWordMemory) {
  // QWordMemory (ResourceConsumer, ..., Cacheable, ReadWrite, 0, 0x1_0000_0000, 0x1_FFFF_FFFF,
  // 0, 0x1_0000_0000): tag 0x8A, length 43, general flags 0x0D (consumer), type flags 0x03.
  Bytes d = QWordMemory(0x100000000, 0x1FFFFFFFF, true, false);
  ASSERT_EQ(d.size(), 46u);
  EXPECT_EQ(Bytes(d.begin(), d.begin() + 6), Bytes({0x8A, 0x2B, 0x00, 0x00, 0x0D, 0x03}));
  auto q = [&](size_t off) {
    uint64_t v = 0;
    for (int i = 7; i >= 0; --i) v = v << 8 | d[off + i];
    return v;
  };
  EXPECT_EQ(q(6), 0u);                // granularity
  EXPECT_EQ(q(14), 0x100000000u);     // min
  EXPECT_EQ(q(22), 0x1FFFFFFFFu);     // max
  EXPECT_EQ(q(30), 0u);               // translation
  EXPECT_EQ(q(38), 0x100000000u);     // length
  EXPECT_EQ(QWordMemory(0x100000000, 0x1FFFFFFFF, false, true)[4], 0x0C);  // producer
}

TEST(AmlResources, TemplateAppendsEndTag) {
  // ResourceTemplate () { IO (Decode16, 0x3F8, 0x3F8, 0, 8) IRQNoFlags () {4} }:
  // BufferOp, PkgLength 16, BytePrefix 13, 8 + 3 descriptor bytes, End Tag 79 00.
  EXPECT_EQ(ResourceTemplate({IoPort(0x3F8, 0x3F8, 0, 8), IrqNoFlags({4})}),
            Bytes({0x11, 0x10, 0x0A, 0x0D, 0x47, 0x01, 0xF8, 0x03, 0xF8, 0x03, 0x00, 0x08, 0x22, 0x10,
                   0x00, 0x79, 0x00}));
}

}  // namespace
}  // namespace ionest::aml
