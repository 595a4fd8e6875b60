#include "iommu/iommufd/iommufd_kernel.h"

#include <linux/iommufd.h>
#include <poll.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"

namespace ionest::iommufd {

std::string FormatIovaLen(uint64_t iova, uint64_t len) { return absl::StrFormat("[0x%x, +0x%x)", iova, len); }

std::string FormatIovaRange(const IovaRange& range) {
  return absl::StrFormat("[0x%x, 0x%x]", range.start, range.last);
}

absl::Status IommufdErrno(int err, absl::string_view what) {
  return absl::Status(absl::ErrnoToStatusCode(err), absl::StrFormat("%s: %s (errno %d)", what, std::strerror(err), err));
}

std::string FormatHwptAlloc(const HwptAllocRequest& r) {
  std::vector<std::string> parts;
  if (r.nest_parent) parts.push_back("nest parent");
  if (r.fault_id) parts.push_back(absl::StrFormat("fault %d", *r.fault_id));
  if (r.vtd_s1) {
    const VtdStage1& s1 = *r.vtd_s1;
    parts.push_back(absl::StrFormat("VTD_S1 pgtbl 0x%x aw %d%s%s%s", s1.pgtbl_addr, s1.addr_width, s1.sre ? " SRE" : "",
                                    s1.eafe ? " EAFE" : "", s1.wpe ? " WPE" : ""));
  }
  std::string out = absl::StrFormat("IOMMU_HWPT_ALLOC dev %d pt %d", r.dev_id, r.pt_id);
  if (!parts.empty()) absl::StrAppend(&out, " (", absl::StrJoin(parts, ", "), ")");
  return out;
}

std::string FormatInvalidate(uint32_t hwpt_id, std::span<const VtdS1Invalidation> entries, uint32_t done) {
  std::string out = absl::StrFormat("IOMMU_HWPT_INVALIDATE hwpt %d (%d VTD_S1 entries, %d done", hwpt_id,
                                    entries.size(), done);
  if (done < entries.size()) {
    const VtdS1Invalidation& e = entries[done];
    absl::StrAppendFormat(&out, "; next addr 0x%x npages 0x%x%s", e.addr, e.npages, e.leaf ? " leaf" : "");
  }
  out += ")";
  return out;
}

absl::Status ShortResponseWrite(int fault_fd, size_t count, size_t written) {
  const size_t size = sizeof(iommu_hwpt_page_response);
  return absl::InvalidArgumentError(absl::StrFormat(
      "write of %d page responses (%d bytes) to fault fd %d: only %d bytes (%d responses) taken; the kernel stops at "
      "the first unknown cookie or invalid response code",
      count, count * size, fault_fd, written, written / size));
}

namespace {

// Limits the IOMMU_IOAS_IOVA_RANGES size/fill loop should the ranges keep changing under us.
constexpr int kIovaRangesTries = 8;
// Most fault records one ReadFaults reads (a 128 KiB buffer); more wait for the next call.
constexpr size_t kMaxFaultRecords = 4096;
static_assert(sizeof(iommu_hwpt_pgfault) == 40 && sizeof(iommu_hwpt_page_response) == 8 &&
              sizeof(iommu_hwpt_vtd_s1_invalidate) == 24 && sizeof(iommu_hwpt_vtd_s1) == 24);

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
    return MapFixedAccess(ioas_id, iova, va, len, /*readable=*/true, writeable);
  }
  absl::Status MapFixedAccess(uint32_t ioas_id, uint64_t iova, void* va, uint64_t len, bool readable,
                              bool writeable) override {
    iommu_ioas_map cmd{};
    cmd.size = sizeof(cmd);
    cmd.flags = IOMMU_IOAS_MAP_FIXED_IOVA | (readable ? IOMMU_IOAS_MAP_READABLE : 0) |
                (writeable ? IOMMU_IOAS_MAP_WRITEABLE : 0);
    cmd.ioas_id = ioas_id;
    cmd.user_va = reinterpret_cast<uintptr_t>(va);
    cmd.length = len;
    cmd.iova = iova;
    int e = Ioctl(fd_, IOMMU_IOAS_MAP, &cmd);
    if (e == 0) return absl::OkStatus();
    absl::Status s = IommufdErrno(e, absl::StrFormat("IOMMU_IOAS_MAP ioas %d iova %s from va %p%s", ioas_id,
                                                     FormatIovaLen(iova, len), va,
                                                     !readable ? " write-only" : writeable ? "" : " read-only"));
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

  // struct iommu_hwpt_alloc (drivers/iommu/iommufd/hw_pagetable.c, iommufd_hwpt_alloc). pt_id an
  // IOAS: a paging HWPT (DATA_NONE; NEST_PARENT makes it a nesting stage 2, EOPNOTSUPP where the
  // host IOMMU cannot nest). pt_id a nest-parent HWPT: a nested HWPT with DATA_VTD_S1 (EINVAL if
  // the parent is no nest parent). Unknown dev_id or fault_id: ENOENT; unknown pt_id: EINVAL.
  absl::StatusOr<uint32_t> AllocHwpt(const HwptAllocRequest& request) override {
    iommu_hwpt_vtd_s1 s1{};
    iommu_hwpt_alloc cmd{};
    cmd.size = sizeof(cmd);
    cmd.flags = (request.nest_parent ? IOMMU_HWPT_ALLOC_NEST_PARENT : 0) |
                (request.fault_id ? IOMMU_HWPT_FAULT_ID_VALID : 0);
    cmd.dev_id = request.dev_id;
    cmd.pt_id = request.pt_id;
    cmd.data_type = IOMMU_HWPT_DATA_NONE;
    if (request.vtd_s1) {
      const VtdStage1& v = *request.vtd_s1;
      s1.flags = (v.sre ? IOMMU_VTD_S1_SRE : 0) | (v.eafe ? IOMMU_VTD_S1_EAFE : 0) | (v.wpe ? IOMMU_VTD_S1_WPE : 0);
      s1.pgtbl_addr = v.pgtbl_addr;
      s1.addr_width = v.addr_width;
      cmd.data_type = IOMMU_HWPT_DATA_VTD_S1;
      cmd.data_len = sizeof(s1);
      cmd.data_uptr = reinterpret_cast<uintptr_t>(&s1);
    }
    cmd.fault_id = request.fault_id.value_or(0);
    int e = Ioctl(fd_, IOMMU_HWPT_ALLOC, &cmd);
    if (e == 0) return cmd.out_hwpt_id;
    absl::Status s = IommufdErrno(e, FormatHwptAlloc(request));
    const char* hint = nullptr;
    if (e == EOPNOTSUPP && request.nest_parent)
      hint = "the host IOMMU cannot nest (VT-d ECAP.NEST clear) or the kernel lacks nesting";
    if (e == EINVAL && request.vtd_s1) hint = "pt must be a nest-parent HWPT";
    return hint ? absl::Status(s.code(), absl::StrCat(s.message(), "; ", hint)) : s;
  }

  // struct iommu_hwpt_invalidate with every entry in one array. The kernel writes back in
  // entry_num how many entries it handled, also when it fails (intel_nested_cache_invalidate_user
  // stops at the first bad entry: EINVAL for a misaligned addr, EOPNOTSUPP for unknown flags).
  InvalidateResult InvalidateVtdS1(uint32_t hwpt_id, std::span<const VtdS1Invalidation> entries) override {
    std::vector<iommu_hwpt_vtd_s1_invalidate> buf(entries.size());
    for (size_t i = 0; i < entries.size(); ++i) {
      buf[i].addr = entries[i].addr;
      buf[i].npages = entries[i].npages;
      buf[i].flags = entries[i].leaf ? IOMMU_VTD_INV_FLAGS_LEAF : 0;
    }
    iommu_hwpt_invalidate cmd{};
    cmd.size = sizeof(cmd);
    cmd.hwpt_id = hwpt_id;
    cmd.data_uptr = buf.empty() ? 0 : reinterpret_cast<uintptr_t>(buf.data());
    cmd.data_type = IOMMU_HWPT_INVALIDATE_DATA_VTD_S1;
    cmd.entry_len = sizeof(iommu_hwpt_vtd_s1_invalidate);
    cmd.entry_num = static_cast<uint32_t>(entries.size());
    int e = Ioctl(fd_, IOMMU_HWPT_INVALIDATE, &cmd);
    if (e == 0) return {absl::OkStatus(), static_cast<uint32_t>(entries.size())};
    // A failed call handled fewer entries than given. entry_num still holding our count means the
    // ioctl never reached the handler (ENOTTY on a kernel without it, EBADF, EFAULT): none ran.
    uint32_t done = cmd.entry_num < entries.size() ? cmd.entry_num : 0;
    return {IommufdErrno(e, FormatInvalidate(hwpt_id, entries, done)), done};
  }

  // struct iommu_fault_alloc (flags 0). The fault fd is the caller's (O_CLOEXEC, as the kernel
  // makes it).
  absl::StatusOr<FaultQueue> AllocFaultQueue() override {
    iommu_fault_alloc cmd{};
    cmd.size = sizeof(cmd);
    if (int e = Ioctl(fd_, IOMMU_FAULT_QUEUE_ALLOC, &cmd)) return IommufdErrno(e, "IOMMU_FAULT_QUEUE_ALLOC");
    return FaultQueue{cmd.out_fault_id, static_cast<int>(cmd.out_fault_fd)};
  }

  // iommufd_fault_fops_read never blocks (0 when nothing is queued) and hands out whole fault
  // groups only: a group larger than the buffer stays queued, so `max` must cover the largest group
  // (the device's PRG). poll() with a zero timeout first keeps any other fd (a test's pipe or
  // eventfd) from blocking.
  absl::StatusOr<std::vector<HostPageFault>> ReadFaults(int fault_fd, size_t max) override {
    std::vector<HostPageFault> out;
    max = std::min(max, kMaxFaultRecords);
    if (max == 0) return out;
    const std::string what = absl::StrFormat("read of fault fd %d (up to %d records)", fault_fd, max);
    pollfd p{fault_fd, POLLIN, 0};
    for (;;) {
      int n = poll(&p, 1, 0);
      if (n >= 0) break;
      if (errno != EINTR) return IommufdErrno(errno, absl::StrCat("poll of ", what));
    }
    if (p.revents & POLLNVAL) return IommufdErrno(EBADF, what);
    if (!(p.revents & (POLLIN | POLLERR | POLLHUP))) return out;
    std::vector<iommu_hwpt_pgfault> buf(max);
    ssize_t n;
    for (;;) {
      n = read(fault_fd, buf.data(), buf.size() * sizeof(iommu_hwpt_pgfault));
      if (n >= 0) break;
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) return out;
      return IommufdErrno(errno, what);
    }
    if (n % sizeof(iommu_hwpt_pgfault) != 0) {
      return absl::InternalError(absl::StrFormat("%s: got %d bytes, not a whole number of %d-byte records", what, n,
                                                 sizeof(iommu_hwpt_pgfault)));
    }
    out.reserve(n / sizeof(iommu_hwpt_pgfault));
    for (size_t i = 0; i < static_cast<size_t>(n) / sizeof(iommu_hwpt_pgfault); ++i) {
      const iommu_hwpt_pgfault& r = buf[i];
      HostPageFault f;
      f.pasid_valid = r.flags & IOMMU_PGFAULT_FLAGS_PASID_VALID;
      f.last = r.flags & IOMMU_PGFAULT_FLAGS_LAST_PAGE;
      f.dev_id = r.dev_id;
      f.pasid = r.pasid;
      f.grpid = r.grpid;
      f.perm = r.perm;
      f.addr = r.addr;
      f.length = r.length;
      f.cookie = r.cookie;
      out.push_back(f);
    }
    return out;
  }

  // One write(2) of the whole array (iommufd_fault_fops_write consumes whole records and returns
  // the bytes of those it took; EINVAL if the first has an unknown cookie or code).
  absl::Status WriteResponses(int fault_fd, std::span<const HostPageResponse> responses) override {
    if (responses.empty()) return absl::OkStatus();
    std::vector<iommu_hwpt_page_response> buf(responses.size());
    for (size_t i = 0; i < responses.size(); ++i) {
      buf[i].cookie = responses[i].cookie;
      buf[i].code = static_cast<uint32_t>(responses[i].code);
    }
    const size_t len = buf.size() * sizeof(iommu_hwpt_page_response);
    ssize_t n;
    for (;;) {
      n = write(fault_fd, buf.data(), len);
      if (n >= 0 || errno != EINTR) break;
    }
    if (n < 0) {
      return IommufdErrno(errno, absl::StrFormat("write of %d page responses to fault fd %d", responses.size(),
                                                 fault_fd));
    }
    if (static_cast<size_t>(n) != len) return ShortResponseWrite(fault_fd, responses.size(), static_cast<size_t>(n));
    return absl::OkStatus();
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
