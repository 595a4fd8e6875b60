#include "vmm/exit_dispatch.h"

#include <cstring>
#include <vector>

#include "gtest/gtest.h"

namespace ionest {
namespace {

// Records accesses; reads return offset-derived bytes.
class RecordingDevice final : public IoDevice {
 public:
  void IoRead(uint64_t offset, uint8_t* data, size_t size) override {
    reads.push_back({offset, size});
    for (size_t i = 0; i < size; ++i) data[i] = static_cast<uint8_t>(0x10 + offset + i);
  }
  void IoWrite(uint64_t offset, const uint8_t* data, size_t size) override {
    uint64_t v = 0;
    std::memcpy(&v, data, size);
    writes.push_back({offset, size, v});
  }
  struct R { uint64_t offset; size_t size; };
  struct W { uint64_t offset; size_t size; uint64_t value; };
  std::vector<R> reads;
  std::vector<W> writes;
};

struct FakeRun {
  static constexpr size_t kSize = 8192;
  FakeRun() : buf(kSize / 8, 0) {}
  kvm_run& run() { return *reinterpret_cast<kvm_run*>(buf.data()); }
  uint8_t* at(size_t off) { return reinterpret_cast<uint8_t*>(buf.data()) + off; }
  std::vector<uint64_t> buf;
};

TEST(ExitDispatchTest, PortOutAndStringIn) {
  IoBus pio("pio");
  RecordingDevice dev;
  ASSERT_TRUE(pio.Register(0x3f8, 8, &dev, "uart").ok());
  FakeRun f;
  kvm_run& r = f.run();
  r.exit_reason = KVM_EXIT_IO;
  r.io.direction = KVM_EXIT_IO_OUT;
  r.io.size = 1;
  r.io.port = 0x3f8;
  r.io.count = 1;
  r.io.data_offset = 4096;
  *f.at(4096) = 'A';
  ASSERT_TRUE(DispatchPortIo(r, FakeRun::kSize, pio).ok());
  ASSERT_EQ(dev.writes.size(), 1u);
  EXPECT_EQ(dev.writes[0].offset, 0u);
  EXPECT_EQ(dev.writes[0].value, 'A');

  // rep insw: 3 x 2 bytes from port 0x3fd.
  r.io.direction = KVM_EXIT_IO_IN;
  r.io.size = 2;
  r.io.port = 0x3fd;
  r.io.count = 3;
  ASSERT_TRUE(DispatchPortIo(r, FakeRun::kSize, pio).ok());
  EXPECT_EQ(dev.reads.size(), 3u);
  EXPECT_EQ(*f.at(4096), 0x15);
  EXPECT_EQ(*f.at(4096 + 5), 0x16);

  // Unclaimed port reads all-ones.
  r.io.port = 0x80;
  r.io.count = 1;
  r.io.size = 4;
  ASSERT_TRUE(DispatchPortIo(r, FakeRun::kSize, pio).ok());
  uint32_t v;
  std::memcpy(&v, f.at(4096), 4);
  EXPECT_EQ(v, 0xffffffffu);
}

TEST(ExitDispatchTest, MalformedPortIoIsRejected) {
  IoBus pio("pio");
  FakeRun f;
  kvm_run& r = f.run();
  r.io.size = 3;
  r.io.count = 1;
  r.io.data_offset = 4096;
  EXPECT_FALSE(DispatchPortIo(r, FakeRun::kSize, pio).ok());
  r.io.size = 4;
  r.io.count = 2000;  // 8000 bytes past offset 4096
  EXPECT_FALSE(DispatchPortIo(r, FakeRun::kSize, pio).ok());
  r.io.count = 1;
  r.io.data_offset = 0xfffffff0;
  EXPECT_FALSE(DispatchPortIo(r, FakeRun::kSize, pio).ok());
}

TEST(ExitDispatchTest, MmioReadWrite) {
  IoBus mmio("mmio");
  RecordingDevice dev;
  ASSERT_TRUE(mmio.Register(0xfec00000, 0x1000, &dev, "ioapic").ok());
  FakeRun f;
  kvm_run& r = f.run();
  r.exit_reason = KVM_EXIT_MMIO;
  r.mmio.phys_addr = 0xfec00010;
  r.mmio.len = 4;
  r.mmio.is_write = 1;
  uint32_t val = 0x12345678;
  std::memcpy(r.mmio.data, &val, 4);
  ASSERT_TRUE(DispatchMmio(r, mmio).ok());
  ASSERT_EQ(dev.writes.size(), 1u);
  EXPECT_EQ(dev.writes[0].offset, 0x10u);
  EXPECT_EQ(dev.writes[0].value, 0x12345678u);
  r.mmio.is_write = 0;
  r.mmio.len = 8;
  ASSERT_TRUE(DispatchMmio(r, mmio).ok());
  EXPECT_EQ(r.mmio.data[0], 0x20);
  EXPECT_EQ(r.mmio.data[7], 0x27);
  // Nothing there: all-ones.
  r.mmio.phys_addr = 0xd0000000;
  r.mmio.len = 2;
  ASSERT_TRUE(DispatchMmio(r, mmio).ok());
  EXPECT_EQ(r.mmio.data[0], 0xff);
  EXPECT_EQ(r.mmio.data[1], 0xff);
  r.mmio.len = 9;
  EXPECT_FALSE(DispatchMmio(r, mmio).ok());
  r.mmio.len = 0;
  EXPECT_FALSE(DispatchMmio(r, mmio).ok());
}

}  // namespace
}  // namespace ionest
