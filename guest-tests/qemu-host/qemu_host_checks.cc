// ionest's passthrough host code against a real Linux 6.12 kernel, without KVM (guest-tests/qemu-host):
// QEMU (TCG) emulates a q35 machine with an Intel VT-d (intel-iommu) and QEMU's `edu` PCI device;
// ionest's own x86 guest kernel boots there, binds edu to vfio-pci, and this program drives it with
// ionest's code exactly as the VMM does (vmm/passthrough.h with PassthroughHost::Real(): /dev/iommu,
// VFIO cdev, IOAS over an "inner guest RAM" buffer, VfioPciDevice), behind an inner machine without a
// vCPU (guest RAM at GPA 0, a PCI root complex, an interrupt sink that records MSIs).
//
// Every check compares a value that the kernel or the device produced (sysfs, /proc/interrupts,
// /dev/kmsg, edu's registers, bytes edu moved by DMA through the real IOMMU) with what is expected;
// nothing is compared with a value this program computed on the device side.
//
// edu (QEMU docs/specs/edu.rst, hw/misc/edu.c in QEMU 7.2): BAR0 1 MiB MMIO, 32-bit registers below
// 0x80 (0x00 ID 0x010000ed, 0x04 liveness: reads back ~written, 0x08 factorial, 0x20 status bit 0
// computing, 0x24 IRQ status, 0x64 IRQ acknowledge), 64-bit DMA registers (0x80 source, 0x88
// destination, 0x90 count, 0x98 command: bit 0 start, bit 1 direction (1: edu buffer -> RAM), bit 2
// raise DMA_IRQ 0x100 when done). The DMA buffer is 4 KiB at device address 0x40000, but QEMU 7.2's
// bounds check is off by one (a transfer must end before the buffer's last byte) and aborts QEMU
// (hw_error) when violated, so transfers here stay below 0x40fff. RAM addresses are masked to 28 bits. DMA errors are not reported by edu (pci_dma_read/write results are ignored):
// a read the IOMMU blocks fills edu's buffer with zeros (QEMU's unassigned memory), and the host
// kernel logs the VT-d fault. edu has MSI (1 vector, 64-bit, no masking), no MSI-X, no FLR.
//
//   ionest_qemu_host_checks --host 0000:00:04.0 [--ram 8M]    nested KTAP (4 spaces); exit 0 = all ok
//   ionest_qemu_host_checks --open-only --host BDF            exit 0 opened, 1 refused (message on stdout)
#include <fcntl.h>
#include <poll.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <unistd.h>
#include <dirent.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <functional>
#include <memory>
#include <optional>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "devices/io_bus.h"
#include "devices/pci_host.h"
#include "devices/pci_msi.h"
#include "devices/pci_regs.h"
#include "devices/vfio/vfio_device_ops.h"
#include "iommu/dma_space.h"
#include "iommu/iommufd/iommufd_ops.h"
#include "iommu/msi.h"
#include "vmm/guest_memory.h"
#include "vmm/passthrough.h"

