#include "devices/vfio/vfio_cdev.h"

#include <fcntl.h>
#include <linux/vfio.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <cstddef>
#include <cstring>
#include <utility>

#include "absl/strings/cord.h"
#include "absl/types/optional.h"
#include "absl/strings/str_format.h"

namespace ionest::vfio {
namespace {

constexpr char kErrnoPayload[] = "ionest/errno";
constexpr uint64_t kPageSize = 4096;
constexpr int kMaxCaps = 64;
// Largest GET_REGION_INFO reply accepted (header + capabilities); the kernel's are < 1 KiB.
constexpr uint32_t kMaxRegionInfoSize = 64 * 1024;
constexpr size_t kRegionInfoSize = sizeof(vfio_region_info);  // 32
constexpr size_t kCapHeaderSize = sizeof(vfio_info_cap_header);  // 8
constexpr size_t kSparseHeaderSize = kCapHeaderSize + 8;         // header, nr_areas, reserved
constexpr size_t kSparseAreaSize = sizeof(vfio_region_sparse_mmap_area);  // 16
constexpr size_t kIrqSetHeaderSize = offsetof(vfio_irq_set, data);       // 20
static_assert(kRegionInfoSize == 32 && kCapHeaderSize == 8 && kSparseAreaSize == 16 && kIrqSetHeaderSize == 20);

// PASID attach/detach (Linux 6.15 include/uapi/linux/vfio.h; the bundled 6.12 header has only
// argsz/flags/pt_id and argsz/flags): the same ioctls with a flag and a trailing pasid field. A
// pre-6.15 kernel reads only the 6.12 part and rejects any flag with EINVAL.
struct VfioDeviceAttachIommufdPtPasid {
  __u32 argsz;
  __u32 flags;
  __u32 pt_id;
  __u32 pasid;
};
struct VfioDeviceDetachIommufdPtPasid {
  __u32 argsz;
  __u32 flags;
  __u32 pasid;
};
constexpr __u32 kVfioDeviceAttachPasid = 1u << 0;  // VFIO_DEVICE_ATTACH_PASID
constexpr __u32 kVfioDeviceDetachPasid = 1u << 0;  // VFIO_DEVICE_DETACH_PASID
static_assert(sizeof(VfioDeviceAttachIommufdPtPasid) == 16 && sizeof(VfioDeviceDetachIommufdPtPasid) == 12);
static_assert(offsetof(VfioDeviceAttachIommufdPtPasid, pt_id) == offsetof(vfio_device_attach_iommufd_pt, pt_id));

// ioctl(2) retried on EINTR; 0 or the errno.
int Ioctl(int fd, unsigned long request, void* arg) {
  for (;;) {
    if (ioctl(fd, request, arg) >= 0) return 0;
    if (errno != EINTR) return errno;
  }
}

template <typename T>
T Load(const uint8_t* p) {
  T v;
  std::memcpy(&v, p, sizeof(v));
  return v;
}

}  // namespace

UniqueFd& UniqueFd::operator=(UniqueFd&& o) noexcept {
  if (this != &o) Reset(o.Release());
  return *this;
}

void UniqueFd::Reset(int fd) {
  if (fd_ >= 0) close(fd_);
  fd_ = fd;
}

absl::Status VfioErrno(int err, std::string_view what) {
  absl::Status s(absl::ErrnoToStatusCode(err), absl::StrFormat("%s: %s (errno %d)", what, std::strerror(err), err));
  s.SetPayload(kErrnoPayload, absl::Cord(absl::StrFormat("%d", err)));
  return s;
}

int StatusErrno(const absl::Status& status) {
  absl::optional<absl::Cord> p = status.GetPayload(kErrnoPayload);
  if (!p) return 0;
  std::string text(*p);
  int err = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), err);
  return ec == std::errc() && end == text.data() + text.size() ? err : 0;
}

