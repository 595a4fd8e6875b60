#include "vmm/arch/arm64/image_loader.h"

#include <zlib.h>

#include <cstring>
#include <random>
#include <string>

#include "gtest/gtest.h"
#include "vmm/arch/arm64/layout_arm64.h"

namespace ionest::arm64 {
namespace {

constexpr uint64_t kMiB = 1ull << 20;

void Put64(std::vector<uint8_t>& v, size_t off, uint64_t x) {
  for (int i = 0; i < 8; ++i) v[off + i] = static_cast<uint8_t>(x >> (8 * i));
}
void Put32(std::vector<uint8_t>& v, size_t off, uint32_t x) {
  for (int i = 0; i < 4; ++i) v[off + i] = static_cast<uint8_t>(x >> (8 * i));
}

// A minimal Image: booting.rst header + `payload` bytes of 0xA5.
std::vector<uint8_t> MakeImage(uint64_t text_offset, uint64_t image_size, size_t payload = 4096, uint64_t flags = 0xa) {
  std::vector<uint8_t> v(kImageHeaderSize + payload, 0xA5);
  std::fill(v.begin(), v.begin() + kImageHeaderSize, 0);
  Put32(v, 0, 0x91005a4d);  // code0: "MZ" + add (an EFI-stub kernel's first instruction)
  Put64(v, 8, text_offset);
  Put64(v, 16, image_size);
  Put64(v, 24, flags);
  Put32(v, 56, kImageMagic);
  return v;
}

bool Contains(const absl::Status& s, const std::string& text) {
  return std::string(s.message()).find(text) != std::string::npos;
}

TEST(Arm64ImageTest, ParsesHeader) {
  auto h = ParseImageHeader(MakeImage(0, 0x200000));
  ASSERT_TRUE(h.ok()) << h.status();
  EXPECT_EQ(h->text_offset, 0u);
  EXPECT_EQ(h->image_size, 0x200000u);
  EXPECT_EQ(h->flags, 0xau);
}

TEST(Arm64ImageTest, RejectsShortFile) {
  auto h = ParseImageHeader(std::vector<uint8_t>(63, 0));
  ASSERT_FALSE(h.ok());
  EXPECT_TRUE(Contains(h.status(), "64-byte Image header")) << h.status();
}

TEST(Arm64ImageTest, RejectsMissingMagicNamingTheFix) {
  auto img = MakeImage(0, 0x200000);
  img[56] = 'X';
  auto h = ParseImageHeader(img);
  ASSERT_FALSE(h.ok());
  EXPECT_TRUE(Contains(h.status(), "magic")) << h.status();
  EXPECT_TRUE(Contains(h.status(), "x86")) << h.status();
}

TEST(Arm64ImageTest, RejectsPre317AndBigEndianAndOversized) {
  EXPECT_TRUE(Contains(ParseImageHeader(MakeImage(0x80000, 0)).status(), "pre-3.17"));
  EXPECT_TRUE(Contains(ParseImageHeader(MakeImage(0, 0x200000, 4096, 1)).status(), "big-endian"));
  EXPECT_TRUE(Contains(ParseImageHeader(MakeImage(0, 1ull << 40)).status(), "corrupt"));
  EXPECT_TRUE(Contains(ParseImageHeader(MakeImage(3ull << 20, 0x200000)).status(), "corrupt"));  // >= 2 MiB
  EXPECT_TRUE(Contains(ParseImageHeader(MakeImage(0x123, 0x200000)).status(), "corrupt"));       // unaligned
  // The file is longer than the memory the header claims.
  EXPECT_TRUE(Contains(ParseImageHeader(MakeImage(0, 1024, 4096)).status(), "image_size is only"));
}

TEST(Arm64ImageTest, RandomCorruptionNeverCrashes) {
  std::mt19937 rng(1234);
  auto base = MakeImage(0, 0x200000);
  for (int i = 0; i < 2000; ++i) {
    auto img = base;
    for (int k = 0; k < 4; ++k) img[rng() % kImageHeaderSize] = static_cast<uint8_t>(rng());
    auto h = ParseImageHeader(img);
    if (h.ok()) {
      EXPECT_GE(h->image_size, img.size());
      EXPECT_LT(h->text_offset, kImageBaseAlign);
      (void)PlanBoot(*h, kRamBase, 64 * kMiB, 1 * kMiB);
    }
  }
}

TEST(Arm64ImageTest, PlansKernelInitrdAndDtb) {
  ImageHeader h{.text_offset = 0x80000, .image_size = 20 * kMiB, .flags = 0xa};
  auto p = PlanBoot(h, kRamBase, 256 * kMiB, 3 * kMiB + 100);
  ASSERT_TRUE(p.ok()) << p.status();
  EXPECT_EQ(p->kernel_addr, kRamBase + 0x80000);
  EXPECT_EQ(p->kernel_end, kRamBase + 0x80000 + 20 * kMiB);
  // booting.rst: DTB 8-byte aligned, in a 2 MiB region of its own.
  EXPECT_EQ(p->dtb_addr, kRamBase + 254 * kMiB);
  EXPECT_EQ(p->dtb_addr % kImageBaseAlign, 0u);
  EXPECT_EQ(p->initrd_size, 3 * kMiB + 100);
  EXPECT_EQ(p->initrd_addr % 4096, 0u);
  EXPECT_LE(p->initrd_addr + p->initrd_size, p->dtb_addr);
  EXPECT_GE(p->initrd_addr, p->kernel_end);
}

TEST(Arm64ImageTest, NoInitrd) {
  ImageHeader h{.text_offset = 0, .image_size = 8 * kMiB};
  auto p = PlanBoot(h, kRamBase, 64 * kMiB, 0);
  ASSERT_TRUE(p.ok()) << p.status();
  EXPECT_EQ(p->initrd_addr, 0u);
  EXPECT_EQ(p->initrd_size, 0u);
}

TEST(Arm64ImageTest, TooLittleMemoryNamesTheSizeThatFits) {
  ImageHeader h{.text_offset = 0, .image_size = 30 * kMiB};
  auto p = PlanBoot(h, kRamBase, 32 * kMiB, 10 * kMiB);
  ASSERT_FALSE(p.ok());
  EXPECT_TRUE(Contains(p.status(), "--memory 32 MiB is too small")) << p.status();
  // The suggested size is enough.
  std::string msg(p.status().message());
  size_t at = msg.find("use --memory ");
  ASSERT_NE(at, std::string::npos);
  uint64_t mib = std::stoull(msg.substr(at + 13));
  EXPECT_TRUE(PlanBoot(h, kRamBase, mib * kMiB, 10 * kMiB).ok());
  EXPECT_FALSE(PlanBoot(h, kRamBase, (mib - 1) * kMiB, 10 * kMiB).ok());
}

TEST(Arm64ImageTest, LoadsImageAndZeroesBss) {
  auto mem = GuestMemory::Create({{kRamBase, 16 * kMiB}});
  ASSERT_TRUE(mem.ok()) << mem.status();
  uint64_t junk = 0x1111111111111111;
  ASSERT_TRUE((*mem)->Write(kRamBase + 0x80000 + 8192 + 64, &junk, sizeof(junk)).ok());
  auto img = MakeImage(0x80000, 0x10000, 8192);
  auto h = ParseImageHeader(img);
  ASSERT_TRUE(h.ok());
  BootPlan plan{.kernel_addr = kRamBase + 0x80000, .kernel_end = kRamBase + 0x90000};
  ASSERT_TRUE(LoadImage(img, *h, plan, **mem).ok());
  std::vector<uint8_t> back(0x10000);
  ASSERT_TRUE((*mem)->Read(plan.kernel_addr, back.data(), back.size()).ok());
  EXPECT_TRUE(std::equal(img.begin(), img.end(), back.begin()));
  for (size_t i = img.size(); i < back.size(); ++i) ASSERT_EQ(back[i], 0) << i;
}

TEST(Arm64ImageTest, DecompressesGzipImage) {
  auto img = MakeImage(0, 0x200000);
  z_stream z{};
  ASSERT_EQ(deflateInit2(&z, 6, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY), Z_OK);
  std::vector<uint8_t> gz(img.size() + 1024);
  z.next_in = img.data();
  z.avail_in = img.size();
  z.next_out = gz.data();
  z.avail_out = gz.size();
  ASSERT_EQ(deflate(&z, Z_FINISH), Z_STREAM_END);
  gz.resize(z.total_out);
  deflateEnd(&z);
  auto out = MaybeDecompressImage(gz);
  ASSERT_TRUE(out.ok()) << out.status();
  EXPECT_EQ(*out, img);
  // Raw input passes through; a truncated gzip stream is an error, not a crash.
  EXPECT_EQ(*MaybeDecompressImage(img), img);
  gz.resize(gz.size() / 2);
  EXPECT_FALSE(MaybeDecompressImage(gz).ok());
}

}  // namespace
}  // namespace ionest::arm64
