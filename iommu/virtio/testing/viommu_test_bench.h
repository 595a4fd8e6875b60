// Test bench for the virtio-iommu device without a vCPU: fake guest RAM, the modern virtio-pci
// transport on an MMIO bus, and a driver that talks to it the way Linux's
// drivers/iommu/virtio-iommu.c does (feature negotiation, requestq chains of device-readable
// request + device-writable tail, eventq filled with 24-byte buffers). Test/fuzz/bench only.
#pragma once

#include <cstdint>
#include <cstring>
#include <memory>
#include <optional>
#include <vector>

#include "absl/status/statusor.h"
#include "devices/device_test_util.h"
#include "devices/io_bus.h"
#include "devices/pci_regs.h"
#include "devices/virtio_pci.h"
#include "devices/virtqueue_test_util.h"
#include "iommu/dma_space.h"
#include "iommu/virtio/virtio_iommu.h"
#include "vmm/guest_memory.h"

namespace ionest::viommu_testing {

class ViommuBench {
 public:
  static constexpr uint64_t kRam = 16ull << 20;
  static constexpr uint64_t kReqRing = 0x10000, kEvtRing = 0x18000;
  static constexpr uint64_t kReqBuf = 0x20000, kReqTail = 0x21000;  // readable part, writable part
  static constexpr uint64_t kEvtBuf = 0x30000;                      // 24-byte event buffers
  static constexpr uint16_t kReqQueueSize = 64, kEvtQueueSize = 16;
  static constexpr uint64_t kBar4 = 0x8000000000, kBar1 = 0xC0000000;
  static constexpr uint16_t kOwnRid = 0x0008;  // the virtio-iommu's own PCI function (00:01.0)
  // What Linux's driver accepts (virtio-iommu.c feature table) plus the transport bits.
  static constexpr uint64_t kLinuxFeatures =
      kVirtioFVersion1 | kVirtioFAccessPlatform | VirtioIommu::kFInputRange | VirtioIommu::kFDomainRange |
      VirtioIommu::kFMapUnmap | VirtioIommu::kFProbe | VirtioIommu::kFMmio | VirtioIommu::kFBypassConfig;

  static absl::StatusOr<std::unique_ptr<ViommuBench>> Create(VirtioIommu::Options options = {},
                                                             uint64_t ram = kRam) {
    auto b = std::unique_ptr<ViommuBench>(new ViommuBench());
    absl::StatusOr<std::unique_ptr<GuestMemory>> mem = GuestMemory::Create({{0, ram}});
    if (!mem.ok()) return mem.status();
    b->mem = std::move(*mem);
    b->own_dma = std::make_unique<IdentityDmaSpace>(*b->mem);  // the IOMMU's own DMA is untranslated
    absl::StatusOr<std::unique_ptr<VirtioIommu>> iommu = VirtioIommu::Create(*b->mem, std::move(options));
    if (!iommu.ok()) return iommu.status();
    b->iommu = std::move(*iommu);
    absl::StatusOr<std::unique_ptr<VirtioPciDevice>> pci =
        VirtioPciDevice::Create("virtio-iommu", *b->iommu, VirtioIommu::kPciClass, {});
    if (!pci.ok()) return pci.status();
    b->pci = std::move(*pci);
    b->pci->Attach(PciAttachment{kOwnRid, &b->msi, b->own_dma.get(), &b->mmio, &b->pio});
    VirtioPciDevice* p = b->pci.get();
    b->iommu->SetEventNotifier([p] { p->Kick(VirtioIommu::kEventQueue); });
    b->req = std::make_unique<testing::FakeDriverRing>(*b->mem, kReqRing, kReqQueueSize);
    b->evt = std::make_unique<testing::FakeDriverRing>(*b->mem, kEvtRing, kEvtQueueSize);
    b->EnablePci();
    return b;
  }