absl::StatusOr<RegionCaps> ParseRegionInfoCaps(const uint8_t* buf, size_t len, uint32_t first,
                                               uint64_t region_size) {
  RegionCaps caps;
  uint64_t off = first;
  for (int n = 0; off != 0; ++n) {
    if (n == kMaxCaps) return absl::InvalidArgumentError(absl::StrFormat("more than %d region capabilities", kMaxCaps));
    if (off < kRegionInfoSize || off > len || len - off < kCapHeaderSize) {
      return absl::InvalidArgumentError(
          absl::StrFormat("region capability at %#x is outside the reply [%#x, %#x)", off, kRegionInfoSize, len));
    }
    const uint8_t* p = buf + off;
    uint16_t id = Load<uint16_t>(p);
    uint32_t next = Load<uint32_t>(p + 4);
    if (next != 0 && next < off + kCapHeaderSize) {
      return absl::InvalidArgumentError(
          absl::StrFormat("region capability at %#x links back to %#x (the chain loops)", off, next));
    }
    if (id == VFIO_REGION_INFO_CAP_SPARSE_MMAP && !caps.has_sparse_mmap) {
      if (len - off < kSparseHeaderSize) {
        return absl::InvalidArgumentError(absl::StrFormat("sparse-mmap capability at %#x is truncated", off));
      }
      uint32_t nr = Load<uint32_t>(p + 8);
      if ((len - off - kSparseHeaderSize) / kSparseAreaSize < nr) {
        return absl::InvalidArgumentError(
            absl::StrFormat("sparse-mmap capability at %#x claims %u areas, more than the reply holds", off, nr));
      }
      caps.has_sparse_mmap = true;
      for (uint32_t i = 0; i < nr; ++i) {
        const uint8_t* a = p + kSparseHeaderSize + i * kSparseAreaSize;
        MmapArea area{Load<uint64_t>(a), Load<uint64_t>(a + 8)};
        if (area.offset > region_size || area.size > region_size - area.offset) {
          return absl::InvalidArgumentError(absl::StrFormat(
              "sparse-mmap area [%#x, +%#x) is outside the region (size %#x)", area.offset, area.size, region_size));
        }
        if (area.size != 0) caps.sparse_areas.push_back(area);
      }
    } else if (id == VFIO_REGION_INFO_CAP_MSIX_MAPPABLE) {
      caps.msix_mappable = true;
    }
    off = next;
  }
  return caps;
}

absl::StatusOr<ParsedRegion> ParseRegionInfo(const uint8_t* buf, size_t len) {
  if (len < kRegionInfoSize) {
    return absl::InvalidArgumentError(absl::StrFormat("region info reply of %d bytes is truncated", len));
  }
  vfio_region_info raw;
  std::memcpy(&raw, buf, sizeof(raw));
  ParsedRegion r;
  r.info.index = raw.index;
  r.info.flags = raw.flags;
  r.info.size = raw.size;
  r.fd_offset = raw.offset;
  if (raw.offset + raw.size < raw.offset) {
    return absl::InvalidArgumentError(absl::StrFormat("region at fd offset %#x size %#x wraps", raw.offset, raw.size));
  }
  if ((raw.flags & VFIO_REGION_INFO_FLAG_CAPS) && raw.cap_offset != 0) {
    absl::StatusOr<RegionCaps> caps = ParseRegionInfoCaps(buf, len, raw.cap_offset, raw.size);
    if (!caps.ok()) return caps.status();
    r.caps = std::move(*caps);
  }
  if ((raw.flags & VFIO_REGION_INFO_FLAG_MMAP) && raw.size != 0) {
    if (r.caps.has_sparse_mmap) {
      r.info.mmap_areas = r.caps.sparse_areas;
    } else {
      r.info.mmap_areas.push_back({0, raw.size});
    }
  }
  return r;
}

VfioCdev::VfioCdev(UniqueFd fd, std::string name, std::string sysfs_dir)
    : fd_(std::move(fd)), name_(std::move(name)), sysfs_dir_(std::move(sysfs_dir)) {}

VfioCdev::~VfioCdev() {
  absl::MutexLock lock(&mu_);
  for (auto& [addr, len] : mappings_) munmap(addr, len);
  mappings_.clear();
  // fd_ closes after this body.
}

absl::StatusOr<uint32_t> VfioCdev::BindIommufd(int iommufd) {
  vfio_device_bind_iommufd bind{};
  bind.argsz = sizeof(bind);
  bind.flags = 0;
  bind.iommufd = iommufd;
  if (int e = Ioctl(fd_.get(), VFIO_DEVICE_BIND_IOMMUFD, &bind)) {
    return VfioErrno(e, absl::StrFormat("VFIO_DEVICE_BIND_IOMMUFD (iommufd %d) on %s", iommufd, name_));
  }
  return bind.out_devid;
}

