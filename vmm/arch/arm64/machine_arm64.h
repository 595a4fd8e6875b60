// The arm64 machine (docs/arm64.md): guest RAM at 0x4000_0000, KVM vCPUs with in-kernel PSCI, the
// in-kernel GICv3 (+ ITS) and arch timer, a 16550 UART on MMIO, an arm64 Image booted with a
// generated device tree. Included by vmm/machine.h on aarch64 builds: the same public interface as
// the x86 Machine, so vmm/main.cc and vmm/cli_options.cc are shared.
// PCIe: an ECAM host (devices/pci_host.h, the x86 machine's) with --disk (virtio-blk, 00:01.0) and the
// --device test functions (dmatest, pci-epf-test) at the same slots as on x86; their MSIs go to the ITS
// (through the emulated SMMUv3 or virtio-iommu when --iommu says so).
// --device vfio (issue 10 item 4): host functions passed through with VFIO cdev + iommufd
// (vmm/passthrough.h, shared with x86), guest RAM in the IOAS, their MSIs forwarded to the ITS
// (DeviceID = requester ID); only with --iommu=none (no host-side nesting for a vIOMMU on arm64).
//
// Thread safety: Create/Run on the main thread. RequestStop may be called from any thread.
#pragma once

#include <atomic>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "devices/io_bus.h"
#include "devices/pci_device.h"
#include "devices/pci_host.h"
#include "devices/uart16550.h"
#include "devices/virtio_blk.h"
#include "devices/virtio_pci.h"
#include "iommu/dma_space.h"
#include "iommu/smmuv3/smmuv3_iommu.h"
#include "vmm/arch/arm64/gic_arm64.h"
#include "vmm/boot_timing.h"
#include "vmm/console.h"
#include "vmm/emulation_stats.h"
#include "vmm/guest_memory.h"
#include "vmm/kvm.h"
#include "vmm/machine_options.h"
#include "vmm/passthrough.h"
#include "vmm/pci_functions.h"
#include "vmm/stop_reason.h"

namespace ionest {

class Machine {
 public:
  static absl::StatusOr<std::unique_ptr<Machine>> Create(const MachineOptions& options);
  ~Machine();

  StopReason Run(std::string* detail);
  void RequestStop(StopReason reason, const std::string& detail);

  const std::string& guest_cmdline() const { return guest_cmdline_; }
  const BootTiming& timing() const { return timing_; }
  // x86's emulation-failure completion has no arm64 counterpart: always "none".
  const EmulationStats& emulation_stats() const { return stats_; }
  // One line per vCPU: PC, PSTATE (after Run returned).
  std::string DescribeVcpus() const;
  // "device tree N bytes (GICv3+ITS)".
  std::string platform_tables() const { return platform_tables_; }
  // `--dump-tables`: what the guest programmed into the emulated IOMMU for one requester (any thread).
  std::string DumpTables(const trace::DumpRequest& request) const;

 private:
  explicit Machine(const MachineOptions& options) : options_(options) {}
  absl::Status Init();
  absl::Status CheckOptions() const;
  absl::Status SetupVm();
  absl::Status SetupDevices();
  absl::Status SetupPci();
  absl::Status LoadGuest();
  absl::Status SetupVcpus();

  const MachineOptions options_;
  std::string guest_cmdline_;
  std::string platform_tables_;
  uint64_t kernel_entry_ = 0;
  uint64_t dtb_addr_ = 0;

  std::unique_ptr<KvmSystem> kvm_;
  std::unique_ptr<KvmVm> vm_;
  std::unique_ptr<GuestMemory> memory_;
  std::unique_ptr<arm64::Gicv3> gic_;
  std::vector<std::unique_ptr<KvmVcpu>> vcpus_;
  IoBus mmio_{"mmio"};
  IoBus pio_{"pio"};  // arm64 has no port I/O: PciHost's 0xCF8/0xCFC land here, unreachable
  std::unique_ptr<arm64::SpiLine> uart_irq_;
  std::unique_ptr<Uart16550> uart_;
  std::unique_ptr<arm64::ItsMsiSink> msi_;
  std::unique_ptr<BypassDmaProvider> bypass_;  // --iommu=none: DMA straight to RAM
  VirtioIommuFunction viommu_;                 // --iommu=virtio: device, requesters' spaces, PCI transport
  std::unique_ptr<smmuv3::Smmuv3Iommu> smmu_;   // --iommu=smmuv3: the SMMU, its MMIO and DmaSpaceProvider
  std::unique_ptr<IoDevice> smmu_mmio_;                 // its register window on mmio_
  std::unique_ptr<arm64::TranslatedMsiSink> smmu_msi_;  // PCI MSIs through the SMMU to the ITS
  DmaSpaceProvider* dma_ = nullptr;            // one of the two: what PciHost hands each requester
  std::unique_ptr<PciHost> pci_;
  std::unique_ptr<VirtioBlk> blk_;
  std::unique_ptr<VirtioPciDevice> blk_pci_;
  // Declared after pci_ so they are destroyed first (their destructors stop worker threads).
  std::vector<std::unique_ptr<PciDevice>> test_devices_;
  // --device vfio functions and their iommufd context; destroyed before test_devices_ and pci_.
  std::unique_ptr<Passthrough> passthrough_;
  std::unique_ptr<Console> console_;
  EmulationStats stats_;
  BootTiming timing_;

  std::vector<std::thread> threads_;
  std::atomic<bool> stopping_{false};
  absl::Mutex stop_mu_;
  StopReason stop_reason_ ABSL_GUARDED_BY(stop_mu_) = StopReason::kNone;
  std::string stop_detail_ ABSL_GUARDED_BY(stop_mu_);
};

}  // namespace ionest
