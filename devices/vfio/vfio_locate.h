// From `--device vfio,path=...|host=...` to an open, iommufd-ready VFIO cdev, with one clear error
// per failure naming the cause and the fix (issue 8 item 1): path missing, not a VFIO cdev, device
// not bound to vfio-pci (naming the driver it is bound to), no /dev/iommu, no permission, IOMMU
// group not viable (naming the group's other devices and their drivers), device already in use by
// another process (naming it when /proc tells).
//
// Paths are relative to a root (default "/") so tests can build a fake sysfs/devfs tree.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "devices/vfio/vfio_device_ops.h"

namespace ionest::vfio {

struct VfioDeviceSpec {
  std::string path;  // /dev/vfio/devices/vfioN
  std::string host;  // DDDD:BB:DD.F (found through /sys/bus/pci/devices/<bdf>/vfio-dev/)
};

struct LocateOptions {
  std::string root = "/";                // prefix of /sys, /dev, /proc (tests)
  std::string iommufd_path = "/dev/iommu";  // relative to root
};

// A located device: the cdev path and, if known, its BDF and sysfs directory.
struct LocatedDevice {
  std::string cdev_path;   // e.g. /dev/vfio/devices/vfio0 (with root prefix applied)
  std::string bdf;         // 0000:00:02.0, "" if unknown
  std::string sysfs_dir;   // /sys/bus/pci/devices/<bdf>, "" if unknown
};

// Resolves the spec and checks what sysfs can tell before anything is opened (existence, driver =
// vfio-pci, the cdev node, the group's other members).
absl::StatusOr<LocatedDevice> LocateVfioDevice(const VfioDeviceSpec& spec, const LocateOptions& options = {});

// Opens the located cdev (O_RDWR | O_CLOEXEC) as a VfioDeviceOps. Errors: EACCES/EPERM → "no
// permission" with the fix (run as root or chown/chmod the node; RLIMIT_MEMLOCK for pinning);
// ENOENT → path missing; ENODEV/ENXIO → not a VFIO device.
absl::StatusOr<std::unique_ptr<VfioDeviceOps>> OpenVfioCdev(const LocatedDevice& device,
                                                           const LocateOptions& options = {});

// Opens /dev/iommu with a clear error when it is missing (kernel without CONFIG_IOMMUFD, or no
// host IOMMU enabled: intel_iommu=on / amd_iommu=on) or not accessible. Returns the fd.
absl::StatusOr<int> OpenIommufd(const LocateOptions& options = {});

// Turns a failed VFIO_DEVICE_BIND_IOMMUFD into the message a user can act on: EINVAL on a cdev
// that another process holds → "already in use by process <pid> (<comm>)"; EBUSY → IOMMU group not
// viable (other devices of the group bound to host drivers, listed from sysfs).
absl::Status ExplainBindError(const absl::Status& bind_error, int err, const LocatedDevice& device,
                              const LocateOptions& options = {});
// Same, with the errno taken from `bind_error` (VfioCdev attaches it; see StatusErrno in
// vfio_cdev.h). Without one the status is passed through, naming the device.
absl::Status ExplainBindError(const absl::Status& bind_error, const LocatedDevice& device,
                              const LocateOptions& options = {});

// Checks and normalises a PCI address: "DDDD:BB:DD.F" (domain 4-8 hex digits, or omitted for
// 0000), device 00-1f, function 0-7, any case → "0000:00:02.0". InvalidArgument naming the problem.
absl::StatusOr<std::string> NormalizePciAddress(std::string_view text);

}  // namespace ionest::vfio
