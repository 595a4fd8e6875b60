#include "iommu/trace.h"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <utility>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "iommu/dma_space.h"

namespace ionest::trace {

namespace internal {
std::atomic<uint32_t> g_mask{0};
}  // namespace internal

namespace {

std::atomic<Sink*> g_sink{nullptr};

struct ClassName {
  absl::string_view name;
  uint32_t mask;
};
// The first name of each class is its canonical one (ClassNames); the rest are aliases.
constexpr ClassName kClassNames[] = {
    {"faults", kFault},      {"qi", kCommand},        {"prq", kPageRequest}, {"ir", kInterrupt},
    {"virtio", kRequest},    {"fault", kFault},       {"cmd", kCommand},     {"cmdq", kCommand},
    {"pri", kPageRequest},   {"stall", kPageRequest}, {"req", kRequest},     {"all", kAllClasses},
};

void AppendField(std::string& line, const Field& f) {
  line += ' ';
  line += f.key;
  line += '=';
  switch (f.kind) {
    case Field::kHex:
      absl::StrAppendFormat(&line, "0x%x", f.value);
      break;
    case Field::kDec:
      absl::StrAppend(&line, f.value);
      break;
    case Field::kNone:
      line += '-';
      break;
    case Field::kRid:
      absl::StrAppendFormat(&line, "%02x:%02x.%x", (f.value >> 8) & 0xff, (f.value >> 3) & 0x1f, f.value & 7);
      break;
    case Field::kStr:
      if (f.text.empty()) {
        line += '-';
        break;
      }
      for (char c : f.text) line += (c == ' ' || c == '=' || c == '\n') ? '_' : c;  // one token
      break;
  }
}

}  // namespace

Field Access(const char* key, uint32_t access) {
  static constexpr std::string_view kCombos[16] = {"-",   "r",   "w",   "rw",   "x",   "rx",   "wx",   "rwx",
                                                   "p",   "rp",  "wp",  "rwp",  "xp",  "rxp",  "wxp",  "rwxp"};
  return Str(key, kCombos[access & (kDmaRead | kDmaWrite | kDmaExec | kDmaPriv)]);
}

std::string_view ResponseCodeName(uint8_t code) {
  switch (code) {
    case static_cast<uint8_t>(PageResponseCode::kSuccess): return "success";
    case static_cast<uint8_t>(PageResponseCode::kInvalidRequest): return "invalid-request";
    case static_cast<uint8_t>(PageResponseCode::kResponseFailure): return "response-failure";
    default: return "unknown";
  }
}

std::string FormatEvent(double seconds, std::string_view model, std::string_view event,
                        std::initializer_list<Field> fields) {
  std::string line = absl::StrFormat("%.6f ", seconds);
  line.append(model);
  line += ' ';
  line.append(event);
  for (const Field& f : fields) AppendField(line, f);
  return line;
}

void Emit(uint32_t cls, std::string_view model, std::string_view event, std::initializer_list<Field> fields) {
  Sink* sink = g_sink.load(std::memory_order_acquire);
  if (!sink || !(sink->mask() & cls)) return;
  sink->Write(FormatEvent(sink->Seconds(), model, event, fields));
}

void Install(Sink* sink) {
  g_sink.store(sink, std::memory_order_release);
  internal::g_mask.store(sink ? sink->mask() : 0, std::memory_order_relaxed);
}

void Uninstall() { Install(nullptr); }

Sink* Installed() { return g_sink.load(std::memory_order_acquire); }

absl::StatusOr<TraceSpec> ParseTraceSpec(absl::string_view text) {
  TraceSpec spec;
  absl::string_view classes = text, path;
  if (size_t colon = text.find(':'); colon != absl::string_view::npos) {
    classes = text.substr(0, colon);
    path = text.substr(colon + 1);
    if (path.empty()) return absl::InvalidArgumentError("--trace: empty path after ':' (use - for stderr)");
  }
  if (classes.empty()) return absl::InvalidArgumentError("--trace: no event classes (e.g. faults,qi,prq,ir,virtio or all)");
  for (absl::string_view name : absl::StrSplit(classes, ',')) {
    uint32_t mask = 0;
    for (const ClassName& c : kClassNames)
      if (c.name == name) mask = c.mask;
    if (mask == 0) {
      return absl::InvalidArgumentError(absl::StrFormat(
          "--trace: unknown event class '%s' (classes: faults, qi, prq, ir, virtio, all; then :PATH)", name));
    }
    spec.mask |= mask;
  }
  if (path != "-" && path != "stderr") spec.path = std::string(path);
  return spec;
}

std::string ClassNames(uint32_t mask) {
  std::string out;
  for (size_t i = 0; i < 5; ++i) {
    if (mask & kClassNames[i].mask) absl::StrAppend(&out, out.empty() ? "" : ",", kClassNames[i].name);
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Sink.

absl::StatusOr<std::unique_ptr<Sink>> Sink::Open(const TraceSpec& spec, size_t buffer_bytes) {
  if (spec.path.empty()) return std::make_unique<Sink>(stderr, false, spec.mask, buffer_bytes);
  FILE* f = std::fopen(spec.path.c_str(), "w");
  if (!f) {
    return absl::InvalidArgumentError(
        absl::StrFormat("--trace: cannot open '%s' for writing: %s", spec.path, std::strerror(errno)));
  }
  return std::make_unique<Sink>(f, true, spec.mask, buffer_bytes);
}

Sink::Sink(FILE* file, bool owns, uint32_t mask, size_t buffer_bytes)
    : file_(file), owns_(owns), mask_(mask), buffer_bytes_(buffer_bytes), start_(absl::Now()) {
  writer_ = std::thread([this] { WriterLoop(); });
}

Sink::~Sink() {
  {
    absl::MutexLock l(&mu_);
    stop_ = true;
    paused_ = false;
  }
  writer_.join();
  std::fflush(file_);
  if (owns_) std::fclose(file_);
}

double Sink::Seconds() const { return absl::ToDoubleSeconds(absl::Now() - start_); }

void Sink::Write(std::string line) {
  absl::MutexLock l(&mu_);
  // Bounded: a full buffer drops the newest event (the writer is behind); never waits.
  if (pending_bytes_ + line.size() + 1 > buffer_bytes_) {
    ++dropped_;
    return;
  }
  pending_bytes_ += line.size() + 1;
  ++queued_;
  pending_.push_back(std::move(line));
}

void Sink::WriterLoop() {
  std::deque<std::string> batch;
  absl::MutexLock l(&mu_);
  while (true) {
    mu_.Await(absl::Condition(
        +[](Sink* s) ABSL_NO_THREAD_SAFETY_ANALYSIS { return s->stop_ || (!s->paused_ && !s->pending_.empty()); },
        this));
    if (pending_.empty() && stop_) return;
    if (paused_ && !stop_) continue;
    batch.swap(pending_);
    pending_bytes_ = 0;
    writing_ = true;
    mu_.Unlock();
    for (std::string& line : batch) {
      line += '\n';
      std::fwrite(line.data(), 1, line.size(), file_);
    }
    std::fflush(file_);
    const size_t n = batch.size();
    batch.clear();
    mu_.Lock();
    written_ += n;
    writing_ = false;
  }
}

void Sink::Flush() {
  absl::MutexLock l(&mu_);
  const uint64_t target = queued_;
  auto done = [this, target]() ABSL_NO_THREAD_SAFETY_ANALYSIS { return written_ >= target; };
  mu_.Await(absl::Condition(&done));
}

uint64_t Sink::written() const {
  absl::MutexLock l(&mu_);
  return written_;
}

uint64_t Sink::dropped() const {
  absl::MutexLock l(&mu_);
  return dropped_;
}

std::string Sink::Summary() const {
  absl::MutexLock l(&mu_);
  std::string s = absl::StrFormat("trace (%s): %d events written", ClassNames(mask_), written_);
  if (dropped_) absl::StrAppendFormat(&s, ", %d dropped (the writer was behind; buffer %d bytes)", dropped_, buffer_bytes_);
  return s;
}

void Sink::PauseWriterForTest(bool paused) {
  absl::MutexLock l(&mu_);
  paused_ = paused;
}

// ---------------------------------------------------------------------------------------------
// Dumps.

absl::StatusOr<DumpRequest> ParseDumpRequest(absl::string_view text) {
  auto bad = [&](absl::string_view why) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "--dump-tables '%s': %s (RID[,pasid=N][,iova=ADDR], RID as bb:dd.f or a number)", text, why));
  };
  std::vector<absl::string_view> parts = absl::StrSplit(text, ',');
  DumpRequest r;
  auto number = [](absl::string_view s, uint64_t* v) {
    if (absl::StartsWithIgnoreCase(s, "0x")) return absl::SimpleHexAtoi(s.substr(2), v);
    return absl::SimpleAtoi(s, v);
  };
  absl::string_view rid = parts[0];
  uint64_t v = 0;
  if (std::vector<absl::string_view> bdf = absl::StrSplit(rid, absl::ByAnyChar(":.")); bdf.size() == 3) {
    uint64_t b, d, f;
    if (!absl::SimpleHexAtoi(bdf[0], &b) || !absl::SimpleHexAtoi(bdf[1], &d) || !absl::SimpleHexAtoi(bdf[2], &f) ||
        b > 0xff || d > 0x1f || f > 7)
      return bad("bad bb:dd.f");
    r.rid = static_cast<uint16_t>(b << 8 | d << 3 | f);
  } else if (number(rid, &v) && v <= 0xffff) {
    r.rid = static_cast<uint16_t>(v);
  } else {
    return bad("bad requester id");
  }
  for (size_t i = 1; i < parts.size(); ++i) {
    std::pair<absl::string_view, absl::string_view> kv = absl::StrSplit(parts[i], absl::MaxSplits('=', 1));
    if (!number(kv.second, &v)) return bad(absl::StrCat("bad value in '", parts[i], "'"));
    if (kv.first == "pasid") {
      if (v >= (1u << 20)) return bad("pasid above 20 bits");
      r.pasid = static_cast<uint32_t>(v);
    } else if (kv.first == "iova") {
      r.iova = v;
    } else {
      return bad(absl::StrCat("unknown key '", kv.first, "'"));
    }
  }
  return r;
}

