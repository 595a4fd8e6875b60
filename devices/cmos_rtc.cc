#include "devices/cmos_rtc.h"

#include <time.h>

namespace ionest {
namespace {

// MC146818 register indices.
enum : uint8_t {
  kSeconds = 0x00, kSecondsAlarm = 0x01, kMinutes = 0x02, kMinutesAlarm = 0x03, kHours = 0x04,
  kHoursAlarm = 0x05, kDayOfWeek = 0x06, kDayOfMonth = 0x07, kMonth = 0x08, kYear = 0x09,
  kStatusA = 0x0A, kStatusB = 0x0B, kStatusC = 0x0C, kStatusD = 0x0D,
};

constexpr uint8_t kAUip = 0x80;          // update in progress (read-only)
constexpr uint8_t kAWritable = 0x7F;      // divider and rate select
constexpr uint8_t kAReset = 0x26;         // 32.768 kHz time base, 1024 Hz rate
constexpr uint8_t kBSet = 0x80;
constexpr uint8_t kBBinary = 0x04;        // DM: 1 = binary, 0 = BCD
constexpr uint8_t kB24Hour = 0x02;
constexpr uint8_t kBReset = kB24Hour;     // BCD, 24-hour
constexpr uint8_t kDValidRam = 0x80;      // VRT: battery good
constexpr uint8_t kHourPm = 0x80;
constexpr uint8_t kIndexMask = 0x7F;
constexpr uint8_t kNmiDisable = 0x80;
constexpr int64_t kUipWindowNs = 244000;  // UIP is set 244 µs before each update

int64_t RealtimeNs() {
  timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return static_cast<int64_t>(ts.tv_sec) * 1000000000 + ts.tv_nsec;
}

int64_t FloorDiv(int64_t a, int64_t b) { return a / b - ((a % b != 0) && ((a < 0) != (b < 0))); }

}  // namespace

CmosRtc::CmosRtc(ClockFn clock) : clock_(clock ? std::move(clock) : ClockFn(RealtimeNs)) {
  absl::MutexLock l(&mu_);
  ram_[kStatusA] = kAReset;
  ram_[kStatusB] = kBReset;
  ram_[kStatusD] = kDValidRam;
}

uint8_t CmosRtc::Encode(int value) const {
  if (ram_[kStatusB] & kBBinary) return static_cast<uint8_t>(value);
  return static_cast<uint8_t>(((value / 10) % 10) << 4 | (value % 10));
}

int CmosRtc::Decode(uint8_t value) const {
  if (ram_[kStatusB] & kBBinary) return value;
  return (value >> 4) * 10 + (value & 0x0F);  // invalid BCD decodes to some number; timegm normalizes
}

std::tm CmosRtc::GuestTime() const {
  if (frozen_) return frozen_tm_;
  const time_t t = static_cast<time_t>(FloorDiv(clock_(), 1000000000) + offset_s_);
  std::tm tm{};
  gmtime_r(&t, &tm);
  return tm;
}

void CmosRtc::ApplyGuestTime(const std::tm& tm_in) {
  if (frozen_) {  // fields are kept as written (no normalization) until SET is cleared
    frozen_tm_ = tm_in;
    return;
  }
  std::tm tm = tm_in;
  const time_t guest = timegm(&tm);  // normalizes out-of-range fields
  if (guest == static_cast<time_t>(-1)) return;
  offset_s_ = static_cast<int64_t>(guest) - FloorDiv(clock_(), 1000000000);
}

uint8_t CmosRtc::ReadRegister(uint8_t index) {
  const std::tm tm = GuestTime();
  switch (index) {
    case kSeconds: return Encode(tm.tm_sec % 60);
    case kMinutes: return Encode(tm.tm_min);
    case kHours: {
      if (ram_[kStatusB] & kB24Hour) return Encode(tm.tm_hour);
      const int h12 = tm.tm_hour % 12 == 0 ? 12 : tm.tm_hour % 12;
      return static_cast<uint8_t>(Encode(h12) | (tm.tm_hour >= 12 ? kHourPm : 0));
    }
    case kDayOfWeek: return Encode(tm.tm_wday + 1);  // 1 = Sunday
    case kDayOfMonth: return Encode(tm.tm_mday);
    case kMonth: return Encode(tm.tm_mon + 1);
    case kYear: return Encode((tm.tm_year + 1900) % 100);
    case kCmosCentury: return Encode(((tm.tm_year + 1900) / 100) % 100);
    case kStatusA: {
      const int64_t ns_in_second = clock_() % 1000000000;
      const bool uip = !frozen_ && ns_in_second >= 1000000000 - kUipWindowNs;
      return static_cast<uint8_t>((ram_[kStatusA] & kAWritable) | (uip ? kAUip : 0));
    }
    case kStatusC: return 0;  // no interrupt flags are ever raised; read-to-clear is trivially met
    case kStatusD: return kDValidRam;
    default: return ram_[index];
  }
}

void CmosRtc::WriteRegister(uint8_t index, uint8_t value) {
  std::tm tm = GuestTime();
  switch (index) {
    case kSeconds: tm.tm_sec = Decode(value); break;
    case kMinutes: tm.tm_min = Decode(value); break;
    case kHours:
      if (ram_[kStatusB] & kB24Hour) {
        tm.tm_hour = Decode(value);
      } else {
        const int h12 = Decode(value & static_cast<uint8_t>(~kHourPm)) % 12;
        tm.tm_hour = h12 + ((value & kHourPm) ? 12 : 0);
      }
      break;
    case kDayOfWeek: return;  // derived from the date
    case kDayOfMonth: tm.tm_mday = Decode(value); break;
    case kMonth: tm.tm_mon = Decode(value) - 1; break;
    case kYear: tm.tm_year = ((tm.tm_year + 1900) / 100) * 100 + Decode(value) - 1900; break;
    case kCmosCentury: tm.tm_year = Decode(value) * 100 + (tm.tm_year + 1900) % 100 - 1900; break;
    case kStatusA: ram_[kStatusA] = value & kAWritable; return;
    case kStatusB: {
      const bool was_frozen = frozen_;
      if ((value & kBSet) && !was_frozen) {
        frozen_tm_ = tm;  // freeze the current time for the guest to edit
        frozen_ = true;
      } else if (!(value & kBSet) && was_frozen) {
        frozen_ = false;
        ApplyGuestTime(frozen_tm_);  // resume counting from the time the guest set
      }
      ram_[kStatusB] = value;
      return;
    }
    case kStatusC:
    case kStatusD: return;  // read-only
    default: ram_[index] = value; return;
  }
  ApplyGuestTime(tm);
}

void CmosRtc::IoRead(uint64_t offset, uint8_t* data, size_t size) {
  absl::MutexLock l(&mu_);
  for (size_t i = 0; i < size && offset + i < kCmosIoLen; ++i) {
    data[i] = (offset + i == 0) ? static_cast<uint8_t>(index_ | (nmi_disabled_ ? kNmiDisable : 0))
                                : ReadRegister(index_);
  }
}

void CmosRtc::IoWrite(uint64_t offset, const uint8_t* data, size_t size) {
  absl::MutexLock l(&mu_);
  for (size_t i = 0; i < size && offset + i < kCmosIoLen; ++i) {
    if (offset + i == 0) {
      index_ = data[i] & kIndexMask;
      nmi_disabled_ = data[i] & kNmiDisable;
    } else {
      WriteRegister(index_, data[i]);
    }
  }
}

void CmosRtc::SetRamByte(uint8_t index, uint8_t value) {
  absl::MutexLock l(&mu_);
  index &= kIndexMask;
  if (index <= kStatusD || index == kCmosCentury) return;
  ram_[index] = value;
}

uint8_t CmosRtc::RamByte(uint8_t index) const {
  absl::MutexLock l(&mu_);
  return ram_[index & kIndexMask];
}

bool CmosRtc::nmi_disabled() const {
  absl::MutexLock l(&mu_);
  return nmi_disabled_;
}

}  // namespace ionest