absl::Status VfioCdev::AttachPt(uint32_t pt_id) {
  vfio_device_attach_iommufd_pt attach{};
  attach.argsz = sizeof(attach);
  attach.pt_id = pt_id;
  if (int e = Ioctl(fd_.get(), VFIO_DEVICE_ATTACH_IOMMUFD_PT, &attach)) {
    return VfioErrno(e, absl::StrFormat("VFIO_DEVICE_ATTACH_IOMMUFD_PT (pt %u) on %s", pt_id, name_));
  }
  return absl::OkStatus();
}

absl::Status VfioCdev::DetachPt() {
  vfio_device_detach_iommufd_pt detach{};
  detach.argsz = sizeof(detach);
  if (int e = Ioctl(fd_.get(), VFIO_DEVICE_DETACH_IOMMUFD_PT, &detach)) {
    return VfioErrno(e, absl::StrFormat("VFIO_DEVICE_DETACH_IOMMUFD_PT on %s", name_));
  }
  return absl::OkStatus();
}

absl::Status VfioCdev::AttachPasid(uint32_t pasid, uint32_t pt_id) {
  VfioDeviceAttachIommufdPtPasid attach{};
  attach.argsz = sizeof(attach);
  attach.flags = kVfioDeviceAttachPasid;
  attach.pt_id = pt_id;
  attach.pasid = pasid;
  if (int e = Ioctl(fd_.get(), VFIO_DEVICE_ATTACH_IOMMUFD_PT, &attach)) {
    const std::string what = PasidAttachWhat(name_, pasid, pt_id);
    // 6.15+ says EOPNOTSUPP when the driver lacks pasid_attach_ioas; EINVAL is the pre-6.15
    // "flags must be 0" (vfio_df_ioctl_attach_pt).
    if (e == EINVAL) return NoPasidAttachError(what);
    return VfioErrno(e, what);
  }
  return absl::OkStatus();
}

absl::Status VfioCdev::DetachPasid(uint32_t pasid) {
  VfioDeviceDetachIommufdPtPasid detach{};
  detach.argsz = sizeof(detach);
  detach.flags = kVfioDeviceDetachPasid;
  detach.pasid = pasid;
  if (int e = Ioctl(fd_.get(), VFIO_DEVICE_DETACH_IOMMUFD_PT, &detach)) {
    const std::string what = PasidDetachWhat(name_, pasid);
    if (e == EINVAL) return NoPasidAttachError(what);
    return VfioErrno(e, what);
  }
  return absl::OkStatus();
}

absl::StatusOr<DeviceInfo> VfioCdev::GetInfo() {
  vfio_device_info info{};
  info.argsz = sizeof(info);
  if (int e = Ioctl(fd_.get(), VFIO_DEVICE_GET_INFO, &info)) {
    return VfioErrno(e, absl::StrFormat("VFIO_DEVICE_GET_INFO on %s", name_));
  }
  return DeviceInfo{info.flags, info.num_regions, info.num_irqs};
}

absl::StatusOr<const ParsedRegion*> VfioCdev::Region(uint32_t index) {
  {
    absl::MutexLock lock(&mu_);
    auto it = regions_.find(index);
    if (it != regions_.end()) return &it->second;
  }
  // First call with the bare struct; if the reply needs more room (capabilities), the kernel says
  // how much in argsz. Retried a few times in case it grows in between.
  uint32_t size = kRegionInfoSize;
  for (int attempt = 0; attempt < 4; ++attempt) {
    std::vector<uint64_t> words((size + 7) / 8, 0);  // 8-byte aligned, zeroed
    auto* raw = reinterpret_cast<vfio_region_info*>(words.data());
    raw->argsz = size;
    raw->index = index;
    if (int e = Ioctl(fd_.get(), VFIO_DEVICE_GET_REGION_INFO, raw)) {
      return VfioErrno(e, absl::StrFormat("VFIO_DEVICE_GET_REGION_INFO (region %u) on %s", index, name_));
    }
    if (raw->argsz > size) {
      if (raw->argsz > kMaxRegionInfoSize) {
        return absl::InternalError(absl::StrFormat("VFIO_DEVICE_GET_REGION_INFO (region %u) on %s wants %u bytes",
                                                   index, name_, raw->argsz));
      }
      size = raw->argsz;
      continue;
    }
    absl::StatusOr<ParsedRegion> parsed = ParseRegionInfo(reinterpret_cast<const uint8_t*>(words.data()), size);
    if (!parsed.ok()) {
      return absl::Status(parsed.status().code(), absl::StrFormat("VFIO_DEVICE_GET_REGION_INFO (region %u) on %s: %s",
                                                                  index, name_, parsed.status().message()));
    }
    parsed->info.index = index;
    absl::MutexLock lock(&mu_);
    return &regions_.emplace(index, std::move(*parsed)).first->second;  // first insert wins
  }
  return absl::InternalError(
      absl::StrFormat("VFIO_DEVICE_GET_REGION_INFO (region %u) on %s: reply size keeps changing", index, name_));
}

