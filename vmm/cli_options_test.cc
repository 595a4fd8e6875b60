#include "vmm/cli_options.h"

#include <set>

#include "gtest/gtest.h"

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
  EXPECT_FALSE(ParseCli({"--kernel=/k", "--timeout=-1"}).ok());
  EXPECT_FALSE(ParseCli({"--kernel=/k", "--syscall-workaround=maybe"}).ok());
  EXPECT_FALSE(ParseCli({"--kernel=/k", "--console=yes"}).ok());
  EXPECT_FALSE(ParseCli({"--kernel=/k", "--frobnicate"}).ok());
  EXPECT_FALSE(ParseCli({"--kernel=/k", "stray"}).ok());
  auto help = ParseCli({"--help"});
  ASSERT_TRUE(help.ok());
  EXPECT_TRUE(help->help);
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

}  // namespace
}  // namespace ionest
