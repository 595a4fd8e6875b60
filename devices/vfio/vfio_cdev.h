// VfioDeviceOps on a real VFIO device cdev (/dev/vfio/devices/vfioN, iommufd only): one ioctl of
// Linux's include/uapi/linux/vfio.h per method, EINTR retried. Errors name the ioctl (or file
// operation), the device and errno: "VFIO_DEVICE_GET_INFO on /dev/vfio/devices/vfio0
// (0000:00:02.0): Inappropriate ioctl for device (errno 25)"; the status code follows the errno and
// the errno itself travels as a payload (StatusErrno) so ExplainBindError can act on it.
//
// Region infos are cached (they never change while the fd is open). Mappings made by Mmap are
// tracked; the destructor unmaps what is left, then closes the fd (which makes the kernel disable
// the device's interrupts, detach it and unbind it from the iommufd).
//
// The ioctls are not unit-tested (no VFIO on the build machines); the region-info parser is
// (ParseRegionInfo / ParseRegionInfoCaps below), and so are the error paths on a non-VFIO fd.
// Thread safety: as VfioDeviceOps (Region*, Mmap, Unmap and GetRegionInfo from any thread).
#pragma once

#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <map>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_format.h"
#include "absl/synchronization/mutex.h"
#include "devices/vfio/vfio_device_ops.h"

namespace ionest::vfio {

// Owns a file descriptor; closes it on destruction.
class UniqueFd {
 public:
  UniqueFd() = default;
  explicit UniqueFd(int fd) : fd_(fd) {}
  ~UniqueFd() { Reset(); }
  UniqueFd(UniqueFd&& o) noexcept : fd_(o.Release()) {}
  UniqueFd& operator=(UniqueFd&& o) noexcept;
  UniqueFd(const UniqueFd&) = delete;
  UniqueFd& operator=(const UniqueFd&) = delete;
  int get() const { return fd_; }
  bool valid() const { return fd_ >= 0; }
  int Release() {
    int fd = fd_;
    fd_ = -1;
    return fd;
  }
  void Reset(int fd = -1);

 private:
  int fd_ = -1;
};

// "<what>: <strerror> (errno N)", code absl::ErrnoToStatusCode(err), with `err` as payload.
absl::Status VfioErrno(int err, std::string_view what);
// The errno a status from VfioErrno carries; 0 if none.
int StatusErrno(const absl::Status& status);

// How AttachPasid/DetachPasid messages name the call: "VFIO_DEVICE_ATTACH_IOMMUFD_PT (ATTACH_PASID,
// pasid 1, pt 5) on <device>" / "VFIO_DEVICE_DETACH_IOMMUFD_PT (DETACH_PASID, pasid 1) on <device>".
inline std::string PasidAttachWhat(std::string_view device, uint32_t pasid, uint32_t pt_id) {
  return absl::StrFormat("VFIO_DEVICE_ATTACH_IOMMUFD_PT (ATTACH_PASID, pasid %u, pt %u) on %s", pasid, pt_id, device);
}
inline std::string PasidDetachWhat(std::string_view device, uint32_t pasid) {
  return absl::StrFormat("VFIO_DEVICE_DETACH_IOMMUFD_PT (DETACH_PASID, pasid %u) on %s", pasid, device);
}
// What AttachPasid/DetachPasid return when the host kernel rejects the PASID flag (EINVAL: vfio
// before Linux 6.15 requires flags == 0). `what` is PasidAttachWhat/PasidDetachWhat.
// FailedPrecondition, so callers tell it apart from an attach the kernel refused. Inline (like the
// two above) so the test double (testing/fake_vfio_device.h) says exactly the same without linking
// the host library.
inline absl::Status NoPasidAttachError(std::string_view what) {
  return absl::FailedPreconditionError(absl::StrFormat(
      "%s: %s (errno %d): the host kernel lacks PASID attach for VFIO devices (VFIO_DEVICE_ATTACH_PASID, "
      "Linux 6.15+), so PASID > 0 cannot be bound; fix: run a host kernel with it",
      what, std::strerror(EINVAL), EINVAL));
}

// What the capability chain of a VFIO_DEVICE_GET_REGION_INFO reply says (the capabilities ionest
// uses; others are skipped).
struct RegionCaps {
  bool has_sparse_mmap = false;          // VFIO_REGION_INFO_CAP_SPARSE_MMAP present
  std::vector<MmapArea> sparse_areas;    // its areas (zero-sized ones dropped)
  bool msix_mappable = false;            // VFIO_REGION_INFO_CAP_MSIX_MAPPABLE present
};

// Walks the capability chain in `buf[0, len)`, the whole reply (struct vfio_region_info followed
// by the capabilities; offsets count from the start of `buf`), starting at `first` (cap_offset;
// 0 = no chain). Every header and the sparse-mmap area array must lie inside the buffer and after
// struct vfio_region_info; each `next` must point past the current header (so the walk ends), at
// most 64 capabilities. Sparse areas must lie inside [0, region_size). InvalidArgument otherwise.
absl::StatusOr<RegionCaps> ParseRegionInfoCaps(const uint8_t* buf, size_t len, uint32_t first,
                                               uint64_t region_size);

// A parsed VFIO_DEVICE_GET_REGION_INFO reply.
struct ParsedRegion {
  RegionInfo info;          // mmap_areas: the sparse areas, else the whole region if MMAP
  uint64_t fd_offset = 0;   // where the region starts in the device fd (vfio_region_info.offset)
  RegionCaps caps;
};
// Parses `buf[0, len)`: struct vfio_region_info and (flag CAPS, cap_offset != 0) its chain.
absl::StatusOr<ParsedRegion> ParseRegionInfo(const uint8_t* buf, size_t len);

class VfioCdev final : public VfioDeviceOps {
 public:
  // Takes ownership of `fd`, an open VFIO device cdev. `name` is what messages call it (cdev path
  // and BDF). `sysfs_dir` is the host function's sysfs directory (/sys/bus/pci/devices/<bdf>) for
  // ReadUnfilteredConfig, "" if unknown.
  VfioCdev(UniqueFd fd, std::string name, std::string sysfs_dir = "");
  ~VfioCdev() override;
  VfioCdev(const VfioCdev&) = delete;
  VfioCdev& operator=(const VfioCdev&) = delete;

