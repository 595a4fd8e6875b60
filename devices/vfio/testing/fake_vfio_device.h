// FakeVfioDevice: a VfioDeviceOps test double modelling one vfio-pci function in memory (test-only).
//
// - Config space: 4 KiB of bytes (the "unfiltered" view, what ReadUnfilteredConfig returns). The
//   VFIO config region shows the same bytes except that hidden extended capabilities are unlinked
//   from the list, as vfio-pci 6.12 does for capabilities it has no permission table for (PASID):
//   the previous capability's Next pointer skips them (the first one in the list keeps its place
//   with ID 0). Config-region writes are recorded; writes into read-only ranges (vfio-pci's
//   ATS/PRI, which it exposes read-only) are dropped, the rest are stored.
// - Regions: RegionInfo per index, BAR regions backed by byte arrays. RegionRead/Write copy to or
//   from them; Mmap returns a pointer into them (only inside a declared mmap area).
// - Interrupts: IrqInfo per index; SetIrqEventfds keeps a dup of each eventfd (as the kernel keeps
//   a reference) and FireInterrupt(index, v) signals it. Only one of MSI/MSI-X may be enabled at a
//   time (vfio-pci refuses the other with EINVAL).
// - Every SetIrqEventfds/DisableIrqs/Reset/config write is recorded; any operation can be made to
//   fail (InjectError).
// - PASID attach: AttachPasid/DetachPasid are recorded (pasid_calls()) and, by default, behave as a
//   Linux 6.15+ host: attach binds (or replaces) the PASID's pt, detach forgets it (a PASID never
//   attached is fine, as in vfio). SetPasidAttachSupported(false) makes them behave as 6.12: every
//   call fails with NoPasidAttachError (vfio_cdev.h), the message VfioCdev gives, and changes
//   nothing (the call is still recorded).
//
// Typical() builds a typical PCIe endpoint (see FakeDeviceSpec and the k* offsets below).
// Thread safety: all methods may be called concurrently (one internal lock); the BAR bytes behind
// a mapping are accessed without it, like device memory.
#pragma once

#include <array>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "devices/vfio/vfio_device_ops.h"

namespace ionest::vfio::testing {

// Host config-space layout of Typical().
inline constexpr uint16_t kFakePcieCap = 0x40;
inline constexpr uint16_t kFakeMsiCap = 0x80;   // when msi_vectors > 0
inline constexpr uint16_t kFakeMsixCap = 0xA0;  // when msix_vectors > 0
inline constexpr uint16_t kFakeVirtioCommonCap = 0xC0;  // when virtio_caps: vendor-specific, 16 bytes
inline constexpr uint16_t kFakeVirtioNotifyCap = 0xD0;  // 20 bytes
inline constexpr uint16_t kFakeAtsCap = 0x100;
inline constexpr uint16_t kFakePasidCap = 0x110;
inline constexpr uint16_t kFakePriCap = 0x120;
// BAR2 layout: MSI-X table at 0, PBA at 0x800; the sparse mmap area excludes the first page.
inline constexpr uint32_t kFakeMsixTableOffset = 0x0;
inline constexpr uint32_t kFakeMsixPbaOffset = 0x800;
inline constexpr uint64_t kFakeBar0HostAddress = 0xFE000000;
inline constexpr uint64_t kFakeBar2HostAddress = 0x3800'0000'0000;

struct FakeDeviceSpec {
  uint16_t vendor_id = 0x8086;
  uint16_t device_id = 0x0B25;
  uint32_t class_code = 0x088000;
  uint8_t revision = 0x04;
  uint16_t subsystem_vendor_id = 0x1AF4;
  uint16_t subsystem_id = 0x1100;
  uint64_t bar0_size = 0x1000;  // 64-bit memory, registers; whole BAR mmappable
  bool bar0_mmap = true;
  uint64_t bar2_size = 0x4000;  // 64-bit prefetchable memory: MSI-X table/PBA, sparse mmap past page 0
  bool bar2_mmap = true;
  bool bar2_msix_mappable = false;  // vfio-pci 6.12: the whole BAR mmappable, MSI-X page included
  uint32_t io_bar_size = 0;  // BAR4 I/O (pread/pwrite only) when non-zero
  unsigned msix_vectors = 8;  // 0: no MSI-X capability
  unsigned msi_vectors = 0;   // 0: no MSI capability; else a power of two <= 32
  bool pcie = true;
  uint8_t pcie_type = 0;  // Endpoint
  uint32_t devcap = 0x00008001 | (1u << 28);  // RBER, 256 B MPS, FLR
  uint32_t devcap2 = 0x0000001F | (1u << 21);  // completion timeouts, EE TLP prefix
  bool ats = true;
  uint16_t ats_cap = 0x0065;  // queue depth 5, page aligned request, global invalidate
  bool pri = true;
  uint32_t pri_capacity = 0x100;
  bool pasid = true;
  uint16_t pasid_cap = 0x1002;  // exec supported, 16-bit PASIDs
  bool hide_pasid = true;       // as vfio-pci 6.12
  bool unfiltered_config = true;
  bool can_reset = true;
  // Two virtio 1.2 §4.1.4 vendor-specific capabilities (common config, notify) after the others.
  bool virtio_caps = false;
};

// Operations that error injection can target.
enum class FakeOp {
  kGetInfo,
  kGetRegionInfo,
  kGetIrqInfo,
  kConfigRead,   // RegionRead on the config region
  kConfigWrite,  // RegionWrite on the config region
  kBarRead,      // RegionRead on any other region
  kBarWrite,
  kMmap,
  kSetIrqs,
  kDisableIrqs,
  kReset,
  kUnfilteredConfig,
  kAttachPasid,
  kDetachPasid,
  kCount,
};

class FakeVfioDevice final : public VfioDeviceOps {
 public:
  struct ConfigWrite {
    uint64_t offset = 0;
    std::vector<uint8_t> data;
    uint32_t Value() const;  // little-endian, up to 4 bytes
  };
  struct IrqCall {
    uint32_t index = 0;
    uint32_t start = 0;
    std::vector<int> fds;  // the caller's fd numbers
  };
  struct PasidCall {
    bool attach = false;  // AttachPasid, else DetachPasid
    uint32_t pasid = 0;
    uint32_t pt_id = 0;  // 0 for a detach
    bool operator==(const PasidCall&) const = default;
  };

