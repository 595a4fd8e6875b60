// A small SMMUv3 driver that programs Smmuv3Iommu the way Linux's arm-smmu-v3 driver does
// (probe the IDRs, allocate the queues and a linear or 2-level stream table, reset and enable in
// the order arm_smmu_device_reset uses, CMD_SYNC with an MSI written back into the queue entry,
// CFGI/TLBI after table updates), plus builders for STEs, CDs and commands. Test, benchmark and
// fuzzer tooling: errors are absl::Status; not thread-safe.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "iommu/smmuv3/smmuv3_iommu.h"
#include "iommu/testing/recorders.h"
#include "iommu/testing/table_builder.h"
#include "iommu/testing/vmsa_builder.h"

namespace ionest::smmuv3::testing {

using Command = std::array<uint64_t, 2>;
using EventRecord = std::array<uint64_t, 4>;

// Command encoders (IHI0070 §4).
Command CmdCfgiSte(uint32_t sid);
Command CmdCfgiAll();
Command CmdCfgiCd(uint32_t sid, uint32_t ssid);
Command CmdCfgiCdAll(uint32_t sid);
Command CmdTlbiNhAll(uint16_t vmid);
Command CmdTlbiNhAsid(uint16_t vmid, uint16_t asid);
// tg = 0: one address; else a range of (num + 1) << scale granules (tg 1: 4 KiB, 2: 16 KiB, 3: 64 KiB).
Command CmdTlbiNhVa(uint16_t vmid, uint16_t asid, uint64_t va, uint32_t tg = 0, uint32_t num = 0, uint32_t scale = 0);
Command CmdTlbiS12Vmall(uint16_t vmid);
Command CmdTlbiS2Ipa(uint16_t vmid, uint64_t ipa);
Command CmdTlbiNsnhAll();
Command CmdSync(uint32_t cs, uint64_t msi_addr, uint32_t msi_data);
Command CmdPriResp(uint32_t sid, std::optional<uint32_t> ssid, uint16_t group, uint32_t resp);
Command CmdAtcInv(uint32_t sid, std::optional<uint32_t> ssid, uint64_t addr, uint32_t size_log2_pages);

// STE (§5.2) and CD (§5.4) encoders.
struct SteWords {
  uint64_t w[8] = {};
};
SteWords SteAbort();
SteWords SteBypass();
// Stage 1: CD table at cd_table (S1CDMax = cd_max bits, S1Fmt fmt, S1DSS dss).
SteWords SteStage1(uint64_t cd_table, uint32_t cd_max = 0, uint32_t fmt = kS1FmtLinear,
                   uint32_t dss = kS1DssSsid0, uint16_t vmid = 0);
// Stage 2 with a 4 KiB granule: 40-bit IPA from level 1 (2 concatenated tables), 48-bit PS.
SteWords SteStage2(uint64_t s2ttb, uint16_t vmid, int t0sz = 24, int sl0 = 1);
SteWords SteNested(uint64_t cd_table, uint64_t s2ttb, uint16_t vmid, uint32_t cd_max = 0,
                   uint32_t fmt = kS1FmtLinear);
struct CdWords {
  uint64_t w[8] = {};
};
// A Linux-like CD: TTB0 with T0SZ = 64 - ias, 4 KiB granule, EPD1, IPS 48 bits, AA64, R, A, ASET, ASID.
CdWords CdStage1(uint64_t ttb0, uint16_t asid, int ias = 48, bool hardware_af = false);

class Smmuv3Driver {
 public:
  struct Options {
    bool two_level_stream_table = true;
    int split = 8;          // 2-level: 256 STEs per level-2 table (one PCI bus), as Linux
    int strtab_log2 = 16;   // SIDSIZE used
    int cmdq_log2 = 8;
    int evtq_log2 = 7;
    int priq_log2 = 6;
    bool msi_sync = true;   // CMD_SYNC CS=SIG_IRQ writing 0 into its own queue entry (Linux with MSI+COHACC)
    uint64_t gerror_msi = 0x2004'0040;  // ITS-like doorbells (outside the tests' RAM)
    uint64_t evtq_msi = 0x2004'0040;
    uint64_t priq_msi = 0x2004'0040;
    uint32_t gerror_msi_data = 1, evtq_msi_data = 2, priq_msi_data = 3;
  };