void DumpWriter::Line(std::string line) {
  if (lines_ >= max_lines_) {
    ++cut_;
    return;
  }
  ++lines_;
  text_ += line;
  text_ += '\n';
}

std::string DumpWriter::Finish() const {
  if (cut_ == 0) return text_;
  return absl::StrFormat("%s... (%d more lines cut)\n", text_, cut_);
}

absl::Status DumpMemory::Read(uint64_t gpa, void* dst, size_t len) const {
  absl::Status s = memory_.Read(gpa, dst, len);
  if (reads_.size() < max_reads_) {
    uint64_t value = 0;
    if (s.ok()) std::memcpy(&value, dst, std::min<size_t>(len, sizeof(value)));
    reads_.push_back({gpa, s.ok() ? len : 0, value});
  } else {
    ++more_;
  }
  return s;
}

absl::StatusOr<bool> DumpMemory::CompareExchange64(uint64_t gpa, uint64_t* expected, uint64_t desired) {
  return true;  // A/D updates the walk would make are not written: the dump changes nothing
}

void DumpMemory::Print(DumpWriter& out) const {
  for (const Access& a : reads_) {
    if (a.len == 0) {
      out.Line(absl::StrFormat("  read gpa=0x%x failed (not guest RAM)", a.gpa));
    } else {
      out.Line(absl::StrFormat("  read gpa=0x%x size=%d value=0x%016x", a.gpa, a.len, a.value));
    }
  }
  if (more_) out.Line(absl::StrFormat("  ... %d more reads", more_));
}

}  // namespace ionest::trace