absl::StatusOr<RegionInfo> VfioCdev::GetRegionInfo(uint32_t index) {
  absl::StatusOr<const ParsedRegion*> r = Region(index);
  if (!r.ok()) return r.status();
  return (*r)->info;
}

absl::StatusOr<IrqInfo> VfioCdev::GetIrqInfo(uint32_t index) {
  vfio_irq_info info{};
  info.argsz = sizeof(info);
  info.index = index;
  if (int e = Ioctl(fd_.get(), VFIO_DEVICE_GET_IRQ_INFO, &info)) {
    return VfioErrno(e, absl::StrFormat("VFIO_DEVICE_GET_IRQ_INFO (index %u) on %s", index, name_));
  }
  return IrqInfo{index, info.flags, info.count};
}

absl::Status VfioCdev::Transfer(bool write, uint32_t index, uint64_t offset, void* data, size_t len) {
  const char* op = write ? "pwrite" : "pread";
  absl::StatusOr<const ParsedRegion*> found = Region(index);
  if (!found.ok()) return found.status();
  const ParsedRegion* r = *found;
  if (offset > r->info.size || len > r->info.size - offset) {
    return absl::OutOfRangeError(absl::StrFormat("%s region %u [%#x, +%#x) of %s: outside the region (size %#x)", op,
                                                 index, offset, len, name_, r->info.size));
  }
  if (!(write ? r->info.writable() : r->info.readable())) {
    return absl::FailedPreconditionError(
        absl::StrFormat("%s region %u of %s: the region is not %s", op, index, name_, write ? "writable" : "readable"));
  }
  auto* p = static_cast<uint8_t*>(data);
  size_t done = 0;
  while (done < len) {
    off_t pos = static_cast<off_t>(r->fd_offset + offset + done);
    ssize_t n = write ? pwrite(fd_.get(), p + done, len - done, pos) : pread(fd_.get(), p + done, len - done, pos);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      return VfioErrno(errno, absl::StrFormat("%s region %u [%#x, +%#x) of %s", op, index, offset + done, len - done,
                                              name_));
    }
    if (n == 0) {
      return absl::InternalError(absl::StrFormat("%s region %u [%#x, +%#x) of %s: transferred nothing", op, index,
                                                 offset + done, len - done, name_));
    }
    done += static_cast<size_t>(n);
  }
  return absl::OkStatus();
}

absl::Status VfioCdev::RegionRead(uint32_t index, uint64_t offset, void* data, size_t len) {
  return Transfer(false, index, offset, data, len);
}

absl::Status VfioCdev::RegionWrite(uint32_t index, uint64_t offset, const void* data, size_t len) {
  return Transfer(true, index, offset, const_cast<void*>(data), len);  // only read from when writing
}

absl::StatusOr<void*> VfioCdev::Mmap(uint32_t index, uint64_t offset, uint64_t len) {
  absl::StatusOr<const ParsedRegion*> found = Region(index);
  if (!found.ok()) return found.status();
  const ParsedRegion* r = *found;
  bool inside = false;
  for (const MmapArea& a : r->info.mmap_areas) {
    if (offset >= a.offset && offset - a.offset <= a.size && len <= a.size - (offset - a.offset)) inside = true;
  }
  if (len == 0 || offset % kPageSize || !inside) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "mmap region %u [%#x, +%#x) of %s: not a non-empty, page-aligned range inside an mmap area", index, offset,
        len, name_));
  }
  int prot = (r->info.readable() ? PROT_READ : 0) | (r->info.writable() ? PROT_WRITE : 0);
  void* p = mmap(nullptr, len, prot, MAP_SHARED, fd_.get(), static_cast<off_t>(r->fd_offset + offset));
  if (p == MAP_FAILED) {
    return VfioErrno(errno, absl::StrFormat("mmap region %u [%#x, +%#x) of %s", index, offset, len, name_));
  }
  absl::MutexLock lock(&mu_);
  mappings_[p] = len;
  return p;
}

