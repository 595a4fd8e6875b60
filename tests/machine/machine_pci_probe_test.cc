// What Linux's PCI core sees of ionest-dmatest through ECAM (drivers/pci/probe.c, ats.c): IDs,
// the capability lists walked like pci_find_capability / pci_find_ext_capability, and the checks
// pci_enable_pasid / pci_enable_ats / pci_enable_pri make before enabling.
#include <cstring>
#include <memory>
#include <optional>
#include <vector>

#include "devices/pci_layout.h"
#include "devices/pci_regs.h"
#include "gtest/gtest.h"
#include "tests/machine/machine_fixture.h"

namespace ionest::machine_test {
namespace {

using namespace dmatest;

class PciProbeTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto m = TestMachine::Create({});
    ASSERT_TRUE(m.ok()) << m.status();
    m_ = *std::move(m);
  }
  uint32_t Ecam(uint16_t reg, size_t size = 4) {
    uint8_t b[4] = {};
    m_->mmio().Read(pci_layout::kEcamBase + (uint64_t{m_->rid()} << 12) + reg, b, size);
    uint32_t v = 0;
    std::memcpy(&v, b, size);
    return v;
  }
  void EcamWrite16(uint16_t reg, uint16_t v) {
    uint8_t b[2];
    std::memcpy(b, &v, 2);
    m_->mmio().Write(pci_layout::kEcamBase + (uint64_t{m_->rid()} << 12) + reg, b, 2);
  }
  // pci_find_capability: bounded walk from 0x34.
  uint16_t FindCap(uint8_t id) {
    uint8_t pos = Ecam(pci::kCapabilitiesPointer, 1) & ~3u;
    for (int ttl = 48; pos >= 0x40 && ttl > 0; --ttl) {
      if ((Ecam(pos, 1)) == id) return pos;
      pos = Ecam(pos + 1, 1) & ~3u;
    }
    return 0;
  }
  // pci_find_ext_capability: bounded walk from 0x100.
  uint16_t FindExtCap(uint16_t id) {
    uint16_t pos = 0x100;
    for (int ttl = (4096 - 256) / 8; ttl > 0 && pos >= 0x100; --ttl) {
      const uint32_t h = Ecam(pos);
      if (h == 0) return 0;
      if ((h & 0xffff) == id) return pos;
      pos = (h >> 20) & 0xffc;
    }
    return 0;
  }
  std::unique_ptr<TestMachine> m_;
};

TEST_F(PciProbeTest, IdentityAndBars) {
  EXPECT_EQ(Ecam(pci::kVendorId, 2), kVendorId);
  EXPECT_EQ(Ecam(pci::kDeviceId, 2), kDeviceId);
  EXPECT_EQ(Ecam(pci::kRevisionId) >> 8, kClassCode);
  EXPECT_EQ(Ecam(pci::kHeaderType, 1) & 0x7f, 0u);
  EXPECT_EQ(Ecam(pci::kBar0) & 0x7, pci::kBarMem64) << "BAR0: 64-bit memory";
  EXPECT_EQ(Ecam(pci::kBar0 + 8) & 0x7, pci::kBarMem64) << "BAR2: 64-bit memory (MSI-X)";
  EXPECT_TRUE(Ecam(pci::kStatus, 2) & pci::kStatusCapList);
  // BARs were assigned by the host and decode: the ID register answers at BAR0.
  EXPECT_EQ(m_->DevRead(kRegId), kIdValue);
}

TEST_F(PciProbeTest, CapabilitiesAsLinuxFindsThem) {
  const uint16_t exp = FindCap(pci::kCapIdPcie);
  ASSERT_NE(exp, 0);
  // pci_configure_eetlp_prefix: RC-integrated endpoint with DEVCAP2.EE_PREFIX → eetlp_prefix_path.
  EXPECT_EQ((Ecam(exp + 2, 2) >> 4) & 0xf, 0x9u);
  EXPECT_TRUE(Ecam(exp + 0x24) & (1u << 21));
  EXPECT_NE(FindCap(pci::kCapIdMsix), 0);
  const uint16_t ats = FindExtCap(pci::kExtCapIdAts);
  const uint16_t pasid = FindExtCap(pci::kExtCapIdPasid);
  const uint16_t pri = FindExtCap(pci::kExtCapIdPri);
  ASSERT_NE(ats, 0);
  ASSERT_NE(pasid, 0);
  ASSERT_NE(pri, 0);
  EXPECT_TRUE(Ecam(ats + 4, 2) & (1u << 5)) << "pci_ats_page_aligned";
  EXPECT_EQ((Ecam(pasid + 4, 2) >> 8) & 0x1f, 20u) << "pci_max_pasids";
  // pci_enable_pri (ats.c): Stopped must be set while disabled; PRG Response PASID Required.
  const uint16_t status = Ecam(pri + 6, 2);
  EXPECT_TRUE(status & (1u << 8));
  EXPECT_TRUE(status & (1u << 15));
  EXPECT_GE(Ecam(pri + 8), 1u) << "outstanding request capacity";
  // Enable PASID, then ATS, then PRI as Linux does, all through ECAM.
  EcamWrite16(pasid + 6, 1);
  EcamWrite16(ats + 6, 1u << 15);
  EcamWrite16(pri + 4, 1u << 1);  // reset
  m_->mmio().Write(pci_layout::kEcamBase + (uint64_t{m_->rid()} << 12) + pri + 0xc,
                   reinterpret_cast<const uint8_t*>("\x20\x00\x00\x00"), 4);
  EcamWrite16(pri + 4, 1);
  EXPECT_EQ(Ecam(pasid + 6, 2) & 1, 1u);
  EXPECT_EQ(Ecam(ats + 6, 2) >> 15, 1u);
  EXPECT_EQ(Ecam(pri + 4, 2), 1u);
  EXPECT_FALSE(Ecam(pri + 6, 2) & (1u << 8)) << "Stopped clears while enabled";
  EXPECT_EQ(Ecam(pri + 0xc), 0x20u);
}

