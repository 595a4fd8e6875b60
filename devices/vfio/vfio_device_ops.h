// One host VFIO device (a cdev under /dev/vfio/devices/) as a narrow seam: one method per VFIO
// ioctl or file operation ionest uses. The real implementation (vfio_cdev.h) wraps Linux's
// include/uapi/linux/vfio.h on the cdev fd (iommufd only, no legacy container); the test double
// (testing/fake_vfio_device.h) models a PCI function's regions, config space and interrupts in
// memory.
//
// Region indices are VFIO's (VFIO_PCI_BAR0_REGION_INDEX..BAR5 = 0..5, VFIO_PCI_CONFIG_REGION_INDEX
// = 7); interrupt indices likewise (VFIO_PCI_INTX_IRQ_INDEX = 0, MSI = 1, MSIX = 2).
// Errors are absl::Status naming the operation and errno. Thread safety: Region*/Mmap may be
// called concurrently from vCPU threads (pread/pwrite are); the rest from one thread at a time.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace ionest::vfio {

inline constexpr uint32_t kConfigRegion = 7;  // VFIO_PCI_CONFIG_REGION_INDEX
inline constexpr uint32_t kNumBarRegions = 6;
inline constexpr uint32_t kIrqIntx = 0;       // VFIO_PCI_INTX_IRQ_INDEX
inline constexpr uint32_t kIrqMsi = 1;        // VFIO_PCI_MSI_IRQ_INDEX
inline constexpr uint32_t kIrqMsix = 2;       // VFIO_PCI_MSIX_IRQ_INDEX

struct DeviceInfo {
  uint32_t flags = 0;  // VFIO_DEVICE_FLAGS_* (PCI, RESET, CDEV)
  uint32_t num_regions = 0;
  uint32_t num_irqs = 0;
  bool can_reset() const { return flags & (1u << 0); }  // VFIO_DEVICE_FLAGS_RESET
};

struct MmapArea {
  uint64_t offset = 0;  // within the region
  uint64_t size = 0;
};

struct RegionInfo {
  uint32_t index = 0;
  uint32_t flags = 0;  // VFIO_REGION_INFO_FLAG_READ/WRITE/MMAP
  uint64_t size = 0;
  // Parts of the region that may be mmapped: the whole region when flags has MMAP and there is no
  // sparse-mmap capability, else the capability's areas. (vfio-pci 6.12 lets the whole BAR be
  // mmapped, MSI-X table included, and says so with VFIO_REGION_INFO_CAP_MSIX_MAPPABLE; other
  // drivers may exclude pages with a sparse-mmap capability. Callers keep the table trapped.)
  std::vector<MmapArea> mmap_areas;
  bool readable() const { return flags & (1u << 0); }
  bool writable() const { return flags & (1u << 1); }
};

struct IrqInfo {
  uint32_t index = 0;
  uint32_t flags = 0;  // VFIO_IRQ_INFO_EVENTFD/MASKABLE/AUTOMASKED/NORESIZE
  uint32_t count = 0;
};

class VfioDeviceOps {
 public:
  virtual ~VfioDeviceOps() = default;
  // What messages call the device: the cdev path and, when known, the host BDF.
  virtual const std::string& name() const = 0;

  // VFIO_DEVICE_BIND_IOMMUFD: returns the iommufd device ID.
  virtual absl::StatusOr<uint32_t> BindIommufd(int iommufd) = 0;
  // VFIO_DEVICE_ATTACH_IOMMUFD_PT / VFIO_DEVICE_DETACH_IOMMUFD_PT.
  virtual absl::Status AttachPt(uint32_t pt_id) = 0;
  virtual absl::Status DetachPt() = 0;
  // PASID attach (issue 9): VFIO_DEVICE_ATTACH_IOMMUFD_PT / VFIO_DEVICE_DETACH_IOMMUFD_PT with
  // VFIO_DEVICE_ATTACH_PASID / VFIO_DEVICE_DETACH_PASID and the pasid field, which Linux 6.15
  // added. Older kernels reject the flag (EINVAL): the implementation then returns
  // FailedPrecondition saying the host kernel lacks PASID attach, so callers can tell that apart
  // from a refused attach.
  virtual absl::Status AttachPasid(uint32_t pasid, uint32_t pt_id) = 0;
  virtual absl::Status DetachPasid(uint32_t pasid) = 0;

  virtual absl::StatusOr<DeviceInfo> GetInfo() = 0;
  virtual absl::StatusOr<RegionInfo> GetRegionInfo(uint32_t index) = 0;
  virtual absl::StatusOr<IrqInfo> GetIrqInfo(uint32_t index) = 0;

  // pread/pwrite at the region's offset. Short transfers are errors.
  virtual absl::Status RegionRead(uint32_t index, uint64_t offset, void* data, size_t len) = 0;
  virtual absl::Status RegionWrite(uint32_t index, uint64_t offset, const void* data, size_t len) = 0;
  // mmap [offset, offset+len) of a region (an mmap area); the pointer stays valid until Unmap or
  // the object's destruction.
  virtual absl::StatusOr<void*> Mmap(uint32_t index, uint64_t offset, uint64_t len) = 0;
  virtual void Unmap(void* addr, uint64_t len) = 0;

  // VFIO_DEVICE_SET_IRQS, DATA_EVENTFD | ACTION_TRIGGER for [start, start+fds.size()) of `index`
  // (an fd of -1 de-assigns that vector). Enabling MSI/MSI-X on the host happens here.
  virtual absl::Status SetIrqEventfds(uint32_t index, uint32_t start, std::span<const int> fds) = 0;
  // DATA_NONE | ACTION_TRIGGER with count 0: disables the interrupt index on the host.
  virtual absl::Status DisableIrqs(uint32_t index) = 0;
  // DATA_NONE | ACTION_UNMASK of INTx (after the guest's EOI).
  virtual absl::Status UnmaskIntx() = 0;

  // VFIO_DEVICE_RESET (function-level or other reset vfio-pci chose).
  virtual absl::Status Reset() = 0;

  // The function's config space as the host sees it, unfiltered (sysfs `config`, 4 KiB when read by
  // root): vfio-pci 6.12 hides capabilities it has no permission table for (PASID). NotFound when
  // unavailable; callers then use the VFIO config region only.
  virtual absl::StatusOr<std::vector<uint8_t>> ReadUnfilteredConfig() = 0;
};

}  // namespace ionest::vfio
