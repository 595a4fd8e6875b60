#include "vmm/arch/arm64/machine_arm64.h"

#include <algorithm>
#include <cstring>

#include <pthread.h>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/time/time.h"
#include "iommu/smmuv3/smmuv3_profile.h"
#include "vmm/arch/arm64/fdt_builder.h"
#include "vmm/arch/arm64/image_loader.h"
#include "vmm/arch/arm64/layout_arm64.h"
#include "vmm/arch/arm64/vcpu_arm64.h"
#include "vmm/pci_functions.h"

namespace ionest {
namespace {

// The SMMUv3's register window on the MMIO bus (little-endian, IHI0070 §6.2: 32- and 64-bit accesses).
class SmmuMmio final : public IoDevice {
 public:
  explicit SmmuMmio(smmuv3::Smmuv3Iommu& smmu) : smmu_(smmu) {}
  void IoRead(uint64_t offset, uint8_t* data, size_t size) override {
    const uint64_t v = size <= 8 ? smmu_.MmioRead(offset, static_cast<unsigned>(size)) : 0;
    std::memcpy(data, &v, std::min<size_t>(size, 8));
  }
  void IoWrite(uint64_t offset, const uint8_t* data, size_t size) override {
    if (size > 8) return;
    uint64_t v = 0;
    std::memcpy(&v, data, size);
    smmu_.MmioWrite(offset, v, static_cast<unsigned>(size));
  }

 private:
  smmuv3::Smmuv3Iommu& smmu_;
};

constexpr size_t kMaxKernelFile = 512ull << 20;
constexpr size_t kMaxInitrdFile = 1ull << 30;

absl::Status Annotate(const absl::Status& s, const std::string& what) {
  if (s.ok()) return s;
  return absl::Status(s.code(), absl::StrCat(what, ": ", s.message()));
}

}  // namespace

std::string DefaultGuestCmdline() {
  // The 16550 of the device tree (stdout-path) as console and earlycon; panics power the guest off
  // through a reset (exit status 2). Every console byte is ~2 MMIO exits (LSR poll + THR), ~0.3 ms
  // each under the nested KVM of docs/arm64.md, so keep the log short with `quiet` in the caller if needed.
  return "console=ttyS0 earlycon panic=-1 rcupdate.rcu_cpu_stall_suppress=1";
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

absl::Status Machine::CheckOptions() const {
  if (options_.cpus < 1 || options_.cpus > kMaxVcpus) {
    return absl::InvalidArgumentError(absl::StrFormat("--cpus must be 1..%d", kMaxVcpus));
  }
  if (options_.kernel.empty()) return absl::InvalidArgumentError("--kernel is required");
  if (options_.memory > arm64::kMaxRamSize || options_.memory % 4096) {
    return absl::InvalidArgumentError("--memory: arm64 RAM must be a multiple of 4 KiB and at most 511 GiB (below the 64-bit PCIe window)");
  }
  const bool vfio = std::any_of(options_.devices.begin(), options_.devices.end(),
                                [](const TestDeviceSpec& d) { return d.kind == TestDeviceKind::kVfio; });
  if (vfio && options_.iommu == "smmuv3") {
    // The guest's SMMUv3 tables would have to be nested or shadowed on the host (not done yet);
    // virtio-iommu MAP/UNMAP are forwarded to host IOASes (iommu/iommufd/viommu_forwarding.h).
    return absl::UnimplementedError(
        "--device vfio with --iommu=smmuv3: the guest's SMMUv3 stage-1 tables would not reach the host IOMMU (no "
        "arm64 nesting or shadowing yet), so the device would bypass the vIOMMU; use --iommu=virtio or "
        "--iommu=none");
  }
  if (options_.iommu == "vtd") {
    return absl::InvalidArgumentError("--iommu=vtd is x86 only; on arm64 use --iommu=virtio or none (docs/arm64.md)");
  }
  if (options_.iommu != "none" && options_.iommu != "virtio" && options_.iommu != "smmuv3") {
    return absl::InvalidArgumentError("--iommu must be none, virtio or smmuv3 on arm64");
  }
  return absl::OkStatus();
}

absl::Status Machine::Init() {
  if (absl::Status s = CheckOptions(); !s.ok()) return s;
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
           {KVM_CAP_IMMEDIATE_EXIT, "KVM_CAP_IMMEDIATE_EXIT"},
           {KVM_CAP_DEVICE_CTRL, "KVM_CAP_DEVICE_CTRL"},
           {KVM_CAP_ONE_REG, "KVM_CAP_ONE_REG"},
           {KVM_CAP_ARM_PSCI_0_2, "KVM_CAP_ARM_PSCI_0_2"}}) {
    if (absl::Status s = kvm_->RequireExtension(cap, name); !s.ok()) return s;
  }
  auto vm = kvm_->CreateVm();  // type 0: the default 40-bit IPA space (api.rst 4.2)
  if (!vm.ok()) return vm.status();
  vm_ = std::move(*vm);
  auto memory = GuestMemory::Create({{arm64::kRamBase, options_.memory}});
  if (!memory.ok()) return Annotate(memory.status(), "allocating guest memory");
  memory_ = std::move(*memory);
  uint32_t slot = 0;
  for (const MemoryRegion& r : memory_->regions()) {
    if (absl::Status s = vm_->SetUserMemoryRegion(slot++, r.gpa, r.size, r.host); !s.ok()) return s;
  }
  // The GIC exists before the vCPUs and is initialised after them (gic_arm64.h).
  auto gic = arm64::Gicv3::Create(*vm_, options_.cpus, /*with_its=*/true);
  if (!gic.ok()) return gic.status();
  gic_ = std::move(*gic);
  return absl::OkStatus();
}

