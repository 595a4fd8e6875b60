#include "vmm/syscall_workaround.h"

#include <capstone/capstone.h>
#include <sys/stat.h>

#include <cstring>

#include "absl/strings/str_format.h"

namespace ionest {
namespace {

constexpr uint32_t kMsrStar = 0xC0000081, kMsrLstar = 0xC0000082, kMsrFmask = 0xC0000084;
constexpr uint64_t kRflagsRf = 1ull << 16;
constexpr uint64_t kRflagsAc = 1ull << 18;
constexpr int kPfVector = 14;

kvm_segment FlatSegment(uint16_t selector, bool code) {
  kvm_segment s{};
  s.base = 0;
  s.limit = 0xffffffff;
  s.selector = selector;
  s.type = code ? 0xb : 0x3;  // execute/read accessed; read/write accessed
  s.present = 1;
  s.dpl = 0;
  s.s = 1;
  s.l = code ? 1 : 0;
  s.db = code ? 0 : 1;
  s.g = 1;
  return s;
}

}  // namespace

bool SyscallWorkaroundNeeded(SyscallWorkaroundMode mode) {
  if (mode == SyscallWorkaroundMode::kOn) return true;
  if (mode == SyscallWorkaroundMode::kOff) return false;
  struct stat st;
  return stat("/sys/module/kvm_pvm", &st) == 0;
}

bool IsBrokenSyscallFault(const PageFaultFrame& frame, uint64_t cr2, const SyscallMsrs& msrs) {
  constexpr uint64_t kPfUser = 1u << 2, kPfFetch = 1u << 4;
  return msrs.lstar != 0 && (frame.cs & 3) == 3 && frame.rip == msrs.lstar && cr2 == msrs.lstar &&
         (frame.error_code & kPfUser) && (frame.error_code & kPfFetch);
}

void RewriteToSyscallEntry(const PageFaultFrame& frame, const SyscallMsrs& msrs, kvm_regs& regs, kvm_sregs& sregs) {
  const uint16_t kernel_cs = static_cast<uint16_t>((msrs.star >> 32) & 0xfffc);
  regs.rflags = (frame.rflags & ~msrs.fmask & ~kRflagsRf) | 2;
  regs.rip = msrs.lstar;
  regs.rsp = frame.rsp;  // SYSCALL does not switch stacks
  sregs.cs = FlatSegment(kernel_cs, true);
  sregs.ss = FlatSegment(static_cast<uint16_t>(kernel_cs + 8), false);
}

std::optional<TrappableInstruction> ClassifyHandlerStart(const EmulationCompleter& decoder,
                                                         std::span<const uint8_t> bytes) {
  std::string d = decoder.Disassemble(bytes, 0);
  auto starts = [&](const char* p) { return d.rfind(p, 0) == 0; };
  if (bytes.empty()) return std::nullopt;
  if (bytes.size() >= 4 && bytes[0] == 0xf3 && bytes[1] == 0x0f && bytes[2] == 0x1e && bytes[3] == 0xfa) {
    return TrappableInstruction{4, false};  // endbr64
  }
  if (bytes.size() >= 3 && bytes[0] == 0x0f && bytes[1] == 0x01 && bytes[2] == 0xca) return TrappableInstruction{3, true};
  if (bytes[0] == 0x90) return TrappableInstruction{1, false};
  if (bytes.size() >= 3 && bytes[0] == 0x0f && bytes[1] == 0x1f && starts("nop")) {
    // 0F 1F /0 multi-byte NOP: length from the ModRM form (decode with Capstone via a probe).
    for (size_t len = 3; len <= std::min<size_t>(bytes.size(), 9); ++len) {
      if (decoder.Disassemble(bytes.first(len), 0) == d) return TrappableInstruction{len, false};
    }
  }
  if (bytes.size() >= 2 && bytes[0] == 0x66 && bytes[1] == 0x90) return TrappableInstruction{2, false};
  return std::nullopt;
}

absl::StatusOr<uint64_t> SyscallWorkaround::GuestVirtToPhys(KvmVcpu& vcpu, uint64_t gva, size_t len) {
  auto gpa = vcpu.Translate(gva);
  if (!gpa.ok()) return gpa.status();
  if ((gva & 0xfff) + len > 4096) return absl::OutOfRangeError("access crosses a page");
  return *gpa;
}

absl::Status SyscallWorkaround::MaybeArm(KvmVcpu& vcpu, const kvm_sregs& sregs) {
  if (sregs.idt.limit < kPfVector * 16 + 15 || !(sregs.cr0 & 0x80000000u)) return absl::OkStatus();
  uint8_t gate[16];
  uint64_t gate_gva = sregs.idt.base + kPfVector * 16;
  auto gate_gpa = GuestVirtToPhys(vcpu, gate_gva, sizeof(gate));
  if (!gate_gpa.ok()) return absl::OkStatus();  // IDT not mapped yet
  if (!memory_.Read(*gate_gpa, gate, sizeof(gate)).ok()) return absl::OkStatus();
  uint64_t handler = uint64_t{gate[0]} | uint64_t{gate[1]} << 8 | uint64_t{gate[6]} << 16 | uint64_t{gate[7]} << 24;
  uint32_t high;
  std::memcpy(&high, gate + 8, 4);
  handler |= uint64_t{high} << 32;
  if (!(gate[5] & 0x80)) return absl::OkStatus();  // gate not present

  absl::MutexLock lock(&mu_);
  auto gpa = vcpu.Translate(handler);
  if (!gpa.ok()) return absl::OkStatus();
  uint8_t code[15] = {};
  size_t n = std::min<size_t>(sizeof(code), 4096 - (*gpa & 0xfff));
  if (!memory_.Read(*gpa, code, n).ok()) return absl::OkStatus();
  if (handler == handler_gva_ && *gpa == handler_gpa_ && code[0] == kTrapByte) return absl::OkStatus();  // armed
  auto insn = ClassifyHandlerStart(decoder_, std::span<const uint8_t>(code, n));
  if (!insn) return absl::OkStatus();  // cannot complete this handler's first instruction: leave it
  absl::Status s = memory_.Write(*gpa, &kTrapByte, 1);
  if (!s.ok()) return s;
  handler_gva_ = handler;
  handler_gpa_ = *gpa;
  original_ = *insn;
  arms_.fetch_add(1);
  return absl::OkStatus();
}

absl::StatusOr<bool> SyscallWorkaround::HandleTrap(KvmVcpu& vcpu, const kvm_regs& regs, const kvm_sregs& sregs) {
  TrappableInstruction original;
  {
    absl::MutexLock lock(&mu_);
    if (handler_gva_ == 0 || regs.rip != handler_gva_) return false;
    original = original_;
  }
  PageFaultFrame frame;
  auto frame_gpa = vcpu.Translate(regs.rsp);
  if (!frame_gpa.ok()) return frame_gpa.status();
  absl::Status s = memory_.Read(*frame_gpa, &frame, sizeof(frame));
  if (!s.ok()) return s;
  SyscallMsrs msrs;
  auto star = vcpu.GetMsr(kMsrStar);
  auto lstar = vcpu.GetMsr(kMsrLstar);
  auto fmask = vcpu.GetMsr(kMsrFmask);
  if (!star.ok() || !lstar.ok() || !fmask.ok()) return absl::InternalError("cannot read SYSCALL MSRs");
  msrs = {*star, *lstar, *fmask};
  kvm_regs r = regs;
  kvm_sregs sr = sregs;
  if (IsBrokenSyscallFault(frame, sregs.cr2, msrs)) {
    RewriteToSyscallEntry(frame, msrs, r, sr);
    if (absl::Status st = vcpu.SetSregs(sr); !st.ok()) return st;
    syscalls_.fetch_add(1);
  } else {
    // A genuine #PF: complete the handler's first instruction and let the handler run.
    r.rip += original.length;
    if (original.is_clac) r.rflags &= ~kRflagsAc;
    faults_.fetch_add(1);
  }
  if (absl::Status st = vcpu.SetRegs(r); !st.ok()) return st;
  return true;
}

}  // namespace ionest
