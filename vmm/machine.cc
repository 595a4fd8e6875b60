#include "vmm/machine.h"

#include <pthread.h>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_format.h"
#include "absl/time/time.h"
#include "firmware/acpi_tables.h"
#include "vmm/boot_params.h"
#include "vmm/kernel_loader.h"
#include "vmm/mptable.h"
#include "vmm/pci_functions.h"
#include "vmm/vcpu_loop.h"
#include "vmm/x86_boot.h"

namespace ionest {
namespace {

constexpr uint32_t kSplitIrqchipPins = kIoapicPins;
constexpr size_t kMaxKernelFile = 512ull << 20;
constexpr size_t kMaxInitrdFile = 1ull << 30;

absl::Status Annotate(const absl::Status& s, const std::string& what) {
  if (s.ok()) return s;
  return absl::Status(s.code(), absl::StrCat(what, ": ", s.message()));
}

}  // namespace

std::string DefaultGuestCmdline() {
  return "console=ttyS0 earlyprintk=serial,ttyS0 pty.legacy_count=0 no_timer_check tsc=reliable "
         "reboot=k panic=-1 rcupdate.rcu_cpu_stall_suppress=1 "
         // High-resolution timer interrupts took 27-85 ms of emulation here and about half the
         // boots on a loaded host stalled in them after the switch to kvm-clock; the low-res
         // periodic tick booted through (1 run so far).
         "highres=off "
         // Guest user code runs natively with the host's XCR0 while the kernel (noxsave) saves only
         // FXSAVE state: keep glibc off AVX so YMM/ZMM state need not survive context switches.
         "GLIBC_TUNABLES=glibc.cpu.hwcaps=-AVX,-AVX2,-AVX512F,-AVX512VL,-AVX512BW,-AVX512DQ,-AVX512CD";
}

absl::StatusOr<std::unique_ptr<Machine>> Machine::Create(const MachineOptions& options) {
  std::unique_ptr<Machine> m(new Machine(options));
  absl::Status s = m->Init();
  if (!s.ok()) return s;
  return m;
}

Machine::~Machine() {
  if (console_) console_->Stop();
  // A passed-through device must not keep DMA or interrupts going for a guest that is gone.
  if (passthrough_) passthrough_->ResetAll();
}

absl::Status Machine::Init() {
  if (options_.cpus < 1 || options_.cpus > kMaxVcpus) {
    return absl::InvalidArgumentError(absl::StrFormat("--cpus must be 1..%d", kMaxVcpus));
  }
  if (options_.kernel.empty()) return absl::InvalidArgumentError("--kernel is required");
  auto layout = ComputeMemoryLayout(options_.memory);
  if (!layout.ok()) return Annotate(layout.status(), "--memory");
  layout_ = *layout;
  if (absl::Status s = SetupVm(); !s.ok()) return s;
  if (absl::Status s = SetupDevices(); !s.ok()) return s;
  if (absl::Status s = LoadGuest(); !s.ok()) return s;
  return SetupVcpus();
}

absl::Status Machine::SetupVm() {
  auto kvm = KvmSystem::Open();
  if (!kvm.ok()) return kvm.status();
  kvm_ = std::move(*kvm);
  for (auto [cap, name] : std::initializer_list<std::pair<int, const char*>>{
           {KVM_CAP_USER_MEMORY, "KVM_CAP_USER_MEMORY"},
           {KVM_CAP_SPLIT_IRQCHIP, "KVM_CAP_SPLIT_IRQCHIP"},
           {KVM_CAP_SIGNAL_MSI, "KVM_CAP_SIGNAL_MSI"},
           {KVM_CAP_IRQ_ROUTING, "KVM_CAP_IRQ_ROUTING"},
           {KVM_CAP_IMMEDIATE_EXIT, "KVM_CAP_IMMEDIATE_EXIT"}}) {
    if (absl::Status s = kvm_->RequireExtension(cap, name); !s.ok()) return s;
  }
  auto vm = kvm_->CreateVm();
  if (!vm.ok()) return vm.status();
  vm_ = std::move(*vm);
  (void)vm_->SetTssAddr(kKvmTssAddr);  // required on VMX hosts; harmless elsewhere
  if (absl::Status s = vm_->EnableCap(KVM_CAP_SPLIT_IRQCHIP, kSplitIrqchipPins); !s.ok()) {
    return Annotate(s, "enabling the split irqchip");
  }
  if (vm_->CheckExtension(KVM_CAP_EXIT_ON_EMULATION_FAILURE) > 0) {
    if (absl::Status s = vm_->EnableCap(KVM_CAP_EXIT_ON_EMULATION_FAILURE, 1); !s.ok()) return s;
  }
  auto memory = GuestMemory::Create(layout_.ram);
  if (!memory.ok()) return Annotate(memory.status(), "allocating guest memory");
  memory_ = std::move(*memory);
  uint32_t slot = 0;
  for (const MemoryRegion& r : memory_->regions()) {
    if (absl::Status s = vm_->SetUserMemoryRegion(slot++, r.gpa, r.size, r.host); !s.ok()) return s;
  }
  msi_sink_ = std::make_unique<KvmMsiSink>(*vm_);
  if (options_.iommu == "none") {
    bypass_ = std::make_unique<BypassDmaProvider>(*memory_);
    dma_ = bypass_.get();
    device_msi_ = msi_sink_.get();
  } else if (options_.iommu == "vtd") {
    auto profile = vtd::ParseVtdProfile(options_.vtd_profile);
    if (!profile.ok()) return Annotate(profile.status(), "--vtd-profile");
    vtd_ = std::make_unique<vtd::VtdIommu>(*memory_, *msi_sink_, *profile);
    if (absl::Status s = mmio_.Register(vtd::VtdIommu::kDefaultBase, vtd_->mmio_size(), vtd_.get(), "vtd"); !s.ok()) {
      return s;
    }
    dma_ = vtd_.get();
    device_msi_ = vtd_.get();  // device and IOAPIC MSIs go through interrupt remapping
  } else if (options_.iommu == "virtio") {
    // The MSI doorbell: the LAPIC's 0xFEExxxxx window (Intel SDM 10.11.1).
    auto viommu = CreateVirtioIommu(*memory_, options_.virtio_iommu_boot_bypass, 0xFEE00000, 0xFEEFFFFF);
    if (!viommu.ok()) return viommu.status();
    viommu_ = std::move(*viommu);
    dma_ = viommu_.provider.get();
    device_msi_ = msi_sink_.get();  // virtio-iommu has no interrupt remapping
  } else {
    return absl::InvalidArgumentError(absl::StrCat("--iommu=", options_.iommu,
                                                   " is not on x86: use none, vtd or virtio (smmuv3 is arm64's)"));
  }
  return absl::OkStatus();
}

absl::Status Machine::SetupDevices() {
  IoapicConfig ioapic_config;
  ioapic_config.id = static_cast<uint8_t>(options_.cpus);  // after the CPUs' APIC IDs (MP table/MADT)
  ioapic_ = std::make_unique<Ioapic>(*device_msi_, ioapic_config);
  if (absl::Status s = mmio_.Register(kIoapicBase, kIoapicMmioSize, ioapic_.get(), "ioapic"); !s.ok()) return s;
  ioapic_->SetRouteChangeListener([this](unsigned) { UpdateGsiRoutes(); });
  UpdateGsiRoutes();

  console_ = std::make_unique<Console>(
      [this](const uint8_t* d, size_t n) { return uart_->PushInput(absl::MakeConstSpan(d, n)); },
      [this] { RequestStop(StopReason::kUserQuit, "console escape Ctrl-A x"); });
  uart_ = std::make_unique<Uart16550>(ioapic_->Line(kCom1Irq), [this](uint8_t b) {
    timing_.OnConsoleByte(b);
    console_->Output(b);
  });
  if (absl::Status s = pio_.Register(kCom1Base, kUartRegisterSpan, uart_.get(), "com1"); !s.ok()) return s;

  power_ = std::make_unique<PowerControl>(
      [this](ShutdownKind kind) {
        if (kind == ShutdownKind::kPowerOff) {
          RequestStop(StopReason::kPowerOff, "guest powered off (ACPI S5)");
        } else {
          RequestStop(StopReason::kReset, "guest reset");
        }
      },
      ioapic_->Line(acpi_pm::kSciIrq));
  if (absl::Status s = power_->RegisterOn(pio_); !s.ok()) return s;
  rtc_ = std::make_unique<CmosRtc>();
  if (absl::Status s = pio_.Register(kCmosIoBase, kCmosIoLen, rtc_.get(), "cmos-rtc"); !s.ok()) return s;
  pci_ = std::make_unique<PciHost>(mmio_, pio_, *device_msi_, *dma_);
  if (absl::Status s = pci_->Register(); !s.ok()) return Annotate(s, "PCI host");
  if (!options_.disk.empty()) {
    if (absl::Status s = AddVirtioBlk(*pci_, options_.disk, blk_, blk_pci_); !s.ok()) return s;
  }
  if (viommu_.device) {
    if (absl::Status s = AttachVirtioIommu(*pci_, viommu_); !s.ok()) return s;
  }
  if (absl::Status s = SetupTestDevices(); !s.ok()) return s;
  return Annotate(pci_->AssignResources(), "assigning PCI resources");
}

absl::Status Machine::SetupTestDevices() {
  if (absl::Status s = AddEmulatedTestDevices(*pci_, options_.devices, test_devices_); !s.ok()) return s;
  return SetupPassthrough();
}

absl::Status Machine::SetupPassthrough() {
  const PassthroughPlan plan = PlanPassthrough(options_.devices);
  if (plan.requests.empty()) return absl::OkStatus();
  PassthroughBinder bind;
  if (viommu_.device) {
    // Behind the virtio-iommu the guest's MAP/UNMAP are forwarded to host IOASes (issue 12 item 5).
    bind = VirtioIommuBinder(*viommu_.device);
  } else if (vtd_) {
    // Behind the emulated VT-d the host IOMMU must translate what the guest programs (issue 9).
    bind = [this](Passthrough& pt, const PassthroughPlan& p) {
      std::vector<uint16_t> rids(p.devfns.begin(), p.devfns.end());  // bus 0: requester id = devfn
      return Annotate(pt.EnableVtdNesting(*vtd_, *memory_, rids), "--device vfio with --iommu=vtd");
    };
  }
  absl::StatusOr<std::unique_ptr<Passthrough>> pt = AddPassthroughFunctions(*pci_, *memory_, plan, bind);
  if (!pt.ok()) return pt.status();
  passthrough_ = std::move(*pt);
  return absl::OkStatus();
}

void Machine::UpdateGsiRoutes() {
  absl::MutexLock lock(&routes_mu_);
  std::vector<kvm_irq_routing_entry> entries;
  for (unsigned pin = 0; pin < kIoapicPins; ++pin) {
    auto msi = ioapic_->ComposeMsi(pin);
    // Remappable-format RTEs (VT-d 5.0 §5.1.5.1, address bit 4) mean nothing to KVM: no route.
    if (!msi || (msi->address & (1u << 4))) continue;
    kvm_irq_routing_entry e{};
    e.gsi = pin;
    e.type = KVM_IRQ_ROUTING_MSI;
    e.u.msi.address_lo = static_cast<uint32_t>(msi->address);
    e.u.msi.address_hi = static_cast<uint32_t>(msi->address >> 32);
    e.u.msi.data = msi->data;
    entries.push_back(e);
  }
  // KVM derives the vectors that exit with KVM_EXIT_IOAPIC_EOI from these routes (split irqchip).
  absl::Status s = vm_->SetGsiRouting(entries);
  if (!s.ok()) RequestStop(StopReason::kHostError, "KVM_SET_GSI_ROUTING: " + std::string(s.message()));
}

absl::Status Machine::LoadGuest() {
  auto kernel_bytes = ReadFileBytes(options_.kernel, kMaxKernelFile);
  if (!kernel_bytes.ok()) return Annotate(kernel_bytes.status(), "--kernel");
  auto kernel = LoadKernel(*kernel_bytes, *memory_);
  if (!kernel.ok()) return Annotate(kernel.status(), "loading " + options_.kernel);

  std::optional<InitrdPlacement> initrd;
  if (!options_.initrd.empty()) {
    auto bytes = ReadFileBytes(options_.initrd, kMaxInitrdFile);
    if (!bytes.ok()) return Annotate(bytes.status(), "--initrd");
    auto place = PlaceInitrd(layout_, *kernel, bytes->size());
    if (!place.ok()) return Annotate(place.status(), "--initrd");
    if (absl::Status s = memory_->Write(place->addr, bytes->data(), bytes->size()); !s.ok()) return s;
    initrd = *place;
  }

  CpuidPolicy policy = ComputeCpuidPolicy(HostCpuid(), {.clear_simd_crypto = options_.clear_simd_crypto});
  if (absl::Status s = SetupPlatformTables(); !s.ok()) return s;
  std::vector<std::string> parts;
  if (options_.default_cmdline) {
    parts.push_back(DefaultGuestCmdline());
    if (rsdp_addr_ == 0) parts.push_back("acpi=off");  // MP-table stopgap: nothing for ACPI to find
    std::string cpuid = policy.CmdlineAdditions();
    if (!cpuid.empty()) parts.push_back(cpuid);
  }
  if (!options_.cmdline.empty()) parts.push_back(options_.cmdline);
  guest_cmdline_ = absl::StrJoin(parts, " ");

  auto params = BuildBootParams(layout_, *kernel, {guest_cmdline_, initrd, rsdp_addr_});
  if (!params.ok()) return params.status();
  if (absl::Status s = WriteBootParams(*memory_, *params, guest_cmdline_); !s.ok()) return s;
  if (absl::Status s = WriteBootPageTablesAndGdt(*memory_); !s.ok()) return s;
  kernel_entry_ = kernel->entry;
  policy_ = policy;
  return absl::OkStatus();
}

absl::Status Machine::SetupPlatformTables() {
  if (options_.platform_tables == "mptable") {
    // Fallback without ACPI (no poweroff: the guest can only reset).
    auto mp = BuildMpTable(options_.cpus, kMpTableAddr, kIoapicBase);
    if (!mp.ok()) return mp.status();
    if (absl::Status s = memory_->Write(kMpTableAddr, mp->data(), mp->size()); !s.ok()) return s;
    platform_tables_ = "MP table";
    return absl::OkStatus();
  }
  AcpiConfig config;
  config.base_gpa = kAcpiAddr;
  config.max_size = kAcpiSize;
  config.apic_ids.clear();
  for (int i = 0; i < options_.cpus; ++i) config.apic_ids.push_back(i);
  config.ioapic_id = static_cast<uint8_t>(options_.cpus);
  config.ioapic_address = static_cast<uint32_t>(kIoapicBase);
  config.ecam_base = pci_layout::kEcamBase;
  config.mmio32_base = static_cast<uint32_t>(pci_layout::kMmio32Base);
  config.mmio32_size = static_cast<uint32_t>(pci_layout::kMmio32Size);
  config.mmio64_base = pci_layout::kMmio64Base;  // the windows PciHost::AssignResources uses
  config.mmio64_size = pci_layout::kMmio64Size;
  if (vtd_) {
    VtdAcpiConfig v;
    v.register_base = vtd::VtdIommu::kDefaultBase;
    v.register_size_log2_pages = 0;
    for (uint32_t pages = vtd_->mmio_size() / 4096; pages > 1; pages >>= 1) ++v.register_size_log2_pages;
    v.ioapic_path = PciPath::FromSourceId(kIoapicDefaultSourceId);  // = the IOAPIC model's source-id
    // VT-d §8.8 SATC: the --device functions are RC-integrated endpoints (no root port for an
    // ATSR to name) and have an ATC. ATC_REQUIRED = 0: software enables ATS in legacy and
    // scalable mode alike (Linux 6.12 iommu.c dmar_ats_supported()).
    for (size_t i = 0; i < options_.devices.size(); ++i) {
      v.satc_endpoints.push_back(PciPath::FromSourceId(DeviceDevfn(options_.devices[i], static_cast<int>(i))));
    }
    config.vtd = v;
  }
  if (viommu_.device) {
    // ACPI VIOT (§5.2.32): the virtio-pci IOMMU and the bus-0 functions it translates.
    ViotAcpiConfig v;
    v.iommu_bdf = kVirtioIommuDevfn;
    v.ranges = {{0x0000, kVirtioIommuDevfn - 1u}, {kVirtioIommuDevfn + 1u, 0x00ff}};
    config.viot = v;
  }
  auto blob = BuildAcpiTables(config);
  if (!blob.ok()) return Annotate(blob.status(), "building ACPI tables");
  if (absl::Status s = WriteAcpiTables(*blob, *memory_); !s.ok()) return Annotate(s, "writing ACPI tables");
  rsdp_addr_ = blob->rsdp_gpa;
  std::vector<std::string> names;
  for (const auto& t : blob->tables) names.push_back(t.signature);
  platform_tables_ = "ACPI " + absl::StrJoin(names, "/");
  return absl::OkStatus();
}

absl::Status Machine::SetupVcpus() {
  auto supported = kvm_->SupportedCpuid();
  if (!supported.ok()) return supported.status();
  for (int i = 0; i < options_.cpus; ++i) {
    auto vcpu = vm_->CreateVcpu(i);
    if (!vcpu.ok()) return Annotate(vcpu.status(), absl::StrFormat("creating vCPU %d", i));
    // Harmless on kvm_pvm (ignored there); correct on a KVM that honours it.
    if (absl::Status s = (*vcpu)->SetCpuid(GuestCpuidTable(*supported, policy_, i)); !s.ok()) return s;
    if (i == 0) {
      auto sregs = (*vcpu)->GetSregs();
      if (!sregs.ok()) return sregs.status();
      if (absl::Status s = (*vcpu)->SetSregs(LongModeSregs(*sregs)); !s.ok()) return s;
      if (absl::Status s = (*vcpu)->SetRegs(EntryRegs(kernel_entry_, kBootParamsAddr)); !s.ok()) return s;
    }
    vcpus_.push_back(std::move(*vcpu));
  }
  if (SyscallWorkaroundNeeded(options_.syscall_workaround)) {
    decoder_ = std::make_unique<EmulationCompleter>();
    syscall_ = std::make_unique<SyscallWorkaround>(*memory_, *decoder_);
  }
  return absl::OkStatus();
}

std::string Machine::DumpTables(const trace::DumpRequest& request) const {
  if (vtd_) return vtd_->DumpTables(request);
  if (viommu_.device) return viommu_.device->DumpTables(request);
  return "no emulated IOMMU (--iommu=none)\n";
}

std::string Machine::DescribeVcpus() const {
  std::string out;
  for (const auto& v : vcpus_) {
    auto regs = v->GetRegs();
    auto sregs = v->GetSregs();
    if (!regs.ok() || !sregs.ok()) continue;
    absl::StrAppend(&out, absl::StrFormat("\n  vCPU %d: RIP=%016x CPL=%d RFLAGS=%x CR0=%x", v->id(), regs->rip,
                                          sregs->cs.selector & 3, regs->rflags, sregs->cr0));
  }
  return out;
}

void Machine::RequestStop(StopReason reason, const std::string& detail) {
  absl::MutexLock lock(&stop_mu_);
  if (stop_reason_ == StopReason::kNone) {
    stop_reason_ = reason;
    stop_detail_ = detail;
  }
  stopping_ = true;
}

StopReason Machine::Run(std::string* detail) {
  VcpuLoop::InstallKickSignalHandler();
  if (options_.console) {
    if (absl::Status s = console_->Start(); !s.ok()) {
      *detail = std::string(s.message());
      return StopReason::kHostError;
    }
  }
  for (auto& vcpu : vcpus_) {
    VcpuEnvironment env;
    env.pio = &pio_;
    env.mmio = &mmio_;
    env.memory = memory_.get();
    env.stats = &stats_;
    env.syscall_workaround = syscall_.get();
    env.ioapic_eoi = [this](uint8_t vector) { ioapic_->Eoi(vector); };
    env.request_stop = [this](StopReason r, const std::string& why) { RequestStop(r, why); };
    env.stopping = &stopping_;
    KvmVcpu* v = vcpu.get();
    threads_.emplace_back([v, env] {
      VcpuLoop loop(*v, env);
      loop.Run();
    });
  }
  {
    absl::MutexLock lock(&stop_mu_);
    auto stopped = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(stop_mu_) { return stop_reason_ != StopReason::kNone; };
    if (options_.timeout_seconds > 0) {
      if (!stop_mu_.AwaitWithTimeout(absl::Condition(&stopped), absl::Seconds(options_.timeout_seconds))) {
        stop_reason_ = StopReason::kTimeout;
        stop_detail_ = absl::StrFormat("no poweroff within --timeout=%g s", options_.timeout_seconds);
        stopping_ = true;
      }
    } else {
      stop_mu_.Await(absl::Condition(&stopped));
    }
  }
  for (size_t i = 0; i < threads_.size(); ++i) VcpuLoop::Kick(*vcpus_[i], threads_[i].native_handle());
  for (auto& t : threads_) t.join();
  threads_.clear();
  console_->Stop();
  absl::MutexLock lock(&stop_mu_);
  *detail = stop_detail_;
  return stop_reason_;
}

}  // namespace ionest