absl::Status Machine::SetupDevices() {
  console_ = std::make_unique<Console>(
      [this](const uint8_t* d, size_t n) { return uart_->PushInput(absl::MakeConstSpan(d, n)); },
      [this] { RequestStop(StopReason::kUserQuit, "console escape Ctrl-A x"); });
  uart_irq_ = std::make_unique<arm64::SpiLine>(*vm_, arm64::kUartSpi);
  uart_ = std::make_unique<Uart16550>(*uart_irq_, [this](uint8_t b) {
    timing_.OnConsoleByte(b);
    console_->Output(b);
  });
  // Byte registers at offsets 0..7 (reg-shift 0); the rest of the DT's 4 KiB window is unclaimed.
  if (absl::Status s = mmio_.Register(arm64::kUartBase, kUartRegisterSpan, uart_.get(), "uart"); !s.ok()) return s;
  return SetupPci();
}

absl::Status Machine::SetupPci() {
  msi_ = std::make_unique<arm64::ItsMsiSink>(*vm_);
  if (options_.iommu == "virtio") {
    // PROBE reports the ITS doorbell page (GITS_TRANSLATER, IHI 0069 §12.19.22) as the MSI region:
    // Linux leaves it untranslated, so the MSI address the device writes is the ITS's own.
    auto viommu = CreateVirtioIommu(*memory_, options_.virtio_iommu_boot_bypass, arm64::kGicItsBase + 0x10000,
                                    arm64::kGicItsBase + arm64::kGicItsSize - 1);
    if (!viommu.ok()) return viommu.status();
    viommu_ = std::move(*viommu);
    dma_ = viommu_.provider.get();
  } else if (options_.iommu == "smmuv3") {
    absl::StatusOr<smmuv3::Smmuv3Profile> profile = smmuv3::ParseSmmuv3Profile(options_.smmuv3_profile);
    if (!profile.ok()) return profile.status();
    profile->msi_requester_id = arm64::kSmmuItsDeviceId;  // the DT's msi-parent DeviceID
    auto smmu_or = smmuv3::Smmuv3Iommu::Create(*memory_, *msi_, *profile);
    if (!smmu_or.ok()) return Annotate(smmu_or.status(), "--iommu=smmuv3");
    smmu_ = std::move(*smmu_or);
    smmu_mmio_ = std::make_unique<SmmuMmio>(*smmu_);
    if (absl::Status s = mmio_.Register(arm64::kSmmuBase, smmuv3::Smmuv3Iommu::mmio_size(), smmu_mmio_.get(), "smmuv3");
        !s.ok()) {
      return s;
    }
    smmuv3::Smmuv3Iommu* smmu = smmu_.get();
    smmu_msi_ = std::make_unique<arm64::TranslatedMsiSink>(
        *msi_, [smmu](uint16_t rid, uint64_t iova) -> std::optional<uint64_t> {
          // The same translation as the function's DMA writes (a fault is recorded as an event).
          const Translation t = smmu->ForRequester(rid).Translate(iova, 4, kDmaWrite, DmaAttrs{});
          if (t.fault || t.regions.empty() || t.regions[0].len < 4) return std::nullopt;
          return t.regions[0].gpa;
        });
    dma_ = smmu_.get();
  } else {
    bypass_ = std::make_unique<BypassDmaProvider>(*memory_);
    dma_ = bypass_.get();
  }
  MsiSink& device_msi = smmu_msi_ ? static_cast<MsiSink&>(*smmu_msi_) : *msi_;
  pci_ = std::make_unique<PciHost>(mmio_, pio_, device_msi, *dma_);
  if (absl::Status s = pci_->Register(arm64::kPcieEcamBase, arm64::kPcieEcamSize); !s.ok()) {
    return Annotate(s, "PCI host");
  }
  if (!options_.disk.empty()) {
    if (absl::Status s = AddVirtioBlk(*pci_, options_.disk, blk_, blk_pci_); !s.ok()) return s;
  }
  if (viommu_.device) {
    if (absl::Status s = AttachVirtioIommu(*pci_, viommu_); !s.ok()) return s;
  }
  if (absl::Status s = AddEmulatedTestDevices(*pci_, options_.devices, test_devices_); !s.ok()) return s;
  // --device vfio (--iommu=none or virtio, CheckOptions): MSIs through the PciHost's sink, the ITS
  // (the virtio-iommu's PROBE reports the doorbell as its MSI region: never translated). Behind the
  // virtio-iommu the guest's MAP/UNMAP are forwarded to host IOASes.
  absl::StatusOr<std::unique_ptr<Passthrough>> pt = AddPassthroughFunctions(
      *pci_, *memory_, PlanPassthrough(options_.devices),
      viommu_.device ? VirtioIommuBinder(*viommu_.device) : PassthroughBinder());
  if (!pt.ok()) return pt.status();
  passthrough_ = std::move(*pt);
  // Firmware-style BAR assignment (Linux's generic ECAM host reassigns them from the DT's ranges).
  PciWindows w;
  w.mmio32_base = arm64::kPcieMmio32Base;
  w.mmio32_size = arm64::kPcieMmio32Size;
  w.mmio64_base = arm64::kPcieMmio64Base;
  w.mmio64_size = arm64::kPcieMmio64Size;
  return Annotate(pci_->AssignResources(w), "assigning PCI resources");
}

