// Little-endian byte vector builder for firmware tables (ACPI is little-endian, ACPI 6.5 §5.2).
// Thread-compatible value type.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>
#include <vector>

#include "absl/base/internal/raw_logging.h"

namespace ionest {

using Bytes = std::vector<uint8_t>;

class ByteWriter {
 public:
  ByteWriter() = default;
  explicit ByteWriter(Bytes initial) : bytes_(std::move(initial)) {}

  ByteWriter& U8(uint8_t v) {
    bytes_.push_back(v);
    return *this;
  }
  ByteWriter& U16(uint16_t v) { return Le(v, 2); }
  ByteWriter& U32(uint32_t v) { return Le(v, 4); }
  ByteWriter& U64(uint64_t v) { return Le(v, 8); }
  // Exactly `width` bytes of `s`, zero padded; `s` must not be longer (host invariant).
  ByteWriter& Chars(std::string_view s, size_t width) {
    ABSL_RAW_CHECK(s.size() <= width, "s.size() <= width");
    bytes_.insert(bytes_.end(), s.begin(), s.end());
    bytes_.resize(bytes_.size() + (width - s.size()), 0);
    return *this;
  }
  ByteWriter& Append(const Bytes& b) {
    bytes_.insert(bytes_.end(), b.begin(), b.end());
    return *this;
  }
  ByteWriter& Zeros(size_t n) {
    bytes_.resize(bytes_.size() + n, 0);
    return *this;
  }

  // Overwrites already written bytes at `offset` (host invariant: in range).
  void Patch32(size_t offset, uint32_t v) { PatchLe(offset, v, 4); }
  void Patch8(size_t offset, uint8_t v) { PatchLe(offset, v, 1); }

  size_t size() const { return bytes_.size(); }
  const Bytes& bytes() const { return bytes_; }
  Bytes Take() && { return std::move(bytes_); }

 private:
  ByteWriter& Le(uint64_t v, int n) {
    for (int i = 0; i < n; ++i) bytes_.push_back(static_cast<uint8_t>(v >> (8 * i)));
    return *this;
  }
  void PatchLe(size_t offset, uint64_t v, int n) {
    ABSL_RAW_CHECK(offset + n <= bytes_.size(), "offset + n <= bytes_.size()");
    for (int i = 0; i < n; ++i) bytes_[offset + i] = static_cast<uint8_t>(v >> (8 * i));
  }
  Bytes bytes_;
};

}  // namespace ionest
