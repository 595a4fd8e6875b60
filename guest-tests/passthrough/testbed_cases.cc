#include "guest-tests/passthrough/testbed_cases.h"

#include <fcntl.h>
#include <grp.h>
#include <sys/wait.h>
#include <unistd.h>
#include <algorithm>
#include <array>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <dirent.h>
#include <functional>
#include <memory>
#include <optional>
#include <random>
#include <set>
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
#include "iommu/iommufd/vtd_nesting.h"
#include "iommu/msi.h"
#include "iommu/testing/table_builder.h"
#include "iommu/vtd/caps.h"
#include "iommu/vtd/fault_reasons.h"
#include "iommu/vtd/page_request.h"
#include "iommu/vtd/registers.h"
#include "iommu/vtd/testing/linux_vtd_driver.h"
#include "iommu/vtd/testing/vtd_builders.h"
#include "iommu/vtd/vtd_iommu.h"
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
  // `with_vtd`: the inner machine has ionest's emulated VT-d (default profile: scalable mode, nesting,
  // PRS) in front of its devices, for the nesting cases (issue 9).
  static absl::StatusOr<std::unique_ptr<InnerMachine>> Create(const TestbedOptions& o, const PassthroughHost& host,
                                                              bool with_vtd = false) {
    std::unique_ptr<InnerMachine> m(new InnerMachine());
    auto mem = GuestMemory::Create({{0, o.ram}});
    if (!mem.ok()) return mem.status();
    m->memory_ = std::move(*mem);
    m->bypass_ = std::make_unique<BypassDmaProvider>(*m->memory_);
    if (with_vtd) {
      absl::StatusOr<vtd::VtdProfile> profile = vtd::ParseVtdProfile("");
      if (!profile.ok()) return profile.status();
      m->vtd_ = std::make_unique<vtd::VtdIommu>(*m->memory_, m->cpu_, *profile);
    }
    DmaSpaceProvider& dma = m->vtd_ ? static_cast<DmaSpaceProvider&>(*m->vtd_) : *m->bypass_;
    m->host_ = std::make_unique<PciHost>(m->mmio_, m->pio_, m->cpu_, dma);
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
  vtd::VtdIommu* vtd() { return vtd_.get(); }
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
  // Runs one job to its end. `pasid` tags its requests; `idle` runs between status polls (the
  // inner driver servicing its page request queue while the device waits for answers).
  Job RunJob(uint32_t op, uint64_t src, uint64_t dst, uint64_t len, uint64_t ctrl = 0,
             std::optional<uint32_t> pasid = std::nullopt, const std::function<void()>& idle = nullptr) {
    const double timeout_s = job_timeout_s_;
    Write64(kRegStatus, kStatusDone | kStatusError);  // RW1C: clear the last job's result
    Write64(kRegSrc, src);
    Write64(kRegDst, dst);
    Write64(kRegLen, len);
    Write64(kRegPasid, pasid ? (*pasid | kPasidValid) : 0);
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
      if (idle) {
        idle();
        std::this_thread::sleep_for(std::chrono::microseconds(200));
      } else {
        std::this_thread::sleep_for(std::chrono::milliseconds(1));
      }
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
  std::unique_ptr<vtd::VtdIommu> vtd_;  // the nesting cases' emulated VT-d (after cpu_, before host_)
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


// ================================================================================================
// Nesting cases (issue 9): the inner machine has ionest's emulated VT-d; a Linux-like driver
// (iommu/vtd/testing's LinuxVtdDriver and table builders) programs it in scalable mode, and the VT-d
// nesting backend binds what it programs to the host (Passthrough::EnableVtdNesting). Every check
// compares bytes the device wrote (or fault / page request records the VT-d model and the backend
// produced) with what the inner driver asked for.

constexpr uint16_t kRid = kDevfn;  // inner bus 0
constexpr uint16_t kDid = 2;
constexpr uint16_t kPasidDid = 3;
constexpr uint32_t kSvaPasid = 5;
constexpr uint64_t kPoolSize = 2ull << 20;  // VT-d structures and page tables: the top of RAM
constexpr uint64_t kFaultMsiData = 0x50, kPrqMsiData = 0x51;
// IOVAs (first stage, canonical lower half) the driver maps; none is guest RAM, so identity
// translation could never pass a byte check.
constexpr uint64_t kIova4k = 0x10'0000'0000ull;
constexpr uint64_t kIova2m = 0x20'0000'0000ull;
constexpr uint64_t kIovaPasid = 0x28'0000'0000ull;
constexpr uint64_t kIovaSlOnly = 0x4000'0000ull;
constexpr uint64_t kIovaFault = 0x30'0000'0000ull;  // + n << 32 per fault case
constexpr uint64_t kIovaStorm = 0x40'0000'0000ull;
constexpr uint64_t kIovaLegacy = 0x5000'0000ull;
// Guest-physical targets (below the pool).
constexpr uint64_t kGpa4k = 0x100000;     // 3 pages
constexpr uint64_t kGpaPasid = 0x110000;  // 2 pages
constexpr uint64_t kGpaSl = 0x120000;     // 2 pages
constexpr uint64_t kGpaStorm = 0x130000;
constexpr uint64_t kGpaLegacy = 0x140000;  // 2 pages
constexpr uint64_t kGpaFault1 = 0x180000;  // 1 page
constexpr uint64_t kGpa2m = 0x200000;      // one 2 MiB page
constexpr uint64_t kGpaMany = 0x400000;    // 256 pages (1 MiB), the 256-fault and overflow cases

using vtd::PageRequestDescriptor;
using vtd::testing::LinuxVtdDriver;
namespace vt = vtd::testing;

// A fault recording register's content (VT-d §10.4.14).
struct FaultRecord {
  uint8_t reason = 0;
  uint16_t sid = 0;
};

// What the inner driver did with page requests.
struct PrqLog {
  std::vector<PageRequestDescriptor> seen;
  int groups_answered = 0;
  int overflows_cleared = 0;
};
enum class PrqAnswer { kMapSuccess, kInvalid, kNone };

class NestedBed {
 public:
  static absl::StatusOr<std::unique_ptr<NestedBed>> Create(const TestbedOptions& o, const PassthroughHost& host) {
    if (o.ram < (8ull << 20)) return absl::InvalidArgumentError("the nesting cases need --ram of at least 8M");
    std::unique_ptr<NestedBed> b(new NestedBed());
    absl::StatusOr<std::unique_ptr<InnerMachine>> m = InnerMachine::Create(o, host, /*with_vtd=*/true);
    if (!m.ok()) return m.status();
    b->m_ = std::move(*m);
    iommufd::VtdNestingOptions opts;  // the reader thread forwards host faults
    if (absl::Status s = b->m_->passthrough().EnableVtdNesting(*b->m_->vtd(), b->m_->memory(), {kRid}, opts);
        !s.ok()) {
      return s;
    }
    b->alloc_ = std::make_unique<iommu_testing::PageAllocator>(b->m_->memory(), o.ram - kPoolSize, kPoolSize);
    if (absl::Status s = b->InitScalable(); !s.ok()) return s;
    return b;
  }
  ~NestedBed() {
    fs_.reset();
    driver_.reset();
    m_.reset();  // passthrough (backend, devices, IOAS) before the VT-d and RAM
  }

  InnerMachine& m() { return *m_; }
  vtd::VtdIommu& vtd() { return *m_->vtd(); }
  LinuxVtdDriver& driver() { return *driver_; }
  iommu_testing::PageAllocator& alloc() { return *alloc_; }
  iommu_testing::FirstStageTableBuilder& fs() { return *fs_; }
  iommufd::VtdNestingBackend& backend() { return *m_->passthrough().nesting(); }
  GuestMemory& ram() { return m_->memory(); }

  // Linux's boot order (notes §2): QI, root table, translation on, fault and page request
  // interrupts; then the device's scalable context and its RID_PASID entry: a first-stage domain.
  absl::Status InitScalable() {
    driver_ = std::make_unique<LinuxVtdDriver>(vtd(), ram(), *alloc_);
    if (absl::Status s = driver_->Init(true); !s.ok()) return s;
    driver_->SetFaultMsi(kMsiAddress, kFaultMsiData);
    if (absl::Status s = driver_->EnablePageRequests(kMsiAddress, kPrqMsiData); !s.ok()) return s;
    if (absl::Status s = driver_->EnableTranslation(); !s.ok()) return s;
    absl::StatusOr<iommu_testing::FirstStageTableBuilder> fs =
        iommu_testing::FirstStageTableBuilder::Create(ram(), *alloc_, 4);
    if (!fs.ok()) return fs.status();
    fs_ = std::make_unique<iommu_testing::FirstStageTableBuilder>(std::move(*fs));
    if (absl::Status s = driver_->tables().SetScalableContext(
            kRid, {.dte = true, .pasid_enable = true, .pre = true, .pdts = 0, .rid_pasid = 0});
        !s.ok()) {
      return s;
    }
    if (absl::Status s = SetRidPasid(FirstStageEntry()); !s.ok()) return s;
    return driver_->Invalidate({vt::CcDevice(0, kRid), vt::PasidCacheInv(1, kDid, 0), vt::PIotlbPasid(kDid, 0)});
  }
  vt::PasidEntrySpec FirstStageEntry() const {
    return {.pgtt = vtd::kPgttFirstStage, .did = kDid, .flptptr = fs_->root(), .sre = true, .wpe = true};
  }
  // RID_PASID entry + the PASID-cache and PASID-IOTLB flush Linux issues after changing it.
  absl::Status SetRidPasid(const vt::PasidEntrySpec& e) {
    if (absl::Status s = driver_->tables().SetPasidEntry(kRid, 0, e); !s.ok()) return s;
    return driver_->Invalidate({vt::PasidCacheInv(1, e.did, 0), vt::PIotlbPasid(e.did, 0)});
  }
  absl::Status ClearRidPasid(uint16_t did) {
    if (absl::Status s = driver_->tables().ClearPasidEntry(kRid, 0); !s.ok()) return s;
    return driver_->Invalidate({vt::PasidCacheInv(1, did, 0), vt::PIotlbPasid(did, 0)});
  }
  // Unmaps one 4 KiB first-stage page and flushes it (qi_flush_piotlb + wait).
  absl::Status UnmapFs(uint64_t iova, uint16_t did = kDid, uint32_t pasid = 0) {
    if (absl::Status s = fs_->WriteEntry(iova, 1, 0); !s.ok()) return s;
    return driver_->Invalidate({vt::PIotlbPage(did, pasid, iova, 0), vt::PDevTlb(kRid, pasid, iova)});
  }
  iommufd::BindingKind Binding(std::optional<uint32_t> pasid = std::nullopt) {
    auto v = backend().binding(kRid, pasid);
    return v ? v->kind : iommufd::BindingKind::kBlocked;
  }

  // Reads and clears every valid fault recording register.
  std::vector<FaultRecord> TakeFaults() {
    std::vector<FaultRecord> out;
    const uint32_t nfr = vtd().profile().nfr;
    for (uint32_t i = 0; i < nfr; ++i) {
      const uint64_t off = vtd::VtdProfile::kFaultRecordOffset + 16ull * i + 8;
      const uint64_t hi = vtd().ReadRegister(off);
      if (!(hi >> 63)) continue;
      out.push_back({static_cast<uint8_t>((hi >> 32) & 0xff), static_cast<uint16_t>(hi & 0xffff)});
      vtd().WriteRegister(off, uint64_t{1} << 63);  // F is RW1C
    }
    vtd().WriteRegister(vtd::kFstsReg, vtd().ReadRegister(vtd::kFstsReg, 4), 4);
    return out;
  }

  // The inner driver's page request handling (Linux prq_event_thread + iommu_page_response):
  // drains PQH..PQT; with kMapSuccess maps each requested page at gpa_of(addr) in `tables`; on a
  // group's last request answers it (Success / Invalid; kNone leaves it waiting); clears PRO once
  // the queue is drained.
  void ServicePrq(PrqAnswer answer, const std::function<uint64_t(uint64_t)>& gpa_of, PrqLog& log,
                  iommu_testing::FirstStageTableBuilder* tables = nullptr) {
    if (!tables) tables = fs_.get();
    const uint64_t size = 4096ull << (vtd().ReadRegister(vtd::kPqaReg) & 7);
    uint64_t head = vtd().ReadRegister(vtd::kPqhReg);
    const uint64_t tail = vtd().ReadRegister(vtd::kPqtReg);
    std::vector<vtd::InvDescriptor> answers;
    while (head != tail) {
      std::array<uint64_t, 4> qw{};
      (void)ram().Read(driver_->prq_base() + head, qw.data(), sizeof qw);
      const PageRequestDescriptor d = vtd::DecodePageRequest(qw);
      log.seen.push_back(d);
      if (answer == PrqAnswer::kMapSuccess) {
        (void)tables->Map(d.addr, gpa_of(d.addr), 4096, kDmaRead | kDmaWrite);
      }
      if (d.last && answer != PrqAnswer::kNone) {
        answers.push_back(vt::PageGroupResponse(d.rid, d.pasid, answer == PrqAnswer::kMapSuccess ? 0 : 1,
                                                d.group_index));
      }
      head = (head + 32) % size;
    }
    vtd().WriteRegister(vtd::kPqhReg, head);
    const uint32_t prs = static_cast<uint32_t>(vtd().ReadRegister(vtd::kPrsReg, 4));
    if (prs & vtd::kPrsPro) ++log.overflows_cleared;
    if (prs) vtd().WriteRegister(vtd::kPrsReg, prs, 4);  // PPR / PRO are RW1C
    if (!answers.empty()) {
      log.groups_answered += static_cast<int>(answers.size());
      (void)driver_->Invalidate(answers);
    }
  }

  // Device side of a Linux driver: memory + bus mastering, PASID, ATS and PRI (allocation
  // min(capacity, 256) outstanding page requests) on the inner function.
  std::string EnableDeviceFeatures() {
    m_->EnableDevice();
    vfio::VfioPciDevice& d = m_->dev();
    if (!d.pri_offset() || !d.ats_offset() || !d.pasid_offset()) {
      return absl::StrFormat("the passed-through function lacks ATS/PRI/PASID (ats %#x pri %#x pasid %#x)",
                             d.ats_offset(), d.pri_offset(), d.pasid_offset());
    }
    m_->ConfigWrite(d.pasid_offset() + pasid::kControl, pasid::kControlEnable, 2);
    m_->ConfigWrite(d.ats_offset() + ats::kControl, ats::kControlEnable, 2);
    const uint32_t capacity = m_->ConfigRead(d.pri_offset() + pri::kCapacity, 4);
    pri_allocation_ = std::min<uint32_t>(capacity, 256);
    m_->ConfigWrite(d.pri_offset() + pri::kControl, 0, 2);
    m_->ConfigWrite(d.pri_offset() + pri::kAllocation, pri_allocation_, 4);
    m_->ConfigWrite(d.pri_offset() + pri::kControl, pri::kControlEnable, 2);
    return "";
  }
  uint32_t pri_allocation() const { return pri_allocation_; }

 private:
  NestedBed() = default;
  std::unique_ptr<InnerMachine> m_;
  std::unique_ptr<iommu_testing::PageAllocator> alloc_;
  std::unique_ptr<LinuxVtdDriver> driver_;
  std::unique_ptr<iommu_testing::FirstStageTableBuilder> fs_;
  uint32_t pri_allocation_ = 0;
};

std::string JobText(const InnerMachine::Job& j) {
  return absl::StrFormat("status %#x error %u fault_info %#x", j.status, j.error, j.fault_info);
}

// DMA write of the SRAM pattern to IOVA [iova, +len) that must land at GPA [gpa, +len), canaries
// around it untouched.
std::string CheckMappedWrite(NestedBed& b, uint64_t iova, uint64_t gpa, uint64_t len, uint32_t seed,
                             std::optional<uint32_t> pasid = std::nullopt, uint64_t ctrl = kCtrlNoPri,
                             const std::function<void()>& idle = nullptr) {
  const std::vector<uint8_t> sram = RandomBytes(kSramSize, seed);
  b.m().WriteBar(kSramOffset, sram.data(), sram.size());
  const uint64_t guard = 256;
  std::vector<uint8_t> canary(len + 2 * guard, kCanary);
  if (!b.ram().Write(gpa - guard, canary.data(), canary.size()).ok()) return "RAM write failed";
  InnerMachine::Job j = b.m().RunJob(kOpWrite, 0, iova, len, ctrl, pasid, idle);
  if (!j.done()) return JobText(j);
  std::vector<uint8_t> want(canary);
  for (uint64_t i = 0; i < len; ++i) want[guard + i] = sram[i % sram.size()];
  const long long d = FirstDiff(b.ram(), gpa - guard, want);
  if (d >= 0) {
    return absl::StrFormat("byte at gpa %#x differs (%s)", gpa - guard + d,
                           (d < static_cast<long long>(guard) || d >= static_cast<long long>(guard + len))
                               ? "canary overwritten"
                               : "DMA data wrong");
  }
  return "";
}

// DMA read of IOVA [iova, +len) (len <= 2 KiB lands in SRAM) must return the bytes at GPA gpa.
std::string CheckMappedRead(NestedBed& b, uint64_t iova, uint64_t gpa, uint64_t len, uint32_t seed) {
  const std::vector<uint8_t> src = RandomBytes(len, seed);
  if (!b.ram().Write(gpa, src.data(), src.size()).ok()) return "RAM write failed";
  InnerMachine::Job j = b.m().RunJob(kOpRead, iova, 0, len, kCtrlNoPri);
  if (!j.done()) return JobText(j);
  std::vector<uint8_t> sram(kSramSize);
  b.m().ReadBar(kSramOffset, sram.data(), sram.size());
  const size_t n = std::min<size_t>(len, kSramSize);
  if (!std::equal(src.begin(), src.begin() + n, sram.begin())) return "SRAM differs from the RAM bytes";
  return "";
}

// A DMA write that must be refused: the job fails with `want_error` and RAM [gpa, +len) keeps its
// bytes.
std::string CheckBlockedWrite(NestedBed& b, uint64_t iova, uint64_t gpa, uint64_t len, uint8_t want_error,
                              std::optional<uint32_t> pasid = std::nullopt, uint64_t ctrl = kCtrlNoPri) {
  const std::vector<uint8_t> before = RandomBytes(len, static_cast<uint32_t>(gpa));
  if (!b.ram().Write(gpa, before.data(), before.size()).ok()) return "RAM write failed";
  const std::vector<uint8_t> sram = RandomBytes(kSramSize, 4242);
  b.m().WriteBar(kSramOffset, sram.data(), sram.size());
  InnerMachine::Job j = b.m().RunJob(kOpWrite, 0, iova, len, ctrl, pasid);
  const long long d = FirstDiff(b.ram(), gpa, before);
  if (j.error != want_error || d >= 0) {
    return absl::StrFormat("%s (want error %u), RAM %s", JobText(j), want_error,
                           d >= 0 ? absl::StrFormat("CHANGED at %#x", gpa + d) : "unchanged");
  }
  return "";
}

bool HasFault(const std::vector<FaultRecord>& f, uint8_t reason) {
  return std::any_of(f.begin(), f.end(), [&](const FaultRecord& r) { return r.reason == reason && r.sid == kRid; });
}
std::string FaultsText(const std::vector<FaultRecord>& f) {
  std::string s;
  for (const FaultRecord& r : f) absl::StrAppend(&s, absl::StrFormat(" %#x@%04x", r.reason, r.sid));
  return s.empty() ? " none" : s;
}

void RunNestingBody(const TestbedOptions& o, const PassthroughHost& host, Ktap& k) {
  const int fds_before = CountOpenFds();
  absl::StatusOr<std::unique_ptr<NestedBed>> made = NestedBed::Create(o, host);
  if (!made.ok()) {
    k.Result("nest_bind_first_stage", false, std::string(made.status().message()));
    return;
  }
  NestedBed& b = **made;
  for (const std::string& line : std::vector<std::string>(absl::StrSplit(b.m().passthrough().Describe(), '\n'))) {
    k.Diag(line);
  }
  const std::string features = b.EnableDeviceFeatures();
  {
    auto v = b.backend().binding(kRid, std::nullopt);
    k.Result("nest_bind_first_stage",
             features.empty() && v && v->kind == iommufd::BindingKind::kNested && v->pt_id != 0 &&
                 b.backend().fault_queue_id().has_value(),
             absl::StrFormat("%s binding %s pt %u fault queue %d", features,
                             v ? iommufd::BindingKindName(v->kind) : "none", v ? v->pt_id : 0,
                             b.backend().fault_queue_id().has_value()));
  }

  // ---- first-stage DMA ----
  {
    absl::Status s = b.fs().Map(kIova4k, kGpa4k, 3 * 4096, kDmaRead | kDmaWrite);
    std::string err = s.ok() ? CheckMappedWrite(b, kIova4k + 0x80, kGpa4k + 0x80, 3 * 4096 - 0x100, 21)
                             : std::string(s.message());
    k.Result("fs_dma_write_4k", err.empty(), err);
    err = CheckMappedRead(b, kIova4k + 0xc00, kGpa4k + 0xc00, 2048, 22);
    k.Result("fs_dma_read_4k", err.empty(), err);
  }
  {
    absl::Status s = b.fs().Map(kIova2m, kGpa2m, 2ull << 20, kDmaRead | kDmaWrite, kPage2M);
    // Across 4 KiB boundaries inside the 2 MiB page, and its last bytes.
    std::string err = s.ok() ? CheckMappedWrite(b, kIova2m + 0x10f00, kGpa2m + 0x10f00, 5 * 4096, 23)
                             : std::string(s.message());
    if (err.empty()) err = CheckMappedWrite(b, kIova2m + (2ull << 20) - 4096, kGpa2m + (2ull << 20) - 4096, 4096, 24);
    if (err.empty()) err = CheckMappedRead(b, kIova2m + 0x1ff800, kGpa2m + 0x1ff800, 2048, 25);
    k.Result("fs_dma_superpage_2m", err.empty(), err);
  }
  // Unmap + PASID-IOTLB invalidation + wait: the host must not use a stale translation.
  {
    std::string err = CheckMappedWrite(b, kIova4k + 0x1000, kGpa4k + 0x1000, 4096, 26);  // cached now
    if (err.empty()) {
      absl::Status s = b.UnmapFs(kIova4k + 0x1000);
      if (!s.ok()) err = std::string(s.message());
    }
    if (err.empty()) err = CheckBlockedWrite(b, kIova4k + 0x1000, kGpa4k + 0x1000, 4096, kErrTranslation);
    if (err.empty()) err = CheckMappedWrite(b, kIova4k, kGpa4k, 4096, 27);  // the neighbour still works
    k.Result("fs_unmap_invalidate_blocks", err.empty(), err);
  }
  // PASID > 0 with its own first stage (SVA-style): VFIO_DEVICE_ATTACH_PASID on the host.
  {
    std::string err;
    absl::StatusOr<iommu_testing::FirstStageTableBuilder> fs2 =
        iommu_testing::FirstStageTableBuilder::Create(b.ram(), b.alloc(), 4);
    absl::Status s = fs2.ok() ? fs2->Map(kIovaPasid, kGpaPasid, 2 * 4096, kDmaRead | kDmaWrite) : fs2.status();
    if (s.ok()) {
      s = b.driver().tables().SetPasidEntry(
          kRid, kSvaPasid, {.pgtt = vtd::kPgttFirstStage, .did = kPasidDid, .flptptr = fs2->root()});
    }
    if (s.ok()) s = b.driver().Invalidate({vt::PasidCacheInv(1, kPasidDid, kSvaPasid)});
    const uint64_t unsupported = b.backend().stats().pasid_attach_unsupported;
    if (!s.ok()) {
      k.Result("fs_pasid_dma", false, std::string(s.message()));
    } else if (unsupported > 0) {
      k.Skip("fs_pasid_dma", "the host kernel has no VFIO_DEVICE_ATTACH_PASID (Linux < 6.15): PASID > 0 stays blocked");
    } else {
      if (b.Binding(kSvaPasid) != iommufd::BindingKind::kNested) err = "PASID 5 is not bound to a nested HWPT";
      if (err.empty()) err = CheckMappedWrite(b, kIovaPasid + 0x100, kGpaPasid + 0x100, 4096, 28, kSvaPasid);
      // The same IOVA without PASID goes through RID_PASID's tables, where it is not mapped.
      if (err.empty()) err = CheckBlockedWrite(b, kIovaPasid + 0x100, kGpaPasid + 0x100, 64, kErrTranslation);
      k.Result("fs_pasid_dma", err.empty(), err);
    }
    (void)b.driver().tables().ClearPasidEntry(kRid, kSvaPasid);
    (void)b.driver().Invalidate({vt::PasidCacheInv(1, kPasidDid, kSvaPasid), vt::PIotlbPasid(kPasidDid, kSvaPasid)});
  }

  // ---- pass-through, blocked, second-stage-only ----
  {
    absl::Status s = b.SetRidPasid({.pgtt = vtd::kPgttPassThrough, .did = kDid});
    std::string err = !s.ok() ? std::string(s.message())
                      : b.Binding() != iommufd::BindingKind::kIdentity ? "not bound to the nest parent"
                                                                        : CheckMappedWrite(b, 0x150000, 0x150000, 8192, 31);
    k.Result("pasid_passthrough_dma_at_gpa", err.empty(), err);
    s = b.ClearRidPasid(kDid);
    err = !s.ok() ? std::string(s.message())
          : b.Binding() != iommufd::BindingKind::kBlocked ? "not blocked"
                                                           : CheckBlockedWrite(b, 0x150000, 0x150000, 8192, kErrTranslation);
    if (err.empty()) err = CheckBlockedWrite(b, kIova4k, kGpa4k, 4096, kErrTranslation);
    k.Result("pasid_absent_dma_aborted", err.empty(), err);
  }
  {
    // PGTT=010b: a second-stage-only table, which the host cannot nest: a shadow that follows it.
    std::string err;
    absl::StatusOr<iommu_testing::SecondStageTableBuilder> ss =
        iommu_testing::SecondStageTableBuilder::Create(b.ram(), b.alloc(), 4);
    absl::Status s = ss.ok() ? ss->Map(kIovaSlOnly, kGpaSl, 4096, kDmaRead | kDmaWrite) : ss.status();
    if (s.ok()) s = b.SetRidPasid({.pgtt = vtd::kPgttSecondStage, .did = kDid, .slptptr = ss->root(), .aw = 2});
    if (!s.ok()) err = std::string(s.message());
    if (err.empty() && b.Binding() != iommufd::BindingKind::kShadow) err = "not bound to a shadow";
    if (err.empty()) err = CheckMappedWrite(b, kIovaSlOnly + 0x10, kGpaSl + 0x10, 4000, 32);
    // Caching mode: a new mapping is announced by a page-selective invalidation.
    if (err.empty()) {
      s = ss->Map(kIovaSlOnly + 0x1000, kGpaSl + 0x1000, 4096, kDmaRead | kDmaWrite);
      if (s.ok()) s = b.driver().Invalidate({vt::PIotlbPage(kDid, 0, kIovaSlOnly + 0x1000, 0)});
      err = s.ok() ? CheckMappedWrite(b, kIovaSlOnly + 0x1000, kGpaSl + 0x1000, 4096, 33) : std::string(s.message());
    }
    if (err.empty()) {
      s = ss->WriteEntry(kIovaSlOnly, 1, 0);
      if (s.ok()) s = b.driver().Invalidate({vt::PIotlbPage(kDid, 0, kIovaSlOnly, 0)});
      err = s.ok() ? CheckBlockedWrite(b, kIovaSlOnly, kGpaSl, 4096, kErrTranslation) : std::string(s.message());
    }
    k.Result("sl_only_shadow_follows", err.empty(), err);
    if (absl::Status r = b.SetRidPasid(b.FirstStageEntry()); !r.ok()) k.Diag(std::string(r.message()));
  }

  // ---- page faults: device → host fault queue → inner PRQ → driver → response → device ----
  uint64_t next_fault_iova = kIovaFault;
  auto fault_iova = [&next_fault_iova] { return next_fault_iova += 1ull << 32; };
  {
    // First, while PQH = PQT = 0: a 4 KiB queue (127 usable entries) and a driver that lets it
    // fill: the 256-request group overflows; the VT-d answers Success for it (§7.5.1), the device
    // retries with smaller groups, the driver drains and clears PRO, and the job completes.
    const uint64_t iova = fault_iova();
    vtd::VtdIommu& v = b.vtd();
    v.WriteRegister(vtd::kPqaReg, b.driver().prq_base() | 0);
    PrqLog log;
    bool waited = false;
    const Clock::time_point t0 = Clock::now();
    auto idle = [&] {
      if (!waited) {
        if (!(v.ReadRegister(vtd::kPrsReg, 4) & vtd::kPrsPro) && MsSince(t0) < 3000) return;
        waited = true;
      }
      b.ServicePrq(PrqAnswer::kMapSuccess, [&](uint64_t a) { return kGpaMany + (a - iova); }, log);
    };
    const uint64_t overflows_before = v.stats().page_request_overflows;
    std::string err = CheckMappedWrite(b, iova, kGpaMany, 1ull << 20, 41, std::nullopt, 0, idle);
    const uint64_t overflows = v.stats().page_request_overflows - overflows_before;
    if (err.empty() && (overflows == 0 || log.overflows_cleared == 0)) {
      err = absl::StrFormat("the queue did not overflow (%u overflows, PRO cleared %d times, %zu requests seen)",
                            overflows, log.overflows_cleared, log.seen.size());
    }
    k.Diag(absl::StrFormat("prq overflow: %zu requests seen, %u overflowed, %d groups answered", log.seen.size(),
                           overflows, log.groups_answered));
    k.Result("prq_queue_overflow", err.empty(), err);
    v.WriteRegister(vtd::kPqaReg, b.driver().prq_base() | 4);  // back to 64 KiB (head/tail still valid)
  }
  {
    const uint64_t iova = fault_iova();
    PrqLog log;
    const uint64_t responses = b.backend().stats().responses;
    auto idle = [&] { b.ServicePrq(PrqAnswer::kMapSuccess, [&](uint64_t) { return kGpaFault1; }, log); };
    std::string err = CheckMappedWrite(b, iova + 0x40, kGpaFault1 + 0x40, 256, 42, std::nullopt, 0, idle);
    if (err.empty()) {
      const bool match = log.seen.size() == 1 && log.seen[0].rid == kRid && log.seen[0].addr == iova &&
                         log.seen[0].write && log.seen[0].last && !log.seen[0].pasid;
      if (!match || b.backend().stats().responses != responses + 1) {
        err = absl::StrFormat("%zu page requests (want 1 write at %#x, rid %#x, last), %u host responses",
                              log.seen.size(), iova, kRid, b.backend().stats().responses - responses);
      }
    }
    k.Result("prq_fault_success", err.empty(), err);
  }
  {
    const uint64_t iova = fault_iova();
    PrqLog log;
    auto idle = [&] { b.ServicePrq(PrqAnswer::kInvalid, nullptr, log); };
    std::vector<uint8_t> before(4096);
    (void)b.ram().Read(kGpaFault1, before.data(), before.size());
    InnerMachine::Job j = b.m().RunJob(kOpWrite, 0, iova, 4096, 0, std::nullopt, idle);
    const bool same = FirstDiff(b.ram(), kGpaFault1, before) < 0;
    k.Result("prq_fault_invalid", j.error == kErrPageInvalid && log.groups_answered == 1 && same,
             absl::StrFormat("%s (want error %u), %d groups answered", JobText(j), kErrPageInvalid,
                             log.groups_answered));
  }
  {
    // 256 page requests in flight: one group of the device's whole allocation (ATS reports the
    // job's following pages missing), every request in the inner queue before the answer.
    const uint64_t iova = fault_iova();
    PrqLog log;
    auto idle = [&] { b.ServicePrq(PrqAnswer::kMapSuccess, [&](uint64_t a) { return kGpaMany + (a - iova); }, log); };
    std::string err = b.pri_allocation() < 256
                          ? absl::StrFormat("PRI capacity %u < 256 (run the device with pri-capacity=512)",
                                            b.pri_allocation())
                          : CheckMappedWrite(b, iova, kGpaMany, 1ull << 20, 43, std::nullopt, 0, idle);
    size_t first_group = 0;
    std::set<uint64_t> pages;
    for (const PageRequestDescriptor& d : log.seen) {
      if (d.group_index != log.seen[0].group_index) break;
      ++first_group;
      pages.insert(d.addr);
      if (d.last) break;
    }
    if (err.empty() && (first_group != 256 || pages.size() != 256 || log.groups_answered != 1)) {
      err = absl::StrFormat("first group: %zu requests for %zu pages (want 256), %d groups answered", first_group,
                            pages.size(), log.groups_answered);
    }
    k.Result("prq_256_in_flight", err.empty(), err);
  }

  // ---- hostile inner guest ----
  {
    (void)b.TakeFaults();
    absl::Status s = b.SetRidPasid({.pgtt = vtd::kPgttFirstStage, .did = kDid, .flptptr = o.ram + (64ull << 20)});
    std::vector<FaultRecord> f = b.TakeFaults();
    std::string err = !s.ok() ? std::string(s.message())
                      : !HasFault(f, vtd::kSmFlAccess) ? absl::StrFormat("fault records:%s (want 0x70)", FaultsText(f))
                                                        : CheckBlockedWrite(b, kIova4k, kGpa4k, 4096, kErrTranslation);
    if (err.empty()) {
      s = b.SetRidPasid(b.FirstStageEntry());
      err = s.ok() ? CheckMappedWrite(b, kIova4k, kGpa4k, 4096, 51) : std::string(s.message());
    }
    k.Result("hostile_bad_flptptr", err.empty(), err);
  }
  {
    (void)b.TakeFaults();
    absl::Status s = b.SetRidPasid({.pgtt = 7, .did = kDid, .flptptr = b.fs().root()});
    std::vector<FaultRecord> f = b.TakeFaults();
    std::string err = !s.ok() ? std::string(s.message())
                      : !HasFault(f, vtd::kSmPasidEntryInvalid)
                          ? absl::StrFormat("fault records:%s (want 0x5b)", FaultsText(f))
                          : CheckBlockedWrite(b, kIova4k, kGpa4k, 4096, kErrTranslation);
    if (err.empty()) {
      s = b.SetRidPasid(b.FirstStageEntry());
      err = s.ok() ? CheckMappedWrite(b, kIova4k, kGpa4k, 4096, 52) : std::string(s.message());
    }
    k.Result("hostile_reserved_pgtt", err.empty(), err);
  }
  {
    // 4000 descriptors in 20 waits: page, PASID and global IOTLB flushes, context and PASID-cache
    // invalidations, device-TLB flushes, for this and unknown domains/PASIDs/requesters.
    const iommufd::VtdNestingStats before = b.backend().stats();
    std::string err;
    std::mt19937 rng(61);
    const int kBatches = 20, kPerBatch = 200;
    for (int batch = 0; batch < kBatches && err.empty(); ++batch) {
      std::vector<vtd::InvDescriptor> d;
      for (int i = 0; i < kPerBatch; ++i) {
        const uint64_t addr = (uint64_t{rng()} & 0xfffff) << 12;
        const uint8_t am = static_cast<uint8_t>(rng() % 10);
        switch (rng() % 8) {
          case 0: d.push_back(vt::PIotlbPage(kDid, 0, addr, 0)); break;
          case 1:
            d.push_back(vt::PIotlbPage(static_cast<uint16_t>(rng()), rng() & 0xfffff, addr & ~((4096ull << am) - 1), am));
            break;
          case 2: d.push_back(vt::PIotlbPasid(kDid, 0)); break;
          case 3: d.push_back(vt::IotlbGlobal()); break;
          case 4: d.push_back(vt::CcDevice(0, static_cast<uint16_t>(rng()))); break;
          case 5: d.push_back(vt::PasidCacheInv(1, static_cast<uint16_t>(rng()), rng() & 0xfffff)); break;
          case 6: d.push_back(vt::PDevTlb(kRid, 0, addr)); break;
          default: d.push_back(vt::IotlbDomain(static_cast<uint16_t>(rng()))); break;
        }
      }
      if (absl::Status s = b.driver().Invalidate(d); !s.ok()) err = absl::StrCat("batch ", batch, ": ", s.message());
    }
    const iommufd::VtdNestingStats after = b.backend().stats();
    const uint64_t calls = after.invalidate_calls - before.invalidate_calls;
    if (err.empty() && (calls == 0 || calls > static_cast<uint64_t>(kBatches))) {
      err = absl::StrFormat("%u host invalidation calls for %d batches (want 1..%d)", calls, kBatches, kBatches);
    }
    k.Diag(absl::StrFormat("bench: storm_descriptors %d host_invalidate_calls %u host_entries %u", kBatches * kPerBatch,
                           calls, after.invalidate_entries - before.invalidate_entries));
    k.Diag(absl::StrFormat("storm: guest faults recorded by the backend %u, fault records:%s",
                           after.guest_faults - before.guest_faults, FaultsText(b.TakeFaults())));
    // Still correct afterwards: a new mapping works, its unmap blocks.
    absl::Status s = b.fs().Map(kIovaStorm, kGpaStorm, 4096, kDmaRead | kDmaWrite);
    if (err.empty()) err = s.ok() ? CheckMappedWrite(b, kIovaStorm, kGpaStorm, 4096, 62) : std::string(s.message());
    if (err.empty()) {
      s = b.UnmapFs(kIovaStorm);
      err = s.ok() ? CheckBlockedWrite(b, kIovaStorm, kGpaStorm, 4096, kErrTranslation) : std::string(s.message());
    }
    k.Result("hostile_invalidation_storm", err.empty(), err);
  }
  {
    // Page group responses for groups the host never sent: nothing reaches the host or the
    // device, and a real fault round trip still works afterwards.
    const iommufd::VtdNestingStats before = b.backend().stats();
    absl::Status s = b.driver().Invalidate({vt::PageGroupResponse(kRid, std::nullopt, 0, 0x1ab),
                                            vt::PageGroupResponse(kRid, 9u, 1, 3),
                                            vt::PageGroupResponse(kRid, std::nullopt, 0, 0x1ff),
                                            vt::PageGroupResponse(0x0123, std::nullopt, 0, 1)});
    const iommufd::VtdNestingStats after = b.backend().stats();
    std::string err = !s.ok() ? std::string(s.message())
                      : after.unknown_responses - before.unknown_responses != 3 || after.responses != before.responses
                          ? absl::StrFormat("unknown responses +%u (want 3), host responses +%u (want 0)",
                                            after.unknown_responses - before.unknown_responses,
                                            after.responses - before.responses)
                          : "";
    if (err.empty()) {
      const uint64_t iova = fault_iova();
      PrqLog log;
      auto idle = [&] { b.ServicePrq(PrqAnswer::kMapSuccess, [&](uint64_t) { return kGpaFault1; }, log); };
      err = CheckMappedWrite(b, iova, kGpaFault1, 512, 63, std::nullopt, 0, idle);
    }
    k.Result("hostile_unknown_group_responses", err.empty(), err);
  }
  {
    // Platform reset of the inner VT-d while the device waits for a page response: the backend
    // answers the group (Invalid) and the device ends its job at once instead of timing out.
    const uint64_t iova = fault_iova();
    PrqLog log;
    bool reset = false;
    Clock::time_point reset_at;
    auto idle = [&] {
      if (reset) return;
      b.ServicePrq(PrqAnswer::kNone, nullptr, log);
      if (!log.seen.empty()) {
        b.vtd().Reset();
        reset = true;
        reset_at = Clock::now();
      }
    };
    InnerMachine::Job j = b.m().RunJob(kOpWrite, 0, iova, 4096, 0, std::nullopt, idle);
    const double after_ms = reset ? MsSince(reset_at) : -1;
    const size_t outstanding = b.backend().outstanding_groups();
    k.Result("hostile_reset_with_faults_outstanding",
             reset && j.error == kErrPageInvalid && after_ms < 2000 && outstanding == 0,
             absl::StrFormat("reset %d, %s (want error %u) %.0f ms after the reset, %zu groups outstanding", reset,
                             JobText(j), kErrPageInvalid, after_ms, outstanding));
  }
  {
    // After the reset the guest comes back in legacy mode: a second-stage table per context,
    // shadowed on the host and following map and unmap (caching mode announces new mappings).
    std::string err;
    auto driver = std::make_unique<LinuxVtdDriver>(b.vtd(), b.ram(), b.alloc());
    absl::Status s = driver->Init(false);
    if (s.ok()) s = driver->EnableTranslation();
    absl::StatusOr<iommu_testing::SecondStageTableBuilder> ss =
        iommu_testing::SecondStageTableBuilder::Create(b.ram(), b.alloc(), 4);
    if (s.ok()) s = ss.status();
    if (s.ok()) s = ss->Map(kIovaLegacy, kGpaLegacy, 4096, kDmaRead | kDmaWrite);
    if (s.ok()) s = driver->tables().SetLegacyContext(kRid, {.tt = 0, .aw = 2, .did = 4, .slptptr = ss->root()});
    if (s.ok()) s = driver->Invalidate({vt::CcDevice(4, kRid), vt::IotlbDomain(4)});
    if (!s.ok()) err = std::string(s.message());
    if (err.empty() && b.Binding() != iommufd::BindingKind::kShadow) err = "not bound to a shadow";
    if (err.empty()) err = CheckMappedWrite(b, kIovaLegacy + 0x20, kGpaLegacy + 0x20, 4000, 71);
    if (err.empty()) {
      s = ss->Map(kIovaLegacy + 0x1000, kGpaLegacy + 0x1000, 4096, kDmaRead | kDmaWrite);
      if (s.ok()) s = driver->Invalidate({vt::IotlbPage(4, kIovaLegacy + 0x1000, 0)});
      err = s.ok() ? CheckMappedWrite(b, kIovaLegacy + 0x1000, kGpaLegacy + 0x1000, 4096, 72) : std::string(s.message());
    }
    if (err.empty()) {
      s = ss->WriteEntry(kIovaLegacy, 1, 0);
      if (s.ok()) s = driver->Invalidate({vt::IotlbPage(4, kIovaLegacy, 0)});
      err = s.ok() ? CheckBlockedWrite(b, kIovaLegacy, kGpaLegacy, 4096, kErrTranslation) : std::string(s.message());
    }
    k.Result("legacy_shadow_follows", err.empty(), err);
  }
  {
    const iommufd::VtdNestingStats st = b.backend().stats();
    k.Diag(absl::StrFormat(
        "backend: binds %u failures %u guest_faults %u invalidate_calls %u entries %u host_faults %u injected %u "
        "responses %u unknown %u auto_invalid %u",
        st.binds, st.bind_failures, st.guest_faults, st.invalidate_calls, st.invalidate_entries, st.host_faults,
        st.injected, st.responses, st.unknown_responses, st.auto_invalid));
  }
  made->reset();
  const int fds_after = CountOpenFds();
  auto again = InnerMachine::Create(o, host);
  k.Result("nest_released_and_reopened", fds_after == fds_before && again.ok(),
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

void RunNestingCases(const TestbedOptions& o, const PassthroughHost& host, Ktap& k) {
  RunNestingBody(o, host, k);
  while (k.count() < kNestingCases) k.Result("not_reached", false, "an earlier case stopped the run");
}

}  // namespace ionest::testbed
