#include "iommu/vtd/faults.h"

#include "absl/strings/str_format.h"
#include "iommu/vtd/events.h"

namespace ionest::vtd {

std::vector<RegisterDef> FaultRecordRegisterDefs(uint32_t fro, uint32_t nfr) {
  std::vector<RegisterDef> defs;
  for (uint32_t i = 0; i < nfr; ++i) {
    defs.push_back({fro + 16 * i, 8, 0, 0, 0, "FRCD_LO"});
    defs.push_back({fro + 16 * i + 8, 8, 0, 0, kFrcdF, "FRCD_HI"});  // F is RW1C (§11.4.14)
  }
  return defs;
}

bool FaultRecorder::Record(const FaultInfo& f, Outbox& out) {
  uint64_t fsts = regs_.Get(kFstsReg);
  if (fsts & kFstsPfo) {  // §7.3.1: no recording while overflow is pending
    ++dropped_;
    return false;
  }
  uint32_t i = next_index_;
  if (regs_.Get(HiReg(i)) & kFrcdF) {  // next register still owned by software: overflow
    regs_.SetBits(kFstsReg, kFstsPfo);
    ++dropped_;
    RaiseEvent(regs_, kFaultEvent, out);
    return false;
  }
  // §11.4.14 FRCD layout (bits relative to 127:64 in `hi`).
  uint64_t hi = f.sid;
  if (f.type == FaultRequestType::kPageRequest) hi |= uint64_t{1} << 28;  // T2 (bit 92)
  hi |= uint64_t{f.priv} << 29;                                           // PRIV (93)
  hi |= uint64_t{f.exec} << 30;                                           // EXE (94)
  hi |= uint64_t{f.pasid.has_value()} << 31;                              // PP (95)
  hi |= uint64_t{f.reason} << 32;                                         // FR 103:96
  hi |= uint64_t{f.pasid.value_or(0) & 0xfffff} << 40;                    // PV 123:104
  hi |= uint64_t{f.at & 3u} << 60;                                        // AT 125:124
  hi |= uint64_t{f.type != FaultRequestType::kWrite} << 62;               // T1 (126): 1 = read
  hi |= kFrcdF;
  regs_.Set(LoReg(i), f.addr & ~uint64_t{0xfff});
  regs_.Set(HiReg(i), hi);
  next_index_ = (i + 1) % nfr_;
  ++recorded_;
  bool was_pending = fsts & kFstsPpf;
  if (!was_pending) {
    regs_.Set(kFstsReg, (regs_.Get(kFstsReg) & ~(0xffull << kFstsFriShift)) | (uint64_t{i} << kFstsFriShift));
  }
  regs_.SetBits(kFstsReg, kFstsPpf);
  RaiseEvent(regs_, kFaultEvent, out);
  return true;
}

void FaultRecorder::SetQueueError(uint32_t fsts_bit, Outbox& out) {
  if (regs_.Get(kFstsReg) & fsts_bit) return;
  regs_.SetBits(kFstsReg, fsts_bit);
  RaiseEvent(regs_, kFaultEvent, out);
}

void FaultRecorder::UpdatePpfFri() {
  uint64_t fsts = regs_.Get(kFstsReg);
  uint32_t fri = (fsts >> kFstsFriShift) & 0xff;
  if (fri >= nfr_) fri = 0;
  for (uint32_t k = 0; k < nfr_; ++k) {
    uint32_t i = (fri + k) % nfr_;
    if (regs_.Get(HiReg(i)) & kFrcdF) {
      regs_.Set(kFstsReg, (fsts & ~(0xffull << kFstsFriShift)) | kFstsPpf | (uint64_t{i} << kFstsFriShift));
      return;
    }
  }
  regs_.Set(kFstsReg, fsts & ~uint64_t{kFstsPpf});
}

void FaultRecorder::OnStatusWrite() {
  UpdatePpfFri();
  // §11.4.7.2 FECTL.IP: cleared once software has serviced every status condition.
  if (!(regs_.Get(kFstsReg) & (kFstsPfo | kFstsPpf | kFstsIqe | kFstsIce | kFstsIte))) {
    ClearPendingEvent(regs_, kFaultEvent);
  }
}

}  // namespace ionest::vtd
