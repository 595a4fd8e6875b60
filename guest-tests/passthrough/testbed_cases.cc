#include "guest-tests/passthrough/testbed_cases.h"

#include <fcntl.h>
#include <grp.h>
#include <sys/wait.h>
#include <unistd.h>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <dirent.h>
#include <functional>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <thread>
#include <vector>
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/mutex.h"
#include "devices/io_bus.h"
#include "devices/pci_express_caps.h"
#include "devices/pci_host.h"
#include "devices/pci_msix.h"
#include "devices/pci_regs.h"
#include "devices/testdev/dma_test_device_regs.h"
#include "iommu/dma_space.h"
#include "iommu/msi.h"
#include "vmm/guest_memory.h"
#include "vmm/memory_layout.h"

namespace ionest::testbed {
namespace {

using namespace dmatest;
using Clock = std::chrono::steady_clock;

constexpr uint8_t kDevfn = 0x10;  // inner 00:02.0
constexpr uint64_t kMsiAddress = 0xfee00000;
constexpr uint32_t kMsiData = 0x4041;

double MsSince(Clock::time_point t) {
  return std::chrono::duration<double, std::milli>(Clock::now() - t).count();
}

int CountOpenFds() {
  int n = 0;
  if (DIR* d = opendir("/proc/self/fd")) {
    while (readdir(d)) ++n;
    closedir(d);
  }
  return n;
}

// Interrupts of the inner machine's "CPU".
class InnerCpu final : public MsiSink {
 public:
  absl::Status SendMsi(const MsiMessage& msi) override {
    absl::MutexLock l(&mu_);
    msis_.push_back(msi);
    return absl::OkStatus();
  }
  // Waits for the n-th message (1-based count) to arrive.
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


std::vector<PassthroughRequest> Requests(const TestbedOptions& o) {
  std::vector<PassthroughRequest> r;
  for (size_t i = 0; i < o.devices.size(); ++i) {
    r.push_back({{o.devices[i].vfio_path, o.devices[i].vfio_host}, absl::StrFormat("vfio@%02x.0", 2 + i)});
  }
  return r;
}

// The inner machine: guest RAM at GPA 0, buses, PCI root complex, the passthrough devices.
class InnerMachine {
 public:
  static absl::StatusOr<std::unique_ptr<InnerMachine>> Create(const TestbedOptions& o, const PassthroughHost& host) {
    std::unique_ptr<InnerMachine> m(new InnerMachine());
    auto mem = GuestMemory::Create({{0, o.ram}});
    if (!mem.ok()) return mem.status();
    m->memory_ = std::move(*mem);
    m->bypass_ = std::make_unique<BypassDmaProvider>(*m->memory_);
    m->host_ = std::make_unique<PciHost>(m->mmio_, m->pio_, m->cpu_, *m->bypass_);
    if (absl::Status s = m->host_->Register(); !s.ok()) return s;
    std::vector<iommufd::RamRange> ram;
    for (const MemoryRegion& r : m->memory_->regions()) ram.push_back({r.gpa, r.host, r.size});
    const Clock::time_point t0 = Clock::now();
    auto pt = Passthrough::Open(Requests(o), std::move(ram), host);
    if (!pt.ok()) return pt.status();
    m->open_ms_ = MsSince(t0);
    m->job_timeout_s_ = o.job_timeout_s;
    m->pt_ = std::move(*pt);
    if (absl::Status s = m->host_->AddDevice(kDevfn, m->pt_->device(0)); !s.ok()) return s;
    if (absl::Status s = m->host_->AssignResources(); !s.ok()) return s;
    return m;
  }
  ~InnerMachine() {
    pt_.reset();  // devices and IOAS before the host bridge and guest RAM
  }

