#include "vmm/decompress.h"

#include <lzma.h>
#include <zlib.h>
#include <zstd.h>

#include <cstring>

#include "absl/strings/str_format.h"

namespace ionest {
namespace {

constexpr size_t kChunk = 1 << 20;

absl::StatusOr<std::vector<uint8_t>> Gunzip(std::span<const uint8_t> in, size_t max_output) {
  z_stream zs{};
  if (inflateInit2(&zs, 16 + MAX_WBITS) != Z_OK) return absl::InternalError("inflateInit2 failed");
  std::vector<uint8_t> out;
  zs.next_in = const_cast<Bytef*>(in.data());
  zs.avail_in = static_cast<uInt>(in.size());
  int r = Z_OK;
  while (r != Z_STREAM_END) {
    if (out.size() > max_output) {
      inflateEnd(&zs);
      return absl::ResourceExhaustedError(absl::StrFormat("gzip output exceeds %d bytes", max_output));
    }
    size_t old = out.size();
    size_t grow = std::min(kChunk, max_output + 1 - old);
    out.resize(old + grow);
    zs.next_out = out.data() + old;
    zs.avail_out = static_cast<uInt>(grow);
    r = inflate(&zs, Z_NO_FLUSH);
    out.resize(old + grow - zs.avail_out);
    if (r == Z_STREAM_END) break;
    if (r != Z_OK) {
      inflateEnd(&zs);
      return absl::DataLossError(absl::StrFormat("gzip: corrupt data (zlib error %d)", r));
    }
    if (zs.avail_in == 0 && zs.avail_out != 0) {
      inflateEnd(&zs);
      return absl::DataLossError("gzip: truncated stream");
    }
  }
  inflateEnd(&zs);
  return out;
}

absl::StatusOr<std::vector<uint8_t>> Unxz(std::span<const uint8_t> in, size_t max_output) {
  lzma_stream ls = LZMA_STREAM_INIT;
  if (lzma_stream_decoder(&ls, 1ull << 30, LZMA_CONCATENATED) != LZMA_OK) {
    return absl::InternalError("lzma_stream_decoder failed");
  }
  std::vector<uint8_t> out;
  ls.next_in = in.data();
  ls.avail_in = in.size();
  lzma_ret r = LZMA_OK;
  while (true) {
    if (out.size() > max_output) {
      lzma_end(&ls);
      return absl::ResourceExhaustedError(absl::StrFormat("xz output exceeds %d bytes", max_output));
    }
    size_t old = out.size();
    size_t grow = std::min(kChunk, max_output + 1 - old);
    out.resize(old + grow);
    ls.next_out = out.data() + old;
    ls.avail_out = grow;
    r = lzma_code(&ls, ls.avail_in ? LZMA_RUN : LZMA_FINISH);
    out.resize(old + grow - ls.avail_out);
    if (r == LZMA_STREAM_END) break;
    if (r != LZMA_OK) {
      lzma_end(&ls);
      return absl::DataLossError(absl::StrFormat("xz: corrupt or truncated data (lzma error %d)", r));
    }
  }
  lzma_end(&ls);
  return out;
}

absl::StatusOr<std::vector<uint8_t>> Unzstd(std::span<const uint8_t> in, size_t max_output) {
  ZSTD_DStream* ds = ZSTD_createDStream();
  if (!ds) return absl::InternalError("ZSTD_createDStream failed");
  ZSTD_initDStream(ds);
  std::vector<uint8_t> out;
  ZSTD_inBuffer ib{in.data(), in.size(), 0};
  size_t last = 1;
  while (true) {
    if (out.size() > max_output) {
      ZSTD_freeDStream(ds);
      return absl::ResourceExhaustedError(absl::StrFormat("zstd output exceeds %d bytes", max_output));
    }
    size_t old = out.size();
    size_t grow = std::min(kChunk, max_output + 1 - old);
    out.resize(old + grow);
    ZSTD_outBuffer ob{out.data() + old, grow, 0};
    last = ZSTD_decompressStream(ds, &ob, &ib);
    out.resize(old + ob.pos);
    if (ZSTD_isError(last)) {
      std::string msg = ZSTD_getErrorName(last);
      ZSTD_freeDStream(ds);
      return absl::DataLossError("zstd: corrupt data: " + msg);
    }
    if (last == 0) break;  // frame complete
    if (ib.pos == ib.size && ob.pos < ob.size) {
      ZSTD_freeDStream(ds);
      return absl::DataLossError("zstd: truncated stream");
    }
  }
  ZSTD_freeDStream(ds);
  return out;
}

}  // namespace

Compression DetectCompression(std::span<const uint8_t> d) {
  auto starts = [&](std::initializer_list<uint8_t> magic) {
    if (d.size() < magic.size()) return false;
    return std::equal(magic.begin(), magic.end(), d.begin());
  };
  if (starts({0x1f, 0x8b})) return Compression::kGzip;
  if (starts({0xfd, '7', 'z', 'X', 'Z', 0x00})) return Compression::kXz;
  if (starts({0x28, 0xb5, 0x2f, 0xfd})) return Compression::kZstd;
  if (starts({0x7f, 'E', 'L', 'F'})) return Compression::kNone;
  return Compression::kUnsupported;
}

std::string_view CompressionName(Compression c) {
  switch (c) {
    case Compression::kNone: return "none";
    case Compression::kGzip: return "gzip";
    case Compression::kXz: return "xz";
    case Compression::kZstd: return "zstd";
    case Compression::kUnsupported: return "unsupported";
  }
  return "?";
}

absl::StatusOr<std::vector<uint8_t>> Decompress(Compression format, std::span<const uint8_t> input,
                                                size_t max_output) {
  absl::StatusOr<std::vector<uint8_t>> out;
  switch (format) {
    case Compression::kGzip: out = Gunzip(input, max_output); break;
    case Compression::kXz: out = Unxz(input, max_output); break;
    case Compression::kZstd: out = Unzstd(input, max_output); break;
    case Compression::kNone:
      if (input.size() > max_output) return absl::ResourceExhaustedError("input exceeds maximum size");
      return std::vector<uint8_t>(input.begin(), input.end());
    case Compression::kUnsupported:
      return absl::UnimplementedError(
      "unsupported compression (only gzip, xz and zstd payloads; rebuild the kernel with one of them)");
  }
  if (out.ok() && out->size() > max_output) {
    return absl::ResourceExhaustedError(absl::StrFormat("decompressed output exceeds %d bytes", max_output));
  }
  return out;
}

}  // namespace ionest
