#include "vmm/arch/arm64/fdt_builder.h"

extern "C" {
#include <libfdt.h>
}

#include "absl/strings/str_format.h"
#include "vmm/arch/arm64/image_loader.h"
#include "vmm/arch/arm64/layout_arm64.h"

namespace ionest::arm64 {
namespace {

// Wraps libfdt's sequential-write calls; the first failure sticks and is reported once.
class Writer {
 public:
  explicit Writer(size_t capacity) : buf_(capacity) { Check(fdt_create(buf_.data(), buf_.size()), "fdt_create"); }
  void Check(int r, const char* what) {
    if (r < 0 && err_.ok()) err_ = absl::InternalError(absl::StrFormat("libfdt %s: %s", what, fdt_strerror(r)));
  }
  void* fdt() { return buf_.data(); }
  void Begin(const std::string& name) { Check(fdt_begin_node(fdt(), name.c_str()), "begin_node"); }
  void End() { Check(fdt_end_node(fdt()), "end_node"); }
  void Empty(const char* name) { Check(fdt_property(fdt(), name, nullptr, 0), name); }
  void U32(const char* name, uint32_t v) { Check(fdt_property_u32(fdt(), name, v), name); }
  void U64(const char* name, uint64_t v) { Check(fdt_property_u64(fdt(), name, v), name); }
  void Str(const char* name, const std::string& v) { Check(fdt_property_string(fdt(), name, v.c_str()), name); }
  // A string list: "a\0b\0".
  void Strs(const char* name, std::initializer_list<const char*> list) {
    std::string v;
    for (const char* s : list) v.append(s).push_back('\0');
    Check(fdt_property(fdt(), name, v.data(), v.size()), name);
  }
  void Cells(const char* name, std::initializer_list<uint32_t> cells) {
    std::vector<fdt32_t> be;
    for (uint32_t c : cells) be.push_back(cpu_to_fdt32(c));
    Check(fdt_property(fdt(), name, be.data(), be.size() * sizeof(fdt32_t)), name);
  }
  // reg with #address-cells = #size-cells = 2.
  void Reg64(std::initializer_list<std::pair<uint64_t, uint64_t>> ranges) {
    std::vector<fdt32_t> be;
    for (auto [addr, size] : ranges) {
      for (uint64_t v : {addr, size}) {
        be.push_back(cpu_to_fdt32(static_cast<uint32_t>(v >> 32)));
        be.push_back(cpu_to_fdt32(static_cast<uint32_t>(v)));
      }
    }
    Check(fdt_property(fdt(), "reg", be.data(), be.size() * sizeof(fdt32_t)), "reg");
  }
  absl::StatusOr<std::vector<uint8_t>> Finish() {
    Check(fdt_finish(fdt()), "finish");
    if (!err_.ok()) return err_;
    buf_.resize(fdt_totalsize(fdt()));
    return std::move(buf_);
  }
  absl::Status status() const { return err_; }

