// Machine-level fault reporting: every malformed or missing table entry, reserved bit and denied
// access ends the device's DMA with a fault and leaves the architected fault reason (VT-d
// Appendix A) in a fault recording register, with the fault event MSI — never a crash. Also FPD,
// FECTL masking and fault-record overflow (§7.3).
#include <functional>
#include <memory>
#include <string>

#include "absl/strings/str_format.h"
#include "gtest/gtest.h"
#include "iommu/first_stage.h"
#include "iommu/second_stage.h"
#include "iommu/vtd/fault_reasons.h"
#include "iommu/vtd/registers.h"
#include "tests/machine/machine_fixture.h"

namespace ionest::machine_test {
namespace {

using namespace dmatest;
using namespace vtd;
using iommu_testing::FirstStageTableBuilder;
using iommu_testing::SecondStageTableBuilder;
using vtd::testing::LegacyContextSpec;
using vtd::testing::PasidEntrySpec;
using vtd::testing::ScalableContextSpec;

constexpr uint64_t kIova = 0x100000;
constexpr uint64_t kBuf = TestMachine::kDataBase;
constexpr uint32_t kFaultData = 0x4a;

class FaultTest : public ::testing::Test {
 protected:
  void Boot(const std::string& profile, bool scalable) {
    MachineOptions o;
    o.profile = profile;
    auto m = TestMachine::Create(o);
    ASSERT_TRUE(m.ok()) << m.status();
    m_ = *std::move(m);
    BootOptions b;
    b.scalable = scalable;
    b.fault_msi_data = kFaultData;
    ASSERT_TRUE(m_->driver().Boot(b).ok());
    m_->EnableBusMaster();
    m_->cpu().Take();
  }
  size_t FaultMsis() {
    size_t n = 0;
    for (const MsiMessage& msi : m_->cpu().Take()) n += msi.data == kFaultData && msi.address == 0xfee00000;
    return n;
  }
  // Runs a DMA (read of kIova unless told otherwise) that must fault with `reason`.
  void ExpectFault(const std::string& what, uint8_t reason, uint32_t op = kOpRead, uint64_t iova = kIova,
                   uint64_t ctrl = 0, std::optional<uint32_t> pasid = {}, bool write = false,
                   uint64_t pasid_flags = 0) {
    SCOPED_TRACE(what);
    TestMachine::JobResult r = m_->RunJob(op, iova, iova, 64, ctrl | kCtrlNoPri, pasid, pasid_flags);
    EXPECT_EQ(r.error, kErrTranslation) << "job error";
    EXPECT_EQ(r.fault_info & 0xff, reason) << "reason the device saw";
    std::vector<FaultRecord> f = m_->driver().ReadAndClearFaults();
    ASSERT_EQ(f.size(), 1u);
    EXPECT_EQ(f[0].reason, reason) << absl::StrFormat("FRCD.FR %#x, want %#x", f[0].reason, reason);
    EXPECT_EQ(f[0].sid, m_->rid());
    EXPECT_EQ(f[0].addr, iova & ~0xfffull);
    EXPECT_EQ(f[0].write, write);
    EXPECT_EQ(f[0].pasid, pasid);
    EXPECT_EQ(f[0].exec, (pasid_flags & kPasidExec) != 0);
    EXPECT_EQ(f[0].priv, (pasid_flags & kPasidPriv) != 0);
    EXPECT_EQ(FaultMsis(), 1u) << "fault event interrupt";
    EXPECT_EQ(m_->driver().Read32(kFstsReg) & (kFstsPpf | kFstsPfo), 0u);
  }
  std::unique_ptr<TestMachine> m_;
};

// ---- Scalable mode -------------------------------------------------------------------------

class ScalableFaultTest : public FaultTest {
 protected:
  void SetUp() override {
    Boot("", true);
    auto fl = FirstStageTableBuilder::Create(m_->memory(), m_->alloc(), 4);
    ASSERT_TRUE(fl.ok());
    fl_.emplace(*std::move(fl));
    ASSERT_TRUE(fl_->Map(kIova, kBuf, 0x1000, kDmaRead, kPage4K, fs::kA).ok());
    pe_.pgtt = 1;
    pe_.did = 2;
    pe_.flptptr = fl_->root();
  }
  void Attach(ScalableContextSpec ctx = {false, true, false}) {
    ASSERT_TRUE(m_->driver().AttachScalable(m_->rid(), ctx).ok());
    ASSERT_TRUE(m_->driver().SetPasid(m_->rid(), 0, pe_, false).ok());
    ASSERT_TRUE(m_->driver().EnableTranslation().ok());
  }
  uint64_t ContextAddr() { return *m_->driver().tables().ContextEntryAddress(m_->rid()); }
  uint64_t PasidAddr(uint32_t pasid = 0) { return *m_->driver().tables().PasidEntryAddress(m_->rid(), pasid); }
  void Or64(uint64_t gpa, uint64_t bits) {
    uint64_t v = *m_->memory().ReadObj<uint64_t>(gpa);
    ASSERT_TRUE(m_->memory().WriteObj<uint64_t>(gpa, v | bits).ok());
  }
  // Guest changed an entry: the invalidations Linux would issue.
  void Flush() { ASSERT_TRUE(m_->driver().Invalidate({testing::CcGlobal(), testing::PasidCacheInv(3, 0, 0), testing::IotlbGlobal()}).ok()); }