  GuestMemory& memory() { return *memory_; }
  InnerCpu& cpu() { return cpu_; }
  Passthrough& passthrough() { return *pt_; }
  vfio::VfioPciDevice& dev() { return pt_->device(0); }
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
  std::optional<uint64_t> Bar(unsigned i) { return dev().BarMappedAt(i); }
  uint64_t Read64(uint32_t reg) {
    uint64_t v = ~0ull;
    if (auto b = Bar(0)) mmio_.Read(*b + reg, reinterpret_cast<uint8_t*>(&v), 8);
    return v;
  }
  void Write64(uint32_t reg, uint64_t v) {
    if (auto b = Bar(0)) mmio_.Write(*b + reg, reinterpret_cast<const uint8_t*>(&v), 8);
  }
  void ReadBar(uint32_t off, void* dst, size_t len) {
    if (auto b = Bar(0)) {
      for (size_t i = 0; i < len; i += 8) mmio_.Read(*b + off + i, static_cast<uint8_t*>(dst) + i, 8);
    }
  }
  void WriteBar(uint32_t off, const void* src, size_t len) {
    if (auto b = Bar(0)) {
      for (size_t i = 0; i < len; i += 8) mmio_.Write(*b + off + i, static_cast<const uint8_t*>(src) + i, 8);
    }
  }
  // What a driver's probe does: memory decoding + bus mastering.
  void EnableDevice() {
    ConfigWrite(pci::kCommand, ConfigRead(pci::kCommand, 2) | pci::kCommandMemory | pci::kCommandBusMaster, 2);
  }
  // MSI-X vector 0 → kMsiAddress/kMsiData, masked or not; MSI-X enabled.
  bool ProgramMsix(bool masked) {
    PciMsix* msix = dev().msix();
    if (!msix) return false;
    const uint32_t table = ConfigRead(msix->offset() + PciMsix::kTable, 4);
    auto bar = Bar(table & 7);
    if (!bar) return false;
    const uint32_t entry[4] = {static_cast<uint32_t>(kMsiAddress), 0, kMsiData, masked ? 1u : 0u};
    mmio_.Write(*bar + (table & ~7u), reinterpret_cast<const uint8_t*>(entry), 16);
    ConfigWrite(msix->offset() + PciMsix::kControl, PciMsix::kControlEnable, 2);
    return true;
  }
  void UnmaskVector0() {
    PciMsix* msix = dev().msix();
    const uint32_t table = ConfigRead(msix->offset() + PciMsix::kTable, 4);
    const uint32_t ctl = 0;
    if (auto bar = Bar(table & 7)) mmio_.Write(*bar + (table & ~7u) + 12, reinterpret_cast<const uint8_t*>(&ctl), 4);
  }

