#include "devices/cmos_rtc.h"

#include "devices/device_test_util.h"
#include "gtest/gtest.h"

namespace ionest {
namespace {

using testing::Read8;
using testing::Write8;

constexpr int64_t kSec = 1000000000;
// 2024-02-29 23:59:58 UTC (a Thursday), a leap day one second-pair before midnight.
constexpr int64_t kLeapDayNs = 1709251198 * kSec;

class CmosRtcTest : public ::testing::Test {
 protected:
  uint8_t Get(uint8_t index) {
    Write8(rtc, 0, index);
    return Read8(rtc, 1);
  }
  void Set(uint8_t index, uint8_t v) {
    Write8(rtc, 0, index);
    Write8(rtc, 1, v);
  }
  int64_t now = kLeapDayNs;
  CmosRtc rtc{[this] { return now; }};
};

TEST_F(CmosRtcTest, ReadsHostTimeInBcd) {
  EXPECT_EQ(Get(0x00), 0x58);
  EXPECT_EQ(Get(0x02), 0x59);
  EXPECT_EQ(Get(0x04), 0x23);
  EXPECT_EQ(Get(0x06), 0x05);  // Thursday (1 = Sunday)
  EXPECT_EQ(Get(0x07), 0x29);
  EXPECT_EQ(Get(0x08), 0x02);
  EXPECT_EQ(Get(0x09), 0x24);
  EXPECT_EQ(Get(kCmosCentury), 0x20);
  now += 2 * kSec;  // rolls over to March 1st
  EXPECT_EQ(Get(0x07), 0x01);
  EXPECT_EQ(Get(0x08), 0x03);
  EXPECT_EQ(Get(0x04), 0x00);
}

TEST_F(CmosRtcTest, BinaryAnd12HourModes) {
  Set(0x0B, 0x04);  // binary, 12-hour
  EXPECT_EQ(Get(0x00), 58);
  EXPECT_EQ(Get(0x04), 0x80 | 11);  // 11 PM
  EXPECT_EQ(Get(0x09), 24);
  now += 2 * kSec;  // 00:00 ⇒ 12 AM
  EXPECT_EQ(Get(0x04), 12);
  Set(0x0B, 0x00);  // BCD, 12-hour
  EXPECT_EQ(Get(0x04), 0x12);
}

TEST_F(CmosRtcTest, StatusRegisters) {
  EXPECT_EQ(Get(0x0A), 0x26);
  EXPECT_EQ(Get(0x0B), 0x02);
  EXPECT_EQ(Get(0x0C), 0x00);
  EXPECT_EQ(Get(0x0D), 0x80);
  Set(0x0D, 0x00);  // read-only
  EXPECT_EQ(Get(0x0D), 0x80);
  Set(0x0A, 0xFF);  // UIP is read-only
  now = kLeapDayNs + 500000000;
  EXPECT_EQ(Get(0x0A), 0x7F);
  now = kLeapDayNs + kSec - 100000;  // within 244 µs of the update
  EXPECT_EQ(Get(0x0A), 0xFF);
}

TEST_F(CmosRtcTest, GuestSetsTimeWithSetBitAndItKeepsCounting) {
  Set(0x0B, 0x82);  // SET, 24h, BCD
  now += 10 * kSec;  // frozen while SET
  EXPECT_EQ(Get(0x00), 0x58);
  Set(0x09, 0x99);  // 2099-12-31 (Feb 31 would be invalid while editing; no normalization until SET clears)
  Set(0x08, 0x12);
  Set(0x07, 0x31);
  Set(0x04, 0x10);
  Set(0x02, 0x20);
  Set(0x00, 0x30);
  EXPECT_EQ(Get(0x07), 0x31);
  Set(0x0B, 0x02);  // clear SET: time runs from 2099-12-31 10:20:30
  now += 5 * kSec;
  EXPECT_EQ(Get(0x00), 0x35);
  EXPECT_EQ(Get(0x04), 0x10);
  EXPECT_EQ(Get(0x09), 0x99);
  EXPECT_EQ(Get(kCmosCentury), 0x20);
  EXPECT_EQ(Get(0x06), 0x05);  // 2099-12-31 is a Thursday
}

TEST_F(CmosRtcTest, DirectWriteWithoutSetAdjustsOffset) {
  Set(0x02, 0x00);  // minutes := 0 ⇒ 23:00:58
  EXPECT_EQ(Get(0x02), 0x00);
  EXPECT_EQ(Get(0x04), 0x23);
  now += kSec;
  EXPECT_EQ(Get(0x00), 0x59);
}

TEST_F(CmosRtcTest, RamIndexNmiBitAndGarbage) {
  Set(0x40, 0xAB);
  EXPECT_EQ(Get(0x40), 0xAB);
  Write8(rtc, 0, 0x80 | 0x40);  // NMI disable + index
  EXPECT_TRUE(rtc.nmi_disabled());
  EXPECT_EQ(Read8(rtc, 1), 0xAB);
  rtc.SetRamByte(0x10, 0x33);
  EXPECT_EQ(Get(0x10), 0x33);
  rtc.SetRamByte(0x00, 0x33);  // time registers are not RAM
  EXPECT_EQ(Get(0x00), 0x58);
  // Garbage BCD and out-of-range values never crash and leave a valid clock.
  for (int v = 0; v < 256; ++v) {
    for (uint8_t idx : {0x00, 0x02, 0x04, 0x07, 0x08, 0x09, 0x32, 0x0B}) Set(idx, static_cast<uint8_t>(v));
  }
  Set(0x0B, 0x02);
  const uint8_t mon = Get(0x08);
  EXPECT_GE(mon, 0x01);
  EXPECT_LE(mon, 0x12);
  uint8_t buf[8] = {};
  rtc.IoRead(1, buf, 8);  // wide access past the window
  rtc.IoWrite(5, buf, 8);
}

}  // namespace
}  // namespace ionest
