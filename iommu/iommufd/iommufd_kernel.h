// IommufdOps on a real /dev/iommu: one ioctl of include/uapi/linux/iommufd.h per method, EINTR
// retried, errors naming the ioctl, its arguments and errno (plus a hint where the user can act).
// Nothing here is unit-tested against a kernel (no /dev/iommu on the build machines); the logic
// above the seam is tested with testing/fake_iommufd.h.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
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
// "IOMMU_HWPT_ALLOC dev 3 pt 2 (nest parent, fault 5, VTD_S1 pgtbl 0x1000 aw 48 SRE WPE)": the
// ioctl and its arguments, for IOMMU_HWPT_ALLOC messages.
std::string FormatHwptAlloc(const HwptAllocRequest& request);
// "IOMMU_HWPT_INVALIDATE hwpt 7 (3 VTD_S1 entries, 1 done; next addr 0x1234 npages 0x1 leaf)": a
// failed call, `done` entries handled, the entry it stopped at named when there is one.
std::string FormatInvalidate(uint32_t hwpt_id, std::span<const VtdS1Invalidation> entries, uint32_t done);
// What WriteResponses returns when write(2) took only `written` of the `count` responses' bytes
// (the kernel's iommufd_fault_fops_write stops at the first unknown cookie or invalid code and
// returns the bytes of the responses it consumed): InvalidArgument naming the fd and the counts.
absl::Status ShortResponseWrite(int fault_fd, size_t count, size_t written);

}  // namespace ionest::iommufd
