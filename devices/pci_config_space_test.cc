#include "devices/pci_config_space.h"

#include "gtest/gtest.h"

namespace ionest {
namespace {

using namespace pci;

uint32_t GuestRead32(const PciConfigSpace& c, uint64_t off) {
  uint8_t b[4];
  c.GuestRead(off, b, 4);
  return b[0] | b[1] << 8 | b[2] << 16 | uint32_t{b[3]} << 24;
}
void GuestWrite32(PciConfigSpace& c, uint64_t off, uint32_t v) {
  const uint8_t b[4] = {static_cast<uint8_t>(v), static_cast<uint8_t>(v >> 8), static_cast<uint8_t>(v >> 16),
                        static_cast<uint8_t>(v >> 24)};
  c.GuestWrite(off, b, 4);
}

TEST(PciConfigSpaceTest, WritableReadOnlyAndRw1cMasks) {
  PciConfigSpace c;
  c.Set32(0x40, 0xAAAA5555);
  c.SetMasks(0x40, 4, /*writable=*/0x0000FFFF, /*rw1c=*/0xFF000000);
  GuestWrite32(c, 0x40, 0x12341234);
  // Low half writable, bits 23:16 read-only, top byte RW1C: 0xAA & ~0x12 = 0xA8.
  EXPECT_EQ(GuestRead32(c, 0x40), 0xA8AA1234u);
  GuestWrite32(c, 0x40, 0xFF000000);
  EXPECT_EQ(GuestRead32(c, 0x40), 0x00AA0000u | 0x0000u);
  EXPECT_EQ(c.Get32(0x44), 0u);
  GuestWrite32(c, 0x44, 0xFFFFFFFF);  // no masks: read-only
  EXPECT_EQ(c.Get32(0x44), 0u);
}

TEST(PciConfigSpaceTest, HostileOffsetsAndSizes) {
  PciConfigSpace c;
  c.SetMasks(0xFFC, 4, 0xFFFFFFFF);
  uint8_t buf[16];
  std::fill(std::begin(buf), std::end(buf), 0x5A);
  c.GuestWrite(0xFFE, buf, 16);  // runs past 4 KiB: only two bytes land
  EXPECT_EQ(c.Get32(0xFFC), 0x5A5A0000u);
  c.GuestRead(0xFFE, buf, 16);
  EXPECT_EQ(buf[0], 0x5A);
  EXPECT_EQ(buf[2], 0xFF);
  EXPECT_EQ(buf[15], 0xFF);
  c.GuestRead(~uint64_t{0} - 1, buf, 8);  // wraps
  EXPECT_EQ(buf[0], 0xFF);
  c.GuestWrite(~uint64_t{0} - 1, buf, 8);
  c.GuestRead(0x10000, buf, 4);
  EXPECT_EQ(buf[3], 0xFF);
  EXPECT_EQ(c.Get32(0x1000), 0u);  // device view past the end reads 0
}

TEST(PciConfigSpaceTest, CapabilityListWalk) {
  PciConfigSpace c;
  EXPECT_TRUE(c.Capabilities().empty());
  auto a = c.AddCapability(kCapIdPcie, 0x3C);
  auto b = c.AddCapability(kCapIdMsix, 0x0C);
  auto d = c.AddCapability(kCapIdMsi, 0x18);
  ASSERT_TRUE(a.ok() && b.ok() && d.ok());
  EXPECT_EQ(*a, 0x40);
  EXPECT_EQ(*b, 0x7C);
  EXPECT_EQ(*d, 0x88);
  EXPECT_TRUE(c.Get16(kStatus) & kStatusCapList);
  EXPECT_EQ(c.Get8(kCapabilitiesPointer), 0x40);
  EXPECT_EQ(c.Get8(0x41), 0x7C);
  EXPECT_EQ(c.Get8(0x89), 0x00);  // end of list
  const auto caps = c.Capabilities();
  ASSERT_EQ(caps.size(), 3u);
  EXPECT_EQ(caps[2], (std::pair<uint16_t, uint16_t>{kCapIdMsi, 0x88}));
  EXPECT_EQ(c.FindCapability(kCapIdMsix), std::optional<uint16_t>(0x7C));
  EXPECT_FALSE(c.FindCapability(kCapIdVendor).has_value());
  // Capability pointers are read-only to the guest.
  GuestWrite32(c, 0x34, 0xFFFFFFFF);
  EXPECT_EQ(c.Get8(kCapabilitiesPointer), 0x40);
}

TEST(PciConfigSpaceTest, CapabilityAreaExhaustionAndLoopSafeWalk) {
  PciConfigSpace c;
  int added = 0;
  while (c.AddCapability(kCapIdVendor, 16).ok()) ++added;
  EXPECT_EQ(added, (0x100 - 0x40) / 16);
  EXPECT_FALSE(c.AddCapability(kCapIdVendor, 4).ok());
  // Corrupt the list into a loop (device-side bug): the walk still terminates.
  c.Set8(0x41, 0x40);
  EXPECT_LE(c.Capabilities().size(), 48u);
}

TEST(PciConfigSpaceTest, ExtendedCapabilityListWalk) {
  PciConfigSpace c;
  EXPECT_TRUE(c.ExtCapabilities().empty());
  auto ats = c.AddExtCapability(kExtCapIdAts, 1, 8);
  auto pasid = c.AddExtCapability(kExtCapIdPasid, 1, 8);
  auto pri = c.AddExtCapability(kExtCapIdPri, 1, 0x10);
  ASSERT_TRUE(ats.ok() && pasid.ok() && pri.ok());
  EXPECT_EQ(*ats, 0x100);
  EXPECT_EQ(*pasid, 0x108);
  EXPECT_EQ(*pri, 0x110);
  EXPECT_EQ(c.Get32(0x100), 0x000F | 1u << 16 | 0x108u << 20);
  EXPECT_EQ(c.Get32(0x110) >> 20, 0u);
  EXPECT_EQ(c.FindExtCapability(kExtCapIdPri), std::optional<uint16_t>(0x110));
  EXPECT_FALSE(c.FindExtCapability(kExtCapIdAcs).has_value());
  EXPECT_FALSE(c.AddExtCapability(0x1, 1, 0x1000).ok());
  c.Set32(0x110, 0x0013 | 1u << 16 | 0x100u << 20);  // loop back to the start
  EXPECT_LE(c.ExtCapabilities().size(), (4096u - 256u) / 4u);
}

}  // namespace
}  // namespace ionest
