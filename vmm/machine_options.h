// Machine options (from the command line, vmm/cli_options.h), shared by the x86 Machine
// (vmm/machine.h) and the arm64 one (vmm/arch/arm64/machine_arm64.h).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "iommu/trace.h"
#include "vmm/device_spec.h"

namespace ionest {

inline constexpr int kMaxVcpus = 8;
inline constexpr int kMaxTestDevices = 16;  // --device options
inline constexpr uint8_t kVirtioBlkDevfn = 1 << 3;  // 00:01.0
inline constexpr uint8_t kVirtioIommuDevfn = 0x1f << 3;  // 00:1f.0 (--iommu=virtio)
// --device functions: 00:02.0, 00:03.0, ... in command-line order (whether or not --disk is given).
inline constexpr uint8_t kFirstTestDeviceSlot = 2;
inline constexpr uint8_t TestDeviceDevfn(int index) { return static_cast<uint8_t>((kFirstTestDeviceSlot + index) << 3); }
// Where the i-th --device goes: its addr= if given, else TestDeviceDevfn(i).
inline uint8_t DeviceDevfn(const TestDeviceSpec& spec, int index) { return spec.devfn.value_or(TestDeviceDevfn(index)); }
// kvm_pvm SYSCALL bug work-around (x86 only, vmm/syscall_workaround.h); arm64 ignores it.
enum class SyscallWorkaroundMode { kAuto, kOn, kOff };
absl::StatusOr<SyscallWorkaroundMode> ParseSyscallWorkaroundMode(const std::string& text);

struct MachineOptions {
  std::string kernel;
  std::string initrd;
  std::string cmdline;          // appended after the defaults (later parameters win)
  bool default_cmdline = true;  // prepend DefaultGuestCmdline() + the CPUID policy additions
  uint64_t memory = 512ull << 20;
  int cpus = 1;
  std::string disk;
  std::string iommu = "none";  // none | vtd | virtio
  std::string vtd_profile;     // VT-d capability profile (iommu/vtd/caps.h ParseVtdProfile); "" = default
  std::string smmuv3_profile;  // arm64 --iommu=smmuv3 (iommu/smmuv3/smmuv3_profile.h); "" = default
  // --iommu=virtio: reset value of the virtio-iommu's `bypass` config field (virtio 1.2 §5.13.4):
  // true lets endpoints DMA untranslated until the driver attaches them, false blocks them.
  bool virtio_iommu_boot_bypass = true;
  bool console = false;        // interactive stdin
  double timeout_seconds = 0;  // 0 = none
  SyscallWorkaroundMode syscall_workaround = SyscallWorkaroundMode::kAuto;
  bool clear_simd_crypto = false;
  std::string platform_tables = "acpi";  // acpi | mptable
  std::vector<TestDeviceSpec> devices;    // --device, in order (devfn TestDeviceDevfn(i))
  // --trace CLASSES[:PATH]: IOMMU event trace (iommu/trace.h); mask 0 = off. vmm/main.cc opens it.
  trace::TraceSpec trace;
  // --dump-tables RID[,pasid=N][,iova=ADDR]: the requester's IOMMU tables, dumped to stderr at exit
  // and on SIGUSR2 (Machine::DumpTables).
  std::optional<trace::DumpRequest> dump_tables;
};

// Parameters that make the minimal guest boot fast on the emulating KVM (docs/vmm.md): serial console, no legacy PTYs (pty_init costs
// ~85 s), no IOAPIC timer check, trusted TSC, low-res tick, reboot through the i8042.
// Defined per architecture: machine.cc (x86), arch/arm64/machine_arm64.cc.
std::string DefaultGuestCmdline();

}  // namespace ionest
