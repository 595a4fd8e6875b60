#include "iommu/iommufd/iommufd_kernel.h"

#include <linux/iommufd.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace ionest::iommufd {

std::string FormatIovaLen(uint64_t iova, uint64_t len) { return absl::StrFormat("[0x%x, +0x%x)", iova, len); }

std::string FormatIovaRange(const IovaRange& range) {
  return absl::StrFormat("[0x%x, 0x%x]", range.start, range.last);
}

absl::Status IommufdErrno(int err, absl::string_view what) {
  return absl::Status(absl::ErrnoToStatusCode(err), absl::StrFormat("%s: %s (errno %d)", what, std::strerror(err), err));
}

namespace {

// Limits the IOMMU_IOAS_IOVA_RANGES size/fill loop should the ranges keep changing under us.
constexpr int kIovaRangesTries = 8;

// ioctl(2) retried on EINTR; 0 or the errno.
int Ioctl(int fd, unsigned long request, void* arg) {
  for (;;) {
    if (ioctl(fd, request, arg) == 0) return 0;
    if (errno != EINTR) return errno;
  }
}

class KernelIommufd final : public IommufdOps {
 public:
  explicit KernelIommufd(int fd) : fd_(fd) {}
  ~KernelIommufd() override { close(fd_); }
  KernelIommufd(const KernelIommufd&) = delete;
  KernelIommufd& operator=(const KernelIommufd&) = delete;

  int fd() const override { return fd_; }

  // struct iommu_ioas_alloc.
  absl::StatusOr<uint32_t> AllocIoas() override {
    iommu_ioas_alloc cmd{};
    cmd.size = sizeof(cmd);
    if (int e = Ioctl(fd_, IOMMU_IOAS_ALLOC, &cmd)) return IommufdErrno(e, "IOMMU_IOAS_ALLOC");
    return cmd.out_ioas_id;
  }

  // struct iommu_ioas_map with a fixed IOVA: the range must be unused and outside every reserved
  // range (EEXIST / EINVAL). The kernel pins [va, va+len) and charges it to RLIMIT_MEMLOCK unless
  // the process has CAP_IPC_LOCK (ENOMEM when over the limit).
  absl::Status MapFixed(uint32_t ioas_id, uint64_t iova, void* va, uint64_t len, bool writeable) override {
    iommu_ioas_map cmd{};
    cmd.size = sizeof(cmd);
    cmd.flags = IOMMU_IOAS_MAP_FIXED_IOVA | IOMMU_IOAS_MAP_READABLE | (writeable ? IOMMU_IOAS_MAP_WRITEABLE : 0);
    cmd.ioas_id = ioas_id;
    cmd.user_va = reinterpret_cast<uintptr_t>(va);
    cmd.length = len;
    cmd.iova = iova;
    int e = Ioctl(fd_, IOMMU_IOAS_MAP, &cmd);
    if (e == 0) return absl::OkStatus();
    absl::Status s = IommufdErrno(e, absl::StrFormat("IOMMU_IOAS_MAP ioas %d iova %s from va %p%s", ioas_id,
                                                     FormatIovaLen(iova, len), va, writeable ? "" : " read-only"));
    const char* hint = nullptr;
    if (e == ENOMEM || e == EPERM) hint = "pinning guest RAM failed: raise RLIMIT_MEMLOCK (ulimit -l) or run as root";
    if (e == EEXIST) hint = "the IOVA range is already mapped";
    if (e == EINVAL) hint = "the IOVA range is misaligned or overlaps a reserved IOVA range";
    return hint ? absl::Status(s.code(), absl::StrCat(s.message(), "; ", hint)) : s;
  }

  // struct iommu_ioas_unmap: the range must cover whole mapped areas (ENOENT if it splits one or
  // covers none). The kernel returns the bytes unmapped in `length`; a superset with holes is fine.
  absl::Status Unmap(uint32_t ioas_id, uint64_t iova, uint64_t len) override {
    iommu_ioas_unmap cmd{};
    cmd.size = sizeof(cmd);
    cmd.ioas_id = ioas_id;
    cmd.iova = iova;
    cmd.length = len;
    if (int e = Ioctl(fd_, IOMMU_IOAS_UNMAP, &cmd))
      return IommufdErrno(e, absl::StrFormat("IOMMU_IOAS_UNMAP ioas %d iova %s", ioas_id, FormatIovaLen(iova, len)));
    return absl::OkStatus();
  }

