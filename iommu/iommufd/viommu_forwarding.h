// virtio-iommu MAP/UNMAP forwarded to the host IOMMU for passthrough functions (issue 12 item 5).
//
// A passthrough function's DMA never reaches ionest's DmaSpace: the host IOMMU translates it with
// the iommufd object the function's VFIO cdev is attached to. Behind ionest's virtio-iommu
// (iommu/virtio/virtio_iommu.h) this backend is the VirtioIommuHost of such endpoints and keeps
// the host in step with what the guest asked for (virtio 1.2 §5.13.6):
//
// | guest state of the endpoint (§5.13.6.3-4, §5.13.4.2)  | host attachment of the function        |
// |--------------------------------------------------------|-----------------------------------------|
// | in a paging domain D                                   | D's IOAS (one per domain, created when  |
// |                                                        | its first passthrough endpoint joins,   |
// |                                                        | replaying D's mappings; destroyed when  |
// |                                                        | its last one leaves)                    |
// | in an ATTACH_F_BYPASS domain; unattached, bypass = 1   | the VM's IOAS (guest RAM at its GPA,    |
// |                                                        | IommufdBackend: what --iommu=none uses) |
// | unattached with bypass = 0 (after DETACH, reset, boot) | detached: the host's blocking domain    |
//
// MAP(virt_start, virt_end, phys_start, flags) of D (§5.13.6.5) -> IOMMU_IOAS_MAP of D's IOAS at
// IOVA virt_start, length virt_end - virt_start + 1, from the host virtual address backing guest
// RAM at phys_start, READABLE / WRITEABLE as the flags say. Only guest RAM is ever mapped: a
// physical range not wholly inside one guest RAM range is refused with OutOfRange (S_RANGE), an
// MMIO mapping or one with neither READ nor WRITE with InvalidArgument (S_INVAL); an IOVA range
// over one of the host's reserved ranges (IOMMU_IOAS_IOVA_RANGES' complement, e.g. the SMMU's
// software MSI window) with OutOfRange before the kernel would say EINVAL. UNMAP (§5.13.6.6)
// -> one IOMMU_IOAS_UNMAP of exactly the span of mappings the device removed (the device keeps the
// spec's rules: no split, whole mappings only; one device mapping = one IOAS area, so the host
// agrees). A host failure is ResourceExhausted for ENOMEM (S_NOMEM) and Internal otherwise
// (S_DEVERR), with the ioctl's message; the host is left as before the call.
//
// Thread safety: called by the VirtioIommu under its lock (and by Create/the destructor on the
// machine's main thread); stats()/Describe() take this object's own lock.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "iommu/iommufd/host_device.h"
#include "iommu/iommufd/iommufd_backend.h"
#include "iommu/iommufd/iommufd_ops.h"
#include "iommu/virtio/virtio_iommu.h"

namespace ionest::iommufd {

struct ViommuForwardingStats {
  uint64_t maps = 0;            // IOMMU_IOAS_MAP done for guest MAPs (replays included)
  uint64_t unmaps = 0;          // IOMMU_IOAS_UNMAP done for guest UNMAPs
  uint64_t attaches = 0;        // host attachments changed (domain, identity, blocked)
  uint64_t refused = 0;         // requests refused before the host (not RAM, MMIO, no rights)
  uint64_t host_failures = 0;   // host calls that failed
  size_t spaces = 0;            // live per-domain IOASes
  size_t mapped_areas = 0;      // live areas over all of them
};

class ViommuForwarder final : public VirtioIommuHost {
 public:
  // One passthrough function and its endpoint ID (= PCI requester ID behind the virtio-iommu).
  struct Endpoint {
    uint32_t endpoint = 0;
    NestedDevice* device = nullptr;
  };
  // Registers every endpoint with `viommu` (each moves to what its current guest state means,
  // normally the unattached state after reset). `ram`: guest RAM (sorted); `identity_ioas`: the
  // VM's IOAS over guest RAM; `host_reserved`: IOVA ranges no IOAS of these devices may map
  // (IommufdBackend::reserved_ranges()). On error nothing stays registered and every device is back on
  // `identity_ioas`. `ops`, `viommu` and the devices must outlive the forwarder.
  static absl::StatusOr<std::unique_ptr<ViommuForwarder>> Create(IommufdOps& ops, VirtioIommu& viommu,
                                                                 std::vector<RamRange> ram, uint32_t identity_ioas,
                                                                 std::vector<Endpoint> endpoints,
                                                                 std::vector<IovaRange> host_reserved = {});
  // Unregisters from the device, puts every function back on the identity IOAS (where the
  // passthrough code expects it at release) and destroys every per-domain IOAS.
  ~ViommuForwarder() override;
  ViommuForwarder(const ViommuForwarder&) = delete;
  ViommuForwarder& operator=(const ViommuForwarder&) = delete;

  // VirtioIommuHost (the VirtioIommu's lock held).
  absl::Status AttachDomain(uint32_t endpoint, uint32_t domain, const std::vector<Mapping>* replay) override;
  absl::Status AttachUntranslated(uint32_t endpoint, bool identity) override;
  absl::Status Map(uint32_t domain, const Mapping& mapping) override;
  absl::Status Unmap(uint32_t domain, uint64_t virt_start, uint64_t virt_end) override;
  void ReleaseDomain(uint32_t domain) override;
  // The host's reserved IOVA ranges (the same for every endpoint): PROBE reports them.
  std::vector<VirtioIommuHost::Reserved> ReservedIova(uint32_t endpoint) override;

  ViommuForwardingStats stats() const;
  // The host IOAS of guest domain `domain`, if it has one (tests).
  std::optional<uint32_t> ioas_of(uint32_t domain) const;
  // One line per endpoint for the start-up log: "virtio-iommu forwarding: vfio@02.0 endpoint 0x10 ...".
  std::string Describe() const;

 private:
  enum class Where { kIdentity, kBlocked, kDomain };
  struct State {
    NestedDevice* device = nullptr;
    Where where = Where::kIdentity;
    uint32_t domain = 0;  // kDomain
  };
  struct Space {
    uint32_t ioas = 0;
    std::set<uint32_t> endpoints;  // attached to this IOAS
    std::map<uint64_t, uint64_t> areas;  // IOAS areas: virt_start -> virt_end (at most the device's max_mappings)
  };

  ViommuForwarder(IommufdOps& ops, VirtioIommu& viommu, std::vector<RamRange> ram, uint32_t identity_ioas,
                  std::vector<IovaRange> host_reserved)
      : ops_(ops),
        viommu_(viommu),
        ram_(std::move(ram)),
        identity_ioas_(identity_ioas),
        host_reserved_(std::move(host_reserved)) {}
  absl::Status MapOne(uint32_t ioas, const Mapping& m) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::Status Move(State& st, uint32_t endpoint, Where where, uint32_t domain, uint32_t pt)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::Status HostError(const absl::Status& s, const std::string& context) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void DestroySpace(uint32_t domain) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  IommufdOps& ops_;
  VirtioIommu& viommu_;
  const std::vector<RamRange> ram_;
  const uint32_t identity_ioas_;
  const std::vector<IovaRange> host_reserved_;
  mutable absl::Mutex mu_;
  std::map<uint32_t, State> endpoints_ ABSL_GUARDED_BY(mu_);  // by endpoint ID
  std::map<uint32_t, Space> spaces_ ABSL_GUARDED_BY(mu_);     // by guest domain ID
  ViommuForwardingStats stats_ ABSL_GUARDED_BY(mu_);
};

}  // namespace ionest::iommufd