  std::optional<FirstStageTableBuilder> fl_;
  PasidEntrySpec pe_;
};

TEST_F(ScalableFaultTest, ValidSetupDoesNotFault) {
  Attach();
  EXPECT_TRUE(m_->RunJob(kOpRead, kIova, 0, 64).done());
  EXPECT_TRUE(m_->driver().ReadAndClearFaults().empty());
  EXPECT_EQ(FaultMsis(), 0u);
}

TEST_F(ScalableFaultTest, RootEntryNotPresent) {
  ASSERT_TRUE(m_->driver().EnableTranslation().ok());
  ExpectFault("root", kSmRootNotPresent);
}

TEST_F(ScalableFaultTest, ContextEntryNotPresent) {
  Attach();
  ASSERT_TRUE(m_->driver().tables().ClearContext(m_->rid()).ok());
  Flush();
  ExpectFault("context P=0", kSmContextNotPresent);
}

TEST_F(ScalableFaultTest, ContextEntryReservedBit) {
  Attach();
  Or64(ContextAddr() + 24, 1ull << 63);
  Flush();
  ExpectFault("context reserved", kSmContextReserved);
}

TEST_F(ScalableFaultTest, PasidDirectoryEntryNotPresent) {
  Attach();
  ASSERT_TRUE(m_->memory().WriteObj<uint64_t>(*m_->driver().tables().PasidDirectory(m_->rid()), 0).ok());
  Flush();
  ExpectFault("PASID dir P=0", kSmPasidDirNotPresent);
}

TEST_F(ScalableFaultTest, PasidEntryNotPresent) {
  Attach();
  ASSERT_TRUE(m_->driver().TearDownPasid(m_->rid(), 0, pe_.did, false).ok());
  ExpectFault("PASID entry P=0", kSmPasidEntryNotPresent);
}

TEST_F(ScalableFaultTest, PasidEntryReservedBit) {
  Attach();
  Or64(PasidAddr() + 5 * 8, 1);  // qword 5 is reserved
  Flush();
  ExpectFault("PASID entry reserved", kSmPasidEntryReserved);
}

TEST_F(ScalableFaultTest, PasidEntryInvalidPgtt) {
  pe_.pgtt = 5;  // reserved PGTT value
  Attach();
  ExpectFault("PGTT 5", kSmPasidEntryInvalid);
}

TEST_F(ScalableFaultTest, FirstStageNotPresent) {
  Attach();
  ExpectFault("FL P=0", kSmFlNotPresent, kOpRead, kIova + 0x200000);
}

TEST_F(ScalableFaultTest, FirstStageReservedBit) {
  Attach();
  ASSERT_TRUE(fl_->SetEntryBits(kIova, 4, fs::kPS).ok());  // PS is reserved in a PML4E
  Flush();
  ExpectFault("FL PML4E.PS", kSmFlReserved);
}

TEST_F(ScalableFaultTest, FirstStageWriteToReadOnly) {
  Attach();
  ExpectFault("FL write", kSmWriteDenied, kOpFill, kIova, 0, std::nullopt, true);
}

TEST_F(ScalableFaultTest, FirstStageNonCanonical) {
  Attach();
  ExpectFault("non-canonical", kSmNonCanonical, kOpRead, 0x0000800000000000ull);
}

TEST_F(ScalableFaultTest, PasidRequestWithPasidDisabled) {
  Attach({false, false, false});
  m_->EnablePasid();
  ExpectFault("PASIDE=0", kSmPasidDisabled, kOpRead, kIova, 0, 7u);
}

TEST_F(ScalableFaultTest, TranslationRequestWithDteClear) {
  Attach();
  m_->EnableAts();
  TestMachine::JobResult r = m_->RunJob(kOpRead, kIova, 0, 64, kCtrlUseAts | kCtrlNoPri);
  EXPECT_NE(r.error, kErrNone);
  std::vector<FaultRecord> f = m_->driver().ReadAndClearFaults();
  ASSERT_EQ(f.size(), 1u);
  EXPECT_EQ(f[0].reason, kSmDteClear);
  EXPECT_EQ(f[0].at, 1) << "AT = translation request";
}

TEST_F(ScalableFaultTest, SecondStageReservedBitAndBeyondWidth) {
  auto sl = SecondStageTableBuilder::Create(m_->memory(), m_->alloc(), 4);
  ASSERT_TRUE(sl.ok());
  ASSERT_TRUE(sl->Map(kIova, kBuf, 0x1000, kDmaRead).ok());
  pe_.pgtt = 2;
  pe_.slptptr = sl->root();
  pe_.aw = 2;
  Attach();
  ExpectFault("SL beyond AW", kSmSlBeyondMax, kOpRead, 1ull << 50);
  ASSERT_TRUE(sl->SetEntryBits(kIova, 4, ss::kPS).ok());  // PS is reserved in an SL-PML4E (§9.8)
  Flush();
  ExpectFault("SL reserved", kSmSlReserved);
}

TEST_F(ScalableFaultTest, PrivilegedRequests) {
  // A supervisor-only page for PASID 4 (U/S=0): privileged requests need SRE=1 (§9.6, §3.6.2).
  auto fl = FirstStageTableBuilder::Create(m_->memory(), m_->alloc(), 4);
  ASSERT_TRUE(fl.ok());
  ASSERT_TRUE(fl->Map(kIova, kBuf, 0x1000, kDmaRead | kDmaPriv, kPage4K, fs::kA).ok());
  Attach();
  PasidEntrySpec pe = pe_;
  pe.flptptr = fl->root();
  pe.did = 4;
  ASSERT_TRUE(m_->driver().SetPasid(m_->rid(), 4, pe, false).ok());
  m_->EnablePasid(/*exec=*/false, /*priv=*/true);
  TestMachine::JobResult r = m_->RunJob(kOpRead, kIova, 0, 64, kCtrlNoPri, 4u, kPasidPriv);
  EXPECT_EQ(r.error, kErrTranslation) << "SRE=0";
  std::vector<FaultRecord> f = m_->driver().ReadAndClearFaults();
  ASSERT_EQ(f.size(), 1u);
  EXPECT_EQ(f[0].reason, kSmSreClear);
  EXPECT_TRUE(f[0].priv);
  pe.sre = true;
  ASSERT_TRUE(m_->driver().SetPasid(m_->rid(), 4, pe, false).ok());
  EXPECT_TRUE(m_->RunJob(kOpRead, kIova, 0, 64, kCtrlNoPri, 4u, kPasidPriv).done());
}

// A user-mode request to a supervisor-only first-stage page is a privilege violation: 81h
// (Appendix A; QEMU's VTD_FR_FS_PAGING_ENTRY_US agrees), not 86h (read denied).
TEST_F(ScalableFaultTest, UserRequestToSupervisorPage) {
  auto fl = FirstStageTableBuilder::Create(m_->memory(), m_->alloc(), 4);
  ASSERT_TRUE(fl.ok());
  ASSERT_TRUE(fl->Map(kIova, kBuf, 0x1000, kDmaRead | kDmaPriv, kPage4K, fs::kA).ok());
  Attach();
  PasidEntrySpec pe = pe_;
  pe.flptptr = fl->root();
  pe.did = 4;
  pe.sre = true;
  ASSERT_TRUE(m_->driver().SetPasid(m_->rid(), 4, pe, false).ok());
  m_->EnablePasid();
  ExpectFault("user access to a supervisor page", kSmUserDenied, kOpRead, kIova, 0, 4u);
}

// Table pointers outside guest RAM: the access error reasons, never a host crash.
constexpr uint64_t kNotRam = 0x4000000000ull;  // 256 GiB: no memory there

void SetRootTable(LinuxVtdDriver& d, uint64_t rtaddr) {
  d.Write64(kRtaddrReg, rtaddr);
  d.Write32(kGcmdReg, (d.Read32(kGstsReg) & (kGcmdTe | kGcmdQie | kGcmdIre | kGcmdCfi)) | kGcmdSrtp);
}

TEST_F(ScalableFaultTest, TableAccessErrors) {
  Attach();
  // PASID table pointer (directory entry) outside RAM.
  const uint64_t dir = *m_->driver().tables().PasidDirectory(m_->rid());
  const uint64_t dir_entry = *m_->memory().ReadObj<uint64_t>(dir);
  ASSERT_TRUE(m_->memory().WriteObj<uint64_t>(dir, kNotRam | 1).ok());
  Flush();
  ExpectFault("PASID table access", kSmPasidEntryAccess);
  ASSERT_TRUE(m_->memory().WriteObj<uint64_t>(dir, dir_entry).ok());
  // First-stage table pointer outside RAM.
  pe_.flptptr = kNotRam;
  ASSERT_TRUE(m_->driver().SetPasid(m_->rid(), 0, pe_, false).ok());
  ExpectFault("FL table access", kSmFlAccess);
  // PASID directory pointer outside RAM.
  const uint64_t ctx = ContextAddr();
  const uint64_t lo = *m_->memory().ReadObj<uint64_t>(ctx);
  ASSERT_TRUE(m_->memory().WriteObj<uint64_t>(ctx, (lo & 0xfff) | kNotRam).ok());
  Flush();
  ExpectFault("PASID dir access", kSmPasidDirAccess);
  // Context table pointer (root entry) outside RAM.
  const uint64_t root = m_->driver().tables().rtaddr() & ~0xfffull;
  ASSERT_TRUE(m_->memory().WriteObj<uint64_t>(root, kNotRam | 1).ok());
  Flush();
  ExpectFault("context access", kSmContextAccess);
  // Root table outside RAM.
  SetRootTable(m_->driver(), kNotRam | (1u << 10));
  Flush();
  ExpectFault("root access", kSmRootAccess);
}

TEST_F(ScalableFaultTest, ExecuteRequests) {
  // PASID 6: one executable page, one XD page (first-stage XD, §9.7).
  auto fl = FirstStageTableBuilder::Create(m_->memory(), m_->alloc(), 4);
  ASSERT_TRUE(fl.ok());
  ASSERT_TRUE(fl->Map(kIova, kBuf, 0x1000, kDmaRead | kDmaExec, kPage4K, fs::kA).ok());
  ASSERT_TRUE(fl->Map(kIova + 0x1000, kBuf, 0x1000, kDmaRead, kPage4K, fs::kA).ok());
  Attach();
  PasidEntrySpec pe = pe_;
  pe.flptptr = fl->root();
  pe.did = 6;
  ASSERT_TRUE(m_->driver().SetPasid(m_->rid(), 6, pe, false).ok());
  m_->EnablePasid(/*exec=*/true, /*priv=*/false);
  EXPECT_TRUE(m_->RunJob(kOpRead, kIova + 0x1000, 0, 64, kCtrlNoPri, 6u).done()) << "plain read of an XD page";
  // The XD page never allows execute; the executable page does only if ECAP.ERS (bit 30) is set.
  ExpectFault("execute of an XD page", kSmExecDenied, kOpRead, kIova + 0x1000, 0, 6u, false, kPasidExec);
  const bool ers = (m_->driver().ecap() >> 30) & 1;
  if (ers) {
    EXPECT_TRUE(m_->RunJob(kOpRead, kIova, 0, 64, kCtrlNoPri, 6u, kPasidExec).done());
  } else {
    ExpectFault("execute without ECAP.ERS", kSmExecDenied, kOpRead, kIova, 0, 6u, false, kPasidExec);
  }
}

TEST_F(FaultTest, FiftySevenBitWidthChecks) {
  Boot("aw=57", true);
  auto fl5 = FirstStageTableBuilder::Create(m_->memory(), m_->alloc(), 5);
  auto fl4 = FirstStageTableBuilder::Create(m_->memory(), m_->alloc(), 4);
  ASSERT_TRUE(fl5.ok() && fl4.ok());
  const uint64_t high = 0x00ff000000000000ull;  // needs 5-level paging
  ASSERT_TRUE(fl5->Map(high, kBuf, 0x1000, kDmaRead, kPage4K, fs::kA).ok());
  ASSERT_TRUE(m_->driver().AttachScalable(m_->rid(), {false, true, false}).ok());
  PasidEntrySpec pe;
  pe.pgtt = 1;
  pe.did = 2;
  pe.flptptr = fl5->root();
  pe.flpm = 1;
  ASSERT_TRUE(m_->driver().SetPasid(m_->rid(), 0, pe, false).ok());
  pe.did = 3;
  pe.flptptr = fl4->root();
  pe.flpm = 0;
  ASSERT_TRUE(m_->driver().SetPasid(m_->rid(), 1, pe, false).ok());
  ASSERT_TRUE(m_->driver().EnableTranslation().ok());
  m_->EnablePasid();
  EXPECT_TRUE(m_->RunJob(kOpRead, high, 0, 64).done());
  ExpectFault("bit 56 set, 63:57 clear", kSmNonCanonical, kOpRead, 0x0100000000000000ull);
  ExpectFault("4-level table: bit 47 set", kSmNonCanonical, kOpRead, 0x0000800000000000ull, 0, 1u);
}

TEST_F(ScalableFaultTest, FaultProcessingDisableSuppressesRecording) {
  pe_.fpd = true;
  Attach();
  TestMachine::JobResult r = m_->RunJob(kOpRead, kIova + 0x200000, 0, 64, kCtrlNoPri);
  EXPECT_EQ(r.error, kErrTranslation) << "the DMA still fails";
  EXPECT_TRUE(m_->driver().ReadAndClearFaults().empty());
  EXPECT_EQ(FaultMsis(), 0u);
}

TEST_F(ScalableFaultTest, MaskedFaultEventIsPendingUntilUnmasked) {
  Attach();
  m_->driver().Write32(kFectlReg, kEctlIm);
  m_->RunJob(kOpRead, kIova + 0x200000, 0, 64, kCtrlNoPri);
  EXPECT_EQ(FaultMsis(), 0u);
  EXPECT_TRUE(m_->driver().Read32(kFectlReg) & kEctlIp);
  m_->driver().Write32(kFectlReg, 0);
  EXPECT_EQ(FaultMsis(), 1u);
  EXPECT_EQ(m_->driver().ReadAndClearFaults().size(), 1u);
}

TEST_F(ScalableFaultTest, FaultRecordOverflowSetsPfo) {
  Attach();
  const uint32_t nfr = static_cast<uint32_t>((m_->driver().cap() >> 40) & 0xff) + 1;
  for (uint32_t i = 0; i < nfr + 2; ++i) m_->RunJob(kOpRead, kIova + 0x200000 + i * 0x1000, 0, 8, kCtrlNoPri);
  EXPECT_TRUE(m_->driver().Read32(kFstsReg) & kFstsPfo);
  std::vector<FaultRecord> f = m_->driver().ReadAndClearFaults();
  EXPECT_EQ(f.size(), nfr);
  EXPECT_EQ(f[0].addr, kIova + 0x200000);
  EXPECT_EQ(m_->driver().Read32(kFstsReg) & (kFstsPfo | kFstsPpf), 0u);
  // Recording resumes after software cleared the records.
  m_->RunJob(kOpRead, kIova + 0x900000, 0, 8, kCtrlNoPri);
  f = m_->driver().ReadAndClearFaults();
  ASSERT_EQ(f.size(), 1u);
  EXPECT_EQ(f[0].addr, kIova + 0x900000);
}

// ---- Legacy mode ---------------------------------------------------------------------------

class LegacyFaultTest : public FaultTest {
 protected:
  void SetUp() override {
    Boot("sm=off", false);
    auto sl = SecondStageTableBuilder::Create(m_->memory(), m_->alloc(), 4);
    ASSERT_TRUE(sl.ok());
    sl_.emplace(*std::move(sl));
    ASSERT_TRUE(sl_->Map(kIova, kBuf, 0x1000, kDmaRead).ok());
    ASSERT_TRUE(sl_->Map(kIova + 0x1000, kBuf, 0x1000, kDmaWrite).ok());
  }
  void Attach(uint8_t tt = 0) {
    ASSERT_TRUE(m_->driver().AttachLegacy(m_->rid(), {tt, 2, 3, sl_->root()}).ok());
    ASSERT_TRUE(m_->driver().EnableTranslation().ok());
  }
  void Corrupt(uint64_t gpa, uint64_t bits) {
    uint64_t v = *m_->memory().ReadObj<uint64_t>(gpa);
    ASSERT_TRUE(m_->memory().WriteObj<uint64_t>(gpa, v | bits).ok());
    ASSERT_TRUE(m_->driver().Invalidate({testing::CcGlobal(), testing::IotlbGlobal()}).ok());
  }
  uint64_t ContextAddr() { return *m_->driver().tables().ContextEntryAddress(m_->rid()); }
  std::optional<SecondStageTableBuilder> sl_;
};

TEST_F(LegacyFaultTest, RootNotPresent) {
  ASSERT_TRUE(m_->driver().EnableTranslation().ok());
  ExpectFault("root", kFrRootNotPresent);
}

TEST_F(LegacyFaultTest, ContextNotPresent) {
  Attach();
  ASSERT_TRUE(m_->driver().tables().ClearContext(m_->rid()).ok());
  ASSERT_TRUE(m_->driver().Invalidate({testing::CcGlobal(), testing::IotlbGlobal()}).ok());
  ExpectFault("context", kFrContextNotPresent);
}

TEST_F(LegacyFaultTest, ContextInvalidTranslationType) {
  Attach(3);
  ExpectFault("TT=3", kFrContextInvalid);
}

TEST_F(LegacyFaultTest, ContextReservedBit) {
  Attach();
  Corrupt(ContextAddr() + 8, 1ull << 40);
  ExpectFault("context reserved", kFrContextReserved);
}

TEST_F(LegacyFaultTest, RootReservedBit) {
  Attach();
  const uint64_t root = m_->driver().tables().rtaddr() & ~0xfffull;
  Corrupt(root + (m_->rid() >> 8) * 16, 1ull << 4);
  ExpectFault("root reserved", kFrRootReserved);
}

TEST_F(LegacyFaultTest, SecondStageReservedBit) {
  Attach();
  ASSERT_TRUE(sl_->SetEntryBits(kIova, 4, 1ull << 7).ok());  // PS reserved in SL-PML4E
  ASSERT_TRUE(m_->driver().Invalidate({testing::IotlbGlobal()}).ok());
  ExpectFault("SL reserved", kFrPteReserved);
}

TEST_F(LegacyFaultTest, AddressBeyondAgaw) {
  Attach();
  ExpectFault("beyond AGAW", kFrAddressBeyondAw, kOpRead, 1ull << 50);
}

TEST_F(LegacyFaultTest, WriteAndReadDenied) {
  Attach();
  ExpectFault("write to RO", kFrWriteDenied, kOpFill, kIova, 0, std::nullopt, true);
  ExpectFault("read of WO", kFrReadDenied, kOpRead, kIova + 0x1000);
  ExpectFault("not present", kFrReadDenied, kOpRead, kIova + 0x5000);
}

TEST_F(LegacyFaultTest, TranslationRequestBlockedByTt0) {
  Attach(0);
  m_->EnableAts();
  TestMachine::JobResult r = m_->RunJob(kOpRead, kIova, 0, 64, kCtrlUseAts | kCtrlNoPri);
  EXPECT_NE(r.error, kErrNone);
  std::vector<FaultRecord> f = m_->driver().ReadAndClearFaults();
  ASSERT_EQ(f.size(), 1u);
  EXPECT_EQ(f[0].reason, kFrTranslationBlocked);
}

TEST_F(LegacyFaultTest, TableAccessErrors) {
  ASSERT_TRUE(m_->driver().AttachLegacy(m_->rid(), {0, 2, 3, kNotRam}).ok());
  ASSERT_TRUE(m_->driver().EnableTranslation().ok());
  ExpectFault("SL table access", kFrSlPtrError);
  const uint64_t root = m_->driver().tables().rtaddr() & ~0xfffull;
  ASSERT_TRUE(m_->memory().WriteObj<uint64_t>(root, kNotRam | 1).ok());
  ASSERT_TRUE(m_->driver().Invalidate({testing::CcGlobal(), testing::IotlbGlobal()}).ok());
  ExpectFault("context access", kFrContextAccess);
  SetRootTable(m_->driver(), kNotRam);
  ASSERT_TRUE(m_->driver().Invalidate({testing::CcGlobal(), testing::IotlbGlobal()}).ok());
  ExpectFault("root access", kFrRootAccess);
}

TEST_F(LegacyFaultTest, PasidRequestInLegacyMode) {
  Attach();
  m_->EnablePasid();
  TestMachine::JobResult r = m_->RunJob(kOpRead, kIova, 0, 64, kCtrlNoPri, 3u);
  EXPECT_EQ(r.error, kErrTranslation);
  std::vector<FaultRecord> f = m_->driver().ReadAndClearFaults();
  ASSERT_EQ(f.size(), 1u);
  EXPECT_EQ(f[0].reason, kSmTtmLegacyWithPasid);
}

}  // namespace
}  // namespace ionest::machine_test