  explicit FakeVfioDevice(std::string name = "fake-vfio");
  ~FakeVfioDevice() override;
  static std::unique_ptr<FakeVfioDevice> Typical(const FakeDeviceSpec& spec = {});

  // ---- Setup --------------------------------------------------------------------------------
  void SetDeviceInfo(const DeviceInfo& info) ABSL_LOCKS_EXCLUDED(mu_);
  // Defines region info.index; BAR regions (index < 6) get `info.size` zeroed bytes of memory.
  void SetRegion(const RegionInfo& info) ABSL_LOCKS_EXCLUDED(mu_);
  void SetIrq(const IrqInfo& info) ABSL_LOCKS_EXCLUDED(mu_);
  // Unfiltered config bytes (little-endian; size 1, 2 or 4).
  void SetConfig(uint32_t offset, uint32_t value, size_t size) ABSL_LOCKS_EXCLUDED(mu_);
  uint32_t GetConfig(uint32_t offset, size_t size) const ABSL_LOCKS_EXCLUDED(mu_);
  void HideExtCap(uint16_t id) ABSL_LOCKS_EXCLUDED(mu_);
  void SetConfigReadOnly(uint32_t offset, uint32_t len) ABSL_LOCKS_EXCLUDED(mu_);
  void SetUnfilteredAvailable(bool available) ABSL_LOCKS_EXCLUDED(mu_);
  // The next `times` calls of `op` (-1: all) fail with `status`.
  void InjectError(FakeOp op, absl::Status status, int times = -1) ABSL_LOCKS_EXCLUDED(mu_);
  void ClearErrors() ABSL_LOCKS_EXCLUDED(mu_);
  // false: AttachPasid/DetachPasid fail as on a Linux 6.12 host (NoPasidAttachError). Default true.
  void SetPasidAttachSupported(bool supported) ABSL_LOCKS_EXCLUDED(mu_);

