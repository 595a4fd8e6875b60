#include "devices/power_control.h"

#include <vector>

#include "devices/device_test_util.h"
#include "gtest/gtest.h"

namespace ionest {
namespace {

using testing::FakeIrqLine;
using testing::ReadN;
using testing::WriteN;
using namespace acpi_pm;

class PowerControlTest : public ::testing::Test {
 protected:
  PowerControlTest() { EXPECT_TRUE(pc.RegisterOn(pio).ok()); }
  uint64_t In(uint16_t port, size_t size) {
    uint8_t buf[4] = {0xff, 0xff, 0xff, 0xff};
    EXPECT_TRUE(pio.Read(port, buf, size));
    uint64_t v = 0;
    for (size_t i = 0; i < size; ++i) v |= uint64_t{buf[i]} << (8 * i);
    return v;
  }
  void Out(uint16_t port, uint64_t v, size_t size) {
    uint8_t buf[4];
    for (size_t i = 0; i < size; ++i) buf[i] = static_cast<uint8_t>(v >> (8 * i));
    EXPECT_TRUE(pio.Write(port, buf, size));
  }

  std::vector<ShutdownKind> events;
  FakeIrqLine sci;
  uint64_t now_ns = 1000;
  IoBus pio{"pio"};
  PowerControl pc{[this](ShutdownKind k) { events.push_back(k); }, sci, [this] { return now_ns; }};
};

TEST_F(PowerControlTest, S5PowersOffOnlyWithSlpEn) {
  EXPECT_EQ(In(kPm1aCntPort, 2) & kPm1CntSciEn, kPm1CntSciEn);
  const uint16_t typ = uint16_t{kSlpTypS5} << kPm1CntSlpTypShift;
  Out(kPm1aCntPort, typ, 2);  // SLP_TYP only (ACPICA writes it first)
  EXPECT_TRUE(events.empty());
  EXPECT_EQ(In(kPm1aCntPort, 2) & kPm1CntSlpTypMask, typ);
  Out(kPm1aCntPort, typ | kPm1CntSlpEn, 2);
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0], ShutdownKind::kPowerOff);
  EXPECT_EQ(In(kPm1aCntPort, 2) & kPm1CntSlpEn, 0u);  // write-only bit reads 0
}

TEST_F(PowerControlTest, OtherSleepStatesAreIgnored) {
  Out(kPm1aCntPort, (1u << kPm1CntSlpTypShift) | kPm1CntSlpEn, 2);  // S1-like
  Out(kPm1aCntPort + 1, ((0u << kPm1CntSlpTypShift) | kPm1CntSlpEn) >> 8, 1);
  EXPECT_TRUE(events.empty());
  // A byte write to the high half carrying SLP_TYP=S5 + SLP_EN also works.
  Out(kPm1aCntPort + 1, ((uint16_t{kSlpTypS5} << kPm1CntSlpTypShift) | kPm1CntSlpEn) >> 8, 1);
  EXPECT_EQ(events.size(), 1u);
}

TEST_F(PowerControlTest, PowerButtonStatusIsRw1cAndDrivesSci) {
  pc.pm().PressPowerButton();
  EXPECT_EQ(In(kPm1aEvtPort, 2) & kPm1StsPwrBtn, kPm1StsPwrBtn);
  EXPECT_FALSE(sci.level());  // not enabled
  Out(kPm1aEvtPort + 2, kPm1StsPwrBtn, 2);  // PM1_EN.PWRBTN_EN
  EXPECT_TRUE(sci.level());
  Out(kPm1aEvtPort, 0, 2);  // writing 0 clears nothing
  EXPECT_TRUE(sci.level());
  Out(kPm1aEvtPort, kPm1StsPwrBtn, 2);
  EXPECT_FALSE(sci.level());
  EXPECT_EQ(In(kPm1aEvtPort, 2) & kPm1StsPwrBtn, 0u);
  EXPECT_EQ(In(kPm1aEvtPort + 2, 2), kPm1StsPwrBtn);
}

// Linux installs a global-lock handler by setting PM1_EN.GBL_EN and reading it back.
TEST_F(PowerControlTest, GlobalLockAndRtcEnablesReadBack) {
  Out(kPm1aEvtPort + 2, kPm1StsGbl | kPm1StsRtc, 2);
  EXPECT_EQ(In(kPm1aEvtPort + 2, 2), kPm1StsGbl | kPm1StsRtc);
  EXPECT_FALSE(sci.level());  // no status bit is set, so no SCI
  Out(kPm1aEvtPort + 2, 0, 2);
  EXPECT_EQ(In(kPm1aEvtPort + 2, 2), 0u);
}

TEST_F(PowerControlTest, PmTimerCountsAt3579545HzAndWraps24Bits) {
  const uint32_t t0 = static_cast<uint32_t>(In(kPmTmrPort, 4));
  EXPECT_EQ(t0, 0u);
  now_ns += 1000000000;  // one second
  EXPECT_EQ(In(kPmTmrPort, 4), kPmTimerHz & 0xFFFFFFu);
  now_ns += 5000000000ull;
  EXPECT_EQ(In(kPmTmrPort, 4), (6ull * kPmTimerHz) & 0xFFFFFFu);
  Out(kPmTmrPort, 0, 4);  // read-only
  EXPECT_EQ(In(kPmTmrPort, 4), (6ull * kPmTimerHz) & 0xFFFFFFu);
}

TEST_F(PowerControlTest, I8042ResetCommandAndStatus) {
  EXPECT_EQ(In(kI8042CommandPort, 1) & 0x03, 0u);  // input and output buffers empty
  EXPECT_EQ(In(kI8042CommandPort, 1) & 0x10, 0x10u);  // keyboard not inhibited (no keylock)
  Out(kI8042CommandPort, 0xAA, 1);                 // self test
  EXPECT_EQ(In(kI8042CommandPort, 1) & 0x01, 1u);
  EXPECT_EQ(In(kI8042DataPort, 1), 0x55u);
  EXPECT_EQ(In(kI8042CommandPort, 1) & 0x01, 0u);
  Out(kI8042CommandPort, 0x60, 1);  // write command byte
  Out(kI8042DataPort, 0x07, 1);
  Out(kI8042CommandPort, 0x20, 1);
  EXPECT_EQ(In(kI8042DataPort, 1), 0x07u);
  EXPECT_TRUE(events.empty());
  Out(kResetRegPort, kResetValue, 1);
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0], ShutdownKind::kReset);
  Out(kI8042CommandPort, 0xD1, 1);  // write output port with reset bit low
  Out(kI8042DataPort, 0x02, 1);
  ASSERT_EQ(events.size(), 2u);
  Out(kI8042CommandPort, 0xFF, 1);  // pulse nothing
  Out(kI8042CommandPort, 0xD1, 1);
  Out(kI8042DataPort, 0x03, 1);
  EXPECT_EQ(events.size(), 2u);
}

TEST_F(PowerControlTest, I8042OutputQueueIsBounded) {
  for (int i = 0; i < 1000; ++i) Out(kI8042CommandPort, 0xAA, 1);
  int n = 0;
  while (In(kI8042CommandPort, 1) & 1) {
    In(kI8042DataPort, 1);
    ASSERT_LT(++n, 100);
  }
  EXPECT_GT(n, 0);
}

}  // namespace
}  // namespace ionest
