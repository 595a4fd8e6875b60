#include "vmm/cli_options.h"

#include <set>

#include "absl/strings/str_format.h"
#include "gtest/gtest.h"
#include "iommu/vtd/caps.h"

namespace ionest {
namespace {

TEST(CliTest, ParsesAllOptionsInBothForms) {
  auto o = ParseCli({"--kernel", "/k", "--initrd=/i", "--cmdline", "quiet x=1", "--memory=1G", "--cpus", "2",
                     "--disk", "/d.img", "--iommu=none", "--console", "--timeout", "90",
                     "--syscall-workaround=off", "--clear-simd-crypto", "--no-default-cmdline"});
  ASSERT_TRUE(o.ok()) << o.status();
  const MachineOptions& m = o->machine;
  EXPECT_EQ(m.kernel, "/k");
  EXPECT_EQ(m.initrd, "/i");
  EXPECT_EQ(m.cmdline, "quiet x=1");
  EXPECT_EQ(m.memory, 1ull << 30);
  EXPECT_EQ(m.cpus, 2);
  EXPECT_EQ(m.disk, "/d.img");
  EXPECT_EQ(m.iommu, "none");
  EXPECT_TRUE(m.console);
  EXPECT_DOUBLE_EQ(m.timeout_seconds, 90);
  EXPECT_EQ(m.syscall_workaround, SyscallWorkaroundMode::kOff);
  EXPECT_TRUE(m.clear_simd_crypto);
  EXPECT_FALSE(m.default_cmdline);
}

TEST(CliTest, Defaults) {
  auto o = ParseCli({"--kernel=/k"});
  ASSERT_TRUE(o.ok());
  EXPECT_EQ(o->machine.memory, 512ull << 20);
  EXPECT_EQ(o->machine.cpus, 1);
  EXPECT_EQ(o->machine.iommu, "none");
  EXPECT_FALSE(o->machine.console);
  EXPECT_TRUE(o->machine.default_cmdline);
  EXPECT_EQ(o->machine.syscall_workaround, SyscallWorkaroundMode::kAuto);
}

TEST(CliTest, RejectsBadInput) {
  EXPECT_FALSE(ParseCli({}).ok());                                   // no kernel
  EXPECT_FALSE(ParseCli({"--kernel"}).ok());                         // missing value
  EXPECT_FALSE(ParseCli({"--kernel=/k", "--cpus=0"}).ok());
  EXPECT_FALSE(ParseCli({"--kernel=/k", "--cpus=99"}).ok());
  EXPECT_FALSE(ParseCli({"--kernel=/k", "--cpus=two"}).ok());
  EXPECT_FALSE(ParseCli({"--kernel=/k", "--memory=lots"}).ok());
  EXPECT_FALSE(ParseCli({"--kernel=/k", "--iommu=amd"}).ok());
  EXPECT_FALSE(ParseCli({"--kernel=/k", "--iommu=virtio", "--virtio-iommu=bypass"}).ok());
  EXPECT_FALSE(ParseCli({"--kernel=/k", "--timeout=-1"}).ok());
  EXPECT_FALSE(ParseCli({"--kernel=/k", "--syscall-workaround=maybe"}).ok());
  EXPECT_FALSE(ParseCli({"--kernel=/k", "--console=yes"}).ok());
  EXPECT_FALSE(ParseCli({"--kernel=/k", "--frobnicate"}).ok());
  EXPECT_FALSE(ParseCli({"--kernel=/k", "stray"}).ok());
  EXPECT_FALSE(ParseCli({"--kernel=/k", "--smmuv3-profile=s1=off"}).ok());  // without --iommu=smmuv3
  auto help = ParseCli({"--help"});
  ASSERT_TRUE(help.ok());
  EXPECT_TRUE(help->help);
}

TEST(CliTest, SmmuV3WithItsProfile) {
  auto cli = ParseCli({"--kernel=/k", "--iommu=smmuv3", "--smmuv3-profile", "s1=off,stall=on"});
  ASSERT_TRUE(cli.ok()) << cli.status();
  EXPECT_EQ(cli->machine.iommu, "smmuv3");
  EXPECT_EQ(cli->machine.smmuv3_profile, "s1=off,stall=on");
}

TEST(CliTest, DevicesAreRepeatableAndKeepTheirOrder) {
  auto o = ParseCli({"--kernel=/k", "--device", "dmatest", "--device=pci-epf-test,max-len=64K",
                     "--device=dmatest,pasid-bits=8"});
  ASSERT_TRUE(o.ok()) << o.status();
  ASSERT_EQ(o->machine.devices.size(), 3u);
  EXPECT_EQ(o->machine.devices[0].kind, TestDeviceKind::kDmaTest);
  EXPECT_EQ(o->machine.devices[1].kind, TestDeviceKind::kPciEpfTest);
  EXPECT_EQ(o->machine.devices[1].max_len, 64u << 10);
  EXPECT_EQ(o->machine.devices[2].pasid_bits, 8);
  // Devfns follow virtio-blk (00:01.0): 00:02.0, 00:03.0, ...
  EXPECT_EQ(TestDeviceDevfn(0), 0x10);
  EXPECT_EQ(TestDeviceDevfn(1), 0x18);
  EXPECT_NE(TestDeviceDevfn(0), kVirtioBlkDevfn);
  EXPECT_FALSE(ParseCli({"--kernel=/k", "--device=nvme"}).ok());
  EXPECT_FALSE(ParseCli({"--kernel=/k", "--device"}).ok());
  std::vector<std::string> too_many = {"--kernel=/k"};
  for (int i = 0; i <= kMaxTestDevices; ++i) too_many.push_back("--device=dmatest");
  EXPECT_FALSE(ParseCli(too_many).ok());
  EXPECT_NE(CliUsage().find("--device"), std::string::npos);
}

TEST(CliTest, PrintVtdCapsNeedsNoKernelButVtd) {
  auto o = ParseCli({"--iommu=vtd", "--print-vtd-caps"});
  ASSERT_TRUE(o.ok()) << o.status();
  EXPECT_TRUE(o->print_vtd_caps);
  auto line = VtdCapsLine(o->machine);
  ASSERT_TRUE(line.ok()) << line.status();
  auto profile = vtd::ParseVtdProfile("");
  ASSERT_TRUE(profile.ok());
  EXPECT_EQ(*line, absl::StrFormat("cap=0x%016x ecap=0x%016x", profile->Cap(), profile->Ecap()));
  // The profile changes the values: no SM means no SMTS/PASID/PRS in ECAP.
  auto legacy = ParseCli({"--iommu=vtd", "--vtd-profile=sm=off", "--print-vtd-caps"});
  ASSERT_TRUE(legacy.ok());
  auto legacy_line = VtdCapsLine(legacy->machine);
  ASSERT_TRUE(legacy_line.ok());
  EXPECT_NE(*legacy_line, *line);
  EXPECT_EQ(legacy_line->size(), std::string("cap=0x0000000000000000 ecap=0x0000000000000000").size());
  EXPECT_FALSE(ParseCli({"--print-vtd-caps"}).ok());  // needs --iommu=vtd
  auto bad = ParseCli({"--iommu=vtd", "--vtd-profile=aw=12", "--print-vtd-caps"});
  ASSERT_TRUE(bad.ok());
  EXPECT_FALSE(VtdCapsLine(bad->machine).ok());
}

TEST(CliTest, TraceAndDumpTables) {
  auto o = ParseCli({"--kernel=/k", "--iommu=vtd", "--trace", "faults,qi,prq,ir:/tmp/t.trace", "--dump-tables=00:03.0,pasid=1,iova=0x1000"});
  ASSERT_TRUE(o.ok()) << o.status();
  EXPECT_EQ(o->machine.trace.mask, trace::kFault | trace::kCommand | trace::kPageRequest | trace::kInterrupt);
  EXPECT_EQ(o->machine.trace.path, "/tmp/t.trace");
  ASSERT_TRUE(o->machine.dump_tables);
  EXPECT_EQ(o->machine.dump_tables->rid, 0x18);
  EXPECT_EQ(o->machine.dump_tables->pasid, 1u);
  EXPECT_EQ(o->machine.dump_tables->iova, 0x1000u);
  o = ParseCli({"--kernel=/k", "--iommu=virtio", "--trace=all"});
  ASSERT_TRUE(o.ok()) << o.status();
  EXPECT_EQ(o->machine.trace.mask, trace::kAllClasses);
  EXPECT_EQ(o->machine.trace.path, "");  // stderr
  EXPECT_FALSE(o->machine.dump_tables);
  o = ParseCli({"--kernel=/k", "--iommu=smmuv3", "--trace=faults,qi:-"});
  ASSERT_TRUE(o.ok()) << o.status();
  EXPECT_EQ(o->machine.trace.path, "");
  // Off by default.
  o = ParseCli({"--kernel=/k", "--iommu=vtd"});
  ASSERT_TRUE(o.ok());
  EXPECT_EQ(o->machine.trace.mask, 0u);
  EXPECT_FALSE(o->machine.dump_tables);
}

TEST(CliTest, TraceAndDumpTablesErrors) {
  auto message = [](std::vector<std::string> args) {
    auto o = ParseCli(args);
    EXPECT_FALSE(o.ok());
    return std::string(o.status().message());
  };
  EXPECT_EQ(message({"--kernel=/k", "--iommu=vtd", "--trace=faults,tlb:/x"}),
            "--trace: unknown event class 'tlb' (classes: faults, qi, prq, ir, virtio, all; then :PATH)");
  EXPECT_EQ(message({"--kernel=/k", "--iommu=vtd", "--trace=faults:"}), "--trace: empty path after ':' (use - for stderr)");
  EXPECT_EQ(message({"--kernel=/k", "--iommu=vtd", "--trace"}), "--trace needs a value");
  EXPECT_EQ(message({"--kernel=/k", "--trace=all"}), "--trace needs an emulated IOMMU (--iommu=vtd, virtio or smmuv3)");
  EXPECT_EQ(message({"--kernel=/k", "--dump-tables=0x10"}),
            "--dump-tables needs an emulated IOMMU (--iommu=vtd, virtio or smmuv3)");
  EXPECT_NE(message({"--kernel=/k", "--iommu=vtd", "--dump-tables=00:03.0,iova=zz"}).find("bad value in 'iova=zz'"),
            std::string::npos);
}

TEST(StopReasonTest, ExitStatusesAreDistinct) {
  EXPECT_EQ(ExitStatusFor(StopReason::kPowerOff), 0);
  std::set<int> codes;
  for (StopReason r : {StopReason::kPowerOff, StopReason::kHostError, StopReason::kReset, StopReason::kGuestCrash,
                       StopReason::kTimeout, StopReason::kUserQuit}) {
    codes.insert(ExitStatusFor(r));
  }
  EXPECT_EQ(codes.size(), 6u);
}

TEST(CliOptionsTest, VirtioIommuWithBootBypass) {
  auto o = ParseCli({"--kernel=/k", "--iommu=virtio"});
  ASSERT_TRUE(o.ok()) << o.status();
  EXPECT_EQ(o->machine.iommu, "virtio");
  EXPECT_TRUE(o->machine.virtio_iommu_boot_bypass);  // default: untranslated until attached
  o = ParseCli({"--kernel=/k", "--iommu=virtio", "--virtio-iommu=boot-bypass=off"});
  ASSERT_TRUE(o.ok()) << o.status();
  EXPECT_FALSE(o->machine.virtio_iommu_boot_bypass);
}

}  // namespace
}  // namespace ionest
