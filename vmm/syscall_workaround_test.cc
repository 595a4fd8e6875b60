#include "vmm/syscall_workaround.h"

#include "gtest/gtest.h"

namespace ionest {
namespace {

constexpr uint64_t kLstar = 0xffffffff81a00080ull;
// Linux: STAR[47:32] = __KERNEL_CS (0x10), STAR[63:48] = __USER32_CS (0x23 - 3 = 0x20... as set by syscall_init).
constexpr uint64_t kStar = (0x23ull << 48) | (0x10ull << 32);
constexpr uint64_t kFmask = 0x47700;  // TF|DF|IF|IOPL|AC|NT as Linux sets it

PageFaultFrame UserFetchFaultAtLstar() {
  PageFaultFrame f;
  f.error_code = 0x15;  // P | U | I (instruction fetch, user mode)
  f.rip = kLstar;
  f.cs = 0x33;
  f.rflags = 0x46;  // already FMASKed by KVM
  f.rsp = 0x7ffc0000e000ull;
  f.ss = 0x2b;
  return f;
}

TEST(SyscallWorkaroundTest, RecognisesTheBrokenSyscallFault) {
  SyscallMsrs msrs{kStar, kLstar, kFmask};
  PageFaultFrame f = UserFetchFaultAtLstar();
  EXPECT_TRUE(IsBrokenSyscallFault(f, kLstar, msrs));
  PageFaultFrame kernel = f;
  kernel.cs = 0x10;
  EXPECT_FALSE(IsBrokenSyscallFault(kernel, kLstar, msrs));  // kernel-mode fault: genuine
  PageFaultFrame elsewhere = f;
  elsewhere.rip = 0x401000;
  EXPECT_FALSE(IsBrokenSyscallFault(elsewhere, 0x401000, msrs));  // ordinary user page fault
  EXPECT_FALSE(IsBrokenSyscallFault(f, 0x1234, msrs));             // CR2 elsewhere: a data fault
  PageFaultFrame write = f;
  write.error_code = 0x7;  // write, not a fetch
  EXPECT_FALSE(IsBrokenSyscallFault(write, kLstar, msrs));
  EXPECT_FALSE(IsBrokenSyscallFault(f, kLstar, SyscallMsrs{kStar, 0, kFmask}));
}

TEST(SyscallWorkaroundTest, RewritesToArchitecturalSyscallState) {
  SyscallMsrs msrs{kStar, kLstar, kFmask};
  PageFaultFrame f = UserFetchFaultAtLstar();
  kvm_regs regs{};
  regs.rip = 0xffffffff81a01000ull;  // the #PF handler
  regs.rsp = 0xfffffe0000002f00ull;  // the kernel stack with the frame
  regs.rax = 39;                     // getpid: user registers kept
  regs.rcx = 0x401002;               // set by KVM's partial SYSCALL
  regs.r11 = 0x246;
  kvm_sregs sregs{};
  sregs.cs.selector = 0x10;
  RewriteToSyscallEntry(f, msrs, regs, sregs);
  EXPECT_EQ(regs.rip, kLstar);
  EXPECT_EQ(regs.rcx, 0x401002u);
  EXPECT_EQ(regs.r11, 0x246u);
  EXPECT_EQ(regs.rflags, 0x46u);  // IF masked by FMASK; ZF/PF and bit 1 kept
  EXPECT_EQ(regs.rsp, f.rsp);
  EXPECT_EQ(regs.rax, 39u);
  EXPECT_EQ(sregs.cs.selector, 0x10);
  EXPECT_EQ(sregs.cs.dpl, 0);
  EXPECT_EQ(sregs.cs.l, 1);
  EXPECT_EQ(sregs.ss.selector, 0x18);
  EXPECT_EQ(sregs.ss.dpl, 0);
}

TEST(SyscallWorkaroundTest, ClassifiesHandlerStarts) {
  EmulationCompleter d;
  auto endbr = ClassifyHandlerStart(d, std::vector<uint8_t>{0xf3, 0x0f, 0x1e, 0xfa, 0xfc});
  ASSERT_TRUE(endbr);
  EXPECT_EQ(endbr->length, 4u);
  auto nop3 = ClassifyHandlerStart(d, std::vector<uint8_t>{0x0f, 0x1f, 0x00, 0xfc});
  ASSERT_TRUE(nop3);
  EXPECT_EQ(nop3->length, 3u);
  auto clac = ClassifyHandlerStart(d, std::vector<uint8_t>{0x0f, 0x01, 0xca, 0xfc});
  ASSERT_TRUE(clac);
  EXPECT_TRUE(clac->is_clac);
  auto nop1 = ClassifyHandlerStart(d, std::vector<uint8_t>{0x90, 0x90, 0x90});
  ASSERT_TRUE(nop1);
  EXPECT_EQ(nop1->length, 1u);
  // pushq $14 (early IDT handler) is not something we can skip: do not arm.
  EXPECT_FALSE(ClassifyHandlerStart(d, std::vector<uint8_t>{0x6a, 0x0e, 0xe9}));
  EXPECT_FALSE(ClassifyHandlerStart(d, std::vector<uint8_t>{}));
}

TEST(SyscallWorkaroundTest, ModeParsing) {
  EXPECT_EQ(*ParseSyscallWorkaroundMode("on"), SyscallWorkaroundMode::kOn);
  EXPECT_FALSE(ParseSyscallWorkaroundMode("yes").ok());
  EXPECT_TRUE(SyscallWorkaroundNeeded(SyscallWorkaroundMode::kOn));
  EXPECT_FALSE(SyscallWorkaroundNeeded(SyscallWorkaroundMode::kOff));
}

}  // namespace
}  // namespace ionest
