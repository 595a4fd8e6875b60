#include "vmm/emulation_completer.h"

#include <capstone/capstone.h>

#include <bit>
#include <cstring>

#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"

namespace ionest {
namespace {

constexpr uint64_t kFlagCf = 1 << 0, kFlagPf = 1 << 2, kFlagAf = 1 << 4, kFlagZf = 1 << 6, kFlagSf = 1 << 7,
                   kFlagOf = 1 << 11, kFlagAc = 1 << 18;
constexpr uint32_t kMxcsrReservedMask = 0xffff0000;  // MXCSR_MASK of SSE2 hardware without DAZ-less quirks

// Pointer to the 64-bit register containing `reg`, its width and bit shift (AH..BH are bits 8-15).
struct RegRef {
  __u64* full = nullptr;
  int bytes = 0;
  int shift = 0;
};

RegRef Ref(kvm_regs& r, x86_reg reg) {
  switch (reg) {
#define R64(N, F) case X86_REG_##N: return {&r.F, 8, 0};
#define R32(N, F) case X86_REG_##N: return {&r.F, 4, 0};
#define R16(N, F) case X86_REG_##N: return {&r.F, 2, 0};
#define R8(N, F) case X86_REG_##N: return {&r.F, 1, 0};
#define R8H(N, F) case X86_REG_##N: return {&r.F, 1, 8};
    R64(RAX, rax) R64(RBX, rbx) R64(RCX, rcx) R64(RDX, rdx) R64(RSI, rsi) R64(RDI, rdi) R64(RBP, rbp)
    R64(RSP, rsp) R64(R8, r8) R64(R9, r9) R64(R10, r10) R64(R11, r11) R64(R12, r12) R64(R13, r13)
    R64(R14, r14) R64(R15, r15)
    R32(EAX, rax) R32(EBX, rbx) R32(ECX, rcx) R32(EDX, rdx) R32(ESI, rsi) R32(EDI, rdi) R32(EBP, rbp)
    R32(ESP, rsp) R32(R8D, r8) R32(R9D, r9) R32(R10D, r10) R32(R11D, r11) R32(R12D, r12) R32(R13D, r13)
    R32(R14D, r14) R32(R15D, r15)
    R16(AX, rax) R16(BX, rbx) R16(CX, rcx) R16(DX, rdx) R16(SI, rsi) R16(DI, rdi) R16(BP, rbp) R16(SP, rsp)
    R16(R8W, r8) R16(R9W, r9) R16(R10W, r10) R16(R11W, r11) R16(R12W, r12) R16(R13W, r13) R16(R14W, r14)
    R16(R15W, r15)
    R8(AL, rax) R8(BL, rbx) R8(CL, rcx) R8(DL, rdx) R8(SIL, rsi) R8(DIL, rdi) R8(BPL, rbp) R8(SPL, rsp)
    R8(R8B, r8) R8(R9B, r9) R8(R10B, r10) R8(R11B, r11) R8(R12B, r12) R8(R13B, r13) R8(R14B, r14)
    R8(R15B, r15)
    R8H(AH, rax) R8H(BH, rbx) R8H(CH, rcx) R8H(DH, rdx)
#undef R64
#undef R32
#undef R16
#undef R8
#undef R8H
    default: return {};
  }
}

uint64_t Mask(int bytes) { return bytes >= 8 ? ~0ull : ((1ull << (bytes * 8)) - 1); }

bool ReadReg(kvm_regs& r, x86_reg reg, uint64_t* value) {
  RegRef ref = Ref(r, reg);
  if (!ref.full) return false;
  *value = (*ref.full >> ref.shift) & Mask(ref.bytes);
  return true;
}

// Register write with x86-64 semantics: 32-bit writes zero-extend, 8/16-bit writes merge.
bool WriteReg(kvm_regs& r, x86_reg reg, uint64_t value) {
  RegRef ref = Ref(r, reg);
  if (!ref.full) return false;
  if (ref.bytes == 4) {
    *ref.full = value & 0xffffffff;
  } else {
    uint64_t m = Mask(ref.bytes) << ref.shift;
    *ref.full = (*ref.full & ~m) | ((value << ref.shift) & m);
  }
  return true;
}

absl::StatusOr<uint64_t> EffectiveAddress(const cs_insn& insn, const x86_op_mem& mem, const VcpuSnapshot& s) {
  kvm_regs r = s.regs;
  uint64_t ea = static_cast<uint64_t>(mem.disp);
  if (mem.base == X86_REG_RIP) {
    ea += s.regs.rip + insn.size;
  } else if (mem.base != X86_REG_INVALID) {
    uint64_t v;
    if (!ReadReg(r, static_cast<x86_reg>(mem.base), &v)) return absl::UnimplementedError("unsupported base register");
    ea += v;
  }
  if (mem.index != X86_REG_INVALID) {
    uint64_t v;
    if (!ReadReg(r, static_cast<x86_reg>(mem.index), &v)) return absl::UnimplementedError("unsupported index register");
    ea += v * static_cast<uint64_t>(mem.scale);
  }
  if (mem.segment == X86_REG_FS) ea += s.fs_base;
  if (mem.segment == X86_REG_GS) ea += s.gs_base;
  if (insn.detail->x86.prefix[3] == 0x67) ea &= 0xffffffff;  // address-size override
  return ea;
}

absl::StatusOr<uint64_t> ReadOperand(const cs_insn& insn, const cs_x86_op& op, const VcpuSnapshot& s,
                                     const GuestVirtualReader& read) {
  kvm_regs r = s.regs;
  if (op.type == X86_OP_REG) {
    uint64_t v;
    if (!ReadReg(r, op.reg, &v)) return absl::UnimplementedError("unsupported register operand");
    return v;
  }
  if (op.type == X86_OP_MEM) {
    auto ea = EffectiveAddress(insn, op.mem, s);
    if (!ea.ok()) return ea.status();
    uint64_t v = 0;
    if (op.size == 0 || op.size > 8) return absl::UnimplementedError("unsupported memory operand size");
    absl::Status st = read(*ea, &v, op.size);
    if (!st.ok()) return st;
    return v;
  }
  return absl::UnimplementedError("unsupported operand type");
}

}  // namespace

EmulationCompleter::EmulationCompleter() {
  csh h = 0;
  if (cs_open(CS_ARCH_X86, CS_MODE_64, &h) == CS_ERR_OK) {
    cs_option(h, CS_OPT_DETAIL, CS_OPT_ON);
    handle_ = h;
  }
}

EmulationCompleter::~EmulationCompleter() {
  if (handle_) {
    csh h = handle_;
    cs_close(&h);
  }
}

std::string EmulationCompleter::Disassemble(std::span<const uint8_t> bytes, uint64_t rip) const {
  cs_insn* insn = nullptr;
  size_t n = handle_ ? cs_disasm(handle_, bytes.data(), bytes.size(), rip, 1, &insn) : 0;
  if (n == 0) {
    std::vector<std::string> hex;
    for (uint8_t b : bytes) hex.push_back(absl::StrFormat("%02x", b));
    return "(undecodable: " + absl::StrJoin(hex, " ") + ")";
  }
  std::string out = absl::StrFormat("%s %s", insn->mnemonic, insn->op_str);
  cs_free(insn, n);
  return out;
}

absl::StatusOr<Completion> EmulationCompleter::Complete(std::span<const uint8_t> bytes, const VcpuSnapshot& state,
                                                        const GuestVirtualReader& read) const {
  if (!handle_) return absl::InternalError("Capstone unavailable");
  cs_insn* insn = nullptr;
  size_t n = cs_disasm(handle_, bytes.data(), bytes.size(), state.regs.rip, 1, &insn);
  if (n == 0) return absl::InvalidArgumentError("instruction bytes do not decode: " + Disassemble(bytes, state.regs.rip));
  struct Free {
    cs_insn* i;
    size_t n;
    ~Free() { cs_free(i, n); }
  } free_insn{insn, n};

  Completion c;
  c.mnemonic = insn->mnemonic;
  c.disassembly = absl::StrFormat("%s %s", insn->mnemonic, insn->op_str);
  while (!c.disassembly.empty() && c.disassembly.back() == ' ') c.disassembly.pop_back();
  c.regs = state.regs;
  const cs_x86& x = insn->detail->x86;
  uint64_t next_rip = state.regs.rip + insn->size;

  switch (insn->id) {
    case X86_INS_INT3:
      c.regs.rip = next_rip;  // #BP is a trap: the saved RIP follows the int3
      c.inject_exception = 3;
      return c;
    case X86_INS_WAIT:
    case X86_INS_NOP:
    case X86_INS_ENDBR64:
      c.regs.rip = next_rip;
      return c;
    case X86_INS_CLAC:
      c.regs.rflags &= ~kFlagAc;
      c.regs.rip = next_rip;
      return c;
    case X86_INS_STAC:
      c.regs.rflags |= kFlagAc;
      c.regs.rip = next_rip;
      return c;
    case X86_INS_LDMXCSR: {
      if (x.op_count != 1 || x.operands[0].type != X86_OP_MEM) return absl::UnimplementedError("ldmxcsr form");
      cs_x86_op op = x.operands[0];
      op.size = 4;
      auto v = ReadOperand(*insn, op, state, read);
      if (!v.ok()) return absl::Status(v.status().code(), "ldmxcsr operand: " + std::string(v.status().message()));
      if (*v & kMxcsrReservedMask) {
        c.inject_exception = 13;  // #GP(0) for reserved MXCSR bits
        c.inject_error_code = 0;
        return c;
      }
      c.new_mxcsr = static_cast<uint32_t>(*v);
      c.regs.rip = next_rip;
      return c;
    }
    case X86_INS_POPCNT: {
      if (x.op_count != 2 || x.operands[0].type != X86_OP_REG) return absl::UnimplementedError("popcnt form");
      auto src = ReadOperand(*insn, x.operands[1], state, read);
      if (!src.ok()) return absl::Status(src.status().code(), "popcnt operand: " + std::string(src.status().message()));
      uint64_t value = *src & Mask(x.operands[1].size);
      if (!WriteReg(c.regs, x.operands[0].reg, std::popcount(value))) {
        return absl::UnimplementedError("popcnt destination register");
      }
      c.regs.rflags &= ~(kFlagCf | kFlagPf | kFlagAf | kFlagZf | kFlagSf | kFlagOf);
      if (value == 0) c.regs.rflags |= kFlagZf;
      c.regs.rip = next_rip;
      return c;
    }
    default:
      break;
  }
  return absl::UnimplementedError("no completion for '" + c.disassembly + "'");
}

std::string FormatRegisters(const kvm_regs& r, const kvm_sregs* s) {
  std::string out = absl::StrFormat(
      "RIP=%016x RFLAGS=%08x\nRAX=%016x RBX=%016x RCX=%016x RDX=%016x\n"
      "RSI=%016x RDI=%016x RBP=%016x RSP=%016x\nR8 =%016x R9 =%016x R10=%016x R11=%016x\n"
      "R12=%016x R13=%016x R14=%016x R15=%016x\n",
      r.rip, r.rflags, r.rax, r.rbx, r.rcx, r.rdx, r.rsi, r.rdi, r.rbp, r.rsp, r.r8, r.r9, r.r10, r.r11, r.r12, r.r13,
      r.r14, r.r15);
  if (s) {
    out += absl::StrFormat(
        "CS=%04x(dpl%d l%d) SS=%04x CR0=%x CR2=%x CR3=%x CR4=%x EFER=%x\nGDT=%x/%x IDT=%x/%x FS.base=%x GS.base=%x\n",
        s->cs.selector, s->cs.dpl, s->cs.l, s->ss.selector, s->cr0, s->cr2, s->cr3, s->cr4, s->efer, s->gdt.base,
        s->gdt.limit, s->idt.base, s->idt.limit, s->fs.base, s->gs.base);
  }
  return out;
}

}  // namespace ionest
