#include "tests/machine/machine_fixture.h"

#include <cstring>

#include "absl/strings/str_format.h"
#include "devices/pci_regs.h"

namespace ionest::machine_test {

using namespace dmatest;

absl::StatusOr<std::unique_ptr<TestMachine>> TestMachine::Create(const MachineOptions& o) {
  absl::StatusOr<vtd::VtdProfile> profile = vtd::ParseVtdProfile(o.profile);
  if (!profile.ok()) return profile.status();
  std::unique_ptr<TestMachine> m(new TestMachine());
  absl::StatusOr<std::unique_ptr<GuestMemory>> mem = GuestMemory::Create({{0, kRamSize}});
  if (!mem.ok()) return mem.status();
  m->memory_ = *std::move(mem);
  m->alloc_ = std::make_unique<iommu_testing::PageAllocator>(*m->memory_, kTablePool, kRamSize - kTablePool);
  m->iommu_ = std::make_unique<vtd::VtdIommu>(*m->memory_, m->cpu_, *profile);
  if (absl::Status s = m->mmio_.Register(vtd::VtdIommu::kDefaultBase, m->iommu_->mmio_size(), m->iommu_.get(), "dmar");
      !s.ok())
    return s;
  // Devices' MSIs and DMA go through the IOMMU, as in the VMM.
  m->host_ = std::make_unique<PciHost>(m->mmio_, m->pio_, *m->iommu_, *m->iommu_);
  if (absl::Status s = m->host_->Register(); !s.ok()) return s;
  m->device_ = std::make_unique<DmaTestDevice>("ionest-dmatest", o.device);
  if (!m->device_->init_status().ok()) return m->device_->init_status();
  if (absl::Status s = m->host_->AddDevice(o.devfn, *m->device_); !s.ok()) return s;
  if (absl::Status s = m->host_->AssignResources(); !s.ok()) return s;
  m->rid_ = o.devfn;
  std::optional<uint64_t> bar0 = m->device_->BarMappedAt(0);
  if (!bar0) return absl::InternalError("BAR0 not mapped");
  m->bar0_ = *bar0;
  m->driver_ = std::make_unique<LinuxVtdDriver>(m->mmio_, vtd::VtdIommu::kDefaultBase, *m->memory_, *m->alloc_);
  return m;
}

TestMachine::~TestMachine() {
  // The device's worker may be waiting on a page response: stop it before the IOMMU goes away.
  device_.reset();
}

uint32_t TestMachine::ConfigRead(uint16_t reg, size_t size) {
  uint8_t b[4] = {};
  host_->ConfigRead(rid_, reg, b, size);
  uint32_t v = 0;
  std::memcpy(&v, b, size);
  return v;
}

void TestMachine::ConfigWrite(uint16_t reg, uint32_t value, size_t size) {
  uint8_t b[4];
  std::memcpy(b, &value, 4);
  host_->ConfigWrite(rid_, reg, b, size);
}

void TestMachine::EnableBusMaster() {
  ConfigWrite(pci::kCommand, ConfigRead(pci::kCommand, 2) | pci::kCommandBusMaster | pci::kCommandMemory, 2);
}

void TestMachine::EnablePasid(bool exec, bool priv) {
  const uint16_t off = device_->cap_offsets().pasid;
  ConfigWrite(off + pasid::kControl,
              pasid::kControlEnable | (exec ? pasid::kControlExec : 0) | (priv ? pasid::kControlPriv : 0), 2);
}

void TestMachine::EnableAts() {
  ConfigWrite(device_->cap_offsets().ats + ats::kControl, ats::kControlEnable, 2);  // STU 0 = 4 KiB
}

void TestMachine::EnablePri(uint32_t requests) {
  const uint16_t off = device_->cap_offsets().pri;
  ConfigWrite(off + pri::kControl, pri::kControlReset, 2);  // pci_reset_pri
  ConfigWrite(off + pri::kAllocation, requests, 4);
  ConfigWrite(off + pri::kControl, pri::kControlEnable, 2);
}

void TestMachine::ProgramMsix(unsigned v, uint64_t address, uint32_t data) {
  std::optional<uint64_t> bar2 = device_->BarMappedAt(2);
  if (!bar2) return;
  const uint32_t entry[4] = {static_cast<uint32_t>(address), static_cast<uint32_t>(address >> 32), data, 0};
  mmio_.Write(*bar2 + kMsixTableOffset + v * 16, reinterpret_cast<const uint8_t*>(entry), 16);
  ConfigWrite(device_->msix()->offset() + PciMsix::kControl, PciMsix::kControlEnable, 2);
}

uint64_t TestMachine::DevRead(uint32_t reg) {
  uint8_t b[8];
  mmio_.Read(bar0_ + reg, b, 8);
  uint64_t v;
  std::memcpy(&v, b, 8);
  return v;
}

void TestMachine::DevWrite(uint32_t reg, uint64_t value) {
  uint8_t b[8];
  std::memcpy(b, &value, 8);
  mmio_.Write(bar0_ + reg, b, 8);
}

void TestMachine::StartJob(uint32_t op, uint64_t src, uint64_t dst, uint64_t len, uint64_t ctrl,
                           std::optional<uint32_t> pasid, uint64_t pasid_flags) {
  DevWrite(kRegSrc, src);
  DevWrite(kRegDst, dst);
  DevWrite(kRegLen, len);
  DevWrite(kRegPasid, pasid ? (kPasidValid | *pasid | pasid_flags) : 0);
  DevWrite(kRegCtrl, op | ctrl);
  DevWrite(kRegDoorbell, kDoorbellStart);
}

TestMachine::JobResult TestMachine::WaitJob(absl::Duration timeout) {
  device_->WaitIdle(timeout);
  JobResult r;
  r.status = DevRead(kRegStatus);
  r.error = static_cast<uint8_t>(r.status >> kStatusErrorShift);
  r.fault_addr = DevRead(kRegFaultAddr);
  r.fault_info = DevRead(kRegFaultInfo);
  return r;
}

void TestMachine::Fill(uint64_t gpa, uint8_t value, size_t len) {
  std::vector<uint8_t> b(len, value);
  memory_->Write(gpa, b.data(), len).IgnoreError();
}

std::vector<uint8_t> TestMachine::Bytes(uint64_t gpa, size_t len) {
  std::vector<uint8_t> b(len);
  memory_->Read(gpa, b.data(), len).IgnoreError();
  return b;
}

}  // namespace ionest::machine_test