  // ---- Observation --------------------------------------------------------------------------
  std::vector<ConfigWrite> config_writes() const ABSL_LOCKS_EXCLUDED(mu_);
  std::vector<IrqCall> set_irq_calls() const ABSL_LOCKS_EXCLUDED(mu_);
  std::vector<uint32_t> disable_irq_calls() const ABSL_LOCKS_EXCLUDED(mu_);
  int reset_calls() const ABSL_LOCKS_EXCLUDED(mu_);
  // Every AttachPasid/DetachPasid call in order (failed ones included), and the PASIDs attached now
  // (PASID → pt_id).
  std::vector<PasidCall> pasid_calls() const ABSL_LOCKS_EXCLUDED(mu_);
  std::map<uint32_t, uint32_t> attached_pasids() const ABSL_LOCKS_EXCLUDED(mu_);
  // pread/pwrite calls on a region (mapped accesses are not seen).
  uint64_t region_reads(uint32_t index) const ABSL_LOCKS_EXCLUDED(mu_);
  uint64_t region_writes(uint32_t index) const ABSL_LOCKS_EXCLUDED(mu_);
  int mmap_calls() const ABSL_LOCKS_EXCLUDED(mu_);
  int live_mappings() const ABSL_LOCKS_EXCLUDED(mu_);
  // The interrupt index enabled by SetIrqEventfds (none after DisableIrqs), and its vectors with
  // an eventfd.
  std::optional<uint32_t> enabled_irq_index() const ABSL_LOCKS_EXCLUDED(mu_);
  size_t registered_vectors(uint32_t index) const ABSL_LOCKS_EXCLUDED(mu_);
  // BAR bytes (little-endian access, size <= 8); out of range reads 0 / writes nothing.
  uint64_t BarPeek(uint32_t index, uint64_t offset, size_t size) const ABSL_LOCKS_EXCLUDED(mu_);
  void BarPoke(uint32_t index, uint64_t offset, uint64_t value, size_t size) ABSL_LOCKS_EXCLUDED(mu_);
  // Host interrupt on vector v of `index`: adds 1 to its eventfd. False if none is registered.
  bool FireInterrupt(uint32_t index, uint32_t v) ABSL_LOCKS_EXCLUDED(mu_);

  // ---- VfioDeviceOps ------------------------------------------------------------------------
  const std::string& name() const override { return name_; }
  absl::StatusOr<uint32_t> BindIommufd(int iommufd) override;
  absl::Status AttachPt(uint32_t pt_id) override;
  absl::Status DetachPt() override;
  absl::Status AttachPasid(uint32_t pasid, uint32_t pt_id) override ABSL_LOCKS_EXCLUDED(mu_);
  absl::Status DetachPasid(uint32_t pasid) override ABSL_LOCKS_EXCLUDED(mu_);
  absl::StatusOr<DeviceInfo> GetInfo() override ABSL_LOCKS_EXCLUDED(mu_);
  absl::StatusOr<RegionInfo> GetRegionInfo(uint32_t index) override ABSL_LOCKS_EXCLUDED(mu_);
  absl::StatusOr<IrqInfo> GetIrqInfo(uint32_t index) override ABSL_LOCKS_EXCLUDED(mu_);
  absl::Status RegionRead(uint32_t index, uint64_t offset, void* data, size_t len) override ABSL_LOCKS_EXCLUDED(mu_);
  absl::Status RegionWrite(uint32_t index, uint64_t offset, const void* data, size_t len) override
      ABSL_LOCKS_EXCLUDED(mu_);
  absl::StatusOr<void*> Mmap(uint32_t index, uint64_t offset, uint64_t len) override ABSL_LOCKS_EXCLUDED(mu_);
  void Unmap(void* addr, uint64_t len) override ABSL_LOCKS_EXCLUDED(mu_);
  absl::Status SetIrqEventfds(uint32_t index, uint32_t start, std::span<const int> fds) override
      ABSL_LOCKS_EXCLUDED(mu_);
  absl::Status DisableIrqs(uint32_t index) override ABSL_LOCKS_EXCLUDED(mu_);
  absl::Status UnmaskIntx() override;
  absl::Status Reset() override ABSL_LOCKS_EXCLUDED(mu_);
  absl::StatusOr<std::vector<uint8_t>> ReadUnfilteredConfig() override ABSL_LOCKS_EXCLUDED(mu_);