 private:
  std::vector<uint8_t> buf_;
  absl::Status err_;
};

}  // namespace

absl::StatusOr<std::vector<uint8_t>> BuildFdt(const FdtConfig& c) {
  if (c.cpus < 1 || c.cpus > 16) {
    // MPIDR Aff0 holds 16 vCPUs (KVM: Aff0 = vcpu_id & 0xf); more would need Aff1 in reg.
    return absl::InvalidArgumentError(absl::StrFormat("the arm64 device tree supports 1..16 vCPUs, not %d", c.cpus));
  }
  if (c.ram_size == 0) return absl::InvalidArgumentError("the device tree needs a non-empty RAM range");
  if (c.with_pcie && !c.with_its) return absl::InvalidArgumentError("the PCIe host needs the ITS for its MSIs");
  if (c.virtio_iommu_devfn && !c.with_pcie) return absl::InvalidArgumentError("the virtio-iommu needs the PCIe host");
  if (c.with_smmuv3 && (!c.with_pcie || c.virtio_iommu_devfn)) {
    return absl::InvalidArgumentError("the SMMUv3 needs the PCIe host and excludes the virtio-iommu");
  }
  if (!c.stalling_functions.empty() && !c.with_smmuv3) {
    return absl::InvalidArgumentError("dma-can-stall functions need the SMMUv3");
  }
  const std::string uart_path = absl::StrFormat("/uart@%x", kUartBase);

  Writer w(64 * 1024);
  w.Check(fdt_finish_reservemap(w.fdt()), "finish_reservemap");
  w.Begin("");
  w.Str("compatible", "linux,dummy-virt");
  w.Str("model", "ionest arm64");
  w.U32("#address-cells", 2);
  w.U32("#size-cells", 2);
  w.U32("interrupt-parent", kGicPhandle);

  w.Begin("chosen");
  w.Str("bootargs", c.bootargs);
  w.Str("stdout-path", uart_path);
  if (c.initrd_end > c.initrd_start) {
    w.U64("linux,initrd-start", c.initrd_start);
    w.U64("linux,initrd-end", c.initrd_end);
  }
  w.End();

  w.Begin("aliases");
  w.Str("serial0", uart_path);
  w.End();

  w.Begin(absl::StrFormat("memory@%x", c.ram_base));
  w.Str("device_type", "memory");
  w.Reg64({{c.ram_base, c.ram_size}});
  w.End();

  w.Begin("cpus");
  w.U32("#address-cells", 1);
  w.U32("#size-cells", 0);
  for (int i = 0; i < c.cpus; ++i) {
    w.Begin(absl::StrFormat("cpu@%x", i));
    w.Str("device_type", "cpu");
    w.Str("compatible", "arm,arm-v8");
    w.U32("reg", static_cast<uint32_t>(i));
    w.Str("enable-method", "psci");
    w.End();
  }
  w.End();

  // Documentation/devicetree/bindings/arm/psci.yaml; KVM_ARM_VCPU_PSCI_0_2 gives PSCI 0.2+ over HVC.
  w.Begin("psci");
  w.Strs("compatible", {"arm,psci-1.0", "arm,psci-0.2"});
  w.Str("method", "hvc");
  w.End();

  // Documentation/devicetree/bindings/interrupt-controller/arm,gic-v3.yaml.
  w.Begin(absl::StrFormat("intc@%x", kGicDistBase));
  w.Str("compatible", "arm,gic-v3");
  w.U32("#interrupt-cells", 3);
  w.Empty("interrupt-controller");
  w.U32("#redistributor-regions", 1);
  w.Reg64({{kGicDistBase, kGicDistSize}, {kGicRedistBase, kGicRedistSizePerCpu * c.cpus}});
  w.U32("#address-cells", 2);
  w.U32("#size-cells", 2);
  w.Empty("ranges");
  w.U32("phandle", kGicPhandle);
  if (c.with_its) {
    w.Begin(absl::StrFormat("its@%x", kGicItsBase));
    w.Str("compatible", "arm,gic-v3-its");
    w.Empty("msi-controller");
    w.U32("#msi-cells", 1);
    w.Reg64({{kGicItsBase, kGicItsSize}});
    w.U32("phandle", kItsPhandle);
    w.End();
  }
  w.End();

  // Documentation/devicetree/bindings/timer/arm,arch_timer.yaml.
  w.Begin("timer");
  w.Str("compatible", "arm,armv8-timer");
  w.Cells("interrupts", {kGicFdtPpi, kTimerPpiSecurePhys, kIrqTypeLevelHigh, kGicFdtPpi, kTimerPpiPhys,
                         kIrqTypeLevelHigh, kGicFdtPpi, kTimerPpiVirt, kIrqTypeLevelHigh, kGicFdtPpi,
                         kTimerPpiHypPhys, kIrqTypeLevelHigh});
  w.Empty("always-on");
  w.End();

  // Documentation/devicetree/bindings/serial/8250.yaml (reg-shift 0, reg-io-width 1: byte registers).
  w.Begin(uart_path.substr(1));
  w.Str("compatible", "ns16550a");
  w.Reg64({{kUartBase, kUartSize}});
  w.U32("clock-frequency", kUartClockHz);
  w.Cells("interrupts", {kGicFdtSpi, kUartSpi, kIrqTypeLevelHigh});
  w.End();

  if (c.with_smmuv3) {
    // Documentation/devicetree/bindings/iommu/arm,smmu-v3.yaml: no wired interrupts; Linux's
    // arm-smmu-v3 then allocates its event queue, GERROR and PRI queue interrupts as platform MSIs
    // of msi-parent (interrupt-controller/arm,gic-v3.yaml: #msi-cells = 1, the DeviceID).
    w.Begin(absl::StrFormat("smmuv3@%x", kSmmuBase));
    w.Str("compatible", "arm,smmu-v3");
    w.Reg64({{kSmmuBase, kSmmuSize}});
    w.U32("#iommu-cells", 1);
    w.Empty("dma-coherent");
    w.Cells("msi-parent", {kItsPhandle, kSmmuItsDeviceId});
    w.U32("phandle", kSmmuPhandle);
    w.End();
  }

  if (c.with_pcie) {
    // Documentation/devicetree/bindings/pci/host-generic-pci.yaml + pci-bus-common.yaml; ranges cells
    // <phys.hi phys.mid phys.lo cpu(2) size(2)>, phys.hi space code 2 = 32-bit memory, 3 = 64-bit
    // memory, bit 30 prefetchable (IEEE 1275 PCI binding §2.2.1.1): the 64-bit window is prefetchable
    // (Linux keeps non-prefetchable windows below 4 GiB). msi-map (pci-msi.txt): RID -> ITS DeviceID = RID.
    w.Begin(absl::StrFormat("pcie@%x", kPcieEcamBase));
    w.Str("compatible", "pci-host-ecam-generic");
    w.Str("device_type", "pci");
    w.U32("#address-cells", 3);
    w.U32("#size-cells", 2);
    w.Reg64({{kPcieEcamBase, kPcieEcamSize}});
    w.Cells("bus-range", {0, static_cast<uint32_t>((kPcieEcamSize >> 20) - 1)});
    w.U32("linux,pci-domain", 0);
    w.Empty("dma-coherent");
    auto hi = [](uint64_t v) { return static_cast<uint32_t>(v >> 32); };
    auto lo = [](uint64_t v) { return static_cast<uint32_t>(v); };
    w.Cells("ranges", {0x02000000, hi(kPcieMmio32Base), lo(kPcieMmio32Base), hi(kPcieMmio32Base), lo(kPcieMmio32Base),
                       hi(kPcieMmio32Size), lo(kPcieMmio32Size),  //
                       0x43000000, hi(kPcieMmio64Base), lo(kPcieMmio64Base), hi(kPcieMmio64Base), lo(kPcieMmio64Base),
                       hi(kPcieMmio64Size), lo(kPcieMmio64Size)});
    w.Cells("msi-map", {0, kItsPhandle, 0, 0x10000});
    // pci/pci-iommu.yaml: every RID -> StreamID = RID.
    if (c.with_smmuv3) w.Cells("iommu-map", {0, kSmmuPhandle, 0, 0x10000});
    for (const FdtConfig::StallingFunction& f : c.stalling_functions) {
      // pci/pci.txt (IEEE 1275 PCI binding): a child of the host bridge with reg = <phys.hi 0 0 0 0>,
      // phys.hi = bus << 16 | devfn << 8 (config space). Linux's pci_set_of_node() gives the pci_dev
      // of bus 0 at that devfn this node (of_pci_find_child_device); arm_smmu_probe_device() reads
      // `pasid-num-bits` and, with IDR0.STALL_MODEL 00, `dma-can-stall` (iommu/iommu.txt) and sets
      // the master's stall_enabled: its CDs get CD.S and its faults become stalls (IHI0070 §3.12.2)
      // answered through Linux's IOPF queue, which is what SVA needs on an SMMUv3 without PRI.
      w.Begin(absl::StrFormat("dma@%x,%x", f.devfn >> 3, f.devfn & 7));
      w.Cells("reg", {uint32_t{f.devfn} << 8, 0, 0, 0, 0});
      w.Empty("dma-can-stall");
      w.U32("pasid-num-bits", f.pasid_bits);
      w.End();
    }
    if (c.virtio_iommu_devfn) {
      // pci/pci-iommu.yaml: <rid-base iommu iommu-base length>. The virtio-iommu translates every bus-0
      // function but itself (its own queues are guest-physical), endpoint ID = RID.
      const uint32_t self = *c.virtio_iommu_devfn;
      w.Cells("iommu-map", {0, kVirtioIommuPhandle, 0, self,  //
                            self + 1, kVirtioIommuPhandle, self + 1, 0xff - self});
      // virtio/pci-iommu.yaml: a child node at the function's PCI address (phys.hi = BDF << 8).
      w.Begin(absl::StrFormat("iommu@%x,%x", self >> 3, self & 7));
      w.Strs("compatible", {"virtio,pci-iommu", "pci1af4,1057"});
      w.Cells("reg", {self << 8, 0, 0, 0, 0});
      w.U32("#iommu-cells", 1);
      w.U32("phandle", kVirtioIommuPhandle);
      w.End();
    }
    w.End();
  }

  w.End();  // root
  auto blob = w.Finish();
  if (blob.ok() && blob->size() > kDtbMaxSize) {
    return absl::ResourceExhaustedError("device tree larger than 2 MiB (booting.rst limit)");
  }
  return blob;
}

}  // namespace ionest::arm64