  // ---- transport access ----
  uint64_t Rd(uint64_t addr, size_t size) {
    uint8_t v[8] = {};
    mmio.Read(addr, v, size);
    uint64_t r = 0;
    for (size_t i = 0; i < size; ++i) r |= uint64_t{v[i]} << (8 * i);
    return r;
  }
  void Wr(uint64_t addr, uint64_t v, size_t size) {
    uint8_t b[8];
    for (size_t i = 0; i < size; ++i) b[i] = static_cast<uint8_t>(v >> (8 * i));
    mmio.Write(addr, b, size);
  }
  void Cfg32(uint32_t off, uint32_t v) {
    uint8_t b[4];
    std::memcpy(b, &v, 4);
    pci->ConfigWrite(off, b, 4);
  }
  uint32_t ReadCfg32(uint32_t off) {
    uint8_t b[4];
    pci->ConfigRead(off, b, 4);
    uint32_t v;
    std::memcpy(&v, b, 4);
    return v;
  }
  uint64_t DevCfg(uint64_t off, size_t size) { return Rd(kBar4 + VirtioPciDevice::kDeviceCfgOffset + off, size); }
  void WriteDevCfg(uint64_t off, uint64_t v, size_t size) { Wr(kBar4 + VirtioPciDevice::kDeviceCfgOffset + off, v, size); }
  uint8_t Status() { return static_cast<uint8_t>(Rd(kBar4 + 0x14, 1)); }
  uint64_t DeviceFeatures() {
    Wr(kBar4 + 0x00, 0, 4);
    uint64_t f = Rd(kBar4 + 0x04, 4);
    Wr(kBar4 + 0x00, 1, 4);
    return f | Rd(kBar4 + 0x04, 4) << 32;
  }

  void EnablePci() {
    Cfg32(pci::kBar0 + 4 * VirtioPciDevice::kMsixBar, static_cast<uint32_t>(kBar1));
    Cfg32(pci::kBar0 + 4 * VirtioPciDevice::kVirtioBar, static_cast<uint32_t>(kBar4));
    Cfg32(pci::kBar0 + 4 * VirtioPciDevice::kVirtioBar + 4, static_cast<uint32_t>(kBar4 >> 32));
    Cfg32(pci::kCommand, pci::kCommandMemory | pci::kCommandBusMaster);
    const uint16_t cap = pci->msix()->offset();
    Cfg32(cap, uint32_t{PciMsix::kControlEnable} << 16 | ReadCfg32(cap));
    for (unsigned v = 0; v < 3; ++v) {
      Wr(kBar1 + 16 * v, 0xFEE00000, 4);
      Wr(kBar1 + 16 * v + 8, 0x40 + v, 4);
      Wr(kBar1 + 16 * v + 12, 0, 4);
    }
  }

  // virtio 1.2 §3.1.1 as Linux's virtio core does it; with `features` (default: what Linux's
  // virtio-iommu driver accepts, intersected with the offer). Returns whether DRIVER_OK stuck.
  bool Start(std::optional<uint64_t> features = std::nullopt, bool fill_events = true) {
    Wr(kBar4 + 0x14, 0, 1);  // reset
    Wr(kBar4 + 0x14, VirtioPciDevice::kStatusAcknowledge | VirtioPciDevice::kStatusDriver, 1);
    const uint64_t f = features ? *features : (DeviceFeatures() & kLinuxFeatures);
    Wr(kBar4 + 0x08, 0, 4);
    Wr(kBar4 + 0x0C, static_cast<uint32_t>(f), 4);
    Wr(kBar4 + 0x08, 1, 4);
    Wr(kBar4 + 0x0C, static_cast<uint32_t>(f >> 32), 4);
    Wr(kBar4 + 0x14, 0x3 | VirtioPciDevice::kStatusFeaturesOk, 1);
    if (!(Status() & VirtioPciDevice::kStatusFeaturesOk)) return false;
    Wr(kBar4 + 0x10, 0, 2);  // config vector 0
    const std::vector<uint8_t> zero(kEvtRing - kReqRing + 0x2000, 0);  // fresh rings
    (void)mem->Write(kReqRing, zero.data(), zero.size());
    req = std::make_unique<testing::FakeDriverRing>(*mem, kReqRing, kReqQueueSize);
    evt = std::make_unique<testing::FakeDriverRing>(*mem, kEvtRing, kEvtQueueSize);
    SetupQueue(0, *req, 1);
    SetupQueue(1, *evt, 2);
    Wr(kBar4 + 0x14, 0xF, 1);  // DRIVER_OK
    req_desc_ = 0;
    evt_posted_ = evt_seen_ = req_seen_ = 0;
    // Linux fills the eventq after DRIVER_OK without notifying (viommu_fill_evtq).
    if (fill_events)
      for (uint16_t i = 0; i < kEvtQueueSize; ++i) PostEventBuffer(false);
    return Status() & VirtioPciDevice::kStatusDriverOk;
  }
  void SetupQueue(uint16_t q, testing::FakeDriverRing& ring, uint16_t vector) {
    Wr(kBar4 + 0x16, q, 2);
    Wr(kBar4 + 0x18, ring.layout().size, 2);
    Wr(kBar4 + 0x1A, vector, 2);
    Wr(kBar4 + 0x20, ring.layout().desc, 8);
    Wr(kBar4 + 0x28, ring.layout().avail, 8);
    Wr(kBar4 + 0x30, ring.layout().used, 8);
    Wr(kBar4 + 0x1C, 1, 2);
  }
  void NotifyQueue(uint16_t q) { Wr(kBar4 + VirtioPciDevice::kNotifyOffset + VirtioPciDevice::kNotifyMultiplier * q, q, 2); }

