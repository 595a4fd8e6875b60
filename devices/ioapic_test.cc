#include "devices/ioapic.h"

#include <array>
#include <thread>
#include <vector>

#include "devices/device_test_util.h"
#include "gtest/gtest.h"

namespace ionest {
namespace {

using testing::FakeMsiSink;
using testing::ReadN;
using testing::WriteN;

class IoapicTest : public ::testing::Test {
 protected:
  uint32_t ReadReg(uint8_t index) {
    WriteN(ioapic, 0x00, index, 1);
    return static_cast<uint32_t>(ReadN(ioapic, 0x10, 4));
  }
  void WriteReg(uint8_t index, uint32_t v) {
    WriteN(ioapic, 0x00, index, 1);
    WriteN(ioapic, 0x10, v, 4);
  }
  void WriteRte(unsigned pin, uint64_t rte) {
    WriteReg(static_cast<uint8_t>(0x10 + 2 * pin + 1), static_cast<uint32_t>(rte >> 32));
    WriteReg(static_cast<uint8_t>(0x10 + 2 * pin), static_cast<uint32_t>(rte));
  }
  uint64_t ReadRte(unsigned pin) {
    return ReadReg(static_cast<uint8_t>(0x10 + 2 * pin)) |
           uint64_t{ReadReg(static_cast<uint8_t>(0x10 + 2 * pin + 1))} << 32;
  }

