#include "vmm/emulation_completer.h"

#include <cstring>
#include <map>

#include "gtest/gtest.h"

namespace ionest {
namespace {

// Instruction bytes as KVM reports them in emulation_failure.insn_bytes (15 bytes, trailing junk).
std::vector<uint8_t> Bytes(std::initializer_list<uint8_t> insn) {
  std::vector<uint8_t> b(insn);
  while (b.size() < 15) b.push_back(0xcc);
  return b;
}

struct FakeMemory {
  std::map<uint64_t, uint8_t> bytes;
  void Put32(uint64_t gva, uint32_t v) {
    for (int i = 0; i < 4; ++i) bytes[gva + i] = static_cast<uint8_t>(v >> (8 * i));
  }
  GuestVirtualReader Reader() {
    return [this](uint64_t gva, void* dst, size_t len) -> absl::Status {
      auto* out = static_cast<uint8_t*>(dst);
      for (size_t i = 0; i < len; ++i) {
        auto it = bytes.find(gva + i);
        if (it == bytes.end()) return absl::NotFoundError("unmapped");
        out[i] = it->second;
      }
      return absl::OkStatus();
    };
  }
};

VcpuSnapshot State(uint64_t rip) {
  VcpuSnapshot s;
  s.regs.rip = rip;
  s.regs.rflags = 0x246;
  s.regs.rsp = 0xffffc90000003f00ull;
  return s;
}

TEST(EmulationCompleterTest, Int3AdvancesAndInjectsBreakpoint) {
  EmulationCompleter c;
  FakeMemory m;
  auto r = c.Complete(Bytes({0xcc}), State(0xffffffff81001000ull), m.Reader());
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->mnemonic, "int3");
  EXPECT_EQ(r->regs.rip, 0xffffffff81001001ull);
  EXPECT_EQ(r->inject_exception, 3);
  EXPECT_FALSE(r->inject_error_code.has_value());
}

TEST(EmulationCompleterTest, FwaitIsSkipped) {
  EmulationCompleter c;
  FakeMemory m;
  auto r = c.Complete(Bytes({0x9b, 0xdb, 0xe2}), State(0x1000), m.Reader());  // fwait; (fnclex follows)
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->mnemonic, "wait");
  EXPECT_EQ(r->regs.rip, 0x1001u);
  EXPECT_FALSE(r->inject_exception.has_value());
}

TEST(EmulationCompleterTest, ClacStacToggleAc) {
  EmulationCompleter c;
  FakeMemory m;
  VcpuSnapshot s = State(0x2000);
  s.regs.rflags |= 1 << 18;
  auto r = c.Complete(Bytes({0x0f, 0x01, 0xca}), s, m.Reader());
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->mnemonic, "clac");
  EXPECT_EQ(r->regs.rflags & (1 << 18), 0u);
  EXPECT_EQ(r->regs.rip, 0x2003u);
  r = c.Complete(Bytes({0x0f, 0x01, 0xcb}), State(0x2000), m.Reader());
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->mnemonic, "stac");
  EXPECT_NE(r->regs.rflags & (1 << 18), 0u);
}

TEST(EmulationCompleterTest, LdmxcsrReadsMemoryOperand) {
  EmulationCompleter c;
  FakeMemory m;
  VcpuSnapshot s = State(0x3000);
  m.Put32(s.regs.rsp + 8, 0x1f80);
  // ldmxcsr dword ptr [rsp + 8]
  auto r = c.Complete(Bytes({0x0f, 0xae, 0x54, 0x24, 0x08}), s, m.Reader());
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->new_mxcsr, 0x1f80u);
  EXPECT_EQ(r->regs.rip, 0x3005u);
  // RIP-relative: ldmxcsr [rip + 0x100]
  m.Put32(0x3007 + 0x100, 0x1fa0);
  r = c.Complete(Bytes({0x0f, 0xae, 0x15, 0x00, 0x01, 0x00, 0x00}), State(0x3000), m.Reader());
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->new_mxcsr, 0x1fa0u);
  // Reserved bits -> #GP(0), RIP unchanged.
  m.Put32(s.regs.rsp + 8, 0x10000);
  r = c.Complete(Bytes({0x0f, 0xae, 0x54, 0x24, 0x08}), s, m.Reader());
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->inject_exception, 13);
  EXPECT_EQ(r->inject_error_code, 0u);
  EXPECT_FALSE(r->new_mxcsr.has_value());
  EXPECT_EQ(r->regs.rip, 0x3000u);
  // Unreadable operand -> error, not a guess.
  VcpuSnapshot far = State(0x3000);
  far.regs.rsp = 0x123450000;
  EXPECT_FALSE(c.Complete(Bytes({0x0f, 0xae, 0x54, 0x24, 0x08}), far, m.Reader()).ok());
}

