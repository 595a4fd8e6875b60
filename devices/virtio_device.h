// Device-type half of a virtio device (virtio 1.2 §5): features, configuration space and queue
// processing. The transport (VirtioPciDevice) owns feature negotiation, status and the rings.
//
// Threading: every method is called with the transport's lock held, on the vCPU thread whose MMIO
// access triggered it (queue notify, config access, status write). Implementations need no locking
// of their own for state touched only from these calls; they may block (e.g. disk I/O), which
// stalls that vCPU.
#pragma once

#include <cstddef>
#include <cstdint>

#include "absl/status/status.h"
#include "devices/virtqueue.h"

namespace ionest {

// Transport-independent feature bits (virtio 1.2 §6).
inline constexpr uint64_t kVirtioFIndirectDesc = 1ull << 28;
inline constexpr uint64_t kVirtioFVersion1 = 1ull << 32;
inline constexpr uint64_t kVirtioFAccessPlatform = 1ull << 33;

class VirtioDevice {
 public:
  virtual ~VirtioDevice() = default;
  virtual uint16_t device_type() const = 0;  // virtio device ID (§5: 2 = block)
  virtual uint64_t device_features() const = 0;  // device-specific bits only
  virtual unsigned num_queues() const = 0;
  virtual uint16_t max_queue_size() const { return 256; }
  // Device configuration space (§4.1.4.6): little-endian, any offset/size within config_size().
  virtual uint32_t config_size() const = 0;
  virtual void ReadConfig(uint64_t offset, uint8_t* data, size_t size) = 0;
  virtual void WriteConfig(uint64_t offset, const uint8_t* data, size_t size) {}
  // After FEATURES_OK was accepted.
  virtual void SetDriverFeatures(uint64_t features) {}
  // Consume available chains of `queue`. An error marks the device as needing reset (§2.1.2).
  virtual absl::Status ProcessQueue(unsigned queue, SplitVirtqueue& vq) = 0;
  // Device reset (status written to 0).
  virtual void Reset() {}
  // Device-initiated work (e.g. events waiting for driver buffers): while true, the transport also
  // processes `queue` right after any queue the driver notified. Threads that are not inside these
  // callbacks use VirtioPciDevice::Kick instead.
  virtual bool HasPendingWork(unsigned queue) { return false; }
};

}  // namespace ionest
