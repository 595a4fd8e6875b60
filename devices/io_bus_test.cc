#include "devices/io_bus.h"

#include <cstring>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace ionest {
namespace {

// Records accesses; reads return offset-derived bytes.
class RecordingDevice final : public IoDevice {
 public:
  struct Access {
    bool write;
    uint64_t offset;
    size_t size;
  };
  void IoRead(uint64_t offset, uint8_t* data, size_t size) override {
    log.push_back({false, offset, size});
    for (size_t i = 0; i < size; ++i) data[i] = static_cast<uint8_t>(0x10 + offset + i);
  }
  void IoWrite(uint64_t offset, const uint8_t* data, size_t size) override {
    log.push_back({true, offset, size});
    last_write.assign(data, data + size);
  }
  std::vector<Access> log;
  std::vector<uint8_t> last_write;
};

TEST(IoBusTest, DispatchesWithRelativeOffset) {
  IoBus bus("pio");
  RecordingDevice d;
  ASSERT_TRUE(bus.Register(0x3f8, 8, &d, "uart").ok());
  uint8_t buf[2];
  EXPECT_TRUE(bus.Read(0x3fa, buf, 2));
  ASSERT_EQ(d.log.size(), 1u);
  EXPECT_EQ(d.log[0].offset, 2u);
  EXPECT_EQ(buf[0], 0x12);
  EXPECT_EQ(buf[1], 0x13);
  const uint8_t w[1] = {0xab};
  EXPECT_TRUE(bus.Write(0x3ff, w, 1));
  EXPECT_EQ(d.log[1].offset, 7u);
  EXPECT_EQ(d.last_write, std::vector<uint8_t>{0xab});
}

TEST(IoBusTest, RejectsOverlapsOnBothSidesAndExactDuplicate) {
  IoBus bus("mmio");
  RecordingDevice a, b;
  ASSERT_TRUE(bus.Register(0x1000, 0x100, &a, "a").ok());
  EXPECT_EQ(bus.Register(0x10ff, 0x10, &b, "b").code(), absl::StatusCode::kAlreadyExists);  // tail overlap
  EXPECT_EQ(bus.Register(0x0ff0, 0x11, &b, "b").code(), absl::StatusCode::kAlreadyExists);  // head overlap
  EXPECT_EQ(bus.Register(0x1000, 0x100, &b, "b").code(), absl::StatusCode::kAlreadyExists);
  EXPECT_EQ(bus.Register(0x0, 0x10000, &b, "b").code(), absl::StatusCode::kAlreadyExists);  // encloses
  EXPECT_EQ(bus.Register(0x1010, 0x10, &b, "b").code(), absl::StatusCode::kAlreadyExists);  // enclosed
  EXPECT_TRUE(bus.Register(0x1100, 0x10, &b, "b").ok());  // adjacent above
  EXPECT_TRUE(bus.Register(0x0ff0, 0x10, &b, "c").ok());  // adjacent below
}

TEST(IoBusTest, RejectsZeroLengthWrapAndNullDevice) {
  IoBus bus("mmio");
  RecordingDevice d;
  EXPECT_EQ(bus.Register(0x1000, 0, &d, "zero").code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(bus.Register(~uint64_t{0} - 0xf, 0x20, &d, "wrap").code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(bus.Register(0x1000, 0x10, nullptr, "null").code(), absl::StatusCode::kInvalidArgument);
  // Ending exactly at 2^64 wraps base+len to 0 and is rejected by the current contract.
  EXPECT_EQ(bus.Register(~uint64_t{0} - 0xf, 0x10, &d, "top").code(), absl::StatusCode::kInvalidArgument);
  // Highest representable range that does not wrap.
  EXPECT_TRUE(bus.Register(~uint64_t{0} - 0xf, 0xf, &d, "top").ok());
  uint8_t b;
  EXPECT_TRUE(bus.Read(~uint64_t{0} - 1, &b, 1));
  EXPECT_FALSE(bus.Read(~uint64_t{0}, &b, 1));
}

TEST(IoBusTest, UnhandledAccessReadsAllOnesAndIsCounted) {
  IoBus bus("pio");
  RecordingDevice d;
  ASSERT_TRUE(bus.Register(0x100, 4, &d, "d").ok());
  uint8_t buf[4] = {0, 0, 0, 0};
  EXPECT_FALSE(bus.Read(0x104, buf, 4));  // one past the end
  EXPECT_EQ(buf[0], 0xff);
  EXPECT_EQ(buf[3], 0xff);
  EXPECT_FALSE(bus.Read(0xff, buf, 1));  // one before
  const uint8_t w[1] = {1};
  EXPECT_FALSE(bus.Write(0x200, w, 1));
  EXPECT_EQ(bus.unhandled_accesses(), 3u);
  EXPECT_TRUE(d.log.empty());
}

TEST(IoBusTest, TruncatesAccessAtDeviceEnd) {
  IoBus bus("mmio");
  RecordingDevice d;
  ASSERT_TRUE(bus.Register(0x1000, 4, &d, "d").ok());
  uint8_t buf[8];
  EXPECT_TRUE(bus.Read(0x1002, buf, 8));
  ASSERT_EQ(d.log.size(), 1u);
  EXPECT_EQ(d.log[0].size, 2u);  // only the two bytes inside the device
  EXPECT_EQ(buf[0], 0x12);
  EXPECT_EQ(buf[1], 0x13);
  EXPECT_EQ(buf[2], 0xff);  // rest stays all-ones
  EXPECT_EQ(buf[7], 0xff);
  const uint8_t w[4] = {1, 2, 3, 4};
  EXPECT_TRUE(bus.Write(0x1003, w, 4));
  EXPECT_EQ(d.log[1].size, 1u);
  EXPECT_EQ(d.last_write, std::vector<uint8_t>{1});
}

TEST(IoBusTest, UnregisterRemovesAndAllowsReuse) {
  IoBus bus("mmio");
  RecordingDevice a, b;
  ASSERT_TRUE(bus.Register(0x1000, 0x10, &a, "a").ok());
  EXPECT_EQ(bus.Unregister(0x1004).code(), absl::StatusCode::kNotFound);  // must be the base
  ASSERT_TRUE(bus.Unregister(0x1000).ok());
  uint8_t v;
  EXPECT_FALSE(bus.Read(0x1000, &v, 1));
  EXPECT_TRUE(bus.Register(0x1008, 0x10, &b, "b").ok());
  EXPECT_TRUE(bus.Read(0x1010, &v, 1));
  EXPECT_EQ(b.log.size(), 1u);
  EXPECT_TRUE(a.log.empty());
}

}  // namespace
}  // namespace ionest
