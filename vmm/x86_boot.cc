#include "vmm/x86_boot.h"

#include "vmm/memory_layout.h"

namespace ionest {
namespace {

// Segment descriptor (Intel SDM vol. 3 §3.4.5).
constexpr uint64_t Descriptor(uint32_t base, uint32_t limit, uint16_t flags) {
  return ((uint64_t{base} & 0xff000000) << 32) | ((uint64_t{base} & 0x00ffffff) << 16) |
         (uint64_t{limit} & 0x0000ffff) | ((uint64_t{limit} & 0x000f0000) << 32) | (uint64_t{flags} << 40);
}

constexpr uint16_t kCode64Flags = 0xa09b;  // G, L, P, DPL0, code execute/read accessed
constexpr uint16_t kDataFlags = 0xc093;    // G, D/B, P, DPL0, data read/write accessed
constexpr uint16_t kTssFlags = 0x008b;     // P, 64-bit busy TSS

kvm_segment Segment(uint16_t selector, uint16_t flags, uint32_t limit) {
  kvm_segment s{};
  s.base = 0;
  s.limit = (flags & 0x8000) ? (limit << 12) | 0xfff : limit;
  s.selector = selector;
  s.type = flags & 0xf;
  s.s = (flags >> 4) & 1;
  s.dpl = (flags >> 5) & 3;
  s.present = (flags >> 7) & 1;
  s.avl = (flags >> 12) & 1;
  s.l = (flags >> 13) & 1;
  s.db = (flags >> 14) & 1;
  s.g = (flags >> 15) & 1;
  return s;
}

constexpr uint64_t kPtePresent = 1, kPteWrite = 2, kPtePs = 0x80;
constexpr uint64_t kCr0Pe = 1, kCr0Mp = 2, kCr0Et = 0x10, kCr0Ne = 0x20, kCr0Pg = 1ull << 31;
constexpr uint64_t kCr4Pae = 0x20;
constexpr uint64_t kEferLme = 0x100, kEferLma = 0x400;

}  // namespace

absl::Status WriteBootPageTablesAndGdt(PhysMemory& memory) {
  uint64_t gdt[6] = {0, 0, Descriptor(0, 0xfffff, kCode64Flags), Descriptor(0, 0xfffff, kDataFlags),
                     Descriptor(0, 0x67, kTssFlags), 0};
  absl::Status s = memory.WriteObj(kGdtAddr, gdt);
  if (!s.ok()) return s;
  uint64_t pml4[512] = {};
  pml4[0] = kPdptAddr | kPtePresent | kPteWrite;
  if (!(s = memory.WriteObj(kPml4Addr, pml4)).ok()) return s;
  uint64_t pdpt[512] = {};
  for (int i = 0; i < 4; ++i) pdpt[i] = (kPdAddr + i * 4096) | kPtePresent | kPteWrite;
  if (!(s = memory.WriteObj(kPdptAddr, pdpt)).ok()) return s;
  for (int i = 0; i < 4; ++i) {
    uint64_t pd[512];
    for (int j = 0; j < 512; ++j) pd[j] = ((uint64_t(i) << 30) + (uint64_t(j) << 21)) | kPtePresent | kPteWrite | kPtePs;
    if (!(s = memory.WriteObj(kPdAddr + i * 4096, pd)).ok()) return s;
  }
  return absl::OkStatus();
}

kvm_sregs LongModeSregs(const kvm_sregs& current) {
  kvm_sregs sr = current;
  sr.cs = Segment(kBootCs, kCode64Flags, 0xfffff);
  sr.ds = sr.es = sr.fs = sr.gs = sr.ss = Segment(kBootDs, kDataFlags, 0xfffff);
  sr.tr = Segment(kBootTss, kTssFlags, 0x67);
  sr.tr.s = 0;
  sr.ldt = {};
  sr.ldt.type = 2;
  sr.ldt.present = 1;
  sr.ldt.unusable = 1;
  sr.gdt.base = kGdtAddr;
  sr.gdt.limit = 6 * 8 - 1;
  sr.idt.base = 0;
  sr.idt.limit = 0;
  sr.cr0 = kCr0Pe | kCr0Mp | kCr0Et | kCr0Ne | kCr0Pg;
  sr.cr3 = kPml4Addr;
  sr.cr4 = kCr4Pae;
  sr.efer = kEferLme | kEferLma;
  return sr;
}

kvm_regs EntryRegs(uint64_t entry, uint64_t boot_params_addr) {
  kvm_regs r{};
  r.rip = entry;
  r.rsi = boot_params_addr;
  r.rflags = 0x2;
  return r;
}

}  // namespace ionest