  int fd() const { return fd_.get(); }
  const std::string& name() const override { return name_; }

  absl::StatusOr<uint32_t> BindIommufd(int iommufd) override;
  absl::Status AttachPt(uint32_t pt_id) override;
  absl::Status DetachPt() override;
  // VFIO_DEVICE_ATTACH_IOMMUFD_PT / VFIO_DEVICE_DETACH_IOMMUFD_PT with the PASID flag (Linux 6.15
  // layout, defined locally: the bundled 6.12 header lacks it). EINVAL → NoPasidAttachError.
  absl::Status AttachPasid(uint32_t pasid, uint32_t pt_id) override;
  absl::Status DetachPasid(uint32_t pasid) override;
  absl::StatusOr<DeviceInfo> GetInfo() override;
  absl::StatusOr<RegionInfo> GetRegionInfo(uint32_t index) override;
  absl::StatusOr<IrqInfo> GetIrqInfo(uint32_t index) override;
  absl::Status RegionRead(uint32_t index, uint64_t offset, void* data, size_t len) override;
  absl::Status RegionWrite(uint32_t index, uint64_t offset, const void* data, size_t len) override;
  // [offset, offset+len) must lie inside one mmap area and `offset` be page aligned. Protection
  // follows the region's READ/WRITE flags.
  absl::StatusOr<void*> Mmap(uint32_t index, uint64_t offset, uint64_t len) override;
  // Unmaps the whole mapping Mmap returned at `addr` (its recorded length); other addresses are
  // ignored, so nothing this object did not map is ever unmapped.
  void Unmap(void* addr, uint64_t len) override;
  absl::Status SetIrqEventfds(uint32_t index, uint32_t start, std::span<const int> fds) override;
  absl::Status DisableIrqs(uint32_t index) override;
  absl::Status UnmaskIntx() override;
  absl::Status Reset() override;
  // Reads <sysfs_dir>/config. NotFound without a sysfs directory, when the file is missing, or when
  // fewer than 256 bytes are readable (unprivileged readers get only the first 64).
  absl::StatusOr<std::vector<uint8_t>> ReadUnfilteredConfig() override;

 private:
  // The cached region (fetched on first use). Entries are never changed or erased, so the pointer
  // stays valid for the object's lifetime.
  absl::StatusOr<const ParsedRegion*> Region(uint32_t index);
  absl::Status Transfer(bool write, uint32_t index, uint64_t offset, void* data, size_t len);
  absl::Status SetIrqs(uint32_t flags, uint32_t index, uint32_t start, uint32_t count,
                       std::span<const int> fds, const char* what);

  UniqueFd fd_;
  const std::string name_;
  const std::string sysfs_dir_;
  absl::Mutex mu_;
  std::map<uint32_t, ParsedRegion> regions_ ABSL_GUARDED_BY(mu_);
  std::map<void*, uint64_t> mappings_ ABSL_GUARDED_BY(mu_);  // address → length
};

}  // namespace ionest::vfio