absl::Status Machine::LoadGuest() {
  auto file = arm64::ReadFile(options_.kernel, kMaxKernelFile);
  if (!file.ok()) return Annotate(file.status(), "--kernel");
  auto image = arm64::MaybeDecompressImage(std::move(*file));
  if (!image.ok()) return Annotate(image.status(), "--kernel " + options_.kernel);
  auto header = arm64::ParseImageHeader(*image);
  if (!header.ok()) return Annotate(header.status(), "--kernel " + options_.kernel);

  std::vector<uint8_t> initrd;
  if (!options_.initrd.empty()) {
    auto bytes = arm64::ReadFile(options_.initrd, kMaxInitrdFile);
    if (!bytes.ok()) return Annotate(bytes.status(), "--initrd");
    initrd = std::move(*bytes);
  }
  auto plan = arm64::PlanBoot(*header, arm64::kRamBase, options_.memory, initrd.size());
  if (!plan.ok()) return plan.status();
  if (absl::Status s = arm64::LoadImage(*image, *header, *plan, *memory_); !s.ok()) {
    return Annotate(s, "loading " + options_.kernel);
  }
  if (!initrd.empty()) {
    if (absl::Status s = memory_->Write(plan->initrd_addr, initrd.data(), initrd.size()); !s.ok()) return s;
  }

  std::vector<std::string> parts;
  if (options_.default_cmdline) parts.push_back(DefaultGuestCmdline());
  if (!options_.cmdline.empty()) parts.push_back(options_.cmdline);
  guest_cmdline_ = absl::StrJoin(parts, " ");

  arm64::FdtConfig fc;
  fc.cpus = options_.cpus;
  fc.ram_base = arm64::kRamBase;
  fc.ram_size = options_.memory;
  fc.bootargs = guest_cmdline_;
  fc.initrd_start = plan->initrd_addr;
  fc.initrd_end = plan->initrd_addr + plan->initrd_size;
  fc.with_its = gic_->has_its();
  fc.with_pcie = gic_->has_its();
  if (viommu_.device) fc.virtio_iommu_devfn = kVirtioIommuDevfn;
  fc.with_smmuv3 = smmu_ != nullptr;
  if (smmu_) {
    // The dmatest functions wait for the SMMU's answer to a stalled access (dma_test_device.h):
    // the device tree says so, so that Linux enables stalls (and with them IOPF/SVA) for them.
    for (size_t i = 0; i < options_.devices.size(); ++i) {
      const TestDeviceSpec& spec = options_.devices[i];
      if (spec.kind == TestDeviceKind::kDmaTest)
        fc.stalling_functions.push_back({DeviceDevfn(spec, static_cast<int>(i)), spec.pasid_bits});
    }
  }
  auto dtb = arm64::BuildFdt(fc);
  if (!dtb.ok()) return Annotate(dtb.status(), "building the device tree");
  if (absl::Status s = memory_->Write(plan->dtb_addr, dtb->data(), dtb->size()); !s.ok()) return s;
  platform_tables_ = absl::StrFormat("device tree %u bytes (GICv3%s, PSCI, arch timer, 16550%s%s)", dtb->size(),
                                     gic_->has_its() ? "+ITS" : "", fc.with_pcie ? ", PCIe ECAM" : "",
                                     fc.virtio_iommu_devfn ? ", virtio-iommu" : fc.with_smmuv3 ? ", SMMUv3" : "");
  kernel_entry_ = plan->kernel_addr;
  dtb_addr_ = plan->dtb_addr;
  return absl::OkStatus();
}

