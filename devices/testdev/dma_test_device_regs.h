// Register interface of "ionest-dmatest", the DMA test device (PCI 1de5:1110, class ff0000).
//
// BAR0 (64-bit MMIO, 4 KiB): 64-bit registers at 0x000-0x0FF (4- or 8-byte accesses; a 4-byte
// access at +4 reaches the upper half), a 2 KiB data buffer ("SRAM") at 0x800-0xFFF (any size).
// BAR2 (64-bit MMIO, 4 KiB): MSI-X table at 0x000, PBA at 0x800.
//
// Programming a job: write SRC, DST, LEN, PASID, PATTERN, then CTRL; write 1 to DOORBELL. STATUS
// shows BUSY until the job ends with DONE or ERROR (+ error code). A translation fault stops the job
// and leaves FAULT_ADDR / FAULT_INFO; with PRI enabled the device first sends page requests. An
// access the IOMMU stalls (SMMUv3 stall model) waits for its RESUME: retry, or the job ends with
// kErrTranslation (abort / STALL_TERM) or kErrPageTimeout (no answer in time).
#pragma once

#include <cstdint>

namespace ionest::dmatest {

inline constexpr uint16_t kVendorId = 0x1de5;
inline constexpr uint16_t kDeviceId = 0x1110;
inline constexpr uint32_t kClassCode = 0xff0000;  // unassigned class: no in-kernel driver binds
inline constexpr uint64_t kIdValue = 0x3154414d44'4e4f49ull;  // "IONDMAT1" (little endian)

inline constexpr uint64_t kBar0Size = 0x1000;
inline constexpr uint64_t kBar2Size = 0x1000;
inline constexpr uint32_t kMsixTableOffset = 0x000;
inline constexpr uint32_t kMsixPbaOffset = 0x800;
inline constexpr uint64_t kSramOffset = 0x800;
inline constexpr uint64_t kSramSize = 0x800;

enum Reg : uint32_t {
  kRegId = 0x00,          // RO  kIdValue
  kRegMaxLen = 0x08,      // RO  largest LEN accepted
  kRegSrc = 0x10,         // RW  source IOVA
  kRegDst = 0x18,         // RW  destination IOVA
  kRegLen = 0x20,         // RW  bytes
  kRegPasid = 0x28,       // RW  PASID 19:0, VALID 31, EXEC 32 (source reads), PRIV 33
  kRegPattern = 0x30,     // RW  FILL pattern (64-bit, repeated)
  kRegCtrl = 0x38,        // RW  see Ctrl bits
  kRegDoorbell = 0x40,    // WO  1 = start job, 2 = abort running job; reads 0
  kRegStatus = 0x48,      // BUSY 0 (RO), DONE 1 (RW1C), ERROR 2 (RW1C), error code 15:8, jobs 47:16
  kRegFaultAddr = 0x50,   // RO  address of the fault that ended the job
  kRegFaultInfo = 0x58,   // RO  see FaultInfo bits
  kRegResult = 0x60,      // RO  READ: FNV-1a-64 of the bytes read; COMPARE: 0 or (1<<63 | offset)
  kRegPageRequests = 0x68,  // RO page requests sent (total)
  kRegAtsRequests = 0x70,   // RO ATS translation requests (total)
  kRegAtcHits = 0x78,       // RO translated accesses served from the ATC (total)
  kRegAtcInvalidations = 0x80,  // RO invalidation requests received (total)
  kRegBytesDone = 0x88,     // RO bytes completed by the current/last job
  kRegAtcCtrl = 0x90,       // WO  bit 0: drop every ATC entry
  kRegIrqCount = 0x98,      // RO completion interrupts signalled (total)
  kRegStalls = 0xa0,        // RO stalled accesses the device waited on (SMMUv3 stall model, total)
  kRegStallPeak = 0xa8,     // RO most stalled accesses outstanding at once in the current/last job
  kRegCount = 0xb0,
};

enum Op : uint32_t {
  kOpNop = 0,
  kOpRead = 1,     // read [SRC, +LEN): RESULT = FNV-1a-64, first 2 KiB copied to SRAM
  kOpWrite = 2,    // write SRAM contents (repeated) to [DST, +LEN)
  kOpCopy = 3,     // [SRC, +LEN) -> [DST, +LEN)
  kOpFill = 4,     // PATTERN (repeated) -> [DST, +LEN)
  kOpCompare = 5,  // compare [SRC, +LEN) with [DST, +LEN)
};

// CTRL bits.
inline constexpr uint64_t kCtrlOpMask = 0xf;
inline constexpr uint64_t kCtrlUseAts = 1u << 4;      // translate via ATS, access with translated requests
inline constexpr uint64_t kCtrlIrq = 1u << 5;         // MSI(-X) on completion (success or error)
inline constexpr uint64_t kCtrlNoPri = 1u << 6;       // never send page requests for this job
inline constexpr unsigned kCtrlVectorShift = 8;       // 15:8 interrupt vector
inline constexpr uint64_t kCtrlMask = 0xff7f;

// PASID register bits.
inline constexpr uint64_t kPasidMask = 0xfffff;
inline constexpr uint64_t kPasidValid = 1ull << 31;
inline constexpr uint64_t kPasidExec = 1ull << 32;
inline constexpr uint64_t kPasidPriv = 1ull << 33;
inline constexpr uint64_t kPasidRegMask = kPasidMask | kPasidValid | kPasidExec | kPasidPriv;

// DOORBELL values.
inline constexpr uint64_t kDoorbellStart = 1;
inline constexpr uint64_t kDoorbellAbort = 2;

// STATUS bits.
inline constexpr uint64_t kStatusBusy = 1u << 0;
inline constexpr uint64_t kStatusDone = 1u << 1;
inline constexpr uint64_t kStatusError = 1u << 2;
inline constexpr unsigned kStatusErrorShift = 8;
inline constexpr unsigned kStatusJobsShift = 16;

enum Error : uint8_t {
  kErrNone = 0,
  kErrBadOp = 1,
  kErrBadLength = 2,          // LEN > MAX_LEN, or the range wraps
  kErrBusMaster = 3,          // Command.BME clear
  kErrTranslation = 4,        // translation fault, not resolved (see FAULT_*); also a stalled access terminated
                              // by the IOMMU (SMMUv3 CMD_RESUME abort, CMD_STALL_TERM)
  kErrPageInvalid = 5,        // PRG response Invalid Request
  kErrPageFailure = 6,        // PRG response Response Failure (PRI status RF set)
  kErrPageTimeout = 7,        // no PRG response (or, for a stalled access, no RESUME) in time
  kErrRetryExhausted = 8,     // page requests (or RESUME retries) answered Success but the fault persisted
  kErrPriUnavailable = 9,     // PRI disabled/stopped, no credits, or the IOMMU refused the request
  kErrPasidDisabled = 10,     // PASID (or exec/priv) requested but not enabled in the PASID capability
  kErrAtsDisabled = 11,       // USE_ATS set but ATS not enabled
  kErrTranslatedRejected = 12,  // a translated request was refused or hit non-memory
  kErrBadCompletion = 13,     // malformed ATS completion
  kErrAborted = 14,
  kErrMemory = 15,            // untranslated access reached an address that is not memory
};

// FAULT_INFO bits.
inline constexpr unsigned kFaultReasonShift = 0;    // 7:0 IOMMU fault reason (VT-d Appendix A), 0 if none
inline constexpr unsigned kFaultKindShift = 8;      // 11:8 DmaFaultKind + 1 (0: no fault)
inline constexpr uint64_t kFaultRecorded = 1u << 12;  // the IOMMU recorded the fault
inline constexpr unsigned kFaultResponseShift = 16; // 19:16 last PRG response code (stall: 0 retry, 0xf abort)
inline constexpr unsigned kFaultAccessShift = 20;   // 23:20 DmaAccess bits of the faulting request
inline constexpr uint64_t kFaultViaAts = 1u << 24;  // the fault came from an ATS translation

// MSI-X vectors.
inline constexpr unsigned kNumVectors = 4;

}  // namespace ionest::dmatest
