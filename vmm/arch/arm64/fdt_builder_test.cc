#include "vmm/arch/arm64/fdt_builder.h"

extern "C" {
#include <libfdt.h>
}

#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "vmm/arch/arm64/layout_arm64.h"

namespace ionest::arm64 {
namespace {

// Reads the device tree back with libfdt, node by node.
class Fdt {
 public:
  explicit Fdt(std::vector<uint8_t> blob) : blob_(std::move(blob)) {}
  const void* fdt() const { return blob_.data(); }
  int Node(const std::string& path) const { return fdt_path_offset(fdt(), path.c_str()); }
  std::string Str(const std::string& path, const char* prop) const {
    int len = 0;
    const char* p = static_cast<const char*>(fdt_getprop(fdt(), Node(path), prop, &len));
    return p && len > 0 ? std::string(p, len - 1) : "<absent>";
  }
  bool Has(const std::string& path, const char* prop) const {
    return fdt_getprop(fdt(), Node(path), prop, nullptr) != nullptr;
  }
  std::vector<uint32_t> Cells(const std::string& path, const char* prop) const {
    int len = 0;
    const fdt32_t* p = static_cast<const fdt32_t*>(fdt_getprop(fdt(), Node(path), prop, &len));
    std::vector<uint32_t> out;
    for (int i = 0; p && i < len / 4; ++i) out.push_back(fdt32_to_cpu(p[i]));
    return out;
  }
  uint64_t U64(const std::string& path, const char* prop) const {
    auto c = Cells(path, prop);
    return c.size() == 2 ? (uint64_t{c[0]} << 32 | c[1]) : ~0ull;
  }
  std::vector<uint8_t> blob_;
};

std::vector<uint32_t> Reg(uint64_t addr, uint64_t size) {
  return {static_cast<uint32_t>(addr >> 32), static_cast<uint32_t>(addr), static_cast<uint32_t>(size >> 32),
          static_cast<uint32_t>(size)};
}

FdtConfig TwoCpus() {
  FdtConfig c;
  c.cpus = 2;
  c.ram_base = kRamBase;
  c.ram_size = 6ull << 30;  // above 4 GiB: the size needs both cells
  c.bootargs = "console=ttyS0 rdinit=/init";
  c.initrd_start = kRamBase + 0x1000000;
  c.initrd_end = kRamBase + 0x1234000;
  return c;
}

TEST(Arm64FdtTest, ValidBlobWithRootProperties) {
  auto blob = BuildFdt(TwoCpus());
  ASSERT_TRUE(blob.ok()) << blob.status();
  Fdt f(*blob);
  ASSERT_EQ(fdt_check_header(f.fdt()), 0);
  EXPECT_EQ(fdt_totalsize(f.fdt()), blob->size());
  EXPECT_LE(blob->size(), 2u << 20);  // booting.rst
  EXPECT_EQ(f.Str("/", "compatible"), "linux,dummy-virt");
  EXPECT_EQ(f.Cells("/", "#address-cells"), std::vector<uint32_t>{2});
  EXPECT_EQ(f.Cells("/", "#size-cells"), std::vector<uint32_t>{2});
  EXPECT_EQ(f.Cells("/", "interrupt-parent"), std::vector<uint32_t>{kGicPhandle});
}

TEST(Arm64FdtTest, ChosenAndMemory) {
  Fdt f(*BuildFdt(TwoCpus()));
  EXPECT_EQ(f.Str("/chosen", "bootargs"), "console=ttyS0 rdinit=/init");
  // stdout-path and the serial0 alias name the UART node.
  std::string stdout_path = f.Str("/chosen", "stdout-path");
  EXPECT_GE(f.Node(stdout_path), 0) << stdout_path;
  EXPECT_EQ(f.Str("/aliases", "serial0"), stdout_path);
  EXPECT_EQ(f.U64("/chosen", "linux,initrd-start"), kRamBase + 0x1000000);
  EXPECT_EQ(f.U64("/chosen", "linux,initrd-end"), kRamBase + 0x1234000);
  EXPECT_EQ(f.Str("/memory@40000000", "device_type"), "memory");
  EXPECT_EQ(f.Cells("/memory@40000000", "reg"), Reg(kRamBase, 6ull << 30));
}

TEST(Arm64FdtTest, NoInitrdNoInitrdProperties) {
  FdtConfig c = TwoCpus();
  c.initrd_start = c.initrd_end = 0;
  Fdt f(*BuildFdt(c));
  EXPECT_FALSE(f.Has("/chosen", "linux,initrd-start"));
  EXPECT_FALSE(f.Has("/chosen", "linux,initrd-end"));
}

TEST(Arm64FdtTest, CpusUsePsci) {
  Fdt f(*BuildFdt(TwoCpus()));
  EXPECT_EQ(f.Cells("/cpus", "#address-cells"), std::vector<uint32_t>{1});
  EXPECT_EQ(f.Cells("/cpus", "#size-cells"), std::vector<uint32_t>{0});
  int n = 0;
  int child;
  fdt_for_each_subnode(child, f.fdt(), f.Node("/cpus")) ++n;
  EXPECT_EQ(n, 2);
  for (int i = 0; i < 2; ++i) {
    std::string cpu = "/cpus/cpu@" + std::to_string(i);
    EXPECT_EQ(f.Str(cpu, "device_type"), "cpu");
    EXPECT_EQ(f.Str(cpu, "compatible"), "arm,arm-v8");
    EXPECT_EQ(f.Cells(cpu, "reg"), std::vector<uint32_t>{static_cast<uint32_t>(i)});
    EXPECT_EQ(f.Str(cpu, "enable-method"), "psci");
  }
  EXPECT_EQ(fdt_node_check_compatible(f.fdt(), f.Node("/psci"), "arm,psci-0.2"), 0);
  EXPECT_EQ(fdt_node_check_compatible(f.fdt(), f.Node("/psci"), "arm,psci-1.0"), 0);
  EXPECT_EQ(f.Str("/psci", "method"), "hvc");
}

TEST(Arm64FdtTest, GicV3WithIts) {
  Fdt f(*BuildFdt(TwoCpus()));
  const std::string gic = "/intc@8000000";
  EXPECT_EQ(f.Str(gic, "compatible"), "arm,gic-v3");
  EXPECT_TRUE(f.Has(gic, "interrupt-controller"));
  EXPECT_EQ(f.Cells(gic, "#interrupt-cells"), std::vector<uint32_t>{3});
  std::vector<uint32_t> reg = Reg(kGicDistBase, kGicDistSize);
  std::vector<uint32_t> rd = Reg(kGicRedistBase, 2 * kGicRedistSizePerCpu);
  reg.insert(reg.end(), rd.begin(), rd.end());
  EXPECT_EQ(f.Cells(gic, "reg"), reg);
  EXPECT_EQ(fdt_get_phandle(f.fdt(), f.Node(gic)), kGicPhandle);
  const std::string its = gic + "/its@8080000";
  EXPECT_EQ(f.Str(its, "compatible"), "arm,gic-v3-its");
  EXPECT_TRUE(f.Has(its, "msi-controller"));
  EXPECT_EQ(f.Cells(its, "#msi-cells"), std::vector<uint32_t>{1});
  EXPECT_EQ(f.Cells(its, "reg"), Reg(kGicItsBase, kGicItsSize));
  EXPECT_EQ(fdt_get_phandle(f.fdt(), f.Node(its)), kItsPhandle);
}

TEST(Arm64FdtTest, WithoutIts) {
  FdtConfig c = TwoCpus();
  c.with_its = false;
  Fdt f(*BuildFdt(c));
  EXPECT_LT(f.Node("/intc@8000000/its@8080000"), 0);
}

TEST(Arm64FdtTest, TimerAndUart) {
  Fdt f(*BuildFdt(TwoCpus()));
  EXPECT_EQ(f.Str("/timer", "compatible"), "arm,armv8-timer");
  EXPECT_EQ(f.Cells("/timer", "interrupts"),
            (std::vector<uint32_t>{1, 13, 4, 1, 14, 4, 1, 11, 4, 1, 10, 4}));
  const std::string uart = "/uart@9000000";
  EXPECT_EQ(f.Str(uart, "compatible"), "ns16550a");
  EXPECT_EQ(f.Cells(uart, "reg"), Reg(kUartBase, kUartSize));
  EXPECT_EQ(f.Cells(uart, "clock-frequency"), std::vector<uint32_t>{kUartClockHz});
  EXPECT_EQ(f.Cells(uart, "interrupts"), (std::vector<uint32_t>{kGicFdtSpi, kUartSpi, kIrqTypeLevelHigh}));
}

TEST(Arm64FdtTest, PcieHostWithMsiMap) {
  FdtConfig c = TwoCpus();
  EXPECT_LT(Fdt(*BuildFdt(c)).Node("/pcie@3f000000"), 0);  // off by default
  c.with_pcie = true;
  Fdt f(*BuildFdt(c));
  const std::string pcie = "/pcie@3f000000";
  ASSERT_GE(f.Node(pcie), 0);
  EXPECT_EQ(f.Str(pcie, "compatible"), "pci-host-ecam-generic");
  EXPECT_EQ(f.Str(pcie, "device_type"), "pci");
  EXPECT_EQ(f.Cells(pcie, "#address-cells"), std::vector<uint32_t>{3});
  EXPECT_EQ(f.Cells(pcie, "#size-cells"), std::vector<uint32_t>{2});
  EXPECT_EQ(f.Cells(pcie, "reg"), Reg(kPcieEcamBase, kPcieEcamSize));
  EXPECT_EQ(f.Cells(pcie, "bus-range"), (std::vector<uint32_t>{0, 15}));
  EXPECT_TRUE(f.Has(pcie, "dma-coherent"));
  EXPECT_EQ(f.Cells(pcie, "ranges"),
            (std::vector<uint32_t>{0x02000000, 0, 0x10000000, 0, 0x10000000, 0, 0x2F000000,  //
                                   0x43000000, 0x80, 0, 0x80, 0, 0x10, 0}));
  EXPECT_EQ(f.Cells(pcie, "msi-map"), (std::vector<uint32_t>{0, kItsPhandle, 0, 0x10000}));
  // The windows and the ECAM stay clear of RAM and the other devices.
  EXPECT_LE(kPcieMmio32Base + kPcieMmio32Size, kPcieEcamBase);
  EXPECT_LE(kPcieEcamBase + kPcieEcamSize, kRamBase);
  EXPECT_GT(kPcieMmio32Base, kUartBase + kUartSize);
  c.with_its = false;
  EXPECT_FALSE(BuildFdt(c).ok());
}

TEST(Arm64FdtTest, VirtioIommuNodeAndIommuMapExcludeItsOwnFunction) {
  FdtConfig c = TwoCpus();
  c.with_pcie = true;
  EXPECT_FALSE(Fdt(*BuildFdt(c)).Has("/pcie@3f000000", "iommu-map"));  // off by default
  c.virtio_iommu_devfn = 0x1f << 3;
  Fdt f(*BuildFdt(c));
  const std::string pcie = "/pcie@3f000000", viommu = "/pcie@3f000000/iommu@1f,0";
  ASSERT_GE(f.Node(viommu), 0);
  // Both compatible strings, NUL-separated (virtio/pci-iommu.yaml).
  int len = 0;
  const char* compat = static_cast<const char*>(fdt_getprop(f.fdt(), f.Node(viommu), "compatible", &len));
  ASSERT_NE(compat, nullptr);
  EXPECT_EQ(std::string(compat, len), std::string("virtio,pci-iommu\0pci1af4,1057\0", 30));
  EXPECT_EQ(f.Cells(viommu, "reg"), (std::vector<uint32_t>{0xf800, 0, 0, 0, 0}));
  EXPECT_EQ(f.Cells(viommu, "#iommu-cells"), std::vector<uint32_t>{1});
  EXPECT_EQ(f.Cells(viommu, "phandle"), std::vector<uint32_t>{kVirtioIommuPhandle});
  // RIDs 0x00-0xf7 and 0xf9-0xff -> the same endpoint IDs; 0xf8 (the IOMMU) is not mapped.
  EXPECT_EQ(f.Cells(pcie, "iommu-map"),
            (std::vector<uint32_t>{0, kVirtioIommuPhandle, 0, 0xf8, 0xf9, kVirtioIommuPhandle, 0xf9, 7}));
  EXPECT_EQ(fdt_node_offset_by_phandle(f.fdt(), kVirtioIommuPhandle), f.Node(viommu));
  c.with_pcie = false;
  EXPECT_FALSE(BuildFdt(c).ok());
}

TEST(Arm64FdtTest, SmmuV3NodeWithMsiParentAndIommuMap) {
  FdtConfig c = TwoCpus();
  c.with_pcie = true;
  EXPECT_LT(Fdt(*BuildFdt(c)).Node("/smmuv3@9050000"), 0);  // off by default
  c.with_smmuv3 = true;
  Fdt f(*BuildFdt(c));
  const std::string smmu = "/smmuv3@9050000", pcie = "/pcie@3f000000";
  ASSERT_GE(f.Node(smmu), 0);
  EXPECT_EQ(f.Str(smmu, "compatible"), "arm,smmu-v3");
  EXPECT_EQ(f.Cells(smmu, "reg"), Reg(kSmmuBase, kSmmuSize));
  EXPECT_EQ(f.Cells(smmu, "#iommu-cells"), std::vector<uint32_t>{1});
  EXPECT_TRUE(f.Has(smmu, "dma-coherent"));
  EXPECT_FALSE(f.Has(smmu, "interrupts"));
  EXPECT_EQ(f.Cells(smmu, "msi-parent"), (std::vector<uint32_t>{kItsPhandle, kSmmuItsDeviceId}));
  EXPECT_EQ(fdt_node_offset_by_phandle(f.fdt(), kItsPhandle), f.Node("/intc@8000000/its@8080000"));
  EXPECT_EQ(f.Cells(pcie, "iommu-map"), (std::vector<uint32_t>{0, kSmmuPhandle, 0, 0x10000}));
  EXPECT_EQ(fdt_node_offset_by_phandle(f.fdt(), kSmmuPhandle), f.Node(smmu));
  // The register window is clear of the UART and below the PCIe windows.
  EXPECT_GE(kSmmuBase, kUartBase + kUartSize);
  EXPECT_LE(kSmmuBase + kSmmuSize, kPcieMmio32Base);
  c.virtio_iommu_devfn = 0x1f << 3;
  EXPECT_FALSE(BuildFdt(c).ok());
  c.virtio_iommu_devfn.reset();
  c.with_pcie = false;
  EXPECT_FALSE(BuildFdt(c).ok());
}

// A stalling function (dmatest behind the SMMUv3): a PCI child node at its devfn, which Linux's
// of_pci_find_child_device() matches by reg's phys.hi, with the properties arm-smmu-v3 reads.
TEST(Arm64FdtTest, StallingFunctionNodeUnderThePcieHost) {
  FdtConfig c = TwoCpus();
  c.with_pcie = true;
  c.with_smmuv3 = true;
  c.stalling_functions = {{0x03 << 3, 20}, {0x04 << 3 | 1, 8}};
  Fdt f(*BuildFdt(c));
  const std::string node = "/pcie@3f000000/dma@3,0", second = "/pcie@3f000000/dma@4,1";
  ASSERT_GE(f.Node(node), 0);
  EXPECT_EQ(f.Cells(node, "reg"), (std::vector<uint32_t>{0x1800, 0, 0, 0, 0}));
  EXPECT_TRUE(f.Has(node, "dma-can-stall"));
  EXPECT_EQ(f.Cells(node, "pasid-num-bits"), std::vector<uint32_t>{20});
  ASSERT_GE(f.Node(second), 0);
  EXPECT_EQ(f.Cells(second, "reg"), (std::vector<uint32_t>{0x2100, 0, 0, 0, 0}));
  EXPECT_EQ(f.Cells(second, "pasid-num-bits"), std::vector<uint32_t>{8});
  // Only behind the SMMUv3.
  c.with_smmuv3 = false;
  EXPECT_FALSE(BuildFdt(c).ok());
}

TEST(Arm64FdtTest, RejectsCpuCountsItCannotDescribe) {
  FdtConfig c = TwoCpus();
  c.cpus = 0;
  EXPECT_FALSE(BuildFdt(c).ok());
  c.cpus = 17;
  EXPECT_FALSE(BuildFdt(c).ok());
  c.cpus = 8;
  auto blob = BuildFdt(c);
  ASSERT_TRUE(blob.ok());
  EXPECT_GE(Fdt(*blob).Node("/cpus/cpu@7"), 0);
}

}  // namespace
}  // namespace ionest::arm64