 private:
  struct Injected {
    absl::Status status;
    int times = 0;
  };
  // Consumes one injected failure of `op`, if any.
  absl::Status Injection(FakeOp op) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  std::array<uint8_t, 4096> VfioView() const ABSL_SHARED_LOCKS_REQUIRED(mu_);
  void CloseIrqFdsLocked(uint32_t index) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const std::string name_;
  mutable absl::Mutex mu_;
  DeviceInfo info_ ABSL_GUARDED_BY(mu_);
  std::map<uint32_t, RegionInfo> regions_ ABSL_GUARDED_BY(mu_);
  std::map<uint32_t, IrqInfo> irqs_ ABSL_GUARDED_BY(mu_);
  // BAR memory; never resized after SetRegion, so mappings stay valid.
  std::array<std::vector<uint8_t>, kNumBarRegions> bars_ ABSL_GUARDED_BY(mu_);
  std::array<uint8_t, 4096> config_ ABSL_GUARDED_BY(mu_){};
  std::vector<uint16_t> hidden_ ABSL_GUARDED_BY(mu_);
  std::vector<std::pair<uint32_t, uint32_t>> read_only_ ABSL_GUARDED_BY(mu_);
  bool unfiltered_ ABSL_GUARDED_BY(mu_) = true;
  std::array<Injected, static_cast<size_t>(FakeOp::kCount)> inject_ ABSL_GUARDED_BY(mu_);
  std::vector<ConfigWrite> config_writes_ ABSL_GUARDED_BY(mu_);
  std::vector<IrqCall> irq_calls_ ABSL_GUARDED_BY(mu_);
  std::vector<uint32_t> disable_calls_ ABSL_GUARDED_BY(mu_);
  int resets_ ABSL_GUARDED_BY(mu_) = 0;
  std::map<uint32_t, uint64_t> reads_ ABSL_GUARDED_BY(mu_), writes_ ABSL_GUARDED_BY(mu_);
  int mmaps_ ABSL_GUARDED_BY(mu_) = 0;
  std::map<void*, uint64_t> live_maps_ ABSL_GUARDED_BY(mu_);
  std::optional<uint32_t> irq_index_ ABSL_GUARDED_BY(mu_);
  std::map<uint32_t, int> irq_fds_ ABSL_GUARDED_BY(mu_);  // vector -> our dup of the eventfd
  bool pasid_attach_ ABSL_GUARDED_BY(mu_) = true;
  std::vector<PasidCall> pasid_calls_ ABSL_GUARDED_BY(mu_);
  std::map<uint32_t, uint32_t> pasids_ ABSL_GUARDED_BY(mu_);
};

// Forwards every call to a FakeVfioDevice the test keeps (so it can inspect the fake after the
// VfioPciDevice that owns this wrapper is gone).
class FakeVfioDeviceRef final : public VfioDeviceOps {
 public:
  explicit FakeVfioDeviceRef(FakeVfioDevice& f) : f_(f) {}
  const std::string& name() const override { return f_.name(); }
  absl::StatusOr<uint32_t> BindIommufd(int iommufd) override { return f_.BindIommufd(iommufd); }
  absl::Status AttachPt(uint32_t pt_id) override { return f_.AttachPt(pt_id); }
  absl::Status DetachPt() override { return f_.DetachPt(); }
  absl::Status AttachPasid(uint32_t pasid, uint32_t pt_id) override { return f_.AttachPasid(pasid, pt_id); }
  absl::Status DetachPasid(uint32_t pasid) override { return f_.DetachPasid(pasid); }
  absl::StatusOr<DeviceInfo> GetInfo() override { return f_.GetInfo(); }
  absl::StatusOr<RegionInfo> GetRegionInfo(uint32_t index) override { return f_.GetRegionInfo(index); }
  absl::StatusOr<IrqInfo> GetIrqInfo(uint32_t index) override { return f_.GetIrqInfo(index); }
  absl::Status RegionRead(uint32_t index, uint64_t offset, void* data, size_t len) override {
    return f_.RegionRead(index, offset, data, len);
  }
  absl::Status RegionWrite(uint32_t index, uint64_t offset, const void* data, size_t len) override {
    return f_.RegionWrite(index, offset, data, len);
  }
  absl::StatusOr<void*> Mmap(uint32_t index, uint64_t offset, uint64_t len) override {
    return f_.Mmap(index, offset, len);
  }
  void Unmap(void* addr, uint64_t len) override { f_.Unmap(addr, len); }
  absl::Status SetIrqEventfds(uint32_t index, uint32_t start, std::span<const int> fds) override {
    return f_.SetIrqEventfds(index, start, fds);
  }
  absl::Status DisableIrqs(uint32_t index) override { return f_.DisableIrqs(index); }
  absl::Status UnmaskIntx() override { return f_.UnmaskIntx(); }
  absl::Status Reset() override { return f_.Reset(); }
  absl::StatusOr<std::vector<uint8_t>> ReadUnfilteredConfig() override { return f_.ReadUnfilteredConfig(); }

 private:
  FakeVfioDevice& f_;
};

}  // namespace ionest::vfio::testing
