// Primary fault logging into the fault recording registers (VT-d §7.3.1, §11.4.7.1, §11.4.14) and
// the fault event interrupt (§7.3.3). Called under VtdIommu's lock.
#pragma once

#include <cstdint>
#include <vector>

#include "iommu/vtd/fault_reasons.h"
#include "iommu/outbox.h"
#include "iommu/vtd/registers.h"

namespace ionest::vtd {

// Register definitions of the NFR fault recording registers at `fro` (each 128 bits: low qword FI,
// high qword with F (RW1C), T, AT, PV, FR, PP, EXE, PRIV, SID).
std::vector<RegisterDef> FaultRecordRegisterDefs(uint32_t fro, uint32_t nfr);

// FRCD high-qword fields (bit positions within bits 127:64).
inline constexpr uint64_t kFrcdF = uint64_t{1} << 63;

class FaultRecorder {
 public:
  FaultRecorder(RegisterFile& regs, uint32_t fro, uint32_t nfr) : regs_(regs), fro_(fro), nfr_(nfr) {}

  // Records `f` if a fault recording register is free; on overflow sets FSTS.PFO. Raises the fault
  // event when something new became pending. Returns true if recorded.
  bool Record(const FaultInfo& f, Outbox& out);
  // Sets IQE/ICE/ITE in FSTS (if not already set) and raises the fault event (§6.5.2.10).
  void SetQueueError(uint32_t fsts_bit, Outbox& out);
  // After a guest write to FSTS or an FRCD: recompute PPF/FRI; drop a masked event once serviced.
  void OnStatusWrite();
  void Reset() { next_index_ = 0; }

  uint32_t nfr() const { return nfr_; }
  uint64_t recorded() const { return recorded_; }
  uint64_t dropped() const { return dropped_; }

 private:
  uint32_t HiReg(uint32_t i) const { return fro_ + 16 * i + 8; }
  uint32_t LoReg(uint32_t i) const { return fro_ + 16 * i; }
  void UpdatePpfFri();

  RegisterFile& regs_;
  const uint32_t fro_;
  const uint32_t nfr_;
  uint32_t next_index_ = 0;
  uint64_t recorded_ = 0;
  uint64_t dropped_ = 0;
};

}  // namespace ionest::vtd
