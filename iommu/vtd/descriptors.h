// Invalidation descriptors (VT-d §6.5.2.1-6.5.2.10): typed field access and reserved-field checks.
// Pure functions; no state.
#pragma once

#include <array>
#include <cstdint>
#include <optional>

namespace ionest::vtd {

enum DescriptorType : uint8_t {
  kDescContextCache = 1,
  kDescIotlb = 2,
  kDescDeviceTlb = 3,
  kDescIec = 4,
  kDescWait = 5,
  kDescPasidIotlb = 6,
  kDescPasidCache = 7,
  kDescPasidDeviceTlb = 8,
  kDescPageGroupResponse = 9,
};

// IQERCD.IQEI codes (§11.4.9.9).
enum IqeiCode : uint8_t {
  kIqeiNone = 0,
  kIqeiTailPointer = 1,      // IQT beyond the queue or not 256-bit aligned with DW=1
  kIqeiFetch = 2,            // descriptor fetch failed
  kIqeiInvalidType = 3,      // unknown / unsupported descriptor type
  kIqeiReservedField = 4,    // reserved field set or invalid granularity
  kIqeiInvalidWidth = 5,     // 256-bit-only descriptor in 128-bit mode
  kIqeiQueueAddress = 6,     // IQA not usable (DW=1 without scalable mode support)
};

struct InvDescriptor {
  std::array<uint64_t, 4> qw{};
  bool wide = false;  // 256-bit descriptor (IQA.DW=1)

  // Type is qw0[3:0] | qw0[11:9] << 4 (§6.5.2).
  uint8_t type() const { return static_cast<uint8_t>((qw[0] & 0xf) | (((qw[0] >> 9) & 7) << 4)); }
  uint8_t granularity() const { return (qw[0] >> 4) & 3; }
  uint16_t did() const { return (qw[0] >> 16) & 0xffff; }
  // Context-cache (§6.5.2.1).
  uint16_t cc_sid() const { return (qw[0] >> 32) & 0xffff; }
  uint8_t cc_fm() const { return (qw[0] >> 48) & 3; }
  // IOTLB / PASID-IOTLB (§6.5.2.3, §6.5.2.4): qw1 ADDR 63:12, IH 6, AM 5:0.
  uint64_t inv_addr() const { return qw[1] & ~uint64_t{0xfff}; }
  bool inv_ih() const { return qw[1] & (1u << 6); }
  uint8_t inv_am() const { return qw[1] & 0x3f; }
  uint32_t pasid() const { return (qw[0] >> 32) & 0xfffff; }
  // Device-TLB (§6.5.2.5): SID 47:32; PASID-based device-TLB (§6.5.2.6): SID 31:16.
  uint16_t dev_sid() const { return (qw[0] >> 32) & 0xffff; }
  uint16_t pdev_sid() const { return (qw[0] >> 16) & 0xffff; }
  bool dev_size_bit() const { return qw[1] & 1; }
  bool pdev_size_bit() const { return qw[1] & (1u << 11); }
  bool pdev_global() const { return qw[1] & 1; }
  // IEC (§6.5.2.7): G bit 4 (1 = index-selective), IM 31:27, IIDX 47:32.
  bool iec_index_selective() const { return qw[0] & (1u << 4); }
  uint8_t iec_im() const { return (qw[0] >> 27) & 0x1f; }
  uint16_t iec_index() const { return (qw[0] >> 32) & 0xffff; }
  // Wait (§6.5.2.8): IF 4, SW 5, FN 6, PD 7, status data 63:32, status address qw1 63:2.
  bool wait_if() const { return qw[0] & (1u << 4); }
  bool wait_sw() const { return qw[0] & (1u << 5); }
  uint32_t wait_data() const { return static_cast<uint32_t>(qw[0] >> 32); }
  uint64_t wait_addr() const { return qw[1] & ~uint64_t{3}; }
  // Page group response (§6.5.2.9): PP 4, code 15:12, RID 31:16, PASID 51:32; qw1 LPIG 2, PRGI 11:3.
  bool pgr_pasid_present() const { return qw[0] & (1u << 4); }
  uint8_t pgr_code() const { return (qw[0] >> 12) & 0xf; }
  uint16_t pgr_rid() const { return (qw[0] >> 16) & 0xffff; }
  bool pgr_last() const { return qw[1] & (1u << 2); }
  uint16_t pgr_index() const { return (qw[1] >> 3) & 0x1ff; }
};

// Size of a device-TLB invalidation range (PCIe 6.0 §10.3.1): S=0 → 4 KiB; S=1 → the number of
// trailing ones of ADDR[63:12] encodes 2^(13+n). Returns {aligned base, size}; size 0 = everything.
struct AtcRange {
  uint64_t addr = 0;
  uint64_t size = 0;
};
AtcRange DeviceTlbRange(uint64_t addr_field, bool size_bit);

// Checks the descriptor against its format: returns kIqeiNone if it may be executed. `mamv` is
// CAP.MAMV (larger masks are executed at the next coarser granularity, not rejected); `scalable`
// enables the scalable-mode-only types (6-9).
IqeiCode ValidateDescriptor(const InvDescriptor& d, uint32_t mamv, bool scalable);

}  // namespace ionest::vtd
