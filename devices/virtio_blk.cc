#include "devices/virtio_blk.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <vector>

#include "absl/strings/str_format.h"

namespace ionest {
namespace {

constexpr uint64_t kHeaderSize = 16;  // struct virtio_blk_req: le32 type, le32 reserved, le64 sector
constexpr uint64_t kChunk = 1 << 20;  // bounce-buffer size for data transfers
static_assert(uint64_t{VirtioBlk::kSegMax} * VirtioBlk::kSizeMax + kHeaderSize + 1 <= SplitVirtqueue::kMaxChainBytes);

bool PreadFull(int fd, uint8_t* buf, uint64_t len, uint64_t off) {
  while (len) {
    const ssize_t n = pread(fd, buf, len, static_cast<off_t>(off));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    buf += n;
    off += n;
    len -= n;
  }
  return true;
}

bool PwriteFull(int fd, const uint8_t* buf, uint64_t len, uint64_t off) {
  while (len) {
    const ssize_t n = pwrite(fd, buf, len, static_cast<off_t>(off));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    buf += n;
    off += n;
    len -= n;
  }
  return true;
}

}  // namespace

absl::StatusOr<std::unique_ptr<VirtioBlk>> VirtioBlk::Open(const std::string& path, Options options) {
  const int fd = open(path.c_str(), (options.read_only ? O_RDONLY : O_RDWR) | O_CLOEXEC);
  if (fd < 0) return absl::ErrnoToStatus(errno, absl::StrFormat("virtio-blk: open %s", path));
  struct stat st;
  if (fstat(fd, &st) != 0) {
    const int e = errno;
    close(fd);
    return absl::ErrnoToStatus(e, absl::StrFormat("virtio-blk: stat %s", path));
  }
  // A regular image file or a block device (the arm64 suites hand the outer host's /dev/vda to ionest);
  // a block device's st_size is 0, its size is where SEEK_END lands.
  if (!S_ISREG(st.st_mode) && !S_ISBLK(st.st_mode)) {
    close(fd);
    return absl::InvalidArgumentError(
        absl::StrFormat("virtio-blk: %s is neither a regular file nor a block device; give --disk an image file", path));
  }
  const off_t size = S_ISREG(st.st_mode) ? st.st_size : lseek(fd, 0, SEEK_END);
  if (size < 0) {
    const int e = errno;
    close(fd);
    return absl::ErrnoToStatus(e, absl::StrFormat("virtio-blk: size of %s", path));
  }
  return std::unique_ptr<VirtioBlk>(new VirtioBlk(fd, static_cast<uint64_t>(size) / kSectorSize, std::move(options)));
}

VirtioBlk::~VirtioBlk() { close(fd_); }

uint64_t VirtioBlk::device_features() const {
  return kFSizeMax | kFSegMax | kFBlkSize | kFFlush | (options_.read_only ? kFRo : 0);
}

void VirtioBlk::ReadConfig(uint64_t offset, uint8_t* data, size_t size) {
  // struct virtio_blk_config (§5.2.4): capacity @0, size_max @8, seg_max @12, geometry @16,
  // blk_size @20, topology @24, writeback @32, num_queues @34, ...
  uint8_t cfg[kConfigSize] = {};
  std::memcpy(cfg + 0, &capacity_sectors_, 8);
  const uint32_t size_max = kSizeMax, seg_max = kSegMax, blk_size = kSectorSize;
  std::memcpy(cfg + 8, &size_max, 4);
  std::memcpy(cfg + 12, &seg_max, 4);
  std::memcpy(cfg + 20, &blk_size, 4);
  const uint16_t num_queues = 1;
  std::memcpy(cfg + 34, &num_queues, 2);
  for (size_t i = 0; i < size && offset + i < kConfigSize; ++i) data[i] = cfg[offset + i];
}

uint8_t VirtioBlk::Transfer(SplitVirtqueue& vq, const VirtqChain& chain, bool to_guest, uint64_t sector, uint64_t len) {
  if (len % kSectorSize) return kStatusIoErr;
  const uint64_t sectors = len / kSectorSize;
  if (sector > capacity_sectors_ || sectors > capacity_sectors_ - sector) return kStatusIoErr;
  if (!to_guest && options_.read_only) return kStatusIoErr;
  std::vector<uint8_t> buf(std::min(len, kChunk));
  const uint64_t base = sector * kSectorSize;
  for (uint64_t done = 0; done < len;) {
    const uint64_t n = std::min(len - done, kChunk);
    if (to_guest) {
      if (!PreadFull(fd_, buf.data(), n, base + done)) return kStatusIoErr;
      if (!vq.WriteTo(chain, done, buf.data(), n).ok()) return kStatusIoErr;  // DMA fault: IOMMU recorded it
    } else {
      if (!vq.ReadFrom(chain, kHeaderSize + done, buf.data(), n).ok()) return kStatusIoErr;
      if (!PwriteFull(fd_, buf.data(), n, base + done)) return kStatusIoErr;
    }
    done += n;
  }
  return kStatusOk;
}

uint8_t VirtioBlk::Execute(SplitVirtqueue& vq, const VirtqChain& chain, uint32_t type, uint64_t sector,
                           uint64_t* written) {
  // Readable: header [+ data for OUT]; writable: [data for IN/GET_ID +] status byte.
  const uint64_t in_data = chain.writable_bytes - 1;
  const uint64_t out_data = chain.readable_bytes - kHeaderSize;
  switch (type) {
    case kTypeIn: {
      const uint8_t s = Transfer(vq, chain, /*to_guest=*/true, sector, in_data);
      if (s == kStatusOk) *written = in_data;
      return s;
    }
    case kTypeOut:
      return Transfer(vq, chain, /*to_guest=*/false, sector, out_data);
    case kTypeFlush:
      return fdatasync(fd_) == 0 ? kStatusOk : kStatusIoErr;
    case kTypeGetId: {
      uint8_t id[kIdBytes] = {};
      std::memcpy(id, options_.serial.data(), std::min(options_.serial.size(), kIdBytes));
      const uint64_t n = std::min<uint64_t>(in_data, kIdBytes);
      if (!vq.WriteTo(chain, 0, id, n).ok()) return kStatusIoErr;
      *written = n;
      return kStatusOk;
    }
    default:
      return kStatusUnsupported;
  }
}

absl::Status VirtioBlk::ProcessQueue(unsigned queue, SplitVirtqueue& vq) {
  if (queue != 0) return absl::OkStatus();
  // Bounded per notify: at most one ring's worth; the driver notifies again for more.
  for (unsigned i = 0; i < vq.layout().size; ++i) {
    absl::StatusOr<std::optional<VirtqChain>> next = vq.Pop();
    if (!next.ok()) return next.status();
    if (!next->has_value()) return absl::OkStatus();
    const VirtqChain& chain = **next;
    uint64_t written = 0;
    uint8_t status = kStatusIoErr;
    uint8_t header[kHeaderSize];
    if (chain.readable_bytes < kHeaderSize || chain.writable_bytes < 1) {
      // No room for the header or the status byte: nothing sensible can be reported in-band.
      if (chain.writable_bytes >= 1) {
        const uint8_t s = kStatusIoErr;
        (void)vq.WriteTo(chain, chain.writable_bytes - 1, &s, 1);
      }
      if (absl::Status s = vq.Push(chain.head, chain.writable_bytes ? 1 : 0); !s.ok()) return s;
      continue;
    }
    if (vq.ReadFrom(chain, 0, header, sizeof(header)).ok()) {
      uint32_t type;
      uint64_t sector;
      std::memcpy(&type, header, 4);
      std::memcpy(&sector, header + 8, 8);
      status = Execute(vq, chain, type, sector, &written);
    }
    // The status byte is the last writable byte (§5.2.6).
    (void)vq.WriteTo(chain, chain.writable_bytes - 1, &status, 1);
    if (absl::Status s = vq.Push(chain.head, static_cast<uint32_t>(written + 1)); !s.ok()) return s;
    ++completed_;
  }
  return absl::OkStatus();
}

}  // namespace ionest
