// A loopback "host" for the passthrough test bed (guest-tests/passthrough/testbed_cases.h): the
// same cases that run inside a Linux guest with a real /dev/iommu and vfio-pci run in-process, with
// the host side modelled here:
//   - the outer machine: MMIO/PIO buses, a PCI root complex and one emulated ionest-dmatest at
//     00:02.0, resources assigned and memory decoding on (what the host's firmware/Linux leaves);
//   - the host IOMMU (IoasDmaSpace): translates the device's DMA with what it is attached to, as
//     kept by a FakeIommufd (IOVA → pinned host VA): an IOAS, a paging or nest-parent HWPT (its
//     IOAS), or a nested HWPT (issue 9: the guest's first-stage table named by its VTD_S1 data,
//     walked with table reads through the nest parent, whose IOAS then translates the output;
//     successful walks are cached per nested HWPT like an IOTLB and dropped only by
//     IOMMU_HWPT_INVALIDATE or the HWPT's destruction). Requests with a PASID use the PASID's
//     attachment (VFIO_DEVICE_ATTACH_PASID), without one they are blocked; nothing attached =
//     blocked (non-recoverable);
//   - the host IOMMU driver's page request path: a page request group of a device (or PASID)
//     attached to a nested HWPT with a fault queue is queued there whole (one cookie) once its last
//     request arrives, as iommu_report_device_fault does; the response written to the fault fd
//     goes back to the device as its PRG response. Any other page request is answered Invalid;
//   - the host's interrupt controller (HostInterruptController): the device's MSI-X messages back
//     to the eventfds VFIO_DEVICE_SET_IRQS registered;
//   - vfio-pci (LoopbackVfioDevice): the VfioDeviceOps seam over the outer function.
//
// Outer "physical" addresses: a loopback host has no RAM of its own; the pages the IOAS pins are the
// process's, so the host IOMMU's output address is the host virtual address (what the inner
// GuestMemory mmaps), and DMA lands in the inner RAM's bytes. HostVaMemory allows access only to VAs
// inside a live IOAS mapping (pinned pages), so a device never touches unpinned memory.
//
// Thread safety: the FakeIommufd is reached only under HostIommu's mutex (the backend on the test
// thread and its fault reader thread, the device's DMA and page requests on its worker thread);
// PRG responses are delivered to the device after that mutex is released.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "devices/io_bus.h"
#include "devices/pci_host.h"
#include "devices/testdev/dma_test_device.h"
#include "devices/vfio/vfio_device_ops.h"
#include "iommu/dma_space.h"
#include "iommu/iommufd/testing/fake_iommufd.h"
#include "iommu/msi.h"
#include "vmm/guest_memory.h"
#include "vmm/passthrough.h"

namespace ionest::passthrough_test {

inline constexpr uint8_t kOuterDevfn = 0x10;  // outer 00:02.0
inline constexpr char kLoopbackCdev[] = "/dev/vfio/devices/vfio0";
inline constexpr char kLoopbackBdf[] = "0000:00:02.0";
// What the host's VT-d driver reserves in every IOAS an x86 device attaches to.
inline constexpr iommufd::IovaRange kMsiWindow{0xfee00000, 0xfeefffff};
// MSI-X messages vfio-pci's host interrupts use: address kHostMsiAddress, data kHostMsiData + vector.
inline constexpr uint64_t kHostMsiAddress = 0xfee00000;
inline constexpr uint32_t kHostMsiData = 0x100;

struct LoopbackOptions {
  // Negative control: added to every address the host IOMMU produces (DMA lands elsewhere).
  uint64_t translate_skew = 0;
  // Negative control: IOMMU_HWPT_INVALIDATE succeeds but leaves the cached first-stage
  // translations in place (a host with a stale IOTLB).
  bool ignore_s1_invalidations = false;
  // PRI Outstanding Page Request Capacity of the outer dmatest (the nesting cases ask for 256).
  uint32_t pri_capacity = 512;
};

// What the host IOMMU did, for the tests' diagnostics.
struct HostIommuStats {
  uint64_t nested_walks = 0;         // first-stage walks through a nest parent
  uint64_t iotlb_hits = 0;           // nested translations served from the cache
  uint64_t iotlb_invalidated = 0;    // cached translations dropped by IOMMU_HWPT_INVALIDATE
  uint64_t page_requests = 0;        // page requests the device sent
  uint64_t faults_queued = 0;        // records queued on a fault queue
  uint64_t refused_groups = 0;       // groups the host answered Invalid itself (no fault queue)
  uint64_t responses_to_device = 0;  // PRG responses delivered to the device
};

// The host iommufd (a FakeIommufd) behind a mutex, plus what the device is attached to.
class HostIommu {
 public:
  // The host IOMMU's answer for one access.
  struct Result {
    bool ok = false;
    uint64_t va = 0;    // host VA of the input address
    uint64_t len = 0;   // bytes from `va` translated contiguously (within one page / mapping)
    uint32_t perms = 0;
    DmaFaultKind kind = DmaFaultKind::kNotPresent;  // when !ok
  };

