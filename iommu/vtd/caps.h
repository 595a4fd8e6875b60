// VT-d capability profile: which features the emulated IOMMU reports in CAP/ECAP (§11.4.2, §11.4.3).
//
// Parsed from an option string such as "sm=on,flts=on,pasid-bits=20,aw=57,nfr=8". The defaults let
// Linux 6.12 use scalable mode with first-stage DMA domains, nesting, PRS and IR in x2APIC mode.
// Immutable after parsing; safe to share between threads.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"

namespace ionest::vtd {

struct VtdProfile {
  bool scalable_mode = true;   // ECAP.SMTS
  bool first_stage = true;     // ECAP.FLTS
  bool second_stage = true;    // ECAP.SLTS
  bool nesting = true;         // ECAP.NEST
  uint32_t pasid_bits = 20;    // ECAP.PASID/PSS (0: no PASID support)
  bool prs = true;             // ECAP.PRS (+PDS)
  bool ats = true;             // ECAP.DT (device-TLB)
  uint32_t aw = 48;            // MGAW+1: 39, 48 or 57
  bool caching_mode = true;    // CAP.CM
  bool qi = true;              // ECAP.QI
  bool ir = true;              // ECAP.IR
  bool eim = true;             // ECAP.EIM (x2APIC)
  bool pt = true;              // ECAP.PT
  bool coherent = true;        // ECAP.C
  bool psi = true;             // CAP.PSI
  bool fl1gp = true;           // CAP.FL1GP
  bool sl_large_pages = true;  // CAP.SLLPS = 2M|1G
  bool rwbf = false;           // CAP.RWBF
  // CAP.DRD / CAP.DWD (§11.4.2, §6.5.5): read / write draining. With either on, an invalidation
  // wait (and a register-based invalidation) completes only after the DMA in flight through the
  // invalidated translations finished, bounded by drain_timeout_ms (see iommu/vtd/README.md).
  bool drd = true;
  bool dwd = true;
  uint32_t drain_timeout_ms = 1000;
  bool srs = true;             // ECAP.SRS
  bool eafs = false;           // ECAP.EAFS
  bool smpwc = true;           // ECAP.SMPWC
  bool slads = true;           // ECAP.SLADS
  uint32_t nfr = 8;            // number of fault recording registers (1..256)
  uint32_t nd = 6;             // CAP.ND: 2^(4+2*ND) domain ids
  uint32_t mamv = 18;          // CAP.MAMV
  uint32_t iotlb_entries = 4096;  // model cache bounds
  uint32_t context_cache_entries = 1024;
  uint32_t pasid_cache_entries = 4096;
  uint32_t irte_cache_entries = 1024;

  uint64_t Cap() const;
  uint64_t Ecap() const;
  bool pasid() const { return scalable_mode && pasid_bits > 0; }
  bool fl5lp() const { return first_stage && aw == 57; }
  bool drains() const { return drd || dwd; }

  // Register layout derived from the profile (§11.4).
  static constexpr uint32_t kFaultRecordOffset = 0x220;  // CAP.FRO × 16
  static constexpr uint32_t kIotlbRegOffset = 0x0f0;     // ECAP.IRO × 16: IVA at +0, IOTLB at +8
  uint32_t fault_record_offset() const { return kFaultRecordOffset; }
  uint32_t iva_offset() const { return kIotlbRegOffset; }
  uint32_t iotlb_offset() const { return kIotlbRegOffset + 8; }
  // MMIO window: covers max(IRO×16+16, FRO×16+NFR×16) rounded up to 4 KiB (DRHD size is 2^n × 4 KiB).
  uint32_t window_size() const;
  uint64_t max_pasid() const { return pasid() ? (uint64_t{1} << pasid_bits) : 0; }
  uint64_t domain_count() const { return uint64_t{1} << (4 + 2 * nd); }

  std::string ToString() const;
};

// Parses "key=value,..." over the defaults. Keys: sm flts slts nest pasid-bits prs ats aw cm qi ir eim
// pt c psi fl1gp sllps rwbf drd dwd drain-timeout-ms srs eafs smpwc slads nfr nd mamv iotlb-entries
// context-cache-entries pasid-cache-entries irte-cache-entries. Booleans: on/off/true/false/1/0.
absl::StatusOr<VtdProfile> ParseVtdProfile(std::string_view options);

}  // namespace ionest::vtd
