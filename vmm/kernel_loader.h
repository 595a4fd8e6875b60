// Loads a Linux kernel image into guest memory: an uncompressed vmlinux ELF (direct 64-bit boot) or
// a bzImage, whose compressed payload is extracted and its inner vmlinux ELF loaded (skipping the
// in-guest decompressor, which needs instructions the KVM emulator here cannot run).
//
// Everything is parsed from untrusted bytes: any corrupt or truncated input yields a Status error.
// Pure functions over a byte span and a PhysMemory; thread-compatible.
#pragma once

#include <asm/bootparam.h>

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "vmm/decompress.h"
#include "vmm/guest_memory.h"

namespace ionest {

// Segments must load at or above this physical address (boot structures live below).
inline constexpr uint64_t kMinKernelLoadAddr = 0x10'0000;
// Cap on a decompressed payload.
inline constexpr size_t kMaxKernelPayload = 512ull << 20;

struct LoadedKernel {
  uint64_t entry = 0;       // physical 64-bit entry point (startup_64)
  uint64_t load_start = 0;  // lowest physical byte written
  uint64_t load_end = 0;    // one past the highest (including bss)
  std::string format;       // "elf" or "bzImage/<compression>"
  std::optional<setup_header> setup;  // the bzImage's setup header (Linux boot protocol §"The real-mode kernel header")
};

// Validates an x86-64 ELF executable and writes its PT_LOAD segments at their physical addresses.
absl::StatusOr<LoadedKernel> LoadElfKernel(std::span<const uint8_t> elf, PhysMemory& memory);

struct BzImageInfo {
  setup_header header{};
  uint32_t setup_sects = 0;
  std::span<const uint8_t> payload;  // compressed payload without the trailing 4-byte size
  uint32_t uncompressed_size = 0;    // the trailing size field
  Compression compression = Compression::kUnsupported;
};

// Parses the setup header (boot protocol >= 2.08 for payload_offset) and locates the payload at
// (setup_sects+1)*512 + payload_offset.
absl::StatusOr<BzImageInfo> ParseBzImage(std::span<const uint8_t> image);
// Decompresses the payload to the inner vmlinux ELF.
absl::StatusOr<std::vector<uint8_t>> ExtractBzImagePayload(const BzImageInfo& info);

bool LooksLikeElf(std::span<const uint8_t> data);
bool LooksLikeBzImage(std::span<const uint8_t> data);

// Auto-detects ELF or bzImage and loads it.
absl::StatusOr<LoadedKernel> LoadKernel(std::span<const uint8_t> image, PhysMemory& memory);

absl::StatusOr<std::vector<uint8_t>> ReadFileBytes(const std::string& path, size_t max_size);

}  // namespace ionest