namespace ionest::qemuhost {
namespace {

using Clock = std::chrono::steady_clock;

// The inner machine's PCI slot for the passed-through function: 00:02.0.
constexpr uint8_t kDevfn = 0x10;
constexpr uint64_t kMsiAddress = 0xfee00000;
constexpr uint32_t kMsiData = 0x4041;
constexpr uint64_t kMsiWindowStart = 0xfee00000, kMsiWindowLast = 0xfeefffff;

// edu registers (BAR0).
constexpr uint32_t kEduId = 0x00, kEduLiveness = 0x04, kEduFactorial = 0x08, kEduStatus = 0x20,
                   kEduIrqStatus = 0x24, kEduIrqAck = 0x64, kEduDmaSrc = 0x80, kEduDmaDst = 0x88,
                   kEduDmaCount = 0x90, kEduDmaCmd = 0x98;
constexpr uint32_t kEduIdValue = 0x010000ed;
constexpr uint32_t kEduStatusComputing = 0x01;
constexpr uint64_t kEduCmdStart = 1, kEduCmdToRam = 2, kEduCmdIrq = 4;
constexpr uint32_t kEduDmaIrq = 0x100;
constexpr uint64_t kEduBuffer = 0x40000;
constexpr uint64_t kEduMaxTransfer = 4000;  // < 4095: see the header
constexpr uint16_t kEduVendor = 0x1234, kEduDevice = 0x11e8;

// An IOVA inside edu's 28-bit DMA reach, outside the inner RAM the IOAS maps (RAM is < 16 MiB).
constexpr uint64_t kUnmappedIova = 0x1000000;

double MsSince(Clock::time_point t) { return std::chrono::duration<double, std::milli>(Clock::now() - t).count(); }

std::optional<std::string> ReadFile(const std::string& path) {
  std::ifstream f(path);
  if (!f) return std::nullopt;
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

std::optional<uint64_t> ReadHexFile(const std::string& path) {
  auto s = ReadFile(path);
  if (!s) return std::nullopt;
  absl::string_view v = absl::StripAsciiWhitespace(*s);
  absl::ConsumePrefix(&v, "0x");
  uint64_t out = 0;
  if (!absl::SimpleHexAtoi(v, &out)) return std::nullopt;
  return out;
}

int CountOpenFds() {
  int n = 0;
  if (DIR* d = opendir("/proc/self/fd")) {
    while (readdir(d)) ++n;
    closedir(d);
  }
  return n;
}

// Sum of the per-CPU counts of the /proc/interrupts line whose name is `name` (nullopt: no line).
std::optional<uint64_t> ProcInterrupts(const std::string& name) {
  auto s = ReadFile("/proc/interrupts");
  if (!s) return std::nullopt;
  for (absl::string_view line : absl::StrSplit(*s, '\n')) {
    if (!absl::StrContains(line, name)) continue;
    std::vector<absl::string_view> f = absl::StrSplit(line, ' ', absl::SkipEmpty());
    uint64_t sum = 0;
    for (size_t i = 1; i < f.size(); ++i) {
      uint64_t v = 0;
      if (!absl::SimpleAtoi(f[i], &v)) break;
      sum += v;
    }
    return sum;
  }
  return std::nullopt;
}

// Kernel log records (/dev/kmsg) from the start of the buffer; each entry is one message.
std::vector<std::string> KernelLog() {
  std::vector<std::string> out;
  int fd = open("/dev/kmsg", O_RDONLY | O_NONBLOCK | O_CLOEXEC);
  if (fd < 0) return out;
  char buf[8192];
  for (;;) {
    ssize_t n = read(fd, buf, sizeof buf - 1);
    if (n < 0 && errno == EPIPE) continue;  // overwritten records: go on with the next
    if (n <= 0) break;
    std::string_view rec(buf, n);
    size_t semi = rec.find(';');
    if (semi != std::string_view::npos) rec.remove_prefix(semi + 1);
    size_t nl = rec.find('\n');
    out.emplace_back(rec.substr(0, nl));
  }
  close(fd);
  return out;
}

// Waits up to `timeout` for a kernel log record containing every string of `parts`.
std::optional<std::string> WaitForKernelLog(const std::vector<std::string>& parts, absl::Duration timeout) {
  const absl::Time deadline = absl::Now() + timeout;
  do {
    for (const std::string& rec : KernelLog()) {
      bool all = true;
      for (const std::string& p : parts) all = all && absl::StrContains(rec, p);
      if (all) return rec;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  } while (absl::Now() < deadline);
  return std::nullopt;
}

std::vector<uint8_t> RandomBytes(size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<uint8_t> b(n);
  for (auto& x : b) x = static_cast<uint8_t>(rng() | 1);  // never 0: a zero-filled read stands out
  return b;
}

// Interrupts of the inner machine's "CPU".
class InnerCpu final : public MsiSink {
 public:
  absl::Status SendMsi(const MsiMessage& msi) override {
    absl::MutexLock l(&mu_);
    msis_.push_back(msi);
    return absl::OkStatus();
  }
  std::optional<MsiMessage> WaitFor(size_t count, absl::Duration timeout) {
    absl::MutexLock l(&mu_);
    auto arrived = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return msis_.size() >= count; };
    if (!mu_.AwaitWithTimeout(absl::Condition(&arrived), timeout)) return std::nullopt;
    return msis_[count - 1];
  }
  size_t count() {
    absl::MutexLock l(&mu_);
    return msis_.size();
  }

 private:
  absl::Mutex mu_;
  std::vector<MsiMessage> msis_ ABSL_GUARDED_BY(mu_);
};

// Guest RAM at GPA 0, buses, a PCI root complex and the passed-through edu at 00:02.0.
class InnerMachine {
 public:
  static absl::StatusOr<std::unique_ptr<InnerMachine>> Create(const std::string& bdf, uint64_t ram_size) {
    std::unique_ptr<InnerMachine> m(new InnerMachine());
    auto mem = GuestMemory::Create({{0, ram_size}});
    if (!mem.ok()) return mem.status();
    m->memory_ = std::move(*mem);
    m->bypass_ = std::make_unique<BypassDmaProvider>(*m->memory_);
    m->host_ = std::make_unique<PciHost>(m->mmio_, m->pio_, m->cpu_, *m->bypass_);
    if (absl::Status s = m->host_->Register(); !s.ok()) return s;
    std::vector<iommufd::RamRange> ram;
    for (const MemoryRegion& r : m->memory_->regions()) ram.push_back({r.gpa, r.host, r.size});
    const Clock::time_point t0 = Clock::now();
    auto pt = Passthrough::Open({{{"", bdf}, "vfio@02.0"}}, std::move(ram), PassthroughHost::Real());
    if (!pt.ok()) return pt.status();
    m->open_ms_ = MsSince(t0);
    m->pt_ = std::move(*pt);
    if (absl::Status s = m->host_->AddDevice(kDevfn, m->pt_->device(0)); !s.ok()) return s;
    if (absl::Status s = m->host_->AssignResources(); !s.ok()) return s;
    return m;
  }
  ~InnerMachine() { pt_.reset(); }  // devices and IOAS before the host bridge and guest RAM

  GuestMemory& memory() { return *memory_; }
  InnerCpu& cpu() { return cpu_; }
  Passthrough& pt() { return *pt_; }
  vfio::VfioPciDevice& dev() { return pt_->device(0); }
  iommufd::IommufdOps& iommufd() { return pt_->backend().ops(); }
  uint32_t ioas() { return pt_->backend().ioas_id(); }
  uint32_t dev_id() {
    const auto& info = pt_->backend().host_info();
    return info.empty() ? 0 : info.begin()->first;
  }
  double open_ms() const { return open_ms_; }

  uint32_t ConfigRead(uint16_t reg, size_t size) {
    uint8_t b[4] = {};
    host_->ConfigRead(kDevfn, reg, b, size);
    uint32_t v = 0;
    std::memcpy(&v, b, size);
    return v;
  }
  void ConfigWrite(uint16_t reg, uint32_t value, size_t size) {
    uint8_t b[4];
    std::memcpy(b, &value, 4);
    host_->ConfigWrite(kDevfn, reg, b, size);
  }
  // What a driver's probe does: memory decoding + bus mastering (written through to the device).
  void EnableDevice() {
    ConfigWrite(pci::kCommand, ConfigRead(pci::kCommand, 2) | pci::kCommandMemory | pci::kCommandBusMaster, 2);
  }
  uint32_t Read32(uint32_t reg) {
    uint32_t v = ~0u;
    if (auto b = dev().BarMappedAt(0)) mmio_.Read(*b + reg, reinterpret_cast<uint8_t*>(&v), 4);
    return v;
  }
  void Write32(uint32_t reg, uint32_t v) {
    if (auto b = dev().BarMappedAt(0)) mmio_.Write(*b + reg, reinterpret_cast<const uint8_t*>(&v), 4);
  }
  uint64_t Read64(uint32_t reg) {
    uint64_t v = ~0ull;
    if (auto b = dev().BarMappedAt(0)) mmio_.Read(*b + reg, reinterpret_cast<uint8_t*>(&v), 8);
    return v;
  }
  void Write64(uint32_t reg, uint64_t v) {
    if (auto b = dev().BarMappedAt(0)) mmio_.Write(*b + reg, reinterpret_cast<const uint8_t*>(&v), 8);
  }

  // One edu DMA; true when the device cleared its start bit within the timeout.
  bool Dma(uint64_t src, uint64_t dst, uint64_t count, uint64_t cmd) {
    Write64(kEduDmaSrc, src);
    Write64(kEduDmaDst, dst);
    Write64(kEduDmaCount, count);
    Write64(kEduDmaCmd, cmd | kEduCmdStart);
    const Clock::time_point t0 = Clock::now();
    while (Read64(kEduDmaCmd) & kEduCmdStart) {
      if (MsSince(t0) > 10000) return false;
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    return true;
  }
  // RAM [gpa, +len) -> edu buffer at kEduBuffer + off.
  bool ToDevice(uint64_t gpa, uint64_t off, uint64_t len, uint64_t cmd = 0) {
    return Dma(gpa, kEduBuffer + off, len, cmd);
  }
  // edu buffer at kEduBuffer + off -> RAM [gpa, +len).
  bool ToRam(uint64_t off, uint64_t gpa, uint64_t len, uint64_t cmd = 0) {
    return Dma(kEduBuffer + off, gpa, len, cmd | kEduCmdToRam);
  }

 private:
  InnerMachine() = default;
  std::unique_ptr<GuestMemory> memory_;
  std::unique_ptr<BypassDmaProvider> bypass_;
  IoBus mmio_{"inner-mmio"};
  IoBus pio_{"inner-pio"};
  InnerCpu cpu_;
  std::unique_ptr<PciHost> host_;
  std::unique_ptr<Passthrough> pt_;
  double open_ms_ = 0;
};

// Nested KTAP (4-space indent) on stdout.
class Ktap {
 public:
  explicit Ktap(int planned) : planned_(planned) {
    std::printf("    KTAP version 1\n    1..%d\n", planned);
  }
  void Result(const std::string& name, bool ok, const std::string& diag = "") {
    ++n_;
    if (!diag.empty()) Diag(name + ": " + diag);
    if (!ok) ++failed_;
    std::printf("    %sok %d %s\n", ok ? "" : "not ", n_, name.c_str());
    std::fflush(stdout);
  }
  void Skip(const std::string& name, const std::string& why) {
    ++n_;
    std::printf("    ok %d %s # SKIP %s\n", n_, name.c_str(), why.c_str());
    std::fflush(stdout);
  }
  void Diag(const std::string& s) {
    for (absl::string_view line : absl::StrSplit(s, '\n')) std::printf("    # %s\n", std::string(line).c_str());
    std::fflush(stdout);
  }
  // Fills the plan with failures after an early stop.
  void Finish() {
    while (n_ < planned_) Result("not_reached", false, "an earlier case stopped the run");
  }
  int failed() const { return failed_; }

 private:
  int planned_;
  int n_ = 0;
  int failed_ = 0;
};

constexpr int kCases = 17;

// First offset where guest RAM [gpa, +want.size()) differs from `want`, or -1.
long long FirstDiff(GuestMemory& m, uint64_t gpa, const std::vector<uint8_t>& want) {
  std::vector<uint8_t> got(want.size());
  if (!m.Read(gpa, got.data(), got.size()).ok()) return 0;
  for (size_t i = 0; i < want.size(); ++i)
    if (got[i] != want[i]) return static_cast<long long>(i);
  return -1;
}

// RAM -> edu buffer -> RAM elsewhere, canaries around the destination; "" if every byte is right.
std::string RoundTrip(InnerMachine& m, uint64_t src, uint64_t buf_off, uint64_t dst, uint64_t len, uint32_t seed) {
  const std::vector<uint8_t> pattern = RandomBytes(len, seed);
  constexpr uint64_t kGuard = 256;
  constexpr uint8_t kCanary = 0xa5;
  if (!m.memory().Write(src, pattern.data(), len).ok()) return "RAM write failed";
  std::vector<uint8_t> want(len + 2 * kGuard, kCanary);
  if (!m.memory().Write(dst - kGuard, want.data(), want.size()).ok()) return "RAM write failed";
  if (!m.ToDevice(src, buf_off, len)) return "DMA RAM->edu did not finish in 10 s";
  if (!m.ToRam(buf_off, dst, len)) return "DMA edu->RAM did not finish in 10 s";
  std::copy(pattern.begin(), pattern.end(), want.begin() + kGuard);
  long long d = FirstDiff(m.memory(), dst - kGuard, want);
  if (d < 0) return "";
  const bool canary = d < static_cast<long long>(kGuard) || d >= static_cast<long long>(kGuard + len);
  return absl::StrFormat("byte at gpa %#x differs (%s)", dst - kGuard + d, canary ? "canary overwritten" : "DMA data wrong");
}

void RunCases(const std::string& bdf, uint64_t ram, Ktap& k) {
  struct utsname u{};
  uname(&u);
  k.Diag(absl::StrCat("host kernel ", u.release, ", device ", bdf));
  const std::string sysfs = "/sys/bus/pci/devices/" + bdf;
  const int fds_before = CountOpenFds();

  // (a) VFIO_DEVICE_BIND_IOMMUFD, IOMMU_IOAS_ALLOC, VFIO_DEVICE_ATTACH_IOMMUFD_PT, IOMMU_IOAS_MAP of
  // the inner RAM (Passthrough::Open), then a fresh IOMMU_IOAS_IOVA_RANGES.
  auto made = InnerMachine::Create(bdf, ram);
  {
    std::string diag = made.ok() ? "" : std::string(made.status().message());
    bool ok = made.ok();
    if (ok) {
      InnerMachine& m = **made;
      const auto& loc = m.pt().located(0);
      ok = m.pt().backend().ram_mapped() && m.dev_id() != 0 && loc.bdf == bdf &&
           absl::StartsWith(loc.cdev_path, "/dev/vfio/devices/vfio");
      diag = absl::StrFormat("%s\nopen+bind+attach+map %.1f ms, cdev %s, dev_id %u, ioas %u", m.pt().Describe(),
                             m.open_ms(), loc.cdev_path, m.dev_id(), m.ioas());
    }
    k.Result("open_bind_attach_map", ok, diag);
  }
  if (!made.ok()) return;
  InnerMachine& m = **made;
  {
    auto allowed = m.iommufd().AllowedIovaRanges(m.ioas());
    bool ok = allowed.ok() && !allowed->empty();
    std::string diag = allowed.ok() ? "" : std::string(allowed.status().message());
    bool covers_ram = false, hits_window = false;
    if (allowed.ok()) {
      for (const auto& r : *allowed) {
        absl::StrAppendFormat(&diag, "%sallowed [%#x, %#x]", diag.empty() ? "" : ", ", r.start, r.last);
        covers_ram |= r.start == 0 && r.last >= ram - 1;
        hits_window |= r.start <= kMsiWindowLast && r.last >= kMsiWindowStart;
      }
    }
    bool reserved = false;
    for (const auto& r : m.pt().backend().reserved_ranges())
      reserved |= r.start <= kMsiWindowStart && r.last >= kMsiWindowLast;
    ok = ok && covers_ram && !hits_window && reserved;
    k.Result("iova_ranges_msi_window_reserved", ok,
             absl::StrFormat("%s; RAM allowed %d, MSI window allowed %d, in reserved_ranges %d", diag, covers_ram,
                             hits_window, reserved));
  }

  // Config space: the guest's copy shows the host function's identity (compared with sysfs).
  {
    const uint32_t ids = m.ConfigRead(pci::kVendorId, 4);
    const uint32_t cls = m.ConfigRead(pci::kRevisionId, 4);
    auto sys_class = ReadHexFile(sysfs + "/class");
    auto sys_rev = ReadHexFile(sysfs + "/revision");
    const bool ok = ids == (uint32_t{kEduDevice} << 16 | kEduVendor) && sys_class && sys_rev &&
                    (cls >> 8) == *sys_class && (cls & 0xff) == *sys_rev;
    k.Result("config_ids_match_sysfs", ok,
             absl::StrFormat("ids %#010x, class/rev %#010x, sysfs class %#x revision %#x", ids, cls,
                             sys_class.value_or(~0ull), sys_rev.value_or(~0ull)));
  }
  m.EnableDevice();

  // (b) BAR0 through the VfioPciDevice (mmapped by VFIO).
  {
    const uint32_t id = m.Read32(kEduId);
    k.Result("bar0_edu_id", id == kEduIdValue, absl::StrFormat("ID register %#010x", id));
  }
  {
    std::string diag;
    bool ok = true;
    for (uint32_t v : {0x12345678u, 0xdeadbeefu, 0u}) {
      m.Write32(kEduLiveness, v);
      const uint32_t got = m.Read32(kEduLiveness);
      ok = ok && got == ~v;
      absl::StrAppendFormat(&diag, "%swrote %#010x read %#010x", diag.empty() ? "" : ", ", v, got);
    }
    k.Result("bar0_liveness_inverts", ok, diag);
  }
  {
    std::string diag;
    bool ok = true;
    for (auto [n, want] : {std::pair{10u, 3628800u}, std::pair{12u, 479001600u}}) {
      m.Write32(kEduFactorial, n);
      const Clock::time_point t0 = Clock::now();
      uint32_t status;
      while ((status = m.Read32(kEduStatus)) & kEduStatusComputing) {
        if (MsSince(t0) > 5000) break;
        std::this_thread::sleep_for(std::chrono::milliseconds(1));
      }
      const uint32_t got = m.Read32(kEduFactorial);
      ok = ok && !(status & kEduStatusComputing) && got == want;
      absl::StrAppendFormat(&diag, "%s%u! = %u (status %#x)", diag.empty() ? "" : ", ", n, got, status);
    }
    k.Result("bar0_factorial", ok, diag);
  }

  // (c) DMA both ways through the real IOMMU (the IOAS maps inner RAM at IOVA = GPA).
  {
    const Clock::time_point t0 = Clock::now();
    std::string err = RoundTrip(m, 0x10800, 0, 0x23f00, kEduMaxTransfer, 1);  // both cross a page
    k.Result("dma_ram_to_edu_to_ram", err.empty(),
             absl::StrFormat("%u bytes gpa 0x10800 -> edu 0x40000 -> gpa 0x23f00 in %.0f ms%s%s", kEduMaxTransfer, MsSince(t0),
                             err.empty() ? "" : ": ", err));
  }
  {
    // Sub-buffer offsets, and the last page of the IOAS mapping (the top of inner RAM).
    std::string err = RoundTrip(m, ram - 300, 0xe00, 0x300100, 300, 2);
    if (err.empty()) err = RoundTrip(m, 0x51234, 0x10, ram - 256 - 700, 700, 3);
    k.Result("dma_offsets_and_last_ram_page", err.empty(), err);
  }
  {
    // A read from an IOVA the IOAS does not map: the host VT-d blocks it (edu's buffer gets QEMU's
    // zeros instead of memory contents) and the host kernel reports the fault for this device.
    const std::vector<uint8_t> marker = RandomBytes(256, 4);
    m.memory().Write(0x70000, marker.data(), marker.size()).IgnoreError();
    // Non-zero bytes where a read that wrapped or was clamped into the mapping would land (IOVA 0).
    m.memory().Write(0, marker.data(), marker.size()).IgnoreError();
    bool ok = m.ToDevice(0x70000, 0x100, marker.size());  // edu buffer [0x100, +256) = marker
    ok = ok && m.ToDevice(kUnmappedIova, 0x100, marker.size());
    const std::vector<uint8_t> canary(256, 0x5a);
    m.memory().Write(0x71000, canary.data(), canary.size()).IgnoreError();
    ok = ok && m.ToRam(0x100, 0x71000, marker.size());
    const long long nonzero = FirstDiff(m.memory(), 0x71000, std::vector<uint8_t>(256, 0));
    const std::string slot = bdf.substr(bdf.find(':') + 1);  // "00:04.0"
    auto fault = WaitForKernelLog({absl::StrCat("[", slot, "]"), absl::StrFormat("fault addr %#x", kUnmappedIova)},
                                  absl::Seconds(10));
    ok = ok && nonzero < 0 && fault.has_value();
    k.Result("dma_outside_ioas_blocked", ok,
             absl::StrFormat("edu buffer after the blocked read: %s; host kernel: %s",
                             nonzero < 0 ? "zeros" : absl::StrFormat("byte %d not zero", nonzero),
                             fault ? *fault : "no DMAR fault logged for it"));
  }

  // (d) MSI: enabled in the emulated capability the way a guest driver does it; edu's completion
  // interrupt goes through the host kernel (vfio-pci's eventfd) to the inner interrupt sink.
  {
    PciMsi* msi = m.dev().msi();
    std::string diag;
    bool ok = msi != nullptr && m.dev().msix() == nullptr;
    if (msi) {
      const uint16_t o = msi->offset();
      m.ConfigWrite(o + PciMsi::kAddressLo, static_cast<uint32_t>(kMsiAddress), 4);
      m.ConfigWrite(o + PciMsi::kAddressHi, 0, 4);
      m.ConfigWrite(o + PciMsi::kData, kMsiData, 2);
      m.ConfigWrite(o + PciMsi::kControl, m.ConfigRead(o + PciMsi::kControl, 2) | PciMsi::kControlEnable, 2);
      const std::string irq_name = absl::StrCat("vfio-msi[0](", bdf, ")");
      const std::optional<uint64_t> host_before = ProcInterrupts(irq_name);
      const size_t n0 = m.cpu().count();
      ok = ok && m.ToRam(0, 0x80000, 64, kEduCmdIrq);
      auto got = m.cpu().WaitFor(n0 + 1, absl::Seconds(10));
      std::this_thread::sleep_for(std::chrono::milliseconds(300));  // no second message follows
      const size_t n = m.cpu().count() - n0;
      const uint32_t irq_status = m.Read32(kEduIrqStatus);
      m.Write32(kEduIrqAck, irq_status);
      const std::optional<uint64_t> host_after = ProcInterrupts(irq_name);
      ok = ok && got && n == 1 && got->address == kMsiAddress && got->data == kMsiData &&
           got->requester_id == kDevfn && (irq_status & kEduDmaIrq) && host_before && host_after &&
           *host_after == *host_before + 1 && m.dev().forwarded_interrupts() == 1;
      diag = absl::StrFormat(
          "inner MSIs %u (%s), edu IRQ status %#x, host %s %s -> %s, forwarded %u, host config errors %u", n,
          got ? absl::StrFormat("%#x/%#x rid %#x", got->address, got->data, got->requester_id) : "none in 10 s",
          irq_status, irq_name, host_before ? absl::StrCat(*host_before) : "absent",
          host_after ? absl::StrCat(*host_after) : "absent", m.dev().forwarded_interrupts(),
          m.dev().host_config_errors());
      // Disable MSI again: the host vector goes away.
      m.ConfigWrite(o + PciMsi::kControl, m.ConfigRead(o + PciMsi::kControl, 2) & ~PciMsi::kControlEnable, 2);
      const bool released = !ProcInterrupts(irq_name).has_value();
      ok = ok && released;
      absl::StrAppend(&diag, released ? "; host vector released on MSI disable" : "; host vector still present");
    }
    k.Result("msi_forwarded_once", ok, msi ? diag : "no MSI capability in the guest view");
  }

  // (e) iommufd nesting operations against the real kernel.
  iommufd::IommufdOps& ops = m.iommufd();
  std::optional<uint64_t> ecap;
  {
    auto info = ops.GetHwInfo(m.dev_id());
    auto cap = ReadHexFile("/sys/class/iommu/dmar0/intel-iommu/cap");
    ecap = ReadHexFile("/sys/class/iommu/dmar0/intel-iommu/ecap");
    constexpr uint32_t kTypeIntelVtd = 1;  // IOMMU_HW_INFO_TYPE_INTEL_VTD
    const bool ok = info.ok() && info->type == kTypeIntelVtd && cap && ecap && info->vtd_cap == *cap &&
                    info->vtd_ecap == *ecap;
    k.Result("hw_info_intel_vtd", ok,
             info.ok() ? absl::StrFormat("type %u cap %#x ecap %#x flags %#x max_pasid_log2 %u; sysfs cap %#x ecap %#x",
                                         info->type, info->vtd_cap, info->vtd_ecap, info->vtd_flags,
                                         info->max_pasid_log2, cap.value_or(0), ecap.value_or(0))
                       : std::string(info.status().message()));
  }
  {
    // Positive control: a plain paging HWPT on the IOAS is allocated (and destroyed) ...
    auto plain = ops.AllocHwpt({.dev_id = m.dev_id(), .pt_id = m.ioas()});
    absl::Status destroyed = plain.ok() ? ops.Destroy(*plain) : plain.status();
    // ... a nest parent is refused: QEMU 7.2's VT-d has no ECAP.NEST (bit 26).
    auto parent = ops.AllocHwpt({.dev_id = m.dev_id(), .pt_id = m.ioas(), .nest_parent = true});
    const std::string msg = parent.ok() ? "" : std::string(parent.status().message());
    const bool nest_clear = ecap && !(*ecap & (1ull << 26));
    const bool ok = plain.ok() && destroyed.ok() && !parent.ok() &&
                    parent.status().code() == absl::ErrnoToStatusCode(EOPNOTSUPP) &&
                    absl::StartsWith(msg, absl::StrFormat("IOMMU_HWPT_ALLOC dev %d pt %d (nest parent)", m.dev_id(),
                                                          m.ioas())) &&
                    absl::StrContains(msg, absl::StrFormat("(errno %d)", EOPNOTSUPP)) && nest_clear;
    k.Result("hwpt_nest_parent_refused", ok,
             absl::StrFormat("plain HWPT %s (destroy %s); ECAP.NEST %s; nest parent: %s",
                             plain.ok() ? absl::StrCat("id ", *plain) : std::string(plain.status().message()),
                             destroyed.ok() ? "ok" : std::string(destroyed.message()), nest_clear ? "clear" : "SET",
                             parent.ok() ? absl::StrCat("allocated id ", *parent) : parent.status().ToString()));
    if (parent.ok()) ops.Destroy(*parent).IgnoreError();
  }
  {
    auto q = ops.AllocFaultQueue();
    bool ok = q.ok() && q->fd >= 0;
    std::string diag = q.ok() ? "" : std::string(q.status().message());
    if (ok) {
      pollfd p{q->fd, POLLIN, 0};
      const int r = poll(&p, 1, 0);
      auto faults = ops.ReadFaults(q->fd, 4);
      ok = r == 0 && faults.ok() && faults->empty();
      diag = absl::StrFormat("fault object %u fd %d: poll %d revents %#x, read %s", q->id, q->fd, r, p.revents,
                             faults.ok() ? absl::StrCat(faults->size(), " records") : faults.status().ToString());
      close(q->fd);
    }
    k.Result("fault_queue_alloc_pollable_empty", ok, diag);
  }
  {
    absl::Status s = m.dev().ops().AttachPasid(1, m.ioas());
    const bool ok = s.code() == absl::StatusCode::kFailedPrecondition &&
                    absl::StrContains(s.message(), "VFIO_DEVICE_ATTACH_IOMMUFD_PT (ATTACH_PASID, pasid 1") &&
                    absl::StrContains(s.message(), "lacks PASID attach");
    k.Result("pasid_attach_needs_newer_kernel", ok, s.ToString());
  }
  {
    // The device still works after the refused operations.
    std::string err = RoundTrip(m, 0x90000, 0x800, 0xa0000, 1024, 5);
    k.Result("dma_after_nesting_ops", err.empty(), err);
  }

  // (f) A second VM (another process: this program with --open-only) is refused while we hold the
  // device, with a message naming us; after release the device opens again.
  {
    std::string out;
    int status = -1;
    int pipefd[2];
    if (pipe(pipefd) == 0) {
      const pid_t pid = fork();
      if (pid == 0) {
        dup2(pipefd[1], 1);
        dup2(pipefd[1], 2);
        close(pipefd[0]);
        execl("/proc/self/exe", "ionest_qemu_host_checks", "--open-only", "--host", bdf.c_str(), nullptr);
        _exit(127);
      }
      close(pipefd[1]);
      char buf[512];
      ssize_t n;
      while ((n = read(pipefd[0], buf, sizeof buf)) > 0) out.append(buf, n);
      close(pipefd[0]);
      if (pid > 0) waitpid(pid, &status, 0);
    }
    const bool ok = WIFEXITED(status) && WEXITSTATUS(status) == 1 &&
                    absl::StrContains(out, absl::StrFormat("in use by process %d", getpid()));
    k.Result("second_vm_refused", ok,
             absl::StrFormat("exit %d: %s", WIFEXITED(status) ? WEXITSTATUS(status) : -1,
                             absl::StripTrailingAsciiWhitespace(out)));
  }
  made->reset();
  {
    const int fds_after = CountOpenFds();
    std::optional<std::string> driver;
    char link[256];
    ssize_t n = readlink((sysfs + "/driver").c_str(), link, sizeof link - 1);
    if (n > 0) driver = std::string(link, n);
    auto again = InnerMachine::Create(bdf, ram);
    bool ok = fds_after == fds_before && again.ok() && driver && absl::EndsWith(*driver, "/vfio-pci");
    std::string diag = absl::StrFormat("fds %d -> %d, driver %s, reopen: %s", fds_before, fds_after,
                                       driver.value_or("none"),
                                       again.ok() ? "ok" : std::string(again.status().message()));
    if (again.ok()) {
      (*again)->EnableDevice();
      const uint32_t id = (*again)->Read32(kEduId);
      std::string err = RoundTrip(**again, 0x10000, 0, 0x20000, 512, 6);
      ok = ok && id == kEduIdValue && err.empty();
      absl::StrAppendFormat(&diag, ", ID %#010x, DMA %s", id, err.empty() ? "ok" : err);
    }
    k.Result("released_and_reopened", ok, diag);
  }
}

int Main(int argc, char** argv) {
  std::string bdf;
  uint64_t ram = 8ull << 20;
  bool open_only = false;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--open-only") {
      open_only = true;
    } else if (a == "--host" && i + 1 < argc) {
      bdf = argv[++i];
    } else if (a == "--ram" && i + 1 < argc) {
      uint64_t mib = 0;
      absl::string_view v = argv[++i];
      const bool suffix = absl::ConsumeSuffix(&v, "M");
      if (!suffix || !absl::SimpleAtoi(v, &mib) || mib < 4 || mib > 15) {
        std::fprintf(stderr, "--ram: 4M..15M (edu reaches 28 bits; %#llx must stay unmapped)\n",
                     static_cast<unsigned long long>(kUnmappedIova));
        return 2;
      }
      ram = mib << 20;
    } else {
      std::fprintf(stderr, "usage: %s --host DDDD:BB:DD.F [--ram 8M]\n", argv[0]);
      return 2;
    }
  }
  if (bdf.size() != 12) {
    std::fprintf(stderr, "--host DDDD:BB:DD.F is required\n");
    return 2;
  }
  if (open_only) {  // the "second VM" of second_vm_refused
    auto m = InnerMachine::Create(bdf, 4ull << 20);
    std::printf("%s\n", m.ok() ? "opened" : std::string(m.status().message()).c_str());
    return m.ok() ? 0 : 1;
  }
  Ktap k(kCases);
  RunCases(bdf, ram, k);
  k.Finish();
  return k.failed() == 0 ? 0 : 1;
}

}  // namespace
}  // namespace ionest::qemuhost

int main(int argc, char** argv) {
  std::setvbuf(stdout, nullptr, _IOLBF, 0);
  return ionest::qemuhost::Main(argc, argv);
}
