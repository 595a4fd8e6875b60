// A loopback "host" for the passthrough test bed (guest-tests/passthrough/testbed_cases.h): the
// same cases that run inside a Linux guest with a real /dev/iommu and vfio-pci run in-process, with
// the host side modelled here:
//   - the outer machine: MMIO/PIO buses, a PCI root complex and one emulated ionest-dmatest at
//     00:02.0, resources assigned and memory decoding on (what the host's firmware/Linux leaves);
//   - the host IOMMU (IoasDmaSpace): translates the device's DMA with the IOAS it is attached to,
//     kept by a FakeIommufd (IOVA → pinned host VA);
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
// thread, the device's DMA on its worker thread).
#pragma once

#include <cstdint>
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
};

// The host iommufd (a FakeIommufd) behind a mutex, plus the IOAS the device is attached to.
class HostIommu {
 public:
  // An IommufdOps for the code under test; the host IOMMU driver reserves kMsiWindow in every IOAS
  // it allocates.
  std::unique_ptr<iommufd::IommufdOps> NewOps();
  void Attach(std::optional<uint32_t> ioas) ABSL_LOCKS_EXCLUDED(mu_);
  // The mapping of the attached IOAS containing `iova`.
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
  void SetHwInfo(uint32_t dev_id) ABSL_LOCKS_EXCLUDED(mu_);
  size_t live_objects() ABSL_LOCKS_EXCLUDED(mu_);
  std::vector<iommufd_testing::FakeIommufd::Mapping> mappings() ABSL_LOCKS_EXCLUDED(mu_);

 private:
  class Ops;
  absl::Mutex mu_;
  iommufd_testing::FakeIommufd fake_ ABSL_GUARDED_BY(mu_);
  std::optional<uint32_t> attached_ ABSL_GUARDED_BY(mu_);
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

// The host IOMMU translating the outer device with the IOAS it is attached to: IOVA → the mapping
// containing it → host VA. Unmapped IOVAs (or no IOAS attached) fault: kNotPresent, recorded.
class IoasDmaSpace final : public DmaSpace {
 public:
  IoasDmaSpace(HostVaMemory& memory, HostIommu& iommu, uint64_t skew)
      : DmaSpace(memory), iommu_(iommu), skew_(skew) {}
  Translation Translate(uint64_t iova, uint64_t len, uint32_t access, const DmaAttrs& attrs) override;

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
  // Behaves as a Linux 6.15+ host (VFIO_DEVICE_ATTACH_PASID): the attach is recorded (see
  // attached_pasids()) and succeeds once the device is bound (EINVAL before); the PASID's pt is
  // not checked and DMA is still translated with the IOAS attached by AttachPt, whatever PASID the
  // device tags it with. DetachPasid forgets the PASID (a PASID never attached is fine, as in vfio).
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