  // ---- requestq ----
  struct Result {
    bool used = false;     // the device returned the chain
    uint32_t used_len = 0;
    uint8_t status = 0xEE;  // tail status byte (0xEE: untouched)
  };
  // Any chain (hostile tests); the writable part's first 4 bytes (or `tail_at`) hold the tail.
  Result SendChain(const std::vector<testing::FakeDriverRing::Seg>& segs, uint64_t tail_addr) {
    (void)mem->WriteObj<uint32_t>(tail_addr, 0xEEEEEEEE);
    if (req_desc_ + segs.size() > kReqQueueSize) req_desc_ = 0;
    const uint16_t first = req_desc_;
    req_desc_ = static_cast<uint16_t>(req_desc_ + segs.size());
    req->AddChain(segs, first);
    NotifyQueue(0);
    Result r;
    if (req->UsedIdx() != static_cast<uint16_t>(req_seen_ + 1)) return r;
    auto [id, len] = req->UsedElem(req_seen_++);
    r.used = id == first;
    r.used_len = len;
    r.status = *mem->ReadObj<uint8_t>(tail_addr);
    return r;
  }
  // A well-formed request: `body` device-readable, `writable` bytes device-writable (tail last).
  Result Send(const std::vector<uint8_t>& body, uint32_t writable = 4) {
    (void)mem->Write(kReqBuf, body.data(), body.size());
    std::vector<uint8_t> zero(writable, 0xAA);
    (void)mem->Write(kReqTail, zero.data(), zero.size());
    return SendChain({{kReqBuf, static_cast<uint32_t>(body.size()), false}, {kReqTail, writable, true}},
                     kReqTail + writable - 4);
  }
  static std::vector<uint8_t> Head(uint8_t type, size_t size) {
    std::vector<uint8_t> b(size, 0);
    b[0] = type;
    return b;
  }
  template <typename T>
  static void Put(std::vector<uint8_t>& b, size_t off, T v) {
    std::memcpy(b.data() + off, &v, sizeof(T));
  }
  static std::vector<uint8_t> AttachReq(uint32_t domain, uint32_t ep, uint32_t flags = 0, uint32_t reserved = 0) {
    auto b = Head(VirtioIommu::kTAttach, VirtioIommu::kAttachSize);
    Put(b, 4, domain), Put(b, 8, ep), Put(b, 12, flags), Put(b, 16, reserved);
    return b;
  }
  static std::vector<uint8_t> DetachReq(uint32_t domain, uint32_t ep, uint64_t reserved = 0) {
    auto b = Head(VirtioIommu::kTDetach, VirtioIommu::kDetachSize);
    Put(b, 4, domain), Put(b, 8, ep), Put(b, 12, reserved);
    return b;
  }
  static std::vector<uint8_t> MapReq(uint32_t domain, uint64_t vs, uint64_t ve, uint64_t ps, uint32_t flags) {
    auto b = Head(VirtioIommu::kTMap, VirtioIommu::kMapSize);
    Put(b, 4, domain), Put(b, 8, vs), Put(b, 16, ve), Put(b, 24, ps), Put(b, 32, flags);
    return b;
  }
  static std::vector<uint8_t> UnmapReq(uint32_t domain, uint64_t vs, uint64_t ve, uint32_t reserved = 0) {
    auto b = Head(VirtioIommu::kTUnmap, VirtioIommu::kUnmapSize);
    Put(b, 4, domain), Put(b, 8, vs), Put(b, 16, ve), Put(b, 24, reserved);
    return b;
  }
  static std::vector<uint8_t> ProbeReq(uint32_t ep) {
    auto b = Head(VirtioIommu::kTProbe, VirtioIommu::kProbeSize);
    Put(b, 4, ep);
    return b;
  }
  uint8_t Attach(uint32_t domain, uint32_t ep, uint32_t flags = 0) { return Send(AttachReq(domain, ep, flags)).status; }
  uint8_t Detach(uint32_t domain, uint32_t ep) { return Send(DetachReq(domain, ep)).status; }
  uint8_t Map(uint32_t domain, uint64_t vs, uint64_t ve, uint64_t ps, uint32_t flags) {
    return Send(MapReq(domain, vs, ve, ps, flags)).status;
  }
  uint8_t Unmap(uint32_t domain, uint64_t vs, uint64_t ve) { return Send(UnmapReq(domain, vs, ve)).status; }
  // PROBE with probe_size bytes of properties (+ `extra`); returns the result, properties in *props.
  Result Probe(uint32_t ep, std::vector<uint8_t>* props = nullptr, int extra = 0) {
    const uint32_t ps = iommu->options().probe_size;
    Result r = Send(ProbeReq(ep), static_cast<uint32_t>(static_cast<int>(ps) + 4 + extra));
    if (props) {
      props->resize(ps);
      (void)mem->Read(kReqTail, props->data(), ps);
    }
    return r;
  }

