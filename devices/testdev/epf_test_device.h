// "pci-epf-test": a PCI function with the register interface of Linux's endpoint test function
// (epf_test_regs.h), so the in-tree host driver pci_endpoint_test.c and tools/pci/pcitest drive it:
// BAR tests, MSI/MSI-X raise tests and read/write/copy DMA transfers checked with crc32_le.
// Identity TI DRA74x (104c:b500: test registers in BAR0, 4 KiB alignment, MSI by default).
//
// All DMA goes through the function's DmaSpace (so behind VT-d it is translated and faults are
// recorded); a fault ends the transfer with the command's FAIL bit plus SRC/DST_ADDR_INVALID.
// Transfers longer than max_transfer, empty or wrapping fail without DMA. No INTx (interrupt pin 0:
// Linux refuses the legacy IRQ type).
//
// Threading: BAR/config accesses may come concurrently from vCPU threads and never block on DMA: a
// COMMAND write wakes the worker thread, which takes the command (clearing COMMAND and STATUS, as
// pci-epf-test does), runs it, sets STATUS (with IRQ_RAISED) and then signals the interrupt. With
// `synchronous` the command runs on the writing thread instead (tests, fuzzers).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "devices/pci_device.h"
#include "devices/testdev/epf_test_regs.h"
#include "iommu/dma_space.h"

namespace ionest {

struct EpfTestDeviceOptions {
  uint64_t max_transfer = 16ull << 20;  // bytes per command; bounds the work a guest can ask for
  bool synchronous = false;             // run commands on the COMMAND-writing thread
  uint64_t random_seed = 0x5eed;        // data the WRITE command produces
};

class EpfTestDevice final : public PciDevice {
 public:
  explicit EpfTestDevice(std::string name = "pci-epf-test", EpfTestDeviceOptions options = {});
  ~EpfTestDevice() override;

  // Setup errors are host bugs; check after construction.
  absl::Status init_status() const { return init_status_; }

  // 32-bit register access at a BAR0 offset (for tests that skip the bus).
  uint32_t ReadReg32(uint32_t offset);
  void WriteReg32(uint32_t offset, uint32_t value);
  // Waits until no command is latched or running and its interrupt was signalled.
  bool WaitIdle(absl::Duration timeout) ABSL_LOCKS_EXCLUDED(mu_);

  struct Stats {
    uint64_t commands = 0;
    uint64_t irqs_sent = 0;     // interrupts handed to MSI/MSI-X (PciIrqResult::kSent or kPending)
    uint64_t irqs_dropped = 0;  // bad type/number, capability disabled
    uint64_t dma_faults = 0;
    DmaFault last_fault;
  };
  Stats stats() ABSL_LOCKS_EXCLUDED(mu_);

 private:
  // BAR0 [0, kRegWindow): registers then scratch, all read/write memory like pci-epf-test's.
  class RegsIo final : public IoDevice {
   public:
    explicit RegsIo(EpfTestDevice& d) : d_(d) {}
    void IoRead(uint64_t offset, uint8_t* data, size_t size) override;
    void IoWrite(uint64_t offset, const uint8_t* data, size_t size) override;

   private:
    EpfTestDevice& d_;
  };
  // BAR1-5: plain memory for the driver's BAR test.
  class RamIo final : public IoDevice {
   public:
    explicit RamIo(size_t size) : bytes_(size, 0) {}
    void IoRead(uint64_t offset, uint8_t* data, size_t size) override;
    void IoWrite(uint64_t offset, const uint8_t* data, size_t size) override;

   private:
    absl::Mutex mu_;
    std::vector<uint8_t> bytes_ ABSL_GUARDED_BY(mu_);
  };
  struct Command {
    uint32_t command = 0;
    uint64_t src = 0, dst = 0;
    uint32_t size = 0, checksum = 0, irq_type = 0, irq_number = 0;
  };

  uint32_t Reg(uint32_t offset) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void SetReg(uint32_t offset, uint32_t value) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Takes the latched command (clearing COMMAND and STATUS); false if none.
  bool TakeCommand(Command* cmd) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void WorkerLoop() ABSL_LOCKS_EXCLUDED(mu_);
  // Runs one command without the lock; returns the STATUS bits (IRQ_RAISED added by the caller).
  uint32_t Execute(Command& cmd) ABSL_LOCKS_EXCLUDED(mu_);
  void Finish(const Command& cmd, uint32_t status) ABSL_LOCKS_EXCLUDED(mu_);
  // Moves bytes in page-bounded chunks. Returns false (and records the fault) on a DMA fault.
  bool DmaRead(uint64_t addr, uint8_t* buf, size_t len) ABSL_LOCKS_EXCLUDED(mu_);
  bool DmaWrite(uint64_t addr, const uint8_t* buf, size_t len) ABSL_LOCKS_EXCLUDED(mu_);
  bool TransferAllowed(const Command& cmd) const;
  void RecordFault(const DmaFault& fault) ABSL_LOCKS_EXCLUDED(mu_);

  const EpfTestDeviceOptions options_;
  absl::Status init_status_;
  RegsIo regs_io_{*this};
  std::vector<std::unique_ptr<RamIo>> ram_bars_;

  absl::Mutex mu_;
  uint8_t regs_[epf::kRegWindow] ABSL_GUARDED_BY(mu_) = {};
  bool running_ ABSL_GUARDED_BY(mu_) = false;
  bool shutdown_ ABSL_GUARDED_BY(mu_) = false;
  uint64_t rng_ ABSL_GUARDED_BY(mu_);
  Stats stats_ ABSL_GUARDED_BY(mu_);
  std::thread worker_;
};

}  // namespace ionest
