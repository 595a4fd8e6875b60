// Decompression of kernel payloads (gzip via zlib, xz via liblzma, zstd via libzstd).
// Pure functions over byte buffers; corrupt or oversized input yields an error, never a crash.
#pragma once

#include <cstdint>
#include <span>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"

namespace ionest {

enum class Compression { kNone, kGzip, kXz, kZstd, kUnsupported };

// Identifies the format from magic bytes.
Compression DetectCompression(std::span<const uint8_t> data);
std::string_view CompressionName(Compression c);

// Decompresses a single stream; output larger than `max_output` is an error (ResourceExhausted).
absl::StatusOr<std::vector<uint8_t>> Decompress(Compression format, std::span<const uint8_t> input,
                                                size_t max_output);

}  // namespace ionest
