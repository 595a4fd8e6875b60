// Architected constants of the Arm SMMUv3 (IHI0070, "Arm System Memory Management Unit
// Architecture Specification, SMMU architecture version 3"): register offsets and fields (§6),
// stream table entries (§5.2), context descriptors (§5.4), commands (§4), event records (§7.3)
// and PRI queue entries (§8). Field positions are the same ones Linux's arm-smmu-v3 driver uses.
#pragma once

#include <cstdint>

namespace ionest::smmuv3 {

constexpr uint64_t Field(uint64_t v, int hi, int lo) {
  return (v >> lo) & (hi - lo >= 63 ? ~0ull : (1ull << (hi - lo + 1)) - 1);
}
constexpr uint64_t Bits(int hi, int lo) { return (hi >= 63 ? ~0ull : (1ull << (hi + 1)) - 1) & ~((1ull << lo) - 1); }
constexpr uint64_t Bit(int n) { return 1ull << n; }

// Register window: two 64 KiB pages (§6.1); page 1 holds the EVTQ/PRIQ PROD/CONS aliases.
inline constexpr uint64_t kPageSize = 0x10000;
inline constexpr uint64_t kWindowSize = 2 * kPageSize;

// Page 0 registers (§6.3).
enum Reg : uint32_t {
  kIdr0 = 0x00, kIdr1 = 0x04, kIdr2 = 0x08, kIdr3 = 0x0c, kIdr4 = 0x10, kIdr5 = 0x14, kIidr = 0x18, kAidr = 0x1c,
  kCr0 = 0x20, kCr0Ack = 0x24, kCr1 = 0x28, kCr2 = 0x2c, kStatusr = 0x40, kGbpa = 0x44, kAgbpa = 0x48,
  kIrqCtrl = 0x50, kIrqCtrlAck = 0x54, kGerror = 0x60, kGerrorn = 0x64,
  kGerrorIrqCfg0 = 0x68, kGerrorIrqCfg1 = 0x70, kGerrorIrqCfg2 = 0x74,
  kStrtabBase = 0x80, kStrtabBaseCfg = 0x88,
  kCmdqBase = 0x90, kCmdqProd = 0x98, kCmdqCons = 0x9c,
  kEvtqBase = 0xa0, kEvtqProd = 0xa8, kEvtqCons = 0xac, kEvtqIrqCfg0 = 0xb0, kEvtqIrqCfg1 = 0xb8, kEvtqIrqCfg2 = 0xbc,
  kPriqBase = 0xc0, kPriqProd = 0xc8, kPriqCons = 0xcc, kPriqIrqCfg0 = 0xd0, kPriqIrqCfg1 = 0xd8, kPriqIrqCfg2 = 0xdc,
};

// SMMU_IDR0 (§6.3.1).
inline constexpr uint32_t kIdr0S2p = 1u << 0, kIdr0S1p = 1u << 1, kIdr0TtfAArch64 = 2u << 2, kIdr0Cohacc = 1u << 4,
                          kIdr0HttuAccess = 1u << 6, kIdr0Hyp = 1u << 9, kIdr0Ats = 1u << 10, kIdr0Asid16 = 1u << 12,
                          kIdr0Msi = 1u << 13, kIdr0Sev = 1u << 14, kIdr0Pri = 1u << 16, kIdr0Vmid16 = 1u << 18,
                          kIdr0Cd2l = 1u << 19, kIdr0TtEndianLe = 2u << 21, kIdr0StallModelTerminate = 1u << 24,
                          kIdr0StLevel2 = 1u << 27;
// SMMU_IDR3 (§6.3.4), SMMU_IDR5 (§6.3.6).
inline constexpr uint32_t kIdr3Ril = 1u << 10;
inline constexpr uint32_t kIdr5Gran4K = 1u << 4, kIdr5Gran16K = 1u << 5, kIdr5Gran64K = 1u << 6;

// SMMU_CR0 (§6.3.9), SMMU_IRQ_CTRL (§6.3.14), SMMU_GERROR (§6.3.16), SMMU_GBPA (§6.3.13).
inline constexpr uint32_t kCr0SmmuEn = 1u << 0, kCr0PriqEn = 1u << 1, kCr0EvtqEn = 1u << 2, kCr0CmdqEn = 1u << 3,
                          kCr0AtsChk = 1u << 4;
inline constexpr uint32_t kIrqCtrlGerror = 1u << 0, kIrqCtrlPriq = 1u << 1, kIrqCtrlEvtq = 1u << 2;
inline constexpr uint32_t kGerrorCmdqErr = 1u << 0, kGerrorEvtqAbtErr = 1u << 2, kGerrorPriqAbtErr = 1u << 3,
                          kGerrorMsiCmdqAbtErr = 1u << 4, kGerrorMsiEvtqAbtErr = 1u << 5,
                          kGerrorMsiPriqAbtErr = 1u << 6, kGerrorMsiGerrorAbtErr = 1u << 7, kGerrorSfmErr = 1u << 8,
                          kGerrorMask = 0x1fd;
inline constexpr uint32_t kGbpaUpdate = 1u << 31, kGbpaAbort = 1u << 20;
// MemAttr[3:0] MTCFG[4] ALLOCCFG[11:8] SHCFG[13:12] NSCFG[15:14] PRIVCFG[17:16] INSTCFG[19:18] ABORT[20].
inline constexpr uint32_t kGbpaFields = static_cast<uint32_t>(Bits(20, 0) & ~Bits(7, 5));

// Queue registers (§6.3.20-6.3.30): base RA|ADDR[51:5]|LOG2SIZE[4:0]; PROD/CONS wrap+index;
// CMDQ_CONS.ERR [30:24]; EVTQ/PRIQ PROD.OVFLG and CONS.OVACKFLG bit 31.
inline constexpr uint64_t kQueueBaseAddr = Bits(51, 5), kQueueBaseRa = Bit(62), kQueueLog2Size = Bits(4, 0);
inline constexpr uint32_t kQueueOverflow = 1u << 31;
inline constexpr int kCmdqConsErrShift = 24;
inline constexpr uint32_t kCerrorNone = 0, kCerrorIll = 1, kCerrorAbt = 2, kCerrorAtcInvSync = 3;
inline constexpr uint64_t kMsiAddrMask = Bits(51, 2);

// Stream table base (§6.3.24-25), level-1 descriptor (§5.1.2).
inline constexpr uint64_t kStrtabBaseAddr = Bits(51, 6), kStrtabBaseRa = Bit(62);
inline constexpr uint32_t kStrtabFmtLinear = 0, kStrtabFmt2Level = 1;
inline constexpr uint64_t kL1StdSpan = Bits(4, 0), kL1StdL2Ptr = Bits(51, 6);

// Stream table entry (§5.2), 64 bytes.
inline constexpr uint64_t kSteSize = 64;
inline constexpr uint64_t kSte0V = Bit(0);
inline constexpr uint32_t kSteCfgAbort = 0, kSteCfgBypass = 4, kSteCfgS1 = 5, kSteCfgS2 = 6, kSteCfgNested = 7;
inline constexpr uint64_t kSte0S1CtxPtr = Bits(51, 6);
inline constexpr uint32_t kS1FmtLinear = 0, kS1Fmt4KL2 = 1, kS1Fmt64KL2 = 2;
inline constexpr uint32_t kS1DssTerminate = 0, kS1DssBypass = 1, kS1DssSsid0 = 2;
inline constexpr uint64_t kSte1S1StallD = Bit(27);
inline constexpr uint32_t kStrwNsEl1 = 0;
inline constexpr uint64_t kSte2S2AA64 = Bit(51), kSte2S2Endi = Bit(52), kSte2S2Affd = Bit(53), kSte2S2Ha = Bit(56),
                          kSte2S2S = Bit(57), kSte2S2R = Bit(58);
inline constexpr uint64_t kSte3S2Ttb = Bits(51, 4);

// Context descriptor (§5.4), 64 bytes; level-1 CD descriptor (§5.4.1).
inline constexpr uint64_t kCdSize = 64;
inline constexpr uint64_t kCd0Epd0 = Bit(14), kCd0Endi = Bit(15), kCd0Epd1 = Bit(30), kCd0V = Bit(31),
                          kCd0Affd = Bit(35), kCd0AA64 = Bit(41), kCd0Hd = Bit(42), kCd0Ha = Bit(43), kCd0S = Bit(44),
                          kCd0R = Bit(45), kCd0A = Bit(46), kCd0Aset = Bit(47);
inline constexpr uint64_t kCdTtb = Bits(51, 4);
inline constexpr uint64_t kL1CdV = Bit(0), kL1CdL2Ptr = Bits(51, 12);

// Command opcodes (§4.1-4.7); 16-byte commands, opcode in bits [7:0].
enum Opcode : uint8_t {
  kCmdPrefetchConfig = 0x01, kCmdPrefetchAddr = 0x02, kCmdCfgiSte = 0x03, kCmdCfgiSteRange = 0x04,
  kCmdCfgiCd = 0x05, kCmdCfgiCdAll = 0x06,
  kCmdTlbiNhAll = 0x10, kCmdTlbiNhAsid = 0x11, kCmdTlbiNhVa = 0x12, kCmdTlbiNhVaa = 0x13,
  kCmdTlbiEl3All = 0x18, kCmdTlbiEl3Va = 0x1a,
  kCmdTlbiEl2All = 0x20, kCmdTlbiEl2Asid = 0x21, kCmdTlbiEl2Va = 0x22, kCmdTlbiEl2Vaa = 0x23,
  kCmdTlbiS12Vmall = 0x28, kCmdTlbiS2Ipa = 0x2a, kCmdTlbiNsnhAll = 0x30,
  kCmdAtcInv = 0x40, kCmdPriResp = 0x41, kCmdResume = 0x44, kCmdStallTerm = 0x45, kCmdSync = 0x46,
};
inline constexpr uint64_t kCmdSize = 16;
inline constexpr uint32_t kSyncCsNone = 0, kSyncCsIrq = 1, kSyncCsSev = 2;
inline constexpr uint32_t kResumeTerm = 0, kResumeRetry = 1, kResumeAbort = 2;
inline constexpr uint32_t kPriRespDeny = 0, kPriRespFail = 1, kPriRespSucc = 2;

// Event record types (§7.3), 32-byte records.
enum EventType : uint8_t {
  kEvtUut = 0x01, kEvtBadStreamId = 0x02, kEvtSteFetch = 0x03, kEvtBadSte = 0x04, kEvtBadAtsTreq = 0x05,
  kEvtStreamDisabled = 0x06, kEvtTranslForbidden = 0x07, kEvtBadSubstreamId = 0x08, kEvtCdFetch = 0x09,
  kEvtBadCd = 0x0a, kEvtWalkEabt = 0x0b, kEvtTranslation = 0x10, kEvtAddrSize = 0x11, kEvtAccess = 0x12,
  kEvtPermission = 0x13, kEvtTlbConflict = 0x20, kEvtCfgConflict = 0x21,
};
inline constexpr uint64_t kEventSize = 32;
inline constexpr uint64_t kEvt0Ssv = Bit(11);
inline constexpr uint64_t kEvt1Stall = Bit(31), kEvt1PnU = Bit(33), kEvt1InD = Bit(34), kEvt1RnW = Bit(35),
                          kEvt1S2 = Bit(39);
inline constexpr int kEvt1ClassShift = 40;
inline constexpr uint32_t kEvtClassCd = 0, kEvtClassTt = 1, kEvtClassIn = 2;

// PRI queue entries (§8.1), 16 bytes.
inline constexpr uint64_t kPriqEntrySize = 16;
inline constexpr uint64_t kPriq0Priv = Bit(58), kPriq0Exec = Bit(59), kPriq0Read = Bit(60), kPriq0Write = Bit(61),
                          kPriq0Last = Bit(62), kPriq0SsidV = Bit(63);

// OAS/IPS/PS encodings (§6.3.6 IDR5.OAS): 0..5 = 32, 36, 40, 42, 44, 48 bits (52 not modelled).
constexpr int AddressSizeBits(uint32_t encoding) {
  constexpr int kBits[] = {32, 36, 40, 42, 44, 48, 52};
  return encoding < 7 ? kBits[encoding] : -1;
}
constexpr uint32_t AddressSizeEncoding(int bits) {
  return bits <= 32 ? 0 : bits <= 36 ? 1 : bits <= 40 ? 2 : bits <= 42 ? 3 : bits <= 44 ? 4 : 5;
}

}  // namespace ionest::smmuv3