  // An IommufdOps for the code under test; the host IOMMU driver reserves kMsiWindow in every IOAS
  // it allocates.
  std::unique_ptr<iommufd::IommufdOps> NewOps();
  // The device's RID (nullopt: blocked) / PASID attachments: an IOAS or HWPT id.
  void Attach(std::optional<uint32_t> pt) ABSL_LOCKS_EXCLUDED(mu_);
  void AttachPasid(uint32_t pasid, std::optional<uint32_t> pt) ABSL_LOCKS_EXCLUDED(mu_);
  // An IOAS or HWPT a device can be attached to.
  bool Attachable(uint32_t id) ABSL_LOCKS_EXCLUDED(mu_);
  // Translates one access of the device (the request's PASID, if any).
  Result Translate(std::optional<uint32_t> pasid, uint64_t iova, uint32_t access) ABSL_LOCKS_EXCLUDED(mu_);
  // A page request of the bound device (see the file comment). Responses reach `sink`.
  void OnPageRequest(const PageRequest& request) ABSL_LOCKS_EXCLUDED(mu_);
  void SetResponseSink(std::function<void(const PageResponse&)> sink) ABSL_LOCKS_EXCLUDED(mu_);
  void SetIgnoreS1Invalidations(bool ignore) ABSL_LOCKS_EXCLUDED(mu_);
  // The mapping of the RID's IOAS containing `iova` (issue-8 view; nullopt if attached elsewhere).
  std::optional<iommufd_testing::FakeIommufd::Mapping> Lookup(uint64_t iova) ABSL_LOCKS_EXCLUDED(mu_);
  // Runs fn(ptr) with [va, va+len) inside one live mapping's pinned pages (under the lock, so no
  // unmap can race the access); false if it is not.
  template <typename F>
  bool WithPinned(uint64_t va, uint64_t len, F fn) ABSL_LOCKS_EXCLUDED(mu_) {
    absl::MutexLock l(&mu_);
    for (const auto& m : fake_.mappings()) {
      const uint64_t base = reinterpret_cast<uint64_t>(m.va);
      if (va >= base && len <= m.len && va - base <= m.len - len) {
        fn(reinterpret_cast<uint8_t*>(va));
        return true;
      }
    }
    return false;
  }
  bool IoasExists(uint32_t id) ABSL_LOCKS_EXCLUDED(mu_);
  // Describes the bound device as a VT-d host with nesting (IOMMU_GET_HW_INFO).
  void SetHwInfo(uint32_t dev_id) ABSL_LOCKS_EXCLUDED(mu_);
  size_t live_objects() ABSL_LOCKS_EXCLUDED(mu_);
  std::vector<iommufd_testing::FakeIommufd::Mapping> mappings() ABSL_LOCKS_EXCLUDED(mu_);
  HostIommuStats stats() ABSL_LOCKS_EXCLUDED(mu_);

 private:
  class Ops;
  struct CachedTranslation {
    uint64_t size = 0;    // page size
    uint64_t output = 0;  // guest-physical page address
    uint32_t perms = 0;
  };
  struct PartialKey {
    std::optional<uint32_t> pasid;
    uint16_t group = 0;
    auto operator<=>(const PartialKey&) const = default;
  };
  std::optional<uint32_t> AttachedLocked(std::optional<uint32_t> pasid) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // IOAS behind object `pt` (itself, or a paging / nest-parent HWPT's IOAS).
  std::optional<uint32_t> IoasOfLocked(uint32_t pt) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  Result ThroughIoasLocked(uint32_t ioas, uint64_t addr, uint64_t len_limit, uint32_t perms)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  Result SecondStageOfNestedLocked(uint32_t ioas, uint64_t gpa, uint64_t len_limit, uint32_t perms)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void DropCachedLocked(uint32_t hwpt, uint64_t addr, uint64_t npages) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Delivers the PRG responses queued under the lock (called without it).
  void DeliverResponses() ABSL_LOCKS_EXCLUDED(mu_);

