// virtio-blk device backed by a raw image file (virtio 1.2 §5.2): one request queue; IN, OUT,
// FLUSH and GET_ID; optional read-only. Offered device features: SEG_MAX, BLK_SIZE, FLUSH (and RO).
//
// Every request is validated: header/status placement, sector range against the capacity (overflow
// checked), data length a multiple of 512, at most SplitVirtqueue::kMaxChainBytes. Data moves
// between the image and the guest in bounded chunks through the device's DmaSpace.
//
// Threading: see VirtioDevice (called under the transport lock on a vCPU thread; I/O is
// synchronous pread/pwrite/fdatasync on that thread).
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "devices/virtio_device.h"

namespace ionest {

class VirtioBlk final : public VirtioDevice {
 public:
  static constexpr uint16_t kDeviceType = 2;
  static constexpr uint32_t kPciClass = 0x010000;  // mass storage controller
  static constexpr uint64_t kSectorSize = 512;
  static constexpr uint32_t kSegMax = 126;
  // Largest segment; with kSegMax this bounds a request (plus header and status) below
  // SplitVirtqueue::kMaxChainBytes, so a conforming driver never trips the chain limit.
  static constexpr uint32_t kSizeMax = 512 << 10;
  static constexpr uint16_t kQueueSize = 256;
  // Feature bits (§5.2.3).
  static constexpr uint64_t kFSizeMax = 1ull << 1, kFSegMax = 1ull << 2, kFRo = 1ull << 5, kFBlkSize = 1ull << 6, kFFlush = 1ull << 9;
  // Request types and status values (§5.2.6).
  static constexpr uint32_t kTypeIn = 0, kTypeOut = 1, kTypeFlush = 4, kTypeGetId = 8;
  static constexpr uint8_t kStatusOk = 0, kStatusIoErr = 1, kStatusUnsupported = 2;
  static constexpr size_t kIdBytes = 20;

  struct Options {
    bool read_only = false;
    std::string serial = "ionest-blk";  // GET_ID string (truncated to 20 bytes)
  };
  // Opens `path` (O_RDWR, or O_RDONLY when read_only). The image size is rounded down to sectors.
  static absl::StatusOr<std::unique_ptr<VirtioBlk>> Open(const std::string& path, Options options);
  ~VirtioBlk() override;

  uint16_t device_type() const override { return kDeviceType; }
  uint64_t device_features() const override;
  unsigned num_queues() const override { return 1; }
  uint16_t max_queue_size() const override { return kQueueSize; }
  uint32_t config_size() const override { return kConfigSize; }
  void ReadConfig(uint64_t offset, uint8_t* data, size_t size) override;
  absl::Status ProcessQueue(unsigned queue, SplitVirtqueue& vq) override;

  uint64_t capacity_sectors() const { return capacity_sectors_; }
  uint64_t requests_completed() const { return completed_; }

 private:
  static constexpr uint32_t kConfigSize = 0x3C;
  VirtioBlk(int fd, uint64_t capacity_sectors, Options options)
      : fd_(fd), capacity_sectors_(capacity_sectors), options_(std::move(options)) {}
  // Handles one request; returns the status byte and the number of data bytes written to the guest.
  uint8_t Execute(SplitVirtqueue& vq, const VirtqChain& chain, uint32_t type, uint64_t sector, uint64_t* written);
  uint8_t Transfer(SplitVirtqueue& vq, const VirtqChain& chain, bool to_guest, uint64_t sector, uint64_t len);

  const int fd_;
  const uint64_t capacity_sectors_;
  const Options options_;
  uint64_t completed_ = 0;
};

}  // namespace ionest
