// VT-d fault reason codes (VT-d spec Appendix A) and fault descriptions shared by all stages.
#pragma once

#include <cstdint>
#include <optional>

namespace ionest::vtd {

enum FaultReason : uint8_t {
  // Legacy-mode DMA remapping (Appendix A, table "non-recoverable fault conditions").
  kFrRootNotPresent = 0x01,
  kFrContextNotPresent = 0x02,
  kFrContextInvalid = 0x03,
  kFrAddressBeyondAw = 0x04,
  kFrWriteDenied = 0x05,
  kFrReadDenied = 0x06,
  kFrSlPtrError = 0x07,  // access to a second-stage paging entry failed
  kFrRootAccess = 0x08,
  kFrContextAccess = 0x09,
  kFrRootReserved = 0x0a,
  kFrContextReserved = 0x0b,
  kFrPteReserved = 0x0c,
  kFrTranslationBlocked = 0x0d,  // TT does not allow this request type
  // Interrupt remapping.
  kIrReservedInRequest = 0x20,
  kIrIndexBeyondSize = 0x21,
  kIrEntryNotPresent = 0x22,
  kIrTableAccess = 0x23,
  kIrEntryReserved = 0x24,
  kIrCompatBlocked = 0x25,
  kIrSidMismatch = 0x26,
  // Scalable-mode DMA remapping.
  kSmInvalidRootTable = 0x30,  // TTM reserved
  kSmTtmLegacyWithPasid = 0x31,
  kSmTtmLegacyPageRequest = 0x32,
  kSmRootAccess = 0x38,
  kSmRootNotPresent = 0x39,
  kSmRootReserved = 0x3a,
  kSmContextAccess = 0x40,
  kSmContextNotPresent = 0x41,
  kSmContextReserved = 0x42,
  kSmContextInvalid = 0x43,
  kSmDteClear = 0x44,
  kSmPasidDisabled = 0x45,
  kSmPasidTooLarge = 0x46,
  kSmPreClear = 0x47,
  kSmRidPasidError = 0x48,
  kSmPasidDirAccess = 0x50,
  kSmPasidDirNotPresent = 0x51,
  kSmPasidDirReserved = 0x52,
  kSmPasidEntryAccess = 0x58,
  kSmPasidEntryNotPresent = 0x59,
  kSmPasidEntryReserved = 0x5a,
  kSmPasidEntryInvalid = 0x5b,
  kSmSreClear = 0x5d,
  kSmFlAccess = 0x70,
  kSmFlNotPresent = 0x71,
  kSmFlReserved = 0x72,
  kSmFlBeyondMgawNested = 0x74,
  kSmFlWriteDeniedNested = 0x77,
  kSmSlAccess = 0x78,
  kSmSlPermission = 0x79,
  kSmSlReserved = 0x7a,
  kSmSlInvalidPointer = 0x7b,
  kSmNonCanonical = 0x80,
  kSmUserDenied = 0x81,
  kSmExecDenied = 0x82,
  kSmBeyondMaxAddress = 0x83,
  kSmSlBeyondMax = 0x84,
  kSmWriteDenied = 0x85,
  kSmReadDenied = 0x86,
  kSmInterruptAddress = 0x87,
};

// Request type recorded in FRCD.T1/T2 (§11.4.14).
enum class FaultRequestType : uint8_t { kWrite, kRead, kPageRequest };

// One fault to record in the fault recording registers (§7.3.1, §11.4.14).
struct FaultInfo {
  uint8_t reason = 0;
  uint16_t sid = 0;
  uint64_t addr = 0;  // faulting page address (DMA), or interrupt index << 48 (IR)
  FaultRequestType type = FaultRequestType::kRead;
  bool exec = false;
  bool priv = false;
  uint8_t at = 0;  // address type of the request (0 untranslated, 1 translation request, 2 translated)
  std::optional<uint32_t> pasid;
};

}  // namespace ionest::vtd