  FakeMsiSink sink;
  Ioapic ioapic{sink, IoapicConfig{.id = 2, .source_id = 0xF0F8}};
};

TEST_F(IoapicTest, IdVersionArbitration) {
  EXPECT_EQ(ReadReg(0x00), 2u << 24);
  EXPECT_EQ(ReadReg(0x01), 0x00170020u);  // 24 entries, version 0x20
  WriteReg(0x01, 0);                      // read-only
  EXPECT_EQ(ReadReg(0x01), 0x00170020u);
  WriteReg(0x00, 0x0F000000);
  EXPECT_EQ(ReadReg(0x00), 0x0F000000u);
  EXPECT_EQ(ReadReg(0x02), 0x0F000000u);
  EXPECT_EQ(ReadReg(0x60), 0u);  // beyond the redirection table
  EXPECT_EQ(ReadN(ioapic, 0x00, 1), 0x60u);  // IOREGSEL reads back the last index
}

TEST_F(IoapicTest, RtesResetMaskedAndReadOnlyBitsStick) {
  for (unsigned pin = 0; pin < kIoapicPins; ++pin) EXPECT_EQ(ReadRte(pin), Ioapic::kRteMasked);
  WriteRte(3, ~uint64_t{0});
  const uint64_t rte = ReadRte(3);
  EXPECT_EQ(rte & (Ioapic::kRteRemoteIrr | Ioapic::kRteDeliveryStatus), 0u);
  EXPECT_EQ(rte & 0x0000'FFFF'FFFE'0000ull, 0u);  // reserved bits 47:17
  EXPECT_EQ(rte >> 48, 0xFFFFu);
}

TEST_F(IoapicTest, EdgeCompatibilityMsi) {
  WriteRte(4, 0x30 | (uint64_t{0x01} << 56));  // vector 0x30, fixed, physical, edge, dest 1
  ioapic.SetIrq(4, true);
  ioapic.SetIrq(4, true);  // no new edge
  ioapic.SetIrq(4, false);
  ASSERT_EQ(sink.sent().size(), 1u);
  const MsiMessage m = sink.sent()[0];
  EXPECT_EQ(m.address, 0xFEE01000u);
  EXPECT_EQ(m.data, 0x30u);
  EXPECT_EQ(m.requester_id, 0xF0F8);
  ioapic.Line(4).Pulse();
  EXPECT_EQ(sink.sent().size(), 2u);
}

TEST_F(IoapicTest, CompatibilityFieldsLogicalLowestPriorityLevel) {
  WriteRte(9, 0x41 | (1ull << 8) | Ioapic::kRteDestModeLogical | Ioapic::kRteLevel | (uint64_t{0x0F} << 56));
  ioapic.SetIrq(9, true);
  ASSERT_EQ(sink.sent().size(), 1u);
  EXPECT_EQ(sink.sent()[0].address, 0xFEE0F004u);
  EXPECT_EQ(sink.sent()[0].data, 0x41u | (1u << 8) | (1u << 15));
}

TEST_F(IoapicTest, MaskedEdgeIsLatchedAndDeliveredOnUnmask) {
  WriteRte(1, 0x31 | Ioapic::kRteMasked);
  ioapic.SetIrq(1, true);
  ioapic.SetIrq(1, false);
  EXPECT_TRUE(sink.sent().empty());
  WriteRte(1, 0x31);
  ASSERT_EQ(sink.sent().size(), 1u);
  WriteRte(1, 0x31);  // nothing pending any more
  EXPECT_EQ(sink.sent().size(), 1u);
}

TEST_F(IoapicTest, LevelRemoteIrrAndRedeliveryOnEoi) {
  WriteRte(10, 0x50 | Ioapic::kRteLevel);
  ioapic.SetIrq(10, true);
  ASSERT_EQ(sink.sent().size(), 1u);
  EXPECT_TRUE(ioapic.Rte(10) & Ioapic::kRteRemoteIrr);
  ioapic.SetIrq(10, true);  // still in service: no new message
  EXPECT_EQ(sink.sent().size(), 1u);
  ioapic.Eoi(0x51);  // other vector: no effect
  EXPECT_TRUE(ioapic.Rte(10) & Ioapic::kRteRemoteIrr);
  ioapic.Eoi(0x50);  // still asserted ⇒ re-delivered
  EXPECT_EQ(sink.sent().size(), 2u);
  EXPECT_TRUE(ioapic.Rte(10) & Ioapic::kRteRemoteIrr);
  ioapic.SetIrq(10, false);
  ioapic.Eoi(0x50);
  EXPECT_EQ(sink.sent().size(), 2u);
  EXPECT_FALSE(ioapic.Rte(10) & Ioapic::kRteRemoteIrr);
}

TEST_F(IoapicTest, EoiRegisterAtOffset0x40) {
  WriteRte(11, 0x60 | Ioapic::kRteLevel);
  ioapic.SetIrq(11, true);
  WriteN(ioapic, 0x40, 0x60, 4);
  EXPECT_EQ(sink.sent().size(), 2u);
}

TEST_F(IoapicTest, LevelMaskedWhileAssertedDeliversOnUnmask) {
  WriteRte(12, 0x70 | Ioapic::kRteLevel | Ioapic::kRteMasked);
  ioapic.SetIrq(12, true);
  EXPECT_TRUE(sink.sent().empty());
  WriteRte(12, 0x70 | Ioapic::kRteLevel);
  EXPECT_EQ(sink.sent().size(), 1u);
  // Switching to edge clears Remote IRR.
  WriteRte(12, 0x70);
  EXPECT_FALSE(ioapic.Rte(12) & Ioapic::kRteRemoteIrr);
}

TEST_F(IoapicTest, RemappableFormatMsi) {
  // Interrupt index 0x8123: index[14:0] = 0x0123 in RTE 63:49, index[15] in RTE bit 11.
  const uint64_t index = 0x8123;
  const uint64_t rte = 0x05 /*vector = pin*/ | Ioapic::kRteLevel | Ioapic::kRteRemapFormat |
                       ((index & 0x7FFF) << 49) | ((index >> 15) << 11);
  WriteRte(5, rte);
  ioapic.SetIrq(5, true);
  ASSERT_EQ(sink.sent().size(), 1u);
  const MsiMessage m = sink.sent()[0];
  EXPECT_EQ(m.address, 0xFEE00000u | (0x0123u << 5) | (1u << 4) | (1u << 3) | (1u << 2));
  EXPECT_EQ(m.data, 0u);
  EXPECT_EQ(m.requester_id, 0xF0F8);
  ioapic.Eoi(0x05);  // explicit EOI with the RTE vector (Linux IR: vector = pin)
  EXPECT_EQ(sink.sent().size(), 2u);
  ASSERT_TRUE(ioapic.ComposeMsi(5).has_value());
  EXPECT_EQ(ioapic.ComposeMsi(5)->address, m.address);
  EXPECT_FALSE(ioapic.ComposeMsi(kIoapicPins).has_value());
}

TEST_F(IoapicTest, RouteChangeListenerAndHostileAccesses) {
  std::vector<unsigned> changed;
  ioapic.SetRouteChangeListener([&](unsigned pin) { changed.push_back(pin); });
  WriteRte(7, 0x20);
  EXPECT_EQ(changed, (std::vector<unsigned>{7, 7}));
  WriteReg(0x01, 5);  // not an RTE
  EXPECT_EQ(changed.size(), 2u);
  // Out-of-range pins, odd offsets and sizes do nothing harmful.
  ioapic.SetIrq(24, true);
  ioapic.SetIrq(1000, true);
  uint8_t buf[64];
  for (uint64_t off = 0; off < 0x1000; off += 7) {
    ioapic.IoRead(off, buf, 64);
    ioapic.IoWrite(off, buf, 3);
  }
  ioapic.IoRead(~uint64_t{0} - 2, buf, 8);
  for (unsigned idx = 0; idx < 256; ++idx) WriteReg(static_cast<uint8_t>(idx), 0xFFFFFFFF);
  EXPECT_EQ(ReadReg(0x01), 0x00170020u);
}

TEST_F(IoapicTest, SubDwordWindowWriteMergesBytes) {
  WriteN(ioapic, 0x00, 0x10 + 2 * 6, 1);
  WriteN(ioapic, 0x10, 0x44, 1);  // only the vector byte; mask bit stays set
  EXPECT_EQ(ioapic.Rte(6), Ioapic::kRteMasked | 0x44);
}

}  // namespace
}  // namespace ionest

namespace ionest {
namespace {

// Edge pulses on distinct pins from several threads, with concurrent RTE reads and EOIs: every
// rising edge produces exactly one message.
TEST(IoapicConcurrencyTest, ConcurrentEdgesAreNeitherLostNorDuplicated) {
  testing::FakeMsiSink sink;
  Ioapic ioapic(sink);
  constexpr unsigned kThreads = 4;
  constexpr int kPulses = 2000;
  for (unsigned t = 0; t < kThreads; ++t) {
    testing::WriteN(ioapic, 0x00, 0x10 + 2 * t, 1);
    testing::WriteN(ioapic, 0x10, 0x40 + t, 4);  // vector 0x40+t, edge, unmasked
  }
  std::vector<std::thread> threads;
  for (unsigned t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kPulses; ++i) ioapic.Line(t).Pulse();
    });
  }
  threads.emplace_back([&] {
    for (int i = 0; i < kPulses; ++i) {
      ioapic.Eoi(static_cast<uint8_t>(i));
      (void)ioapic.Rte(i % kIoapicPins);
      (void)ioapic.ComposeMsi(i % kIoapicPins);
    }
  });
  for (auto& th : threads) th.join();
  std::array<int, kThreads> per_vector{};
  for (const MsiMessage& m : sink.sent()) per_vector.at((m.data & 0xFF) - 0x40)++;
  for (unsigned t = 0; t < kThreads; ++t) EXPECT_EQ(per_vector[t], kPulses) << t;
}

// A level pin asserted continuously with EOIs from another thread: Remote IRR keeps at most one
// message in flight, and every EOI while asserted yields exactly one re-delivery.
TEST(IoapicConcurrencyTest, LevelPinRedeliversOncePerEoi) {
  testing::FakeMsiSink sink;
  Ioapic ioapic(sink);
  testing::WriteN(ioapic, 0x00, 0x10 + 2 * 3, 1);
  testing::WriteN(ioapic, 0x10, 0x55 | Ioapic::kRteLevel, 4);
  ioapic.SetIrq(3, true);
  constexpr int kEois = 5000;
  std::thread asserter([&] {
    for (int i = 0; i < kEois; ++i) ioapic.SetIrq(3, true);  // re-assertions while in service are no-ops
  });
  for (int i = 0; i < kEois; ++i) ioapic.Eoi(0x55);
  asserter.join();
  EXPECT_EQ(sink.sent().size(), static_cast<size_t>(kEois + 1));
}

}  // namespace
}  // namespace ionest
