#include "vmm/arch/arm64/image_loader.h"

#include <algorithm>
#include <cstring>
#include <fstream>

#include "absl/strings/str_format.h"
#include "vmm/decompress.h"

namespace ionest::arm64 {
namespace {

uint64_t Le64(const uint8_t* p) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; --i) v = v << 8 | p[i];
  return v;
}
uint32_t Le32(const uint8_t* p) { return p[0] | p[1] << 8 | p[2] << 16 | static_cast<uint32_t>(p[3]) << 24; }
uint64_t AlignUp(uint64_t v, uint64_t a) { return (v + a - 1) & ~(a - 1); }
uint64_t AlignDown(uint64_t v, uint64_t a) { return v & ~(a - 1); }
constexpr uint64_t kMiB = 1ull << 20;
// An arm64 kernel is a few tens of MiB; more is a corrupt header.
constexpr uint64_t kMaxImageSize = 1ull << 30;
constexpr size_t kMaxDecompressed = 512ull << 20;

}  // namespace

absl::StatusOr<ImageHeader> ParseImageHeader(std::span<const uint8_t> image) {
  if (image.size() < kImageHeaderSize) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "not an arm64 Image: %u bytes, shorter than the 64-byte Image header (booting.rst §4)", image.size()));
  }
  const uint8_t* h = image.data();
  if (Le32(h + 56) != kImageMagic) {
    return absl::InvalidArgumentError(
        "not an arm64 Image: no \"ARM\\x64\" magic at offset 56 (pass arch/arm64/boot/Image, or its .gz; an x86 "
        "vmlinux/bzImage needs the x86 ionest)");
  }
  ImageHeader hdr;
  hdr.text_offset = Le64(h + 8);
  hdr.image_size = Le64(h + 16);
  hdr.flags = Le64(h + 24);
  if (hdr.image_size == 0) {
    return absl::InvalidArgumentError(
        "arm64 Image header has image_size 0: a pre-3.17 kernel, whose memory footprint is unknown (use a newer "
        "kernel)");
  }
  if (hdr.flags & 1) return absl::InvalidArgumentError("arm64 Image is big-endian (flags bit 0): not supported");
  if (hdr.image_size > kMaxImageSize || hdr.text_offset >= kImageBaseAlign || (hdr.text_offset & 0xfff)) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "corrupt arm64 Image header: text_offset 0x%x, image_size 0x%x", hdr.text_offset, hdr.image_size));
  }
  if (image.size() > hdr.image_size) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "corrupt arm64 Image: file is %u bytes but the header's image_size is only %u", image.size(),
        hdr.image_size));
  }
  return hdr;
}

absl::StatusOr<BootPlan> PlanBoot(const ImageHeader& header, uint64_t ram_base, uint64_t ram_size,
                                  uint64_t initrd_size) {
  if (ram_base & (kImageBaseAlign - 1)) return absl::InvalidArgumentError("RAM base is not 2 MiB aligned");
  BootPlan plan;
  plan.kernel_addr = ram_base + header.text_offset;
  plan.kernel_end = plan.kernel_addr + header.image_size;
  const uint64_t initrd_pages = AlignUp(initrd_size, 4096);
  // Kernel, free memory, initrd, DTB slot: the smallest RAM that holds them (rounded to MiB).
  const uint64_t needed = AlignUp(AlignUp(plan.kernel_end - ram_base, kImageBaseAlign) + kMinFreeRam +
                                      initrd_pages + kDtbMaxSize,
                                  kMiB);
  if (ram_size < needed) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "--memory %u MiB is too small: the kernel occupies %u KiB, the initrd %u KiB, the device tree a 2 MiB slot, "
        "and the kernel needs %u MiB more to boot; use --memory %uM or more",
        ram_size >> 20, header.image_size >> 10, initrd_size >> 10, kMinFreeRam >> 20, needed >> 20));
  }
  const uint64_t ram_end = ram_base + ram_size;
  plan.dtb_addr = AlignDown(ram_end, kImageBaseAlign) - kDtbMaxSize;
  if (initrd_size > 0) {
    plan.initrd_addr = AlignDown(plan.dtb_addr - initrd_size, 4096);
    plan.initrd_size = initrd_size;
  }
  return plan;
}

absl::Status LoadImage(std::span<const uint8_t> image, const ImageHeader& header, const BootPlan& plan,
                       PhysMemory& memory) {
  if (absl::Status s = memory.Write(plan.kernel_addr, image.data(), image.size()); !s.ok()) return s;
  // booting.rst: image_size bytes from the kernel's start must be free; the kernel clears its own
  // bss, but give it zeroed memory regardless (RAM from a memfd is zero already: this is cheap).
  std::vector<uint8_t> zeros(64 * 1024, 0);
  for (uint64_t off = image.size(); off < header.image_size;) {
    uint64_t n = std::min<uint64_t>(zeros.size(), header.image_size - off);
    if (absl::Status s = memory.Write(plan.kernel_addr + off, zeros.data(), n); !s.ok()) return s;
    off += n;
  }
  return absl::OkStatus();
}

absl::StatusOr<std::vector<uint8_t>> ReadFile(const std::string& path, size_t max_size) {
  std::ifstream in(path, std::ios::binary | std::ios::ate);
  if (!in) return absl::NotFoundError(absl::StrFormat("cannot open %s", path));
  std::streamoff size = in.tellg();
  if (size < 0) return absl::InvalidArgumentError(absl::StrFormat("cannot read %s", path));
  if (static_cast<uint64_t>(size) > max_size) {
    return absl::InvalidArgumentError(absl::StrFormat("%s is %d bytes, more than the %u allowed", path, size, max_size));
  }
  std::vector<uint8_t> data(static_cast<size_t>(size));
  in.seekg(0);
  if (size > 0 && !in.read(reinterpret_cast<char*>(data.data()), size)) {
    return absl::DataLossError(absl::StrFormat("short read of %s", path));
  }
  return data;
}

absl::StatusOr<std::vector<uint8_t>> MaybeDecompressImage(std::vector<uint8_t> file) {
  Compression c = DetectCompression(file);
  if (c == Compression::kNone || c == Compression::kUnsupported) return file;
  auto out = Decompress(c, file, kMaxDecompressed);
  if (!out.ok()) {
    return absl::Status(out.status().code(), absl::StrFormat("decompressing the %s kernel: %s", CompressionName(c),
                                                             out.status().message()));
  }
  return out;
}

}  // namespace ionest::arm64