  Smmuv3Driver(Smmuv3Iommu& smmu, PhysMemory& memory, iommu_testing::PageAllocator& alloc)
      : smmu_(smmu), memory_(memory), alloc_(alloc) {}

  // Reads IDR0/IDR1/IDR5 (arm_smmu_device_hw_probe) and checks what the driver needs.
  absl::Status Probe();
  // arm_smmu_device_reset: disable, tables and queues, CMDQEN, CFGI_ALL + TLBI_NSNH_ALL + SYNC,
  // EVTQ (+PRIQ), IRQs, SMMUEN. Each CR0 write waits for CR0ACK.
  absl::Status Init(const Options& options);
  absl::Status Init() { return Init(Options{}); }

  // Writes the STE of `sid` (allocating its level-2 table) and issues CFGI_STE + SYNC.
  absl::Status WriteSte(uint32_t sid, const SteWords& ste, bool invalidate = true);
  // STE address of `sid` (level-2 table allocated on demand).
  absl::StatusOr<uint64_t> SteAddress(uint32_t sid);

  // A linear CD table of 2^cd_max CDs, or a 2-level one (S1Fmt 64K L2: 1024 CDs per leaf); `ipa`
  // view lets nested tests put it in IPA space. Returns its (guest-physical or IPA) address.
  absl::StatusOr<uint64_t> AllocCdTable(uint32_t cd_max, uint32_t fmt = kS1FmtLinear);
  // Writes CD `ssid` of the table at `table` (2-level leaf allocated on demand).
  absl::Status WriteCd(uint64_t table, uint32_t cd_max, uint32_t fmt, uint32_t ssid, const CdWords& cd);

  // Appends commands and a CMD_SYNC (unless !sync), rings CMDQ_PROD, and waits (the model
  // completes synchronously) for CONS to reach PROD. A command error returns FailedPrecondition
  // with CMDQ_CONS.ERR and leaves the queue stopped (AckCommandError resumes it).
  absl::Status Submit(const std::vector<Command>& commands, bool sync = true);
  // Writes raw 16-byte entries and rings the doorbell (for hostile-input tests); no waiting.
  absl::Status SubmitRaw(const std::vector<Command>& commands);
  // GERRORN := GERROR (arm_smmu_gerror_handler); resumes the command queue.
  void AckGlobalErrors();
  // Skips the failing command the way Linux does (replaces it with CMD_SYNC) and acknowledges.
  absl::Status SkipFailedCommand();

  // Reads the new event records and advances EVTQ_CONS (arm_smmu_evtq_thread).
  std::vector<EventRecord> DrainEvents();
  // PRI queue entries (arm_smmu_priq_thread).
  std::vector<Command> DrainPageRequests();
  bool EventQueueOverflowed();  // EVTQ_PROD.OVFLG != EVTQ_CONS.OVACKFLG; acknowledges it

  uint32_t Read32(uint64_t offset) { return static_cast<uint32_t>(smmu_.MmioRead(offset, 4)); }
  void Write32(uint64_t offset, uint32_t v) { smmu_.MmioWrite(offset, v, 4); }
  uint64_t Read64(uint64_t offset) { return smmu_.MmioRead(offset, 8); }
  void Write64(uint64_t offset, uint64_t v) { smmu_.MmioWrite(offset, v, 8); }

  uint64_t cmdq_base() const { return cmdq_; }
  uint64_t evtq_base() const { return evtq_; }
  uint32_t idr0() const { return idr0_; }
  uint32_t idr1() const { return idr1_; }
  uint32_t idr5() const { return idr5_; }
  const Options& options() const { return options_; }

 private:
  absl::StatusOr<uint64_t> AllocContiguous(uint64_t bytes);
  absl::Status WriteCr0(uint32_t value);

  Smmuv3Iommu& smmu_;
  PhysMemory& memory_;
  iommu_testing::PageAllocator& alloc_;
  Options options_;
  uint32_t idr0_ = 0, idr1_ = 0, idr5_ = 0;
  uint64_t strtab_ = 0, cmdq_ = 0, evtq_ = 0, priq_ = 0;
  uint32_t cmdq_prod_ = 0;
  uint32_t evtq_cons_ = 0, priq_cons_ = 0;
  std::vector<uint64_t> l2_tables_;  // per level-1 index (0 = none)
};

}  // namespace ionest::smmuv3::testing
