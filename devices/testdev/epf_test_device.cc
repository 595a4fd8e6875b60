#include "devices/testdev/epf_test_device.h"

#include <algorithm>
#include <cstring>

#include "devices/pci_msi.h"
#include "devices/pci_msix.h"
#include "devices/testdev/epf_test_crc32.h"

namespace ionest {

using namespace epf;

namespace {

constexpr size_t kChunk = 4096;  // DMA in page-bounded pieces through a fixed buffer

// Registers (reset value 0, all bits read/write like pci-epf-test's register block in memory);
// a write to COMMAND with any bit set hands the command to the function.
struct RegDef {
  uint32_t offset;
  const char* name;
};
constexpr RegDef kRegs[] = {
    {kRegMagic, "MAGIC"},     {kRegCommand, "COMMAND"},   {kRegStatus, "STATUS"},   {kRegSrcLo, "SRC_LO"},
    {kRegSrcHi, "SRC_HI"},    {kRegDstLo, "DST_LO"},      {kRegDstHi, "DST_HI"},    {kRegSize, "SIZE"},
    {kRegChecksum, "CHECKSUM"}, {kRegIrqType, "IRQ_TYPE"}, {kRegIrqNumber, "IRQ_NUMBER"}, {kRegFlags, "FLAGS"},
};
static_assert(sizeof(kRegs) / sizeof(kRegs[0]) * 4 <= kRegWindow);

uint64_t XorShift(uint64_t& s) {
  s ^= s << 13;
  s ^= s >> 7;
  s ^= s << 17;
  return s;
}

}  // namespace

EpfTestDevice::EpfTestDevice(std::string name, EpfTestDeviceOptions options)
    : PciDevice(std::move(name), PciIdentity{kVendorId, kDeviceId, kClassCode, 0, kVendorId, kDeviceId}),
      options_(options),
      rng_(options.random_seed | 1) {
  init_status_ = [&]() -> absl::Status {
    for (unsigned i = 0; i < 6; ++i) {
      absl::StatusOr<PciBar*> bar = AddBar(i, PciBarKind::kMmio32, kBarSizes[i]);
      if (!bar.ok()) return bar.status();
      if (i == 0) {
        if (absl::Status s = (*bar)->AddRegion(0, kRegWindow, &regs_io_, "epf-test-regs"); !s.ok()) return s;
      } else {
        ram_bars_.push_back(std::make_unique<RamIo>(kBarSizes[i]));
        if (absl::Status s = (*bar)->AddRegion(0, kBarSizes[i], ram_bars_.back().get(), "epf-test-ram"); !s.ok()) {
          return s;
        }
      }
    }
    if (absl::Status s = AddMsi(kNumMsiVectors); !s.ok()) return s;
    return AddMsix(kNumMsixVectors, 0, kMsixTableOffset, kMsixPbaOffset);
  }();
  if (!options_.synchronous) worker_ = std::thread([this] { WorkerLoop(); });
}

EpfTestDevice::~EpfTestDevice() {
  {
    absl::MutexLock l(&mu_);
    shutdown_ = true;
  }
  if (worker_.joinable()) worker_.join();
}

// ---- registers ------------------------------------------------------------------------------

uint32_t EpfTestDevice::Reg(uint32_t offset) const {
  uint32_t v;
  std::memcpy(&v, regs_ + offset, 4);
  return v;
}

void EpfTestDevice::SetReg(uint32_t offset, uint32_t value) { std::memcpy(regs_ + offset, &value, 4); }

void EpfTestDevice::RegsIo::IoRead(uint64_t offset, uint8_t* data, size_t size) {
  absl::MutexLock l(&d_.mu_);
  for (size_t i = 0; i < size; ++i) data[i] = offset + i < kRegWindow ? d_.regs_[offset + i] : 0xff;
}

void EpfTestDevice::RegsIo::IoWrite(uint64_t offset, const uint8_t* data, size_t size) {
  bool run_now = false;
  {
    absl::MutexLock l(&d_.mu_);
    for (size_t i = 0; i < size; ++i) {
      if (offset + i < kRegWindow) d_.regs_[offset + i] = data[i];
    }
    run_now = d_.options_.synchronous && offset < kRegCommand + 4 && offset + size > kRegCommand &&
              d_.Reg(kRegCommand) != 0;
  }
  if (run_now) {
    Command cmd;
    bool taken;
    {
      absl::MutexLock l(&d_.mu_);
      taken = d_.TakeCommand(&cmd);
    }
    if (taken) d_.Finish(cmd, d_.Execute(cmd));
  }
}

uint32_t EpfTestDevice::ReadReg32(uint32_t offset) {
  uint8_t b[4];
  regs_io_.IoRead(offset, b, 4);
  uint32_t v;
  std::memcpy(&v, b, 4);
  return v;
}

void EpfTestDevice::WriteReg32(uint32_t offset, uint32_t value) {
  uint8_t b[4];
  std::memcpy(b, &value, 4);
  regs_io_.IoWrite(offset, b, 4);
}

void EpfTestDevice::RamIo::IoRead(uint64_t offset, uint8_t* data, size_t size) {
  absl::MutexLock l(&mu_);
  for (size_t i = 0; i < size; ++i) data[i] = offset + i < bytes_.size() ? bytes_[offset + i] : 0xff;
}

void EpfTestDevice::RamIo::IoWrite(uint64_t offset, const uint8_t* data, size_t size) {
  absl::MutexLock l(&mu_);
  for (size_t i = 0; i < size; ++i) {
    if (offset + i < bytes_.size()) bytes_[offset + i] = data[i];
  }
}

// ---- command processing ---------------------------------------------------------------------

bool EpfTestDevice::TakeCommand(Command* cmd) {
  cmd->command = Reg(kRegCommand);
  if (cmd->command == 0) return false;
  // pci-epf-test clears COMMAND and STATUS when it takes a command.
  SetReg(kRegCommand, 0);
  SetReg(kRegStatus, 0);
  cmd->src = uint64_t{Reg(kRegSrcHi)} << 32 | Reg(kRegSrcLo);
  cmd->dst = uint64_t{Reg(kRegDstHi)} << 32 | Reg(kRegDstLo);
  cmd->size = Reg(kRegSize);
  cmd->checksum = Reg(kRegChecksum);
  cmd->irq_type = Reg(kRegIrqType);
  cmd->irq_number = Reg(kRegIrqNumber);
  running_ = true;
  ++stats_.commands;
  return true;
}

void EpfTestDevice::WorkerLoop() {
  for (;;) {
    Command cmd;
    {
      absl::MutexLock l(&mu_);
      auto ready = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return shutdown_ || Reg(kRegCommand) != 0; };
      mu_.Await(absl::Condition(&ready));
      if (shutdown_) return;
      TakeCommand(&cmd);
    }
    Finish(cmd, Execute(cmd));
  }
}

