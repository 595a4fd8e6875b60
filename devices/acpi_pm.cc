#include "devices/acpi_pm.h"

#include <time.h>

#include <cstring>

namespace ionest {
namespace {

using namespace acpi_pm;

constexpr size_t kStsOff = 0;                                // PM1_STS
constexpr size_t kEnOff = 2;                                 // PM1_EN
constexpr size_t kCntOff = kPm1aCntPort - kPmIoBase;         // PM1_CNT
constexpr size_t kTmrOff = kPmTmrPort - kPmIoBase;           // PM_TMR

// Per-byte register table: reset value and write behaviour (ACPI 6.5 §4.8.3.1-4.8.3.3).
struct ByteReg {
  uint8_t reset;
  uint8_t rw;    // plain read/write bits
  uint8_t rw1c;  // write-1-to-clear status bits
};
constexpr ByteReg kRegs[] = {
    // GBL_EN and RTC_EN must read back what the OS wrote: Linux checks GBL_EN when it installs its
    // global-lock handler ("Could not enable GlobalLock event" otherwise). Nothing raises GBL_STS or
    // RTC_STS here (no firmware shares the lock, no RTC alarm).
    /*PM1_STS lo*/ {0x00, 0x00, (kPm1StsTmr | kPm1StsGbl) & 0xff},
    /*PM1_STS hi*/ {0x00, 0x00, static_cast<uint8_t>((kPm1StsPwrBtn | kPm1StsRtc | kPm1StsWak) >> 8)},
    /*PM1_EN lo */ {0x00, (kPm1StsTmr | kPm1StsGbl) & 0xff, 0x00},
    /*PM1_EN hi */ {0x00, static_cast<uint8_t>((kPm1StsPwrBtn | kPm1StsRtc) >> 8), 0x00},
    // PM1_CNT: SCI_EN reads 1 (no SMI_CMD: the machine is always in ACPI mode, §4.8.3.2.1);
    // SLP_TYP is RW; SLP_EN is write-only and reads 0.
    /*PM1_CNT lo*/ {kPm1CntSciEn, 0x00, 0x00},
    /*PM1_CNT hi*/ {0x00, static_cast<uint8_t>(kPm1CntSlpTypMask >> 8), 0x00},
    /*reserved  */ {0, 0, 0},
    {0, 0, 0},
    /*PM_TMR (read-only, computed)*/ {0, 0, 0},
    {0, 0, 0},
    {0, 0, 0},
    {0, 0, 0},
};
static_assert(sizeof(kRegs) / sizeof(kRegs[0]) == kPmIoLen);

uint64_t MonotonicNs() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1000000000ull + static_cast<uint64_t>(ts.tv_nsec);
}

}  // namespace

AcpiPm::AcpiPm(ShutdownFn shutdown, IrqLine& sci, ClockFn clock)
    : shutdown_(std::move(shutdown)),
      sci_(sci),
      clock_(clock ? std::move(clock) : ClockFn(MonotonicNs)),
      epoch_ns_(clock_()) {
  for (size_t i = 0; i < kSize; ++i) regs_[i] = kRegs[i].reset;
}

uint16_t AcpiPm::Reg16(size_t offset) const { return regs_[offset] | (regs_[offset + 1] << 8); }

uint32_t AcpiPm::TimerValue() const {
  const unsigned __int128 ticks = static_cast<unsigned __int128>(clock_() - epoch_ns_) * kPmTimerHz / 1000000000u;
  return static_cast<uint32_t>(ticks) & 0xFFFFFFu;  // 24-bit counter (TMR_VAL_EXT = 0)
}

void AcpiPm::IoRead(uint64_t offset, uint8_t* data, size_t size) {
  absl::MutexLock l(&mu_);
  const uint32_t tmr = TimerValue();
  for (size_t i = 0; i < size && offset + i < kSize; ++i) {
    const size_t off = offset + i;
    if (off >= kTmrOff && off < kTmrOff + kPmTmrLen) {
      data[i] = static_cast<uint8_t>(tmr >> (8 * (off - kTmrOff)));
    } else {
      data[i] = regs_[off];
    }
  }
}

void AcpiPm::IoWrite(uint64_t offset, const uint8_t* data, size_t size) {
  absl::MutexLock l(&mu_);
  bool cnt_written = false;
  for (size_t i = 0; i < size && offset + i < kSize; ++i) {
    const size_t off = offset + i;
    const ByteReg& r = kRegs[off];
    regs_[off] = static_cast<uint8_t>((regs_[off] & ~r.rw) | (data[i] & r.rw));
    regs_[off] &= static_cast<uint8_t>(~(data[i] & r.rw1c));
    if (off == kCntOff || off == kCntOff + 1) cnt_written = true;
  }
  UpdateSci();
  if (!cnt_written) return;
  // SLP_EN is write-only: look at the written value, not the stored one (§4.8.3.2.1).
  uint16_t written_cnt = Reg16(kCntOff);
  for (size_t i = 0; i < size; ++i)
    if (offset + i == kCntOff + 1) written_cnt = static_cast<uint16_t>(written_cnt | (data[i] << 8));
  const unsigned slp_typ = (written_cnt & kPm1CntSlpTypMask) >> kPm1CntSlpTypShift;
  if ((written_cnt & kPm1CntSlpEn) && slp_typ == kSlpTypS5 && shutdown_) shutdown_(ShutdownKind::kPowerOff);
}

void AcpiPm::PressPowerButton() {
  absl::MutexLock l(&mu_);
  regs_[kStsOff + 1] |= kPm1StsPwrBtn >> 8;
  UpdateSci();
}

void AcpiPm::UpdateSci() {
  // SCI is asserted while an enabled status bit is set and SCI_EN (§4.8.3.1).
  const bool level = (Reg16(kStsOff) & Reg16(kEnOff)) != 0 && (Reg16(kCntOff) & kPm1CntSciEn);
  if (level == sci_level_) return;
  sci_level_ = level;
  sci_.SetLevel(level);
}

}  // namespace ionest