  // ---- eventq ----
  // One 24-byte (or `len`) buffer at descriptor `d` (default: the next one round-robin).
  void PostEventBuffer(bool notify = true, uint32_t len = VirtioIommu::kFaultSize, int d = -1) {
    const uint16_t desc = static_cast<uint16_t>(d >= 0 ? d : evt_posted_ % kEvtQueueSize);
    evt->AddChain({{kEvtBuf + 32ull * desc, len, true}}, desc);
    ++evt_posted_;
    if (notify) NotifyQueue(1);
  }
  // Events the device returned since the last call; with `repost`, each buffer goes back and the
  // eventq is notified once, as Linux's viommu_event_handler does.
  std::vector<VirtioIommu::Fault> TakeEvents(std::vector<uint32_t>* lens = nullptr, bool repost = true) {
    std::vector<VirtioIommu::Fault> out;
    bool reposted = false;
    while (evt->UsedIdx() != evt_seen_) {
      auto [id, len] = evt->UsedElem(evt_seen_++);
      if (repost) {
        evt->AddChain({{kEvtBuf + 32ull * id, VirtioIommu::kFaultSize, true}}, static_cast<uint16_t>(id));
        reposted = true;
      }
      if (lens) lens->push_back(len);
      uint8_t raw[24];
      (void)mem->Read(kEvtBuf + 32ull * id, raw, 24);
      VirtioIommu::Fault f;
      f.reason = raw[0];
      std::memcpy(&f.flags, raw + 4, 4);
      std::memcpy(&f.endpoint, raw + 8, 4);
      std::memcpy(&f.address, raw + 16, 8);
      if (len) out.push_back(f);
    }
    if (reposted) NotifyQueue(1);
    return out;
  }

  std::unique_ptr<GuestMemory> mem;
  std::unique_ptr<IdentityDmaSpace> own_dma;
  testing::FakeMsiSink msi;
  IoBus mmio{"mmio"}, pio{"pio"};
  std::unique_ptr<VirtioIommu> iommu;
  std::unique_ptr<VirtioPciDevice> pci;
  std::unique_ptr<testing::FakeDriverRing> req, evt;

 private:
  ViommuBench() = default;
  uint16_t req_desc_ = 0;
  uint32_t evt_posted_ = 0;
  uint16_t evt_seen_ = 0, req_seen_ = 0;
};

}  // namespace ionest::viommu_testing