TEST_F(PciProbeTest, FunctionLevelResetAsLinuxDoesIt) {
  // pcie_flr (drivers/pci/pci.c, 6.12): DEVCAP.FLR, DEVSTA.TransPend clear, DEVCTL |= BCR_FLR, then
  // poll config space until it does not read all-ones, then pci_restore_state.
  const uint16_t exp = FindCap(pci::kCapIdPcie);
  const uint16_t ats = FindExtCap(pci::kExtCapIdAts);
  ASSERT_NE(exp, 0);
  ASSERT_NE(ats, 0);
  EXPECT_TRUE(Ecam(exp + 0x04) & (1u << 28)) << "DEVCAP Function Level Reset Capability";
  EXPECT_EQ(Ecam(exp + 0x0a, 2) & (1u << 5), 0u) << "no transactions pending";
  const uint32_t saved[5] = {Ecam(pci::kBar0), Ecam(pci::kBar0 + 4), Ecam(pci::kBar0 + 8), Ecam(pci::kBar0 + 12),
                             Ecam(pci::kCommand, 2)};
  m_->EnableBusMaster();
  m_->EnableAts();
  m_->ProgramMsix(0, 0xfee00000, 0x31);
  m_->DevWrite(kRegPattern, 0x0102030405060708ull);
  ASSERT_TRUE(m_->RunJob(kOpFill, 0, TestMachine::kDataBase, 64).done());
  const std::optional<uint64_t> bar2 = m_->device().BarMappedAt(2);
  ASSERT_TRUE(bar2.has_value());

  EcamWrite16(exp + 0x08, static_cast<uint16_t>(Ecam(exp + 0x08, 2) | 1u << 15));

  EXPECT_NE(Ecam(pci::kCommand, 2), 0xffffu) << "the function answers right away";
  EXPECT_EQ(Ecam(exp + 0x08, 2) & (1u << 15), 0u);
  EXPECT_EQ(Ecam(pci::kCommand, 2), 0u);
  EXPECT_EQ(Ecam(pci::kBar0), pci::kBarMem64);
  EXPECT_EQ(Ecam(pci::kBar0 + 8), pci::kBarMem64);
  EXPECT_EQ(Ecam(ats + 6, 2), 0u);
  EXPECT_EQ(Ecam(m_->device().msix()->offset() + PciMsix::kControl, 2) & PciMsix::kControlEnable, 0u);
  EXPECT_FALSE(m_->device().BarMappedAt(0).has_value());
  EXPECT_EQ(m_->DevRead(kRegId), ~uint64_t{0}) << "BAR0 no longer decodes";

  // pci_restore_state: BARs and Command as saved; the device is back at its reset values.
  for (unsigned i = 0; i < 4; ++i) m_->ConfigWrite(static_cast<uint16_t>(pci::kBar0 + 4 * i), saved[i], 4);
  m_->ConfigWrite(pci::kCommand, saved[4], 2);
  m_->EnableBusMaster();
  EXPECT_EQ(m_->DevRead(kRegId), kIdValue);
  EXPECT_EQ(m_->DevRead(kRegPattern), 0u);
  EXPECT_EQ(m_->DevRead(kRegStatus), 0u);
  uint8_t entry[16];
  ASSERT_TRUE(m_->mmio().Read(*bar2, entry, 16));
  EXPECT_EQ(entry[8], 0u) << "MSI-X message data cleared";
  EXPECT_EQ(entry[12], PciMsix::kEntryVectorControlMasked);
  m_->DevWrite(kRegPattern, 0x1111111111111111ull);
  EXPECT_TRUE(m_->RunJob(kOpFill, 0, TestMachine::kDataBase + 0x1000, 8).done());
  EXPECT_EQ(m_->Bytes(TestMachine::kDataBase + 0x1000, 8), std::vector<uint8_t>(8, 0x11));
}

}  // namespace
}  // namespace ionest::machine_test