void VfioCdev::Unmap(void* addr, uint64_t /*len*/) {
  absl::MutexLock lock(&mu_);
  auto it = mappings_.find(addr);
  if (it == mappings_.end()) return;
  munmap(it->first, it->second);
  mappings_.erase(it);
}

absl::Status VfioCdev::SetIrqs(uint32_t flags, uint32_t index, uint32_t start, uint32_t count,
                               std::span<const int> fds, const char* what) {
  size_t size = kIrqSetHeaderSize + fds.size() * sizeof(int32_t);
  std::vector<uint64_t> words((size + 7) / 8, 0);
  auto* set = reinterpret_cast<vfio_irq_set*>(words.data());
  set->argsz = static_cast<uint32_t>(size);
  set->flags = flags;
  set->index = index;
  set->start = start;
  set->count = count;
  for (size_t i = 0; i < fds.size(); ++i) {
    int32_t fd = fds[i];
    std::memcpy(reinterpret_cast<uint8_t*>(words.data()) + kIrqSetHeaderSize + i * sizeof(fd), &fd, sizeof(fd));
  }
  if (int e = Ioctl(fd_.get(), VFIO_DEVICE_SET_IRQS, set)) {
    return VfioErrno(e, absl::StrFormat("VFIO_DEVICE_SET_IRQS (%s, index %u, start %u, count %u) on %s", what, index,
                                        start, count, name_));
  }
  return absl::OkStatus();
}

absl::Status VfioCdev::SetIrqEventfds(uint32_t index, uint32_t start, std::span<const int> fds) {
  if (fds.empty() || fds.size() > 65536) {
    return absl::InvalidArgumentError(
        absl::StrFormat("VFIO_DEVICE_SET_IRQS on %s: %d eventfds (1..65536; DisableIrqs to disable)", name_, fds.size()));
  }
  return SetIrqs(VFIO_IRQ_SET_DATA_EVENTFD | VFIO_IRQ_SET_ACTION_TRIGGER, index, start,
                 static_cast<uint32_t>(fds.size()), fds, "eventfd trigger");
}

absl::Status VfioCdev::DisableIrqs(uint32_t index) {
  return SetIrqs(VFIO_IRQ_SET_DATA_NONE | VFIO_IRQ_SET_ACTION_TRIGGER, index, 0, 0, {}, "disable");
}

absl::Status VfioCdev::UnmaskIntx() {
  return SetIrqs(VFIO_IRQ_SET_DATA_NONE | VFIO_IRQ_SET_ACTION_UNMASK, VFIO_PCI_INTX_IRQ_INDEX, 0, 1, {}, "unmask");
}

absl::Status VfioCdev::Reset() {
  for (;;) {
    if (ioctl(fd_.get(), VFIO_DEVICE_RESET) >= 0) return absl::OkStatus();
    if (errno != EINTR) return VfioErrno(errno, absl::StrFormat("VFIO_DEVICE_RESET on %s", name_));
  }
}

absl::StatusOr<std::vector<uint8_t>> VfioCdev::ReadUnfilteredConfig() {
  if (sysfs_dir_.empty()) return absl::NotFoundError(absl::StrFormat("no sysfs directory known for %s", name_));
  std::string path = sysfs_dir_ + "/config";
  UniqueFd fd(open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd.valid()) {
    int e = errno;
    absl::Status s = VfioErrno(e, absl::StrFormat("open %s", path));
    return e == ENOENT ? absl::NotFoundError(s.message()) : s;
  }
  std::vector<uint8_t> config(4096);
  size_t done = 0;
  while (done < config.size()) {
    ssize_t n = pread(fd.get(), config.data() + done, config.size() - done, static_cast<off_t>(done));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return VfioErrno(errno, absl::StrFormat("read %s", path));
    if (n == 0) break;
    done += static_cast<size_t>(n);
  }
  if (done < 256) {
    return absl::NotFoundError(
        absl::StrFormat("%s: only %d bytes readable (the full config space needs root)", path, done));
  }
  config.resize(done);
  return config;
}

}  // namespace ionest::vfio
