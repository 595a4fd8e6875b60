#include "firmware/aml.h"

#include <cctype>

#include "absl/base/internal/raw_logging.h"

namespace ionest::aml {
namespace {

bool IsLeadNameChar(char c) { return (c >= 'A' && c <= 'Z') || c == '_'; }
bool IsNameChar(char c) { return IsLeadNameChar(c) || (c >= '0' && c <= '9'); }

void AppendNameSeg(ByteWriter& w, std::string_view seg) {
  ABSL_RAW_CHECK(!seg.empty() && seg.size() <= 4, "!seg.empty() && seg.size() <= 4");
  ABSL_RAW_CHECK(IsLeadNameChar(seg[0]), "IsLeadNameChar(seg[0])");
  for (char c : seg) ABSL_RAW_CHECK(IsNameChar(c), "IsNameChar(c)");
  w.Chars(seg, seg.size());
  for (size_t i = seg.size(); i < 4; ++i) w.U8('_');
}

// Opcode(s) + PkgLength + body.
Bytes WithPkgLength(std::initializer_list<uint8_t> opcodes, const Bytes& body) {
  ByteWriter w;
  for (uint8_t op : opcodes) w.U8(op);
  w.Append(PkgLength(body.size())).Append(body);
  return std::move(w).Take();
}

int HexDigit(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  return -1;
}

}  // namespace

Bytes PkgLength(size_t body_len) {
  // §20.2.4: the lead byte's bits 7:6 count the following bytes. With none, bits 5:0 hold the
  // length (< 64); otherwise bits 3:0 hold the low nibble and each following byte 8 more bits.
  for (size_t extra = 0; extra <= 3; ++extra) {
    const size_t total = body_len + 1 + extra;
    const size_t limit = extra == 0 ? (1u << 6) : (1u << (4 + 8 * extra));
    if (total >= limit) continue;
    if (extra == 0) return {static_cast<uint8_t>(total)};
    Bytes out{static_cast<uint8_t>((extra << 6) | (total & 0x0F))};
    for (size_t i = 0; i < extra; ++i) out.push_back(static_cast<uint8_t>(total >> (4 + 8 * i)));
    return out;
  }
  ABSL_RAW_LOG(FATAL, "AML package too long: %zu", body_len);
  __builtin_unreachable();
}

Bytes NameString(std::string_view path) {
  ByteWriter w;
  size_t pos = 0;
  if (!path.empty() && path[0] == '\\') {
    w.U8(kRootChar);
    pos = 1;
  } else {
    while (pos < path.size() && path[pos] == '^') {
      w.U8(kParentPrefixChar);
      ++pos;
    }
  }
  std::string_view rest = path.substr(pos);
  if (rest.empty()) return std::move(w.U8(0x00)).Take();  // NullName
  std::vector<std::string_view> segs;
  for (size_t dot; (dot = rest.find('.')) != std::string_view::npos; rest.remove_prefix(dot + 1)) {
    segs.push_back(rest.substr(0, dot));
  }
  segs.push_back(rest);
  ABSL_RAW_CHECK(segs.size() <= 255u, "segs.size() <= 255u");
  if (segs.size() == 2) {
    w.U8(kDualNamePrefix);
  } else if (segs.size() > 2) {
    w.U8(kMultiNamePrefix).U8(static_cast<uint8_t>(segs.size()));
  }
  for (std::string_view seg : segs) AppendNameSeg(w, seg);
  return std::move(w).Take();
}

Bytes Integer(uint64_t value) {
  ByteWriter w;
  if (value == 0) {
    w.U8(kZeroOp);
  } else if (value == 1) {
    w.U8(kOneOp);
  } else if (value == ~uint64_t{0}) {
    w.U8(kOnesOp);
  } else if (value <= 0xFF) {
    w.U8(kBytePrefix).U8(static_cast<uint8_t>(value));
  } else if (value <= 0xFFFF) {
    w.U8(kWordPrefix).U16(static_cast<uint16_t>(value));
  } else if (value <= 0xFFFFFFFF) {
    w.U8(kDWordPrefix).U32(static_cast<uint32_t>(value));
  } else {
    w.U8(kQWordPrefix).U64(value);
  }
  return std::move(w).Take();
}

Bytes String(std::string_view s) {
  ByteWriter w;
  w.U8(kStringPrefix);
  for (char c : s) {
    ABSL_RAW_CHECK(c >= 0x01 && c <= 0x7F, "c >= 0x01 && c <= 0x7F");
    w.U8(static_cast<uint8_t>(c));
  }
  return std::move(w.U8(0x00)).Take();
}

uint32_t EisaId(std::string_view id) {
  // Three uppercase letters compressed to 5 bits each, then four hex digits; stored so that the
  // bytes in memory read in that order (ACPI 6.5 §19.6.35 EISAID).
  ABSL_RAW_CHECK(id.size() == 7u, "id.size() == 7u");
  uint32_t v = 0;
  for (int i = 0; i < 3; ++i) {
    ABSL_RAW_CHECK(id[i] >= 'A' && id[i] <= 'Z', "id[i] >= 'A' && id[i] <= 'Z'");
    v = (v << 5) | static_cast<uint32_t>(id[i] - 0x40);
  }
  for (int i = 3; i < 7; ++i) {
    const int d = HexDigit(id[i]);
    ABSL_RAW_CHECK(d >= 0, "d >= 0");
    v = (v << 4) | static_cast<uint32_t>(d);
  }
  return __builtin_bswap32(v);
}

Bytes Name(std::string_view path, const Bytes& data_object) {
  return Join({{kNameOp}, NameString(path), data_object});
}

Bytes Package(const std::vector<Bytes>& elements) {
  ABSL_RAW_CHECK(elements.size() <= 255u, "elements.size() <= 255u");
  ByteWriter body;
  body.U8(static_cast<uint8_t>(elements.size()));
  for (const Bytes& e : elements) body.Append(e);
  return WithPkgLength({kPackageOp}, body.bytes());
}

Bytes Buffer(const Bytes& data) {
  return WithPkgLength({kBufferOp}, Join({Integer(data.size()), data}));
}

Bytes Scope(std::string_view path, const Bytes& term_list) {
  return WithPkgLength({kScopeOp}, Join({NameString(path), term_list}));
}

Bytes Device(std::string_view path, const Bytes& term_list) {
  return WithPkgLength({kExtOpPrefix, kDeviceOp}, Join({NameString(path), term_list}));
}

Bytes Method(std::string_view path, int arg_count, bool serialized, const Bytes& term_list) {
  ABSL_RAW_CHECK(arg_count >= 0 && arg_count <= 7, "arg_count >= 0 && arg_count <= 7");
  // MethodFlags: bits 2:0 ArgCount, bit 3 SerializeFlag, bits 7:4 SyncLevel (0).
  const uint8_t flags = static_cast<uint8_t>(arg_count | (serialized ? 0x08 : 0));
  return WithPkgLength({kMethodOp}, Join({NameString(path), {flags}, term_list}));
}

Bytes Return(const Bytes& arg) { return Join({{kReturnOp}, arg}); }

Bytes If(const Bytes& predicate, const Bytes& term_list) {
  return WithPkgLength({kIfOp}, Join({predicate, term_list}));
}

Bytes LEqual(const Bytes& a, const Bytes& b) { return Join({{kLEqualOp}, a, b}); }

Bytes Or(const Bytes& a, const Bytes& b, const Bytes& target) {
  return Join({{kOrOp}, a, b, target});
}

Bytes CreateDWordField(const Bytes& source_buffer, const Bytes& byte_index, std::string_view name) {
  return Join({{kCreateDWordFieldOp}, source_buffer, byte_index, NameString(name)});
}

Bytes Arg(int n) {
  ABSL_RAW_CHECK(n >= 0 && n <= 6, "n >= 0 && n <= 6");
  return {static_cast<uint8_t>(kArg0Op + n)};
}

Bytes Uuid(std::string_view uuid) {
  // Groups: 4-2-2-2-6 bytes. The first three are little-endian fields, the last two byte strings.
  ABSL_RAW_CHECK(uuid.size() == 36u, "uuid.size() == 36u");
  Bytes hex;  // the 16 bytes in textual order
  for (size_t i = 0; i < uuid.size(); ++i) {
    if (i == 8 || i == 13 || i == 18 || i == 23) {
      ABSL_RAW_CHECK(uuid[i] == '-', "uuid[i] == '-'");
      continue;
    }
    const int hi = HexDigit(uuid[i]), lo = HexDigit(uuid[i + 1]);
    ABSL_RAW_CHECK(hi >= 0 && lo >= 0, "hi >= 0 && lo >= 0");
    hex.push_back(static_cast<uint8_t>(hi << 4 | lo));
    ++i;
  }
  ABSL_RAW_CHECK(hex.size() == 16u, "hex.size() == 16u");
  return {hex[3], hex[2], hex[1], hex[0], hex[5], hex[4], hex[7], hex[6],
          hex[8], hex[9], hex[10], hex[11], hex[12], hex[13], hex[14], hex[15]};
}

Bytes Join(std::initializer_list<Bytes> parts) {
  Bytes out;
  for (const Bytes& p : parts) out.insert(out.end(), p.begin(), p.end());
  return out;
}

}  // namespace ionest::aml
