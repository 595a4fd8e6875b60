// VT-d register file: a table of registers (offset, size, reset, RW / RW1C masks) — VT-d spec §11.4.
//
// RegisterFile only stores values and applies access masks; side effects (GCMD commands, IQT
// doorbell, ...) are done by VtdIommu from the returned WriteEffects. Not thread-safe: the owner
// (VtdIommu) serialises all calls under its mutex.
#pragma once

#include <cstdint>
#include <vector>

#include "absl/container/inlined_vector.h"

namespace ionest::vtd {

// Register offsets (VT-d §11.4, Table "Register Address Map").
enum RegOffset : uint32_t {
  kVerReg = 0x000,
  kCapReg = 0x008,
  kEcapReg = 0x010,
  kGcmdReg = 0x018,
  kGstsReg = 0x01c,
  kRtaddrReg = 0x020,
  kCcmdReg = 0x028,
  kFstsReg = 0x034,
  kFectlReg = 0x038,
  kFedataReg = 0x03c,
  kFeaddrReg = 0x040,
  kFeuaddrReg = 0x044,
  kAflogReg = 0x058,
  kPmenReg = 0x064,
  kIqhReg = 0x080,
  kIqtReg = 0x088,
  kIqaReg = 0x090,
  kIcsReg = 0x09c,
  kIectlReg = 0x0a0,
  kIedataReg = 0x0a4,
  kIeaddrReg = 0x0a8,
  kIeuaddrReg = 0x0ac,
  kIqercdReg = 0x0b0,
  kIrtaReg = 0x0b8,
  kPqhReg = 0x0c0,
  kPqtReg = 0x0c8,
  kPqaReg = 0x0d0,
  kPrsReg = 0x0dc,
  kPectlReg = 0x0e0,
  kPedataReg = 0x0e4,
  kPeaddrReg = 0x0e8,
  kPeuaddrReg = 0x0ec,
};

// GCMD / GSTS bits (§11.4.4, §11.4.5).
enum GlobalBits : uint32_t {
  kGcmdTe = 1u << 31,     // level
  kGcmdSrtp = 1u << 30,   // one-shot
  kGcmdSfl = 1u << 29,    // one-shot (deprecated)
  kGcmdEafl = 1u << 28,   // level (deprecated)
  kGcmdWbf = 1u << 27,    // one-shot
  kGcmdQie = 1u << 26,    // level
  kGcmdIre = 1u << 25,    // level
  kGcmdSirtp = 1u << 24,  // one-shot
  kGcmdCfi = 1u << 23,    // level
};

// FSTS bits (§11.4.7.1).
enum FstsBits : uint32_t {
  kFstsPfo = 1u << 0,
  kFstsPpf = 1u << 1,
  kFstsIqe = 1u << 4,
  kFstsIce = 1u << 5,
  kFstsIte = 1u << 6,
  kFstsFriShift = 8,
};

// xECTL bits (§11.4.7.2 and friends).
inline constexpr uint32_t kEctlIm = 1u << 31;
inline constexpr uint32_t kEctlIp = 1u << 30;

// PRS bits (§11.4.12.4).
inline constexpr uint32_t kPrsPpr = 1u << 0;
inline constexpr uint32_t kPrsPro = 1u << 1;

// ICS bits (§11.4.9.7).
inline constexpr uint32_t kIcsIwc = 1u << 0;

struct RegisterDef {
  uint32_t offset = 0;
  uint32_t size = 4;    // 4 or 8
  uint64_t reset = 0;
  uint64_t rw = 0;      // bits software may write
  uint64_t rw1c = 0;    // bits software clears by writing 1
  const char* name = "";
};

// What one guest write did to one register.
struct WriteEffect {
  uint32_t reg = 0;          // register offset
  uint64_t old_value = 0;
  uint64_t new_value = 0;
  uint64_t written = 0;      // the written value, positioned in the register
  uint64_t byte_mask = 0;    // which bits of the register the access covered
};
using WriteEffects = absl::InlinedVector<WriteEffect, 2>;

class RegisterFile {
 public:
  // `window` is the MMIO window size; registers must lie inside it and not overlap.
  RegisterFile(uint32_t window, std::vector<RegisterDef> defs);

  // Guest accesses of any size 1..8 at any offset; unimplemented bytes read 0 / ignore writes.
  uint64_t Read(uint64_t offset, uint32_t size) const;
  WriteEffects Write(uint64_t offset, uint32_t size, uint64_t value);

  // Hardware-side access (no masks). `reg` must be a defined register offset.
  uint64_t Get(uint32_t reg) const;
  void Set(uint32_t reg, uint64_t value);
  void SetBits(uint32_t reg, uint64_t bits) { Set(reg, Get(reg) | bits); }
  void ClearBits(uint32_t reg, uint64_t bits) { Set(reg, Get(reg) & ~bits); }
  bool Defined(uint32_t reg) const;
  const RegisterDef* Def(uint32_t reg) const;

  void Reset();
  uint32_t window() const { return window_; }

 private:
  // Index into defs_ of the register containing byte `offset`, or -1.
  int Find(uint64_t offset) const;
  uint32_t window_;
  std::vector<RegisterDef> defs_;
  std::vector<uint64_t> values_;
  std::vector<int16_t> dword_index_;  // per 4-byte slot of the window: index into defs_ or -1
};

}  // namespace ionest::vtd