bool EpfTestDevice::TransferAllowed(const Command& cmd) const {
  // Empty, oversized or address-wrapping transfers fail without any DMA; so does a function whose
  // Bus Master Enable is clear (PCIe 6.0 §7.5.1.1.3: no memory requests then).
  if (cmd.size == 0 || cmd.size > options_.max_transfer) return false;
  const uint64_t last = cmd.size - 1;
  if (cmd.command & (kCmdRead | kCmdCopy) && cmd.src > ~0ull - last) return false;
  if (cmd.command & (kCmdWrite | kCmdCopy) && cmd.dst > ~0ull - last) return false;
  return bus_master_enabled();
}

uint32_t EpfTestDevice::Execute(Command& cmd) {
  uint8_t buf[kChunk];
  // One command per write; pci-epf-test checks the bits in this order.
  if (cmd.command & (kCmdRaiseIntx | kCmdRaiseMsi | kCmdRaiseMsix)) return 0;
  if (cmd.command & kCmdWrite) {
    // Function -> host: random data to DST, its crc32_le(~0) in CHECKSUM (host "read" test).
    if (!TransferAllowed(cmd)) return kStatusWriteFail;
    uint64_t rng;
    {
      absl::MutexLock l(&mu_);
      rng = rng_;
    }
    uint32_t crc = ~0u;
    for (uint64_t done = 0; done < cmd.size;) {
      const size_t n = std::min<uint64_t>(cmd.size - done, kChunk - ((cmd.dst + done) % kChunk));
      for (size_t i = 0; i < n; i += 8) {
        const uint64_t r = XorShift(rng);
        std::memcpy(buf + i, &r, std::min<size_t>(8, n - i));
      }
      crc = Crc32Le(crc, buf, n);
      if (!DmaWrite(cmd.dst + done, buf, n)) return kStatusWriteFail | kStatusDstAddrInvalid;
      done += n;
    }
    absl::MutexLock l(&mu_);
    rng_ = rng;
    SetReg(kRegChecksum, crc);
    return kStatusWriteSuccess;
  }
  if (cmd.command & kCmdRead) {
    // Host -> function: read SRC, compare crc32_le(~0) with CHECKSUM (host "write" test).
    if (!TransferAllowed(cmd)) return kStatusReadFail;
    uint32_t crc = ~0u;
    for (uint64_t done = 0; done < cmd.size;) {
      const size_t n = std::min<uint64_t>(cmd.size - done, kChunk - ((cmd.src + done) % kChunk));
      if (!DmaRead(cmd.src + done, buf, n)) return kStatusReadFail | kStatusSrcAddrInvalid;
      crc = Crc32Le(crc, buf, n);
      done += n;
    }
    return crc == cmd.checksum ? kStatusReadSuccess : kStatusReadFail;
  }
  if (cmd.command & kCmdCopy) {
    if (!TransferAllowed(cmd)) return kStatusCopyFail;
    for (uint64_t done = 0; done < cmd.size;) {
      const uint64_t to_src_page = kChunk - ((cmd.src + done) % kChunk);
      const uint64_t to_dst_page = kChunk - ((cmd.dst + done) % kChunk);
      const size_t n = std::min({cmd.size - done, to_src_page, to_dst_page});
      if (!DmaRead(cmd.src + done, buf, n)) return kStatusCopyFail | kStatusSrcAddrInvalid;
      if (!DmaWrite(cmd.dst + done, buf, n)) return kStatusCopyFail | kStatusDstAddrInvalid;
      done += n;
    }
    return kStatusCopySuccess;
  }
  return 0;  // unknown bits: no action, but the interrupt still tells the host it is done
}

