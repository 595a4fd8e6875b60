// IommufdOps on a real /dev/iommu: one ioctl of include/uapi/linux/iommufd.h per method, EINTR
// retried, errors naming the ioctl, its arguments and errno (plus a hint where the user can act).
// Nothing here is unit-tested against a kernel (no /dev/iommu on the build machines); the logic
// above the seam is tested with testing/fake_iommufd.h.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "iommu/iommufd/iommufd_ops.h"

namespace ionest::iommufd {

// Takes ownership of `fd`, an open /dev/iommu (the caller opened it, e.g. vfio_locate with
// O_RDWR | O_CLOEXEC); the returned object closes it. Error only if fd < 0.
absl::StatusOr<std::unique_ptr<IommufdOps>> OpenKernelIommufd(int fd);

// Shared by the kernel implementation and the fake so both speak alike.
// "[0x1000, +0x2000)": a range as base and length.
std::string FormatIovaLen(uint64_t iova, uint64_t len);
// "[0xfee00000, 0xfeefffff]": an inclusive range (struct iommu_iova_range).
std::string FormatIovaRange(const IovaRange& range);
// "<what>: <strerror> (errno N)" with the status code absl::ErrnoToStatusCode(err).
absl::Status IommufdErrno(int err, absl::string_view what);

}  // namespace ionest::iommufd