absl::Status Machine::SetupVcpus() {
  auto preferred = vm_->ArmPreferredTarget();
  if (!preferred.ok()) return preferred.status();
  for (int i = 0; i < options_.cpus; ++i) {
    auto vcpu = vm_->CreateVcpu(i);
    if (!vcpu.ok()) return Annotate(vcpu.status(), absl::StrFormat("creating vCPU %d", i));
    if (absl::Status s = (*vcpu)->ArmVcpuInit(arm64::VcpuInitFor(*preferred, i)); !s.ok()) {
      return Annotate(s, absl::StrFormat("vCPU %d", i));
    }
    if (i == 0) {
      if (absl::Status s = arm64::SetBootRegs(**vcpu, kernel_entry_, dtb_addr_); !s.ok()) return s;
    }
    vcpus_.push_back(std::move(*vcpu));
  }
  return gic_->Finalize();
}

std::string Machine::DumpTables(const trace::DumpRequest& request) const {
  if (smmu_) return smmu_->DumpTables(request);
  if (viommu_.device) return viommu_.device->DumpTables(request);
  return "no emulated IOMMU (--iommu=none)\n";
}

std::string Machine::DescribeVcpus() const {
  std::string out;
  for (const auto& v : vcpus_) {
    std::string d = arm64::DescribeVcpu(*v);
    if (!d.empty()) absl::StrAppend(&out, absl::StrFormat("\n  vCPU %d: %s", v->id(), d));
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
  arm64::VcpuLoop::InstallKickSignalHandler();
  if (options_.console) {
    if (absl::Status s = console_->Start(); !s.ok()) {
      *detail = std::string(s.message());
      return StopReason::kHostError;
    }
  }
  for (auto& vcpu : vcpus_) {
    arm64::VcpuEnvironment env;
    env.mmio = &mmio_;
    env.request_stop = [this](StopReason r, const std::string& why) { RequestStop(r, why); };
    env.stopping = &stopping_;
    KvmVcpu* v = vcpu.get();
    threads_.emplace_back([v, env] {
      arm64::VcpuLoop loop(*v, env);
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
  for (size_t i = 0; i < threads_.size(); ++i) arm64::VcpuLoop::Kick(*vcpus_[i], threads_[i].native_handle());
  for (auto& t : threads_) t.join();
  threads_.clear();
  console_->Stop();
  absl::MutexLock lock(&stop_mu_);
  *detail = stop_detail_;
  return stop_reason_;
}

}  // namespace ionest