void EpfTestDevice::Finish(const Command& cmd, uint32_t status) {
  // STATUS (with IRQ_RAISED) is visible before the interrupt: the driver's handler checks it.
  {
    absl::MutexLock l(&mu_);
    SetReg(kRegStatus, status | kStatusIrqRaised);
  }
  PciIrqResult r = PciIrqResult::kDisabled;
  // IRQ_NUMBER is 1-based for MSI/MSI-X (pci-epf-test raises vector irq_number - 1).
  const unsigned vector = cmd.irq_number - 1;
  if (cmd.irq_type == kIrqTypeMsi && msi() && msi()->enabled()) {
    r = cmd.irq_number >= 1 && cmd.irq_number <= kNumMsiVectors ? msi()->Signal(vector) : PciIrqResult::kBadVector;
  } else if (cmd.irq_type == kIrqTypeMsix && msix() && msix()->enabled()) {
    r = cmd.irq_number >= 1 && cmd.irq_number <= kNumMsixVectors ? msix()->Signal(vector)
                                                                   : PciIrqResult::kBadVector;
  }
  absl::MutexLock l(&mu_);
  if (r == PciIrqResult::kSent || r == PciIrqResult::kPending) {
    ++stats_.irqs_sent;
  } else {
    ++stats_.irqs_dropped;
  }
  running_ = false;
}

bool EpfTestDevice::DmaRead(uint64_t addr, uint8_t* buf, size_t len) {
  DmaFault fault;
  if (dma().Read(addr, buf, len, {}, &fault).ok()) return true;
  RecordFault(fault);
  return false;
}

bool EpfTestDevice::DmaWrite(uint64_t addr, const uint8_t* buf, size_t len) {
  DmaFault fault;
  if (dma().Write(addr, buf, len, {}, &fault).ok()) return true;
  RecordFault(fault);
  return false;
}

void EpfTestDevice::RecordFault(const DmaFault& fault) {
  absl::MutexLock l(&mu_);
  ++stats_.dma_faults;
  stats_.last_fault = fault;
}

bool EpfTestDevice::WaitIdle(absl::Duration timeout) {
  absl::MutexLock l(&mu_);
  auto idle = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return !running_ && Reg(kRegCommand) == 0; };
  return mu_.AwaitWithTimeout(absl::Condition(&idle), timeout);
}

EpfTestDevice::Stats EpfTestDevice::stats() {
  absl::MutexLock l(&mu_);
  return stats_;
}

}  // namespace ionest
