#include "devices/virtqueue.h"

#include <memory>
#include <functional>
#include <string>

#include "devices/virtqueue_test_util.h"
#include "gtest/gtest.h"

namespace ionest {
namespace {

using testing::FakeDriverRing;

constexpr uint64_t kRing = 0x10000;
constexpr uint64_t kData = 0x40000;
constexpr uint64_t kMemSize = 1 << 20;

class VirtqueueTest : public ::testing::Test {
 protected:
  VirtqueueTest() : mem(*GuestMemory::Create({{0, kMemSize}})), dma(*mem), ring(*mem, kRing, 8) {}
  SplitVirtqueue Queue() { return *SplitVirtqueue::Create(dma, ring.layout()); }

  std::unique_ptr<GuestMemory> mem;
  IdentityDmaSpace dma;
  FakeDriverRing ring;
};

TEST_F(VirtqueueTest, CreateValidatesLayout) {
  VirtqueueLayout l = ring.layout();
  l.size = 0;
  EXPECT_FALSE(SplitVirtqueue::Create(dma, l).ok());
  l.size = 6;
  EXPECT_FALSE(SplitVirtqueue::Create(dma, l).ok());
  l = ring.layout();
  l.desc += 8;
  EXPECT_FALSE(SplitVirtqueue::Create(dma, l).ok());
  l = ring.layout();
  l.used = ~uint64_t{0} - 15;
  EXPECT_FALSE(SplitVirtqueue::Create(dma, l).ok());
  EXPECT_TRUE(SplitVirtqueue::Create(dma, ring.layout()).ok());
}

TEST_F(VirtqueueTest, PopGatherScatterPush) {
  SplitVirtqueue q = Queue();
  EXPECT_FALSE(q.Pop()->has_value());  // nothing available
  ASSERT_TRUE(mem->Write(kData, "hello ", 6).ok());
  ASSERT_TRUE(mem->Write(kData + 0x100, "world", 5).ok());
  ring.AddChain({{kData, 6, false}, {kData + 0x100, 5, false}, {kData + 0x200, 4, true}, {kData + 0x300, 8, true}}, 2);
  auto c = q.Pop();
  ASSERT_TRUE(c.ok()) << c.status();
  ASSERT_TRUE(c->has_value());
  const VirtqChain& chain = **c;
  EXPECT_EQ(chain.head, 2);
  EXPECT_EQ(chain.readable_bytes, 11u);
  EXPECT_EQ(chain.writable_bytes, 12u);
  char buf[12] = {};
  ASSERT_TRUE(q.ReadFrom(chain, 0, buf, 11).ok());
  EXPECT_EQ(std::string(buf, 11), "hello world");
  ASSERT_TRUE(q.ReadFrom(chain, 4, buf, 4).ok());  // spans both buffers
  EXPECT_EQ(std::string(buf, 4), "o wo");
  EXPECT_FALSE(q.ReadFrom(chain, 8, buf, 4).ok());  // past the end
  ASSERT_TRUE(q.WriteTo(chain, 2, "ABCDEF", 6).ok());
  char out[8] = {};
  ASSERT_TRUE(mem->Read(kData + 0x202, out, 2).ok());
  ASSERT_TRUE(mem->Read(kData + 0x300, out + 2, 4).ok());
  EXPECT_EQ(std::string(out, 6), "ABCDEF");
  EXPECT_FALSE(q.WriteTo(chain, 10, "xyz", 3).ok());
  ASSERT_TRUE(q.Push(chain.head, 12).ok());
  EXPECT_EQ(ring.UsedIdx(), 1);
  EXPECT_EQ(ring.UsedElem(0), (std::pair<uint32_t, uint32_t>{2, 12}));
  EXPECT_TRUE(q.TakeNotification());
  EXPECT_FALSE(q.TakeNotification());  // nothing new
  EXPECT_FALSE(q.Pop()->has_value());
}

TEST_F(VirtqueueTest, NoInterruptFlagSuppressesNotification) {
  SplitVirtqueue q = Queue();
  ring.AddChain({{kData, 4, true}}, 0);
  ring.SetAvailFlags(SplitVirtqueue::kAvailFlagNoInterrupt);
  auto c = q.Pop();
  ASSERT_TRUE(c.ok() && c->has_value());
  ASSERT_TRUE(q.Push((*c)->head, 0).ok());
  EXPECT_FALSE(q.TakeNotification());
}

TEST_F(VirtqueueTest, IndicesWrapAround16Bits) {
  SplitVirtqueue q = Queue();
  // Drive the avail/used indices across 65535 → 0.
  for (int i = 0; i < 70000; ++i) {
    ring.AddChain({{kData, 4, true}}, static_cast<uint16_t>(i % 8));
    auto c = q.Pop();
    ASSERT_TRUE(c.ok() && c->has_value()) << i;
    ASSERT_EQ((*c)->head, i % 8);
    ASSERT_TRUE(q.Push((*c)->head, 4).ok());
  }
  EXPECT_EQ(ring.UsedIdx(), static_cast<uint16_t>(70000));
}

TEST_F(VirtqueueTest, IndirectDescriptors) {
  SplitVirtqueue q = Queue();
  constexpr uint64_t kTable = 0x30000;
  ring.WriteDesc(kTable, 0, kData, 3, SplitVirtqueue::kDescFlagNext, 2);  // out of order is fine
  ring.WriteDesc(kTable, 2, kData + 0x100, 5, SplitVirtqueue::kDescFlagWrite, 0);
  ring.WriteDesc(ring.layout().desc, 1, kTable, 3 * 16, SplitVirtqueue::kDescFlagIndirect, 0);
  ring.Publish(1);
  auto c = q.Pop();
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ((*c)->head, 1);
  EXPECT_EQ((*c)->readable_bytes, 3u);
  EXPECT_EQ((*c)->writable_bytes, 5u);
}

struct MalformedCase {
  std::string name;
  std::string expected_error;
  std::function<void(FakeDriverRing&)> setup;
};


TEST_F(VirtqueueTest, MalformedRingsAreRejected) {
  const uint64_t desc = ring.layout().desc;
  constexpr uint64_t kTable = 0x30000;
  const std::vector<MalformedCase> cases = {
      {"loop", "loops or exceeds", [&](FakeDriverRing& r) {
         r.WriteDesc(desc, 0, kData, 4, SplitVirtqueue::kDescFlagNext, 1);
         r.WriteDesc(desc, 1, kData, 4, SplitVirtqueue::kDescFlagNext, 0);
         r.Publish(0);
       }},
      {"self loop", "loops or exceeds", [&](FakeDriverRing& r) {
         r.WriteDesc(desc, 3, kData, 4, SplitVirtqueue::kDescFlagNext, 3);
         r.Publish(3);
       }},
      {"head out of range", "head 8 >=", [&](FakeDriverRing& r) { r.Publish(8); }},
      {"head way out of range", "head 65535", [&](FakeDriverRing& r) { r.Publish(0xFFFF); }},
      {"next out of range", "next index out of range", [&](FakeDriverRing& r) {
         r.WriteDesc(desc, 0, kData, 4, SplitVirtqueue::kDescFlagNext, 9);
         r.Publish(0);
       }},
      {"avail idx too far ahead", "runs 9 entries ahead", [&](FakeDriverRing& r) { r.SetAvailIdx(9); }},
      {"huge lengths", "longer than the device limit", [&](FakeDriverRing& r) {
         for (uint16_t i = 0; i < 8; ++i)
           r.WriteDesc(desc, i, 0, 0xFFFFFFFF, i < 7 ? SplitVirtqueue::kDescFlagNext : 0, static_cast<uint16_t>(i + 1));
         r.Publish(0);
       }},
      {"buffer wraps address space", "wraps the address space", [&](FakeDriverRing& r) {
         r.WriteDesc(desc, 0, ~uint64_t{0} - 10, 100, 0, 0);
         r.Publish(0);
       }},
      {"readable after writable", "readable descriptor after writable", [&](FakeDriverRing& r) {
         r.WriteDesc(desc, 0, kData, 4, SplitVirtqueue::kDescFlagNext | SplitVirtqueue::kDescFlagWrite, 1);
         r.WriteDesc(desc, 1, kData, 4, 0, 0);
         r.Publish(0);
       }},
      {"indirect with next", "indirect descriptor with NEXT", [&](FakeDriverRing& r) {
         r.WriteDesc(desc, 0, kTable, 16, SplitVirtqueue::kDescFlagIndirect | SplitVirtqueue::kDescFlagNext, 1);
         r.Publish(0);
       }},
      {"indirect length not multiple of 16", "bad indirect table length 17", [&](FakeDriverRing& r) {
         r.WriteDesc(desc, 0, kTable, 17, SplitVirtqueue::kDescFlagIndirect, 0);
         r.Publish(0);
       }},
      {"indirect zero length", "bad indirect table length 0", [&](FakeDriverRing& r) {
         r.WriteDesc(desc, 0, kTable, 0, SplitVirtqueue::kDescFlagIndirect, 0);
         r.Publish(0);
       }},
      {"indirect huge table", "bad indirect table length", [&](FakeDriverRing& r) {
         r.WriteDesc(desc, 0, kTable, 0xFFFFFFF0, SplitVirtqueue::kDescFlagIndirect, 0);
         r.Publish(0);
       }},
      {"nested indirect", "nested indirect", [&](FakeDriverRing& r) {
         r.WriteDesc(kTable, 0, kTable, 16, SplitVirtqueue::kDescFlagIndirect, 0);
         r.WriteDesc(desc, 0, kTable, 16, SplitVirtqueue::kDescFlagIndirect, 0);
         r.Publish(0);
       }},
      {"indirect loop", "indirect descriptor chain loops", [&](FakeDriverRing& r) {
         r.WriteDesc(kTable, 0, kData, 4, SplitVirtqueue::kDescFlagNext, 1);
         r.WriteDesc(kTable, 1, kData, 4, SplitVirtqueue::kDescFlagNext, 0);
         r.WriteDesc(desc, 0, kTable, 32, SplitVirtqueue::kDescFlagIndirect, 0);
         r.Publish(0);
       }},
      {"indirect next out of range", "indirect next index out of range", [&](FakeDriverRing& r) {
         r.WriteDesc(kTable, 0, kData, 4, SplitVirtqueue::kDescFlagNext, 5);
         r.WriteDesc(desc, 0, kTable, 32, SplitVirtqueue::kDescFlagIndirect, 0);
         r.Publish(0);
       }},
      {"indirect table outside memory", "outside guest RAM", [&](FakeDriverRing& r) {
         r.WriteDesc(desc, 0, kMemSize + 0x1000, 32, SplitVirtqueue::kDescFlagIndirect, 0);
         r.Publish(0);
       }},
  };
  for (const MalformedCase& c : cases) {
    auto m = GuestMemory::Create({{0, kMemSize}});
    ASSERT_TRUE(m.ok());
    IdentityDmaSpace d(**m);
    FakeDriverRing r(**m, kRing, 8);
    c.setup(r);
    auto q = SplitVirtqueue::Create(d, r.layout());
    ASSERT_TRUE(q.ok());
    auto popped = q->Pop();
    ASSERT_FALSE(popped.ok()) << c.name;
    EXPECT_NE(popped.status().message().find(c.expected_error), std::string::npos)
        << c.name << ": " << popped.status();
  }
}

TEST_F(VirtqueueTest, RingOutsideGuestMemoryFailsCleanly) {
  VirtqueueLayout l = ring.layout();
  l.avail = kMemSize + 0x2000;
  auto q = SplitVirtqueue::Create(dma, l);
  ASSERT_TRUE(q.ok());
  EXPECT_FALSE(q->Pop().ok());
  l = ring.layout();
  l.used = kMemSize + 0x2000;
  auto q2 = SplitVirtqueue::Create(dma, l);
  ASSERT_TRUE(q2.ok());
  ring.AddChain({{kData, 4, true}}, 0);
  auto c = q2->Pop();
  ASSERT_TRUE(c.ok() && c->has_value());
  EXPECT_FALSE(q2->Push(0, 4).ok());
}

TEST_F(VirtqueueTest, DataBufferOutsideMemoryFailsOnAccessNotOnPop) {
  SplitVirtqueue q = Queue();
  ring.AddChain({{kMemSize - 2, 4, false}}, 0);
  auto c = q.Pop();
  ASSERT_TRUE(c.ok() && c->has_value());
  uint8_t buf[4];
  EXPECT_FALSE(q.ReadFrom(**c, 0, buf, 4).ok());
}

}  // namespace
}  // namespace ionest