TEST(EmulationCompleterTest, LdmxcsrWithGsSegment) {
  EmulationCompleter c;
  FakeMemory m;
  VcpuSnapshot s = State(0x3000);
  s.gs_base = 0xffff888000000000ull;
  m.Put32(s.gs_base + 0x40, 0x1f80);
  // ldmxcsr gs:[0x40]
  auto r = c.Complete(Bytes({0x65, 0x0f, 0xae, 0x14, 0x25, 0x40, 0x00, 0x00, 0x00}), s, m.Reader());
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->new_mxcsr, 0x1f80u);
  EXPECT_EQ(r->regs.rip, 0x3009u);
}

TEST(EmulationCompleterTest, PopcntRegisterAndMemoryForms) {
  EmulationCompleter c;
  FakeMemory m;
  VcpuSnapshot s = State(0x4000);
  s.regs.rbx = 0xf0f0000000000003ull;
  s.regs.rax = 0xdeadbeefdeadbeefull;
  // popcnt rax, rbx
  auto r = c.Complete(Bytes({0xf3, 0x48, 0x0f, 0xb8, 0xc3}), s, m.Reader());
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->regs.rax, 10u);
  EXPECT_EQ(r->regs.rflags & 0x8d5, 0u);  // ZF and the other arithmetic flags cleared
  EXPECT_EQ(r->regs.rip, 0x4005u);
  // popcnt eax, ebx: 32-bit source, zero-extending destination
  r = c.Complete(Bytes({0xf3, 0x0f, 0xb8, 0xc3}), s, m.Reader());
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->regs.rax, 2u);
  // popcnt cx, dx with zero source sets ZF and keeps RCX's upper bits
  s.regs.rdx = 0xffff0000;
  s.regs.rcx = 0x1111222233334444ull;
  r = c.Complete(Bytes({0x66, 0xf3, 0x0f, 0xb8, 0xca}), s, m.Reader());
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->regs.rcx, 0x1111222233330000ull);
  EXPECT_NE(r->regs.rflags & 0x40, 0u);
  // popcnt r8, qword ptr [rdi]
  s.regs.rdi = 0x5000;
  m.Put32(0x5000, 0xff);
  m.Put32(0x5004, 0x1);
  r = c.Complete(Bytes({0xf3, 0x4c, 0x0f, 0xb8, 0x07}), s, m.Reader());
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->regs.r8, 9u);
}

TEST(EmulationCompleterTest, UnknownInstructionIsUnimplemented) {
  EmulationCompleter c;
  FakeMemory m;
  // xsaves [rdi] is not something we complete.
  auto r = c.Complete(Bytes({0x0f, 0xc7, 0x2f}), State(0x1000), m.Reader());
  EXPECT_EQ(r.status().code(), absl::StatusCode::kUnimplemented) << r.status();
  EXPECT_NE(std::string(r.status().message()).find("xsaves"), std::string::npos);
  // Undecodable bytes.
  std::vector<uint8_t> junk = {0x0f, 0x04};
  r = c.Complete(junk, State(0x1000), m.Reader());
  EXPECT_FALSE(r.ok());
  EXPECT_NE(c.Disassemble(junk, 0x1000).find("undecodable"), std::string::npos);
  EXPECT_EQ(c.Disassemble(Bytes({0xcc}), 0), "int3 ");
}

TEST(EmulationCompleterTest, RegisterDumpNamesRegisters) {
  kvm_regs r{};
  r.rip = 0xffffffff81000000ull;
  std::string s = FormatRegisters(r, nullptr);
  EXPECT_NE(s.find("RIP=ffffffff81000000"), std::string::npos);
}

}  // namespace
}  // namespace ionest
