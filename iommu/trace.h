// IOMMU event trace (issue 13 item 6): a model-neutral sink for what the emulated IOMMUs did —
// faults and events recorded, invalidation descriptors / commands executed, page requests and
// responses, stalls and resumes, interrupt remapping decisions, virtio-iommu requests.
//
// Models call, at their single choke points (the fault epilogue, the descriptor/command
// dispatcher, the page request entry, the IR decision, the virtio request handler):
//
//   if (trace::On(trace::kFault)) trace::Emit(trace::kFault, "vtd", "fault", {trace::Rid("rid", sid), ...});
//
// On() is one relaxed atomic load of a process-wide class mask: 0 (nothing installed, the
// default) makes every hook a not-taken branch. No hook is on a translate hit path.
//
// Output: one line per event, `<seconds since the sink opened, %.6f> <model> <event> key=value...`
// (keys never contain spaces; values never contain spaces or '='). Lines are formatted by the
// emitting thread (outside any sink lock), queued under a short lock into a bounded buffer and
// written by the sink's own writer thread: an emitting vCPU never waits for the file. When the
// buffer is full the event is dropped and counted; Summary() says how many.
//
// Lifetime: Install(sink) before the emitters start, Uninstall() after they have stopped (the
// machine does both around Run); the sink must outlive every Emit that may still be running.
#pragma once

#include <atomic>
#include <cstdint>
#include <cstdio>
#include <deque>
#include <initializer_list>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "vmm/guest_memory.h"

namespace ionest::trace {

// Event classes (bits of the mask; `--trace` names in brackets).
enum Class : uint32_t {
  kFault = 1u << 0,        // [faults] VT-d faults (recorded or not), SMMUv3 events, virtio-iommu fault reports
  kCommand = 1u << 1,      // [qi] VT-d invalidation descriptors, SMMUv3 commands executed
  kPageRequest = 1u << 2,  // [prq] page requests, page responses, SMMUv3 stalls and resumes
  kInterrupt = 1u << 3,    // [ir] VT-d interrupt remapping decisions
  kRequest = 1u << 4,      // [virtio] virtio-iommu requests with their status
  kAllClasses = (1u << 5) - 1,
};

namespace internal {
extern std::atomic<uint32_t> g_mask;
}  // namespace internal

// True if an installed sink wants events of `cls` (one relaxed atomic load).
inline bool On(uint32_t cls) { return internal::g_mask.load(std::memory_order_relaxed) & cls; }

// One key=value field of an event.
struct Field {
  enum Kind : uint8_t { kHex, kDec, kStr, kNone, kRid };
  const char* key;
  Kind kind;
  uint64_t value = 0;
  std::string_view text;
};
inline Field Hex(const char* key, uint64_t v) { return {key, Field::kHex, v, {}}; }
inline Field Dec(const char* key, uint64_t v) { return {key, Field::kDec, v, {}}; }
inline Field Str(const char* key, std::string_view s) { return {key, Field::kStr, 0, s}; }
// PCI requester id as bb:dd.f.
inline Field Rid(const char* key, uint32_t rid) { return {key, Field::kRid, rid, {}}; }
// "-" when absent (e.g. no PASID).
inline Field OptDec(const char* key, std::optional<uint32_t> v) {
  return v ? Dec(key, *v) : Field{key, Field::kNone, 0, {}};
}
// DMA access bits (iommu/dma_space.h DmaAccess) as r/w/x/p letters, "-" for none.
Field Access(const char* key, uint32_t access);

// PCIe PRG response codes (iommu/dma_space.h PageResponseCode): "success", "invalid-request",
// "response-failure".
std::string_view ResponseCodeName(uint8_t code);
template <typename E>
std::string_view ResponseCodeName(E code) { return ResponseCodeName(static_cast<uint8_t>(code)); }

// Formats one event line (no trailing newline); `seconds` is the timestamp.
std::string FormatEvent(double seconds, std::string_view model, std::string_view event,
                        std::initializer_list<Field> fields);

// Sends one event to the installed sink (nothing if none, or if its mask excludes `cls`).
void Emit(uint32_t cls, std::string_view model, std::string_view event, std::initializer_list<Field> fields);

// `--trace CLASSES[:PATH]`: CLASSES is a comma list of faults, qi, prq, ir, virtio or all
// (aliases: fault, cmd, cmdq, pri, stall, req); PATH is a file (truncated), or `-`/`stderr`
// (default) for stderr.
struct TraceSpec {
  uint32_t mask = 0;
  std::string path;  // "" = stderr
};
absl::StatusOr<TraceSpec> ParseTraceSpec(absl::string_view text);
// The names of the classes in `mask` ("faults,qi,...").
std::string ClassNames(uint32_t mask);

class Sink {
 public:
  static constexpr size_t kDefaultBufferBytes = 4 << 20;

  // Opens the sink described by `spec` (creates/truncates the file).
  static absl::StatusOr<std::unique_ptr<Sink>> Open(const TraceSpec& spec,
                                                    size_t buffer_bytes = kDefaultBufferBytes);
  // Writes to `file` (closed at destruction if `owns`); starts the writer thread.
  Sink(FILE* file, bool owns, uint32_t mask, size_t buffer_bytes = kDefaultBufferBytes);
  ~Sink();  // writes what is queued, stops the writer, closes the file
  Sink(const Sink&) = delete;
  Sink& operator=(const Sink&) = delete;