  // struct iommu_ioas_iova_ranges: a first call with num_iovas = 0 learns the count (EMSGSIZE
  // unless there are none), a second fills the buffer. Attaching a device concurrently can grow the
  // count in between, hence the loop.
  absl::StatusOr<std::vector<IovaRange>> AllowedIovaRanges(uint32_t ioas_id) override {
    std::vector<iommu_iova_range> buf;
    for (int i = 0; i < kIovaRangesTries; ++i) {
      iommu_ioas_iova_ranges cmd{};
      cmd.size = sizeof(cmd);
      cmd.ioas_id = ioas_id;
      cmd.num_iovas = static_cast<uint32_t>(buf.size());
      cmd.allowed_iovas = buf.empty() ? 0 : reinterpret_cast<uintptr_t>(buf.data());
      int e = Ioctl(fd_, IOMMU_IOAS_IOVA_RANGES, &cmd);
      if (e == EMSGSIZE && cmd.num_iovas > buf.size()) {
        buf.resize(cmd.num_iovas);
        continue;
      }
      if (e) return IommufdErrno(e, absl::StrFormat("IOMMU_IOAS_IOVA_RANGES ioas %d", ioas_id));
      std::vector<IovaRange> out;
      out.reserve(cmd.num_iovas);
      for (uint32_t j = 0; j < cmd.num_iovas && j < buf.size(); ++j) out.push_back({buf[j].start, buf[j].last});
      return out;
    }
    return absl::UnavailableError(
        absl::StrFormat("IOMMU_IOAS_IOVA_RANGES ioas %d: the number of ranges kept changing", ioas_id));
  }

  // struct iommu_hw_info with struct iommu_hw_info_vtd as the type-specific data; other IOMMU
  // types report only type and capabilities here.
  absl::StatusOr<HostIommuInfo> GetHwInfo(uint32_t dev_id) override {
    iommu_hw_info_vtd vtd{};
    iommu_hw_info cmd{};
    cmd.size = sizeof(cmd);
    cmd.dev_id = dev_id;
    cmd.data_len = sizeof(vtd);
    cmd.data_uptr = reinterpret_cast<uintptr_t>(&vtd);
    if (int e = Ioctl(fd_, IOMMU_GET_HW_INFO, &cmd))
      return IommufdErrno(e, absl::StrFormat("IOMMU_GET_HW_INFO dev %d", dev_id));
    HostIommuInfo info;
    info.type = cmd.out_data_type;
    info.out_capabilities = cmd.out_capabilities;
    info.max_pasid_log2 = cmd.out_max_pasid_log2;
    if (cmd.out_data_type == IOMMU_HW_INFO_TYPE_INTEL_VTD) {
      info.vtd_cap = vtd.cap_reg;
      info.vtd_ecap = vtd.ecap_reg;
      info.vtd_flags = vtd.flags;
    }
    return info;
  }

  // struct iommu_destroy. EBUSY while something still references the object (an attached device).
  absl::Status Destroy(uint32_t object_id) override {
    iommu_destroy cmd{};
    cmd.size = sizeof(cmd);
    cmd.id = object_id;
    int e = Ioctl(fd_, IOMMU_DESTROY, &cmd);
    if (e == 0) return absl::OkStatus();
    absl::Status s = IommufdErrno(e, absl::StrFormat("IOMMU_DESTROY id %d", object_id));
    if (e == EBUSY) return absl::Status(s.code(), absl::StrCat(s.message(), "; the object is still in use"));
    return s;
  }

 private:
  int fd_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<IommufdOps>> OpenKernelIommufd(int fd) {
  if (fd < 0) return absl::InvalidArgumentError(absl::StrFormat("iommufd: invalid /dev/iommu fd %d", fd));
  return std::make_unique<KernelIommufd>(fd);
}

}  // namespace ionest::iommufd
