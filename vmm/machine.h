// The ionest machine: owns guest memory, the KVM VM and vCPUs, the PIO/MMIO buses, the devices,
// the DMA provider (IOMMU or bypass), and the vCPU threads. Create() assembles everything and loads
// the kernel; Run() starts the vCPUs and blocks until the guest powers off, resets or crashes, the
// timeout expires, or the user quits.
//
// Thread safety: Create/Run on the main thread. RequestStop may be called from any thread.
#pragma once

// MachineOptions, kMaxVcpus, DefaultGuestCmdline(): shared by every architecture's Machine.
#include "vmm/machine_options.h"

#if defined(__aarch64__)
// The arm64 machine (docs/arm64.md): the same public interface, its own platform.
#include "vmm/arch/arm64/machine_arm64.h"
#else  // x86-64

#include <atomic>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "devices/cmos_rtc.h"
#include "devices/io_bus.h"
#include "devices/ioapic.h"
#include "devices/pci_host.h"
#include "devices/power_control.h"
#include "devices/virtio_blk.h"
#include "devices/virtio_pci.h"
#include "devices/uart16550.h"
#include "iommu/dma_space.h"
#include "iommu/virtio/virtio_iommu.h"
#include "iommu/vtd/vtd_iommu.h"
#include "vmm/boot_timing.h"
#include "vmm/console.h"
#include "vmm/cpuid_policy.h"
#include "vmm/device_spec.h"
#include "vmm/emulation_stats.h"
#include "vmm/guest_memory.h"
#include "vmm/kvm.h"
#include "vmm/kvm_msi_sink.h"
#include "vmm/memory_layout.h"
#include "vmm/passthrough.h"
#include "vmm/pci_functions.h"
#include "vmm/stop_reason.h"
#include "vmm/syscall_workaround.h"

namespace ionest {

class Machine {
 public:
  static absl::StatusOr<std::unique_ptr<Machine>> Create(const MachineOptions& options);
  ~Machine();

  // Blocks until the machine stops; returns why (and a human-readable detail in *detail).
  StopReason Run(std::string* detail);
  void RequestStop(StopReason reason, const std::string& detail);

  const std::string& guest_cmdline() const { return guest_cmdline_; }
  const BootTiming& timing() const { return timing_; }
  const EmulationStats& emulation_stats() const { return stats_; }
  const SyscallWorkaround* syscall_workaround() const { return syscall_.get(); }
  // One line per vCPU: RIP, CPL, RFLAGS (after Run returned).
  std::string DescribeVcpus() const;
  std::string platform_tables() const { return platform_tables_; }
  // `--dump-tables`: what the guest programmed into the emulated IOMMU for one requester (any thread).
  std::string DumpTables(const trace::DumpRequest& request) const;

 private:
  explicit Machine(const MachineOptions& options) : options_(options) {}
  absl::Status Init();
  absl::Status SetupVm();
  absl::Status SetupDevices();
  absl::Status SetupTestDevices();  // --device functions at DeviceDevfn(spec, i)
  absl::Status SetupPassthrough();  // --device vfio functions (after the emulated ones)
  absl::Status LoadGuest();
  absl::Status SetupPlatformTables();
  absl::Status SetupVcpus();
  // Mirrors the IOAPIC's RTEs into KVM's GSI routes (KVM derives the level-triggered vectors that
  // exit with KVM_EXIT_IOAPIC_EOI from them). Called from vCPU threads on RTE writes.
  void UpdateGsiRoutes() ABSL_LOCKS_EXCLUDED(routes_mu_);

  const MachineOptions options_;
  MemoryLayout layout_;
  std::string guest_cmdline_;
  std::string platform_tables_;
  uint64_t rsdp_addr_ = 0;
  uint64_t kernel_entry_ = 0;
  CpuidPolicy policy_;

  std::unique_ptr<KvmSystem> kvm_;
  std::unique_ptr<KvmVm> vm_;
  std::unique_ptr<GuestMemory> memory_;
  std::vector<std::unique_ptr<KvmVcpu>> vcpus_;
  std::unique_ptr<KvmMsiSink> msi_sink_;
  std::unique_ptr<vtd::VtdIommu> vtd_;          // --iommu=vtd
  std::unique_ptr<DmaSpaceProvider> bypass_;    // --iommu=none
  VirtioIommuFunction viommu_;  // --iommu=virtio: device, requesters' DmaSpaceProvider, PCI transport
  DmaSpaceProvider* dma_ = nullptr;             // what devices use
  MsiSink* device_msi_ = nullptr;               // devices' and IOAPIC's MSIs (VT-d remapper or KVM)
  IoBus pio_{"pio"};
  IoBus mmio_{"mmio"};
  std::unique_ptr<Ioapic> ioapic_;
  std::unique_ptr<Uart16550> uart_;
  std::unique_ptr<PowerControl> power_;
  std::unique_ptr<CmosRtc> rtc_;
  std::unique_ptr<PciHost> pci_;
  std::unique_ptr<VirtioBlk> blk_;
  std::unique_ptr<VirtioPciDevice> blk_pci_;
  // --device functions; declared after pci_/vtd_ so they are destroyed first (their destructors
  // stop the worker threads and unregister from the DmaSpace).
  std::vector<std::unique_ptr<PciDevice>> test_devices_;
  // --device vfio functions and their iommufd context; destroyed before test_devices_ and pci_.
  std::unique_ptr<Passthrough> passthrough_;
  std::unique_ptr<Console> console_;
  std::unique_ptr<EmulationCompleter> decoder_;  // for the SYSCALL work-around's classification
  std::unique_ptr<SyscallWorkaround> syscall_;
  EmulationStats stats_;
  BootTiming timing_;

  absl::Mutex routes_mu_;  // serializes KVM_SET_GSI_ROUTING updates from vCPU threads
  std::vector<std::thread> threads_;
  std::atomic<bool> stopping_{false};
  absl::Mutex stop_mu_;
  StopReason stop_reason_ ABSL_GUARDED_BY(stop_mu_) = StopReason::kNone;
  std::string stop_detail_ ABSL_GUARDED_BY(stop_mu_);
};

}  // namespace ionest

#endif  // x86-64
