// arm64 Linux Image boot (Documentation/arch/arm64/booting.rst): the 64-byte Image header, where the
// kernel, the initrd and the device tree go in guest RAM, and copying them there. Pure (no KVM):
// corrupt or oversized input yields an error naming the cause, never a crash.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "vmm/guest_memory.h"

namespace ionest::arm64 {

// booting.rst §4 "Call the kernel image": the header at offset 0 of the Image.
inline constexpr uint32_t kImageMagic = 0x644d5241;  // "ARM\x64" at offset 56
inline constexpr size_t kImageHeaderSize = 64;
inline constexpr uint64_t kImageBaseAlign = 2ull << 20;  // "2MB aligned base address"
// booting.rst §2: "The device tree blob (dtb) must be placed on an 8-byte boundary and must not
// exceed 2 megabytes in size" and not share a 2 MiB region with memory of other attributes: it gets
// a 2 MiB aligned 2 MiB slot of its own.
inline constexpr uint64_t kDtbMaxSize = 2ull << 20;
// RAM the kernel needs beyond its image, initrd and DTB to get to /init (page tables, slab, the
// unpacked initramfs' page cache is counted separately below).
inline constexpr uint64_t kMinFreeRam = 24ull << 20;

struct ImageHeader {
  uint64_t text_offset = 0;  // from the 2 MiB aligned base
  uint64_t image_size = 0;   // memory the kernel occupies from its start (text, data and bss)
  uint64_t flags = 0;        // bit 0 big-endian, bits 1-2 page size, bit 3 placement anywhere
};

// Validates the header: magic, size, little-endian kernel, image_size >= file size.
absl::StatusOr<ImageHeader> ParseImageHeader(std::span<const uint8_t> image);

struct BootPlan {
  uint64_t kernel_addr = 0;  // ram base + text_offset; PC at entry
  uint64_t kernel_end = 0;   // kernel_addr + image_size
  uint64_t initrd_addr = 0;  // 4 KiB aligned, below the DTB slot (0 and size 0: none)
  uint64_t initrd_size = 0;
  uint64_t dtb_addr = 0;  // the last 2 MiB of RAM; x0 at entry
};

// Places the kernel at the (2 MiB aligned) start of RAM, the DTB slot at its end and the initrd just
// below it. An error says how much --memory would be enough.
absl::StatusOr<BootPlan> PlanBoot(const ImageHeader& header, uint64_t ram_base, uint64_t ram_size,
                                  uint64_t initrd_size);

// Copies the Image to plan.kernel_addr and zeroes the rest of image_size (bss).
absl::Status LoadImage(std::span<const uint8_t> image, const ImageHeader& header, const BootPlan& plan,
                       PhysMemory& memory);

// The whole file (at most max_size bytes; errors name the path).
absl::StatusOr<std::vector<uint8_t>> ReadFile(const std::string& path, size_t max_size);

// An uncompressed Image, from the file's bytes: gzip/xz/zstd (e.g. Debian's vmlinuz, an Image.gz)
// are decompressed (vmm/decompress.h); anything else is returned as is.
absl::StatusOr<std::vector<uint8_t>> MaybeDecompressImage(std::vector<uint8_t> file);

}  // namespace ionest::arm64