  uint32_t mask() const { return mask_; }
  double Seconds() const;  // since the sink was created
  // Queues one line (without newline); drops and counts it if the buffer is full. Never waits for
  // the file.
  void Write(std::string line) ABSL_LOCKS_EXCLUDED(mu_);
  // Blocks until everything queued so far is written and flushed (tests, dumps).
  void Flush() ABSL_LOCKS_EXCLUDED(mu_);
  uint64_t written() const ABSL_LOCKS_EXCLUDED(mu_);
  uint64_t dropped() const ABSL_LOCKS_EXCLUDED(mu_);
  // "trace: N events written, M dropped (the writer was behind)".
  std::string Summary() const ABSL_LOCKS_EXCLUDED(mu_);

  // Test hook: while paused, the writer thread takes nothing from the buffer.
  void PauseWriterForTest(bool paused) ABSL_LOCKS_EXCLUDED(mu_);

 private:
  void WriterLoop() ABSL_LOCKS_EXCLUDED(mu_);

  FILE* const file_;
  const bool owns_;
  const uint32_t mask_;
  const size_t buffer_bytes_;
  const absl::Time start_;

  mutable absl::Mutex mu_;
  std::deque<std::string> pending_ ABSL_GUARDED_BY(mu_);
  size_t pending_bytes_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t queued_ ABSL_GUARDED_BY(mu_) = 0;    // lines accepted so far
  uint64_t written_ ABSL_GUARDED_BY(mu_) = 0;   // lines handed to the file
  uint64_t dropped_ ABSL_GUARDED_BY(mu_) = 0;
  bool writing_ ABSL_GUARDED_BY(mu_) = false;   // the writer holds lines outside the buffer
  bool paused_ ABSL_GUARDED_BY(mu_) = false;
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  std::thread writer_;
};

// Makes `sink` the process's trace sink (null: none). The previous one is not deleted.
void Install(Sink* sink);
void Uninstall();
Sink* Installed();

// Installs a sink for a scope (tests, the machine's Run).
class ScopedInstall {
 public:
  explicit ScopedInstall(Sink* sink) { Install(sink); }
  ~ScopedInstall() { Uninstall(); }
  ScopedInstall(const ScopedInstall&) = delete;
  ScopedInstall& operator=(const ScopedInstall&) = delete;
};

// ---------------------------------------------------------------------------------------------
// Table dumps (`--dump-tables`): what the guest programmed for one requester, read through the
// model's own table readers, never modifying guest memory, with a cap on the lines printed.

struct DumpRequest {
  uint16_t rid = 0;
  std::optional<uint32_t> pasid;  // PASID / SubstreamID
  std::optional<uint64_t> iova;   // walk this address (all models); virtio-iommu lists mappings anyway
};
// `--dump-tables RID[,pasid=N][,iova=ADDR]`: RID is bb:dd.f or a number (0x.. hex).
absl::StatusOr<DumpRequest> ParseDumpRequest(absl::string_view text);

// Bounded text output of a dump: at most `max_lines`, then one "... (N more lines cut)" line.
class DumpWriter {
 public:
  static constexpr size_t kDefaultMaxLines = 256;
  explicit DumpWriter(size_t max_lines = kDefaultMaxLines) : max_lines_(max_lines) {}
  // Appends one line (printf-style done by the caller).
  void Line(std::string line);
  bool full() const { return lines_ >= max_lines_; }
  // Counts `n` lines the caller did not format because the writer was full.
  void Cut(size_t n) { cut_ += n; }
  std::string Finish() const;

 private:
  size_t max_lines_;
  size_t lines_ = 0;
  size_t cut_ = 0;
  std::string text_;
};

// Guest memory as a dump sees it: reads go to `memory` and are remembered (the first
// `max_reads`: address, size, first 8 bytes), writes and A/D updates are discarded but reported
// done, so a model's own walker can run for a dump without changing the guest's tables.
class DumpMemory final : public PhysMemory {
 public:
  struct Access {
    uint64_t gpa;
    size_t len;
    uint64_t value;  // the first min(len, 8) bytes
  };
  explicit DumpMemory(const PhysMemory& memory, size_t max_reads = 64) : memory_(memory), max_reads_(max_reads) {}
  absl::Status Read(uint64_t gpa, void* dst, size_t len) const override;
  absl::Status Write(uint64_t gpa, const void* src, size_t len) override { return absl::OkStatus(); }
  absl::StatusOr<bool> CompareExchange64(uint64_t gpa, uint64_t* expected, uint64_t desired) override;
  const std::vector<Access>& reads() const { return reads_; }
  // One "  read gpa=0x... size=N value=0x..." line per remembered read.
  void Print(DumpWriter& out) const;

 private:
  const PhysMemory& memory_;
  const size_t max_reads_;
  mutable std::vector<Access> reads_;
  mutable size_t more_ = 0;
};

}  // namespace ionest::trace
