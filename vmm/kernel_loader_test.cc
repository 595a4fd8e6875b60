#include "vmm/kernel_loader.h"

#include <elf.h>
#include <lzma.h>
#include <zlib.h>
#include <zstd.h>

#include <cstdlib>
#include <cstring>

#include "gtest/gtest.h"

namespace ionest {
namespace {

constexpr uint64_t kLoad = 0x1000000;

// A minimal x86-64 ET_EXEC with one PT_LOAD: 64 file bytes + 4096 bss at kLoad.
std::vector<uint8_t> MakeElf() {
  std::vector<uint8_t> f(0x200, 0);
  Elf64_Ehdr eh{};
  std::memcpy(eh.e_ident, ELFMAG, SELFMAG);
  eh.e_ident[EI_CLASS] = ELFCLASS64;
  eh.e_ident[EI_DATA] = ELFDATA2LSB;
  eh.e_ident[EI_VERSION] = EV_CURRENT;
  eh.e_type = ET_EXEC;
  eh.e_machine = EM_X86_64;
  eh.e_version = EV_CURRENT;
  eh.e_entry = kLoad + 0x10;
  eh.e_phoff = sizeof(Elf64_Ehdr);
  eh.e_ehsize = sizeof(Elf64_Ehdr);
  eh.e_phentsize = sizeof(Elf64_Phdr);
  eh.e_phnum = 1;
  Elf64_Phdr ph{};
  ph.p_type = PT_LOAD;
  ph.p_offset = 0x100;
  ph.p_vaddr = 0xffffffff81000000ull;
  ph.p_paddr = kLoad;
  ph.p_filesz = 64;
  ph.p_memsz = 64 + 4096;
  std::memcpy(f.data(), &eh, sizeof(eh));
  std::memcpy(f.data() + eh.e_phoff, &ph, sizeof(ph));
  for (int i = 0; i < 64; ++i) f[0x100 + i] = static_cast<uint8_t>(i + 1);
  return f;
}

std::unique_ptr<GuestMemory> Mem() {
  auto m = GuestMemory::Create({{0, 64ull << 20}});
  EXPECT_TRUE(m.ok());
  return std::move(*m);
}

TEST(ElfLoaderTest, LoadsSegmentsAndZeroesBss) {
  auto mem = Mem();
  std::vector<uint8_t> junk(8192, 0xcc);
  ASSERT_TRUE(mem->Write(kLoad, junk.data(), junk.size()).ok());
  auto k = LoadKernel(MakeElf(), *mem);
  ASSERT_TRUE(k.ok()) << k.status();
  EXPECT_EQ(k->entry, kLoad + 0x10);
  EXPECT_EQ(k->load_start, kLoad);
  EXPECT_EQ(k->load_end, kLoad + 64 + 4096);
  EXPECT_EQ(k->format, "elf");
  uint8_t buf[64 + 4096 + 1];
  ASSERT_TRUE(mem->Read(kLoad, buf, sizeof(buf)).ok());
  for (int i = 0; i < 64; ++i) EXPECT_EQ(buf[i], i + 1);
  for (int i = 64; i < 64 + 4096; ++i) ASSERT_EQ(buf[i], 0) << i;
  EXPECT_EQ(buf[64 + 4096], 0xcc);  // nothing past memsz touched
}

TEST(ElfLoaderTest, CorruptInputsAreErrors) {
  auto mem = Mem();
  std::vector<uint8_t> good = MakeElf();
  auto mutate = [&](auto fn) {
    std::vector<uint8_t> f = good;
    fn(f);
    return LoadElfKernel(f, *mem).status();
  };
  auto ph = [](std::vector<uint8_t>& f) { return reinterpret_cast<Elf64_Phdr*>(f.data() + sizeof(Elf64_Ehdr)); };
  auto eh = [](std::vector<uint8_t>& f) { return reinterpret_cast<Elf64_Ehdr*>(f.data()); };
  EXPECT_FALSE(mutate([](auto& f) { f[1] = 'X'; }).ok());
  EXPECT_FALSE(mutate([&](auto& f) { eh(f)->e_machine = EM_386; }).ok());
  EXPECT_FALSE(mutate([&](auto& f) { eh(f)->e_phnum = 60000; }).ok());
  EXPECT_FALSE(mutate([&](auto& f) { eh(f)->e_phoff = ~0ull - 8; }).ok());
  EXPECT_FALSE(mutate([&](auto& f) { ph(f)->p_offset = ~0ull - 10; }).ok());
  EXPECT_FALSE(mutate([&](auto& f) { ph(f)->p_filesz = 0x10000; ph(f)->p_memsz = 0x10000; }).ok());
  EXPECT_FALSE(mutate([&](auto& f) { ph(f)->p_filesz = ph(f)->p_memsz + 1; }).ok());
  EXPECT_FALSE(mutate([&](auto& f) { ph(f)->p_paddr = 0x1000; }).ok());              // over boot structures
  EXPECT_FALSE(mutate([&](auto& f) { ph(f)->p_paddr = 63ull << 20; }).ok());         // beyond RAM
  EXPECT_FALSE(mutate([&](auto& f) { ph(f)->p_paddr = ~0ull - 100; }).ok());         // wraps
  EXPECT_FALSE(mutate([&](auto& f) { eh(f)->e_entry = 0x5000000; }).ok());           // entry outside
  EXPECT_FALSE(mutate([&](auto& f) { ph(f)->p_type = PT_NOTE; }).ok());              // nothing to load
  for (size_t n : {0ul, 3ul, 40ul, 100ul, 0x120ul}) {
    std::vector<uint8_t> cut(good.begin(), good.begin() + n);
    EXPECT_FALSE(LoadKernel(cut, *mem).ok()) << n;
  }
}

std::vector<uint8_t> Gzip(const std::vector<uint8_t>& in) {
  z_stream zs{};
  deflateInit2(&zs, 9, Z_DEFLATED, 16 + MAX_WBITS, 8, Z_DEFAULT_STRATEGY);
  std::vector<uint8_t> out(deflateBound(&zs, in.size()) + 64);
  zs.next_in = const_cast<Bytef*>(in.data());
  zs.avail_in = in.size();
  zs.next_out = out.data();
  zs.avail_out = out.size();
  EXPECT_EQ(deflate(&zs, Z_FINISH), Z_STREAM_END);
  out.resize(zs.total_out);
  deflateEnd(&zs);
  return out;
}

std::vector<uint8_t> Xz(const std::vector<uint8_t>& in) {
  std::vector<uint8_t> out(in.size() + 1024);
  size_t pos = 0;
  EXPECT_EQ(lzma_easy_buffer_encode(6, LZMA_CHECK_CRC32, nullptr, in.data(), in.size(), out.data(), &pos, out.size()),
            LZMA_OK);
  out.resize(pos);
  return out;
}

std::vector<uint8_t> Zstd(const std::vector<uint8_t>& in) {
  std::vector<uint8_t> out(ZSTD_compressBound(in.size()));
  size_t n = ZSTD_compress(out.data(), out.size(), in.data(), in.size(), 19);
  EXPECT_FALSE(ZSTD_isError(n));
  out.resize(n);
  return out;
}

// A bzImage: boot sector + setup (setup_sects=3) + protected-mode part holding the payload.
std::vector<uint8_t> MakeBzImage(const std::vector<uint8_t>& compressed, uint32_t uncompressed_size) {
  const uint32_t setup_sects = 3;
  const uint32_t payload_offset = 0x80;
  std::vector<uint8_t> f((setup_sects + 1) * 512 + payload_offset, 0);
  setup_header h{};
  h.setup_sects = setup_sects;
  h.boot_flag = 0xAA55;
  h.header = 0x53726448;
  h.version = 0x020f;
  h.loadflags = LOADED_HIGH;
  h.cmdline_size = 2047;
  h.initrd_addr_max = 0x7fffffff;
  h.payload_offset = payload_offset;
  h.payload_length = compressed.size() + 4;
  std::memcpy(f.data() + 0x1f1, &h, sizeof(h));
  f.insert(f.end(), compressed.begin(), compressed.end());
  for (int i = 0; i < 4; ++i) f.push_back(static_cast<uint8_t>(uncompressed_size >> (8 * i)));
  f.resize(f.size() + 100, 0);  // trailing data after the payload (e.g. .bss / signature area)
  return f;
}

class BzImageTest : public ::testing::TestWithParam<int> {
 protected:
  std::vector<uint8_t> Compress(const std::vector<uint8_t>& in) {
    switch (GetParam()) {
      case 0: return Gzip(in);
      case 1: return Xz(in);
      default: return Zstd(in);
    }
  }
};

TEST_P(BzImageTest, LoadsInnerElf) {
  auto mem = Mem();
  std::vector<uint8_t> elf = MakeElf();
  std::vector<uint8_t> bz = MakeBzImage(Compress(elf), elf.size());
  auto info = ParseBzImage(bz);
  ASSERT_TRUE(info.ok()) << info.status();
  EXPECT_EQ(info->setup_sects, 3u);
  EXPECT_EQ(info->uncompressed_size, elf.size());
  auto k = LoadKernel(bz, *mem);
  ASSERT_TRUE(k.ok()) << k.status();
  EXPECT_EQ(k->entry, kLoad + 0x10);
  ASSERT_TRUE(k->setup.has_value());
  EXPECT_EQ(k->setup->cmdline_size, 2047u);
  EXPECT_EQ(k->format.substr(0, 8), "bzImage/");
  uint8_t b;
  ASSERT_TRUE(mem->Read(kLoad + 5, &b, 1).ok());
  EXPECT_EQ(b, 6);
}

TEST_P(BzImageTest, CorruptOrTruncatedPayloadIsAnError) {
  auto mem = Mem();
  std::vector<uint8_t> elf = MakeElf();
  std::vector<uint8_t> comp = Compress(elf);
  // Wrong size trailer.
  EXPECT_FALSE(LoadKernel(MakeBzImage(comp, elf.size() + 1), *mem).ok());
  EXPECT_FALSE(LoadKernel(MakeBzImage(comp, 0), *mem).ok());
  EXPECT_FALSE(LoadKernel(MakeBzImage(comp, 0xffffffff), *mem).ok());
  // Truncated compressed stream.
  std::vector<uint8_t> half(comp.begin(), comp.begin() + comp.size() / 2);
  EXPECT_FALSE(LoadKernel(MakeBzImage(half, elf.size()), *mem).ok());
  // Flipped bytes in the middle of the stream.
  std::vector<uint8_t> bad = comp;
  for (size_t i = 12; i < bad.size() && i < 40; ++i) bad[i] ^= 0x5a;
  EXPECT_FALSE(LoadKernel(MakeBzImage(bad, elf.size()), *mem).ok());
  // Whole file truncated inside the payload.
  std::vector<uint8_t> bz = MakeBzImage(comp, elf.size());
  bz.resize(bz.size() - 120);
  EXPECT_FALSE(LoadKernel(bz, *mem).ok());
}

INSTANTIATE_TEST_SUITE_P(Formats, BzImageTest, ::testing::Values(0, 1, 2));

TEST(BzImageHeaderTest, BadHeadersAreErrors) {
  auto mem = Mem();
  std::vector<uint8_t> elf = MakeElf();
  std::vector<uint8_t> good = MakeBzImage(Gzip(elf), elf.size());
  auto hdr = [](std::vector<uint8_t>& f) { return reinterpret_cast<setup_header*>(f.data() + 0x1f1); };
  std::vector<uint8_t> f = good;
  hdr(f)->version = 0x0206;
  EXPECT_FALSE(LoadKernel(f, *mem).ok());
  f = good;
  hdr(f)->payload_offset = 0xfffffff0;
  EXPECT_FALSE(LoadKernel(f, *mem).ok());
  f = good;
  hdr(f)->payload_length = 0xffffffff;
  EXPECT_FALSE(LoadKernel(f, *mem).ok());
  f = good;
  hdr(f)->payload_length = 3;
  EXPECT_FALSE(LoadKernel(f, *mem).ok());
  f = good;
  std::memset(f.data() + (hdr(f)->setup_sects + 1) * 512 + 0x80, 0x42, 4);  // unknown compression magic
  auto s = LoadKernel(f, *mem).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kUnimplemented) << s;
  f = good;
  f[0x1fe] = 0;
  EXPECT_FALSE(LoadKernel(f, *mem).ok());
  // Payload that decompresses fine but is not an ELF.
  std::vector<uint8_t> text(1000, 'a');
  EXPECT_FALSE(LoadKernel(MakeBzImage(Gzip(text), text.size()), *mem).ok());
}

// Debian's prebuilt 6.12 bzImage (zstd payload), fetched by the guest pipeline.
TEST(BzImageRealTest, DebianKernelLoads) {
  const char* path = std::getenv("IONEST_DEBIAN_BZIMAGE");
  if (!path || !*path) GTEST_SKIP() << "IONEST_DEBIAN_BZIMAGE not set (path to Debian's vmlinuz-6.12.*-amd64)";
  auto bytes = ReadFileBytes(path, 256 << 20);
  ASSERT_TRUE(bytes.ok()) << bytes.status();
  auto info = ParseBzImage(*bytes);
  ASSERT_TRUE(info.ok()) << info.status();
  EXPECT_EQ(info->compression, Compression::kZstd);
  EXPECT_GE(info->header.version, 0x020f);
  auto mem = GuestMemory::Create({{0, 256ull << 20}});
  ASSERT_TRUE(mem.ok());
  auto k = LoadKernel(*bytes, **mem);
  ASSERT_TRUE(k.ok()) << k.status();
  EXPECT_EQ(k->format, "bzImage/zstd");
  EXPECT_EQ(k->load_start, 0x1000000u);  // CONFIG_PHYSICAL_START
  EXPECT_GT(k->load_end - k->load_start, 16u << 20);
  EXPECT_GE(k->entry, k->load_start);
  // startup_64 lies in .head.text, at the start of the image.
  EXPECT_LT(k->entry - k->load_start, 2u << 20);
}

}  // namespace
}  // namespace ionest
