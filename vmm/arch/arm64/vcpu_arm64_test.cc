// arm64-only unit tests of the vCPU/PSCI/GIC setup paths that run without KVM (under qemu-aarch64 when
// cross-built: ctest --test-dir build-arm64).
#include <string>

#include "gtest/gtest.h"
#include "vmm/arch/arm64/gic_arm64.h"
#include "vmm/arch/arm64/vcpu_arm64.h"
#include "vmm/machine.h"

namespace ionest::arm64 {
namespace {

TEST(Arm64VcpuTest, CoreRegisterIds) {
  // api.rst 4.68: 0x6030 0000 0010 <offset in 32-bit words of struct kvm_regs>.
  EXPECT_EQ(kRegX0, 0x6030000000100000ull);
  EXPECT_EQ(RegX(3), 0x6030000000100006ull);
  EXPECT_EQ(kRegPc, 0x6030000000100040ull);      // after regs[31] and sp
  EXPECT_EQ(kRegPstate, 0x6030000000100042ull);
}

TEST(Arm64VcpuTest, InitFeaturesPsciAndSecondariesOff) {
  kvm_vcpu_init preferred{};
  preferred.target = 5;
  kvm_vcpu_init boot = VcpuInitFor(preferred, 0);
  EXPECT_EQ(boot.target, 5u);
  EXPECT_TRUE(boot.features[0] & (1u << KVM_ARM_VCPU_PSCI_0_2));
  EXPECT_FALSE(boot.features[0] & (1u << KVM_ARM_VCPU_POWER_OFF));
  kvm_vcpu_init secondary = VcpuInitFor(preferred, 1);
  EXPECT_TRUE(secondary.features[0] & (1u << KVM_ARM_VCPU_PSCI_0_2));
  EXPECT_TRUE(secondary.features[0] & (1u << KVM_ARM_VCPU_POWER_OFF));
}

TEST(Arm64GicTest, SpiIrqLineEncoding) {
  // api.rst 4.25 KVM_IRQ_LINE on arm64: irq_type 1 (SPI) in bits 27:24, INTID in 15:0.
  EXPECT_EQ(SpiLine::IrqField(0), 0x01000020u);
  EXPECT_EQ(SpiLine::IrqField(1), 0x01000021u);
}

TEST(Arm64MachineTest, UnsupportedOptionsNameTheReason) {
  MachineOptions o;
  o.kernel = "/nonexistent/Image";
  TestDeviceSpec vfio;
  vfio.kind = TestDeviceKind::kVfio;
  vfio.vfio_host = "0000:00:01.0";
  o.devices.push_back(vfio);
  // Passthrough behind the SMMUv3 is refused: nothing forwards its stage-1 tables to the host. Behind
  // the virtio-iommu it is accepted (MAP/UNMAP forwarded to host IOASes): option checks pass and
  // Create gets as far as opening /dev/kvm.
  o.iommu = "smmuv3";
  auto refused = Machine::Create(o);
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kUnimplemented) << refused.status();
  EXPECT_NE(std::string(refused.status().message()).find("--device vfio with --iommu=smmuv3"), std::string::npos)
      << refused.status();
  EXPECT_NE(std::string(refused.status().message()).find("--iommu=virtio or --iommu=none"), std::string::npos)
      << refused.status();
  o.iommu = "virtio";
  auto accepted = Machine::Create(o);
  if (!accepted.ok()) {
    EXPECT_EQ(std::string(accepted.status().message()).find("--device vfio with --iommu="), std::string::npos)
        << accepted.status();
  }
  o.devices.clear();
  o.iommu = "vtd";
  auto m = Machine::Create(o);
  ASSERT_FALSE(m.ok());
  EXPECT_NE(std::string(m.status().message()).find("x86 only"), std::string::npos) << m.status();
  o.iommu = "none";
  o.cpus = 0;
  EXPECT_FALSE(Machine::Create(o).ok());
}

TEST(Arm64MachineTest, DefaultCmdlineUsesTheDeviceTreeUart) {
  std::string c = DefaultGuestCmdline();
  EXPECT_NE(c.find("console=ttyS0"), std::string::npos);
  EXPECT_NE(c.find("earlycon"), std::string::npos);
}

}  // namespace
}  // namespace ionest::arm64