  absl::Mutex mu_;
  iommufd_testing::FakeIommufd fake_ ABSL_GUARDED_BY(mu_);
  std::optional<uint32_t> attached_ ABSL_GUARDED_BY(mu_);
  std::map<uint32_t, uint32_t> pasid_attached_ ABSL_GUARDED_BY(mu_);
  uint32_t dev_id_ ABSL_GUARDED_BY(mu_) = 0;
  bool listening_ ABSL_GUARDED_BY(mu_) = false;
  bool ignore_s1_invalidations_ ABSL_GUARDED_BY(mu_) = false;
  // Nested HWPT -> (priv, page base) -> cached translation.
  std::map<uint32_t, std::map<std::pair<bool, uint64_t>, CachedTranslation>> iotlb_ ABSL_GUARDED_BY(mu_);
  std::map<PartialKey, std::vector<iommufd::HostPageFault>> partial_ ABSL_GUARDED_BY(mu_);
  std::vector<PageResponse> to_device_ ABSL_GUARDED_BY(mu_);
  std::function<void(const PageResponse&)> sink_ ABSL_GUARDED_BY(mu_);
  HostIommuStats stats_ ABSL_GUARDED_BY(mu_);
};

// The host's memory as the device reaches it after the IOMMU: pinned host VAs.
class HostVaMemory final : public PhysMemory {
 public:
  explicit HostVaMemory(HostIommu& iommu) : iommu_(iommu) {}
  absl::Status Read(uint64_t va, void* dst, size_t len) const override;
  absl::Status Write(uint64_t va, const void* src, size_t len) override;
  absl::StatusOr<bool> CompareExchange64(uint64_t va, uint64_t* expected, uint64_t desired) override;

 private:
  HostIommu& iommu_;
};

// The host IOMMU translating the outer device with what it is attached to (HostIommu::Translate).
// Unmapped IOVAs and first-stage misses fault kNotPresent (recoverable through PRI); a device with
// nothing attached faults kBlocked.
class IoasDmaSpace final : public DmaSpace {
 public:
  IoasDmaSpace(HostVaMemory& memory, HostIommu& iommu, uint64_t skew)
      : DmaSpace(memory), iommu_(iommu), skew_(skew) {}
  Translation Translate(uint64_t iova, uint64_t len, uint32_t access, const DmaAttrs& attrs) override;
  // ATS Translation Request: the host IOMMU's answer for the page (only used by the device to
  // find the missing pages of a page request group; translated requests stay refused).
  AtsTranslation AtsTranslate(uint64_t iova, uint32_t access, const DmaAttrs& attrs) override;
  absl::Status SendPageRequest(const PageRequest& request) override;

 private:
  HostIommu& iommu_;
  const uint64_t skew_;
};

// The host's interrupt controller: MSI data kHostMsiData + v → signal eventfd v (what the host
// kernel's vfio_msihandler does).
class HostInterruptController final : public MsiSink {
 public:
  ~HostInterruptController() override { Clear(); }
  absl::Status SendMsi(const MsiMessage& msi) override ABSL_LOCKS_EXCLUDED(mu_);
  // Vectors [start, start+fds.size()) get dup()s of `fds` (-1: none).
  absl::Status Set(uint32_t start, const std::vector<int>& fds) ABSL_LOCKS_EXCLUDED(mu_);
  void Clear() ABSL_LOCKS_EXCLUDED(mu_);  // closes every dup
  bool any() ABSL_LOCKS_EXCLUDED(mu_);
  uint64_t stray() ABSL_LOCKS_EXCLUDED(mu_);

 private:
  absl::Mutex mu_;
  std::vector<int> fds_ ABSL_GUARDED_BY(mu_);
  uint64_t stray_ ABSL_GUARDED_BY(mu_) = 0;
};

// The outer machine and the host services above. Must outlive every PassthroughHost made from it
// and everything opened through it.
class LoopbackWorld {
 public:
  static absl::StatusOr<std::unique_ptr<LoopbackWorld>> Create(const LoopbackOptions& options = {});
  ~LoopbackWorld();

  DmaTestDevice& device() { return *device_; }
  PciHost& pci() { return *pci_; }
  IoBus& mmio() { return mmio_; }
  IoBus& pio() { return pio_; }
  HostIommu& iommu() { return iommu_; }
  HostInterruptController& irqs() { return irqs_; }
  IoasDmaSpace& dma() { return dma_; }
  // Outer config access to the device.
  uint32_t ConfigRead(uint16_t reg, size_t size);
  void ConfigWrite(uint16_t reg, uint32_t value, size_t size);