  struct Job {
    uint64_t status = 0;
    uint8_t error = 0;
    uint64_t fault_info = 0;
    bool done() const { return error == 0 && (status & kStatusDone); }
  };
  Job RunJob(uint32_t op, uint64_t src, uint64_t dst, uint64_t len, uint64_t ctrl = 0) {
    const double timeout_s = job_timeout_s_;
    Write64(kRegStatus, kStatusDone | kStatusError);  // RW1C: clear the last job's result
    Write64(kRegSrc, src);
    Write64(kRegDst, dst);
    Write64(kRegLen, len);
    Write64(kRegPasid, 0);
    Write64(kRegCtrl, op | ctrl);
    Write64(kRegDoorbell, kDoorbellStart);
    const Clock::time_point t0 = Clock::now();
    Job j;
    while (true) {
      j.status = Read64(kRegStatus);
      if (!(j.status & kStatusBusy) && (j.status & (kStatusDone | kStatusError))) break;
      if (MsSince(t0) > timeout_s * 1000) {
        Write64(kRegDoorbell, kDoorbellAbort);
        j.error = 0xff;
        return j;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    j.error = static_cast<uint8_t>(j.status >> kStatusErrorShift);
    j.fault_info = Read64(kRegFaultInfo);
    return j;
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
  double job_timeout_s_ = 30;
};

std::vector<uint8_t> RandomBytes(size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<uint8_t> b(n);
  for (auto& x : b) x = static_cast<uint8_t>(rng());
  return b;
}

// First differing offset of guest RAM [gpa, +want.size()) from `want`, or -1.
long long FirstDiff(GuestMemory& m, uint64_t gpa, const std::vector<uint8_t>& want) {
  std::vector<uint8_t> got(want.size());
  if (!m.Read(gpa, got.data(), got.size()).ok()) return 0;
  for (size_t i = 0; i < want.size(); ++i)
    if (got[i] != want[i]) return static_cast<long long>(i);
  return -1;
}

constexpr uint8_t kCanary = 0xa5;

// DMA write of the SRAM pattern (2 KiB, repeated) to [dst, +len): exact bytes, canaries around.
std::string CheckWrite(InnerMachine& m, uint64_t dst, uint64_t len, uint32_t seed) {
  const std::vector<uint8_t> sram = RandomBytes(kSramSize, seed);
  m.WriteBar(kSramOffset, sram.data(), sram.size());
  const uint64_t guard = 256;
  std::vector<uint8_t> canary(len + 2 * guard, kCanary);
  if (!m.memory().Write(dst - guard, canary.data(), canary.size()).ok()) return "RAM write failed";
  InnerMachine::Job j = m.RunJob(kOpWrite, 0, dst, len);
  if (!j.done()) return absl::StrFormat("job status %#x error %u fault_info %#x", j.status, j.error, j.fault_info);
  std::vector<uint8_t> want(canary);
  for (uint64_t i = 0; i < len; ++i) want[guard + i] = sram[i % sram.size()];
  long long d = FirstDiff(m.memory(), dst - guard, want);
  if (d >= 0) {
    return absl::StrFormat("byte at gpa %#x differs (%s)", dst - guard + d,
                           (d < static_cast<long long>(guard) || d >= static_cast<long long>(guard + len))
                               ? "canary overwritten"
                               : "DMA data wrong");
  }
  return "";
}

void RunCasesBody(const TestbedOptions& o, const PassthroughHost& host, Ktap& k) {
  const int fds_before = CountOpenFds();
  auto made = InnerMachine::Create(o, host);
  k.Result("open_bind_attach_map", made.ok(), made.ok() ? "" : std::string(made.status().message()));
  if (!made.ok()) return;
  InnerMachine& m = **made;
  k.Diag(absl::StrCat("bench: ioas_open_map_ms ", absl::StrFormat("%.1f", m.open_ms()), " ram_mib ", o.ram >> 20));
  for (const std::string& line : std::vector<std::string>(absl::StrSplit(m.passthrough().Describe(), '\n'))) {
    k.Diag(line);
  }
  const auto& reserved = m.passthrough().backend().reserved_ranges();
  bool msi_window_reserved = false;
  for (const auto& r : reserved) msi_window_reserved |= r.start <= 0xfee00000 && r.last >= 0xfeefffff;
  k.Result("msi_window_reported_reserved", msi_window_reserved,
           absl::StrFormat("%u reserved ranges, none covers 0xfee00000-0xfeefffff", reserved.size()));

  // Config space: the guest's copy shows the host function's identity.
  const uint32_t ids = m.ConfigRead(pci::kVendorId, 4);
  k.Result("config_ids", ids == (uint32_t{kDeviceId} << 16 | kVendorId), absl::StrFormat("ids %#x", ids));
  m.EnableDevice();

  // BAR access both ways: a read-only ID register, a register written and read back, the SRAM.
  {
    const uint64_t id = m.Read64(kRegId);
    m.Write64(kRegPattern, 0x0123456789abcdefull);
    const uint64_t pattern = m.Read64(kRegPattern);
    const std::vector<uint8_t> sram = RandomBytes(kSramSize, 7);
    m.WriteBar(kSramOffset, sram.data(), sram.size());
    std::vector<uint8_t> back(kSramSize);
    m.ReadBar(kSramOffset, back.data(), back.size());
    k.Result("bar_read_write", id == kIdValue && pattern == 0x0123456789abcdefull && back == sram,
             absl::StrFormat("id %#x pattern %#x sram %s", id, pattern, back == sram ? "equal" : "differs"));
  }

  // DMA writes at several sizes and alignments, some across page boundaries.
  struct Size {
    uint64_t dst, len;
    const char* name;
  };
  const uint64_t ram = o.ram;
  for (const Size& s : {Size{0x10000, 1, "dma_write_1b"}, Size{0x20010, 64, "dma_write_64b"},
                        Size{0x30000, 4096, "dma_write_4k"}, Size{0x40f80, 4096 + 300, "dma_write_cross_page"},
                        Size{0x50800, 65536 + 2048, "dma_write_66k_cross_pages"},
                        Size{ram / 2, 1ull << 20, "dma_write_1m"}}) {
    std::string err = CheckWrite(m, s.dst, s.len, static_cast<uint32_t>(s.dst));
    k.Result(s.name, err.empty(), err);
  }
  // DMA read: the device copies the first 2 KiB it read into its SRAM; compare those bytes.
  {
    const std::vector<uint8_t> src = RandomBytes(12288, 99);
    m.memory().Write(0x70f00, src.data(), src.size()).IgnoreError();
    InnerMachine::Job j = m.RunJob(kOpRead, 0x70f00, 0, src.size());
    std::vector<uint8_t> sram(kSramSize);
    m.ReadBar(kSramOffset, sram.data(), sram.size());
    const bool same = std::equal(sram.begin(), sram.end(), src.begin());
    k.Result("dma_read_cross_page", j.done() && same,
             absl::StrFormat("status %#x error %u, SRAM %s the RAM bytes", j.status, j.error, same ? "equals" : "differs from"));
  }
  // DMA copy inside guest RAM across pages.
  {
    const std::vector<uint8_t> src = RandomBytes(3 * 4096 + 17, 5);
    m.memory().Write(0x90123, src.data(), src.size()).IgnoreError();
    InnerMachine::Job j = m.RunJob(kOpCopy, 0x90123, 0xa0ff0, src.size());
    long long d = FirstDiff(m.memory(), 0xa0ff0, src);
    k.Result("dma_copy_cross_page", j.done() && d < 0,
             absl::StrFormat("status %#x error %u first diff %lld", j.status, j.error, d));
  }
  // DMA beyond guest RAM: the IOAS has no mapping there, the host IOMMU blocks it (the outer VT-d
  // records a fault) and no byte of guest RAM changes.
  {
    std::vector<uint8_t> before(ram);
    m.memory().Read(0, before.data(), before.size()).IgnoreError();
    InnerMachine::Job j = m.RunJob(kOpFill, 0, ram + (1ull << 20), 8192);
    std::vector<uint8_t> after(ram);
    m.memory().Read(0, after.data(), after.size()).IgnoreError();
    k.Result("dma_outside_guest_ram_blocked", j.error == kErrTranslation && before == after,
             absl::StrFormat("error %u (want %u), RAM %s", j.error, kErrTranslation,
                             before == after ? "unchanged" : "CHANGED"));
  }
  // MSI-X: a completion interrupt reaches the inner CPU with the guest's message; a masked vector
  // stays pending until unmasked.
  {
    bool ok = m.ProgramMsix(/*masked=*/false);
    const size_t n0 = m.cpu().count();
    InnerMachine::Job j = m.RunJob(kOpFill, 0, 0x100000, 64, kCtrlIrq);
    auto msi = m.cpu().WaitFor(n0 + 1, absl::Seconds(10));
    ok = ok && j.done() && msi && msi->address == kMsiAddress && msi->data == kMsiData && msi->requester_id == kDevfn;
    k.Result("msix_delivered", ok,
             msi ? absl::StrFormat("msi %#x/%#x rid %#x", msi->address, msi->data, msi->requester_id) : "no MSI in 10 s");
    m.ProgramMsix(/*masked=*/true);
    const size_t n1 = m.cpu().count();
    j = m.RunJob(kOpFill, 0, 0x100000, 64, kCtrlIrq);
    std::this_thread::sleep_for(std::chrono::milliseconds(300));
    const bool held = m.cpu().count() == n1 && m.dev().msix()->IsPending(0);
    m.UnmaskVector0();
    auto late = m.cpu().WaitFor(n1 + 1, absl::Seconds(10));
    k.Result("msix_masked_pending_then_delivered", j.done() && held && late.has_value(),
             absl::StrFormat("held while masked: %d, delivered on unmask: %d", held, late.has_value()));
    k.Diag(absl::StrFormat("forwarded host interrupts: %u", m.dev().forwarded_interrupts()));
  }
  // Device reset: the inner guest's FLR reaches the device (VFIO_DEVICE_RESET → Linux's pcie_flr
  // on ionest's emulated dmatest): registers written before read back their reset values.
  {
    m.Write64(kRegPattern, 0xfeedfacecafebeefull);
    const uint64_t jobs_before = m.Read64(kRegStatus) >> kStatusJobsShift;
    const std::optional<uint16_t> pcie = m.dev().config().FindCapability(0x10);
    bool flr = false;
    if (pcie) {
      flr = m.ConfigRead(*pcie + pcie::kDevCap, 4) & pcie::kDevCapFlr;
      if (flr) m.ConfigWrite(*pcie + pcie::kDevCtl, pcie::kDevCtlInitiateFlr, 2);
    }
    m.EnableDevice();  // what Linux's pci_restore_state does after the FLR
    const uint64_t pattern = m.Read64(kRegPattern);
    const uint64_t jobs_after = m.Read64(kRegStatus) >> kStatusJobsShift;
    k.Result("device_reset_flr", flr && pattern == 0 && jobs_before > 0 && jobs_after == 0,
             absl::StrFormat("FLR advertised %d, PATTERN after %#x, jobs %u -> %u", flr, pattern, jobs_before,
                             jobs_after));
    // The device works after the reset.
    std::string err = CheckWrite(m, 0x200000, 8192, 11);
    k.Result("dma_after_reset", err.empty(), err);
  }
  // A second VM on the same device: another process (this binary, --open-only) is refused with a
  // message naming us as the holder.
  if (!o.second_vm_case) {
    k.Skip("second_vm_refused", "needs a second process on a real host");
  } else if (!o.devices.empty()) {
    int pipefd[2];
    std::string out;
    int status = -1;
    if (pipe(pipefd) == 0) {
      pid_t pid = fork();
      if (pid == 0) {
        dup2(pipefd[1], 2);
        close(pipefd[0]);
        const TestDeviceSpec& d = o.devices[0];
        std::string spec = d.vfio_path.empty() ? "vfio,host=" + d.vfio_host : "vfio,path=" + d.vfio_path;
        execl("/proc/self/exe", "ionest_passthrough_testbed", "--open-only", "--device", spec.c_str(), nullptr);
        _exit(127);
      }
      close(pipefd[1]);
      char buf[512];
      ssize_t n;
      while ((n = read(pipefd[0], buf, sizeof buf)) > 0) out.append(buf, n);
      close(pipefd[0]);
      waitpid(pid, &status, 0);
    }
    const bool refused = WIFEXITED(status) && WEXITSTATUS(status) == 1 &&
                         out.find("in use") != std::string::npos &&
                         out.find(absl::StrCat(getpid())) != std::string::npos;
    k.Result("second_vm_refused", refused, absl::StrFormat("exit %d: %s", WEXITSTATUS(status), out));
  }
  made->reset();
  // Nothing left behind: every fd closed, and the device can be opened again.
  const int fds_after = CountOpenFds();
  auto again = InnerMachine::Create(o, host);
  k.Result("released_and_reopened", fds_after == fds_before && again.ok(),
           absl::StrFormat("fds %d -> %d, reopen: %s", fds_before, fds_after,
                           again.ok() ? "ok" : std::string(again.status().message())));
}

}  // namespace

int OpenOnly(const TestbedOptions& o, const PassthroughHost& host) {
  auto m = InnerMachine::Create(o, host);
  if (!m.ok()) {
    std::fprintf(stderr, "ionest: %s\n", std::string(m.status().message()).c_str());
    return 1;
  }
  std::printf("opened: %s\n", (*m)->passthrough().Describe().c_str());
  return 0;
}

Ktap::Ktap(int planned, std::function<void(const std::string&)> out) : out_(std::move(out)) {
  out_("    KTAP version 1");
  out_(absl::StrFormat("    1..%d", planned));
}

void Ktap::Result(const std::string& name, bool ok, const std::string& diag) {
  ++n_;
  if (!ok) {
    ++failed_;
    if (!diag.empty()) out_(absl::StrFormat("    # %s: %s", name, diag));
  }
  out_(absl::StrFormat("    %sok %d %s", ok ? "" : "not ", n_, name));
}

void Ktap::Skip(const std::string& name, const std::string& why) {
  ++n_;
  out_(absl::StrFormat("    ok %d %s # SKIP %s", n_, name, why));
}

void Ktap::Diag(const std::string& s) { out_("    # " + s); }

void RunTestbedCases(const TestbedOptions& o, const PassthroughHost& host, Ktap& k) {
  RunCasesBody(o, host, k);
  while (k.count() < kTestbedCases) k.Result("not_reached", false, "an earlier case stopped the run");
}

}  // namespace ionest::testbed
