// Byte-stream reader for the VT-d fuzz targets: reads little-endian integers, yielding zeros once
// the input is exhausted.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>

namespace ionest::vtd::fuzz {

class FuzzInput {
 public:
  FuzzInput(const uint8_t* data, size_t size) : data_(data), size_(size) {}
  template <typename T>
  T Get() {
    T v{};
    const size_t n = size_ - pos_ < sizeof(T) ? size_ - pos_ : sizeof(T);
    std::memcpy(&v, data_ + pos_, n);
    pos_ += n;
    return v;
  }
  bool empty() const { return pos_ >= size_; }
  size_t remaining() const { return size_ - pos_; }
  const uint8_t* cursor() const { return data_ + pos_; }
  void Skip(size_t n) { pos_ += n < remaining() ? n : remaining(); }

 private:
  const uint8_t* data_;
  size_t size_;
  size_t pos_ = 0;
};

}  // namespace ionest::vtd::fuzz