  // vfio-pci's view: one open at a time; whether the device is bound to an iommufd.
  bool open() const { return open_; }
  bool bound() const { return bound_; }
  int opens() const { return opens_; }

 private:
  friend class LoopbackVfioDevice;
  class Provider final : public DmaSpaceProvider {
   public:
    explicit Provider(DmaSpace& s) : s_(s) {}
    DmaSpace& ForRequester(uint16_t) override { return s_; }

   private:
    DmaSpace& s_;
  };
  explicit LoopbackWorld(const LoopbackOptions& options);

  IoBus mmio_{"outer-mmio"};
  IoBus pio_{"outer-pio"};
  HostIommu iommu_;
  HostVaMemory memory_{iommu_};
  IoasDmaSpace dma_;
  Provider provider_{dma_};
  HostInterruptController irqs_;
  std::unique_ptr<PciHost> pci_;
  std::unique_ptr<DmaTestDevice> device_;  // destroyed first
  bool open_ = false;
  bool bound_ = false;
  int opens_ = 0;
};

// vfio-pci on the outer function (the cdev /dev/vfio/devices/vfio0): regions through pread/pwrite
// only (no mmap), config space passed through raw, MSI-X through the host interrupt controller,
// VFIO_DEVICE_RESET as an FLR followed by pci_restore_state. Closing (destruction) disables the
// interrupts, detaches, unbinds and resets the device, as vfio_pci_core_close_device does.
class LoopbackVfioDevice final : public vfio::VfioDeviceOps {
 public:
  explicit LoopbackVfioDevice(LoopbackWorld& world);
  ~LoopbackVfioDevice() override;
  const std::string& name() const override { return name_; }
  absl::StatusOr<uint32_t> BindIommufd(int iommufd) override;
  absl::Status AttachPt(uint32_t pt_id) override;
  absl::Status DetachPt() override;
  // AttachPt takes an IOAS or any HWPT (ENOENT otherwise). Behaves as a Linux 6.15+ host
  // (VFIO_DEVICE_ATTACH_PASID): the attach succeeds once the device is bound (EINVAL before) and
  // the pt exists (ENOENT), and DMA tagged with that PASID is translated with it (see
  // attached_pasids()). DetachPasid forgets the PASID (a PASID never attached is fine, as in vfio).
  absl::Status AttachPasid(uint32_t pasid, uint32_t pt_id) override;
  absl::Status DetachPasid(uint32_t pasid) override;
  absl::StatusOr<vfio::DeviceInfo> GetInfo() override;
  absl::StatusOr<vfio::RegionInfo> GetRegionInfo(uint32_t index) override;
  absl::StatusOr<vfio::IrqInfo> GetIrqInfo(uint32_t index) override;
  absl::Status RegionRead(uint32_t index, uint64_t offset, void* data, size_t len) override;
  absl::Status RegionWrite(uint32_t index, uint64_t offset, const void* data, size_t len) override;
  absl::StatusOr<void*> Mmap(uint32_t index, uint64_t offset, uint64_t len) override;
  void Unmap(void* addr, uint64_t len) override {}
  absl::Status SetIrqEventfds(uint32_t index, uint32_t start, std::span<const int> fds) override;
  absl::Status DisableIrqs(uint32_t index) override;
  absl::Status UnmaskIntx() override { return absl::OkStatus(); }
  absl::Status Reset() override;
  absl::StatusOr<std::vector<uint8_t>> ReadUnfilteredConfig() override;

  std::optional<uint32_t> attached() const { return attached_; }
  const std::map<uint32_t, uint32_t>& attached_pasids() const { return pasids_; }  // PASID → pt_id

 private:
  absl::Status BarAccess(bool write, uint32_t index, uint64_t offset, uint8_t* data, size_t len);

  LoopbackWorld& world_;
  const std::string name_;
  std::optional<uint32_t> dev_id_;
  std::optional<uint32_t> attached_;
  std::map<uint32_t, uint32_t> pasids_;
};

// locate: spec.path kLoopbackCdev or spec.host kLoopbackBdf; open_iommufd: the world's HostIommu;
// open_device: a LoopbackVfioDevice (EBUSY while one is open); explain_bind_error: adds the device.
PassthroughHost MakeLoopbackHost(LoopbackWorld& world);

}  // namespace ionest::passthrough_test
