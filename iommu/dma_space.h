// The per-requester DMA address space: the only way a device model reaches guest memory.
//
// A device gets a DmaSpace& for its requester ID from a DmaSpaceProvider (the IOMMU model, or the
// bypass provider when there is none). Translation yields regions with permissions; the Read/Write
// helpers handle page crossing in one place.
//
// Thread safety: implementations must allow concurrent calls from any thread (vCPU threads doing
// MMIO-triggered DMA, device worker threads). SetClient is called once at device construction.
//
// DMA in flight: a device brackets each DMA (Translate and the copies through its regions) with a
// DmaSpace::InFlight, so an IOMMU invalidation that drains (VT-d CAP.DRD/DWD, §6.5.5) completes
// only after the DMA finished (iommu/dma_drain.h). Read/Write do it themselves; AccessRegion
// requires the InFlight the device took before its Translate.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "iommu/dma_drain.h"
#include "vmm/guest_memory.h"

namespace ionest {

// Access type bits of a DMA request.
enum DmaAccess : uint32_t {
  kDmaRead = 1u << 0,
  kDmaWrite = 1u << 1,
  kDmaExec = 1u << 2,  // execute request (PASID TLP prefix ER bit)
  kDmaPriv = 1u << 3,  // privileged-mode request (PASID TLP prefix PMR bit)
};

// Request attributes beyond address and access (PCIe 6.0 §6.20 PASID TLP prefix).
struct DmaAttrs {
  std::optional<uint32_t> pasid;
};

struct DmaRegion {
  uint64_t iova = 0;
  uint64_t gpa = 0;
  uint64_t len = 0;
  uint32_t perms = 0;  // DmaAccess bits the mapping grants
};

enum class DmaFaultKind {
  kNotPresent,    // no translation (recoverable through a page request if the device has PRI)
  kPermission,    // translation present but access not allowed (recoverable through PRI)
  kBlocked,       // requester/PASID not allowed to DMA at all (context/PASID entry absent, abort)
  kInvalidEntry,  // a table entry the IOMMU cannot use (reserved bits, bad type...)
  kBadAddress,    // translated address is not guest RAM, or address beyond the input width
  // The IOMMU holds the transaction (SMMUv3 stall model, IHI0070 §3.12.2): DmaFault::reason is the
  // stall tag; the answer arrives as DmaClient::OnPageResponse with group_index = that tag
  // (kSuccess: retry the access, otherwise: abort it).
  kStalled,
};

struct DmaFault {
  DmaFaultKind kind = DmaFaultKind::kBlocked;
  uint64_t iova = 0;         // first faulting address
  uint32_t access = 0;       // DmaAccess bits of the request
  std::optional<uint32_t> pasid;
  uint32_t reason = 0;       // architecture fault reason code (e.g. VT-d Appendix A), 0 if none
  bool recorded = false;     // the IOMMU recorded it in its fault log (not a host error)
};

// Result of Translate: `regions` cover a prefix of the request in order; if `fault` is set the
// translation stopped at fault->iova. An implementation may return fewer bytes than asked (a prefix)
// without a fault; callers loop.
struct Translation {
  std::vector<DmaRegion> regions;
  std::optional<DmaFault> fault;
};

// ATS translation completion (PCIe 6.0 §10.2.3).
struct AtsTranslation {
  bool success = false;  // false: Unsupported Request / no translation (the device may use PRI)
  uint64_t iova = 0;     // page-aligned base of the translated range
  uint64_t gpa = 0;      // translated address (what the device caches in its ATC)
  uint64_t size = 4096;  // power of two, >= 4 KiB
  uint32_t perms = 0;    // R/W/X/Priv granted; 0 with success means "no access"
};

// Page request (PCIe 6.0 §10.4.1) from a device with PRI.
struct PageRequest {
  uint16_t rid = 0;
  std::optional<uint32_t> pasid;
  uint64_t addr = 0;  // page address
  uint32_t access = 0;
  bool last = true;   // last request in the page request group
  uint16_t group_index = 0;  // 9 bits
};

// PRG Response Message (PCIe 6.0 §10.4.2.1).
enum class PageResponseCode : uint8_t { kSuccess = 0, kInvalidRequest = 1, kResponseFailure = 0xf };
struct PageResponse {
  uint16_t rid = 0;
  std::optional<uint32_t> pasid;
  uint16_t group_index = 0;
  PageResponseCode code = PageResponseCode::kSuccess;
  // The answer to a stalled transaction (DmaFaultKind::kStalled; SMMUv3 CMD_RESUME / CMD_STALL_TERM,
  // IHI0070 §4.7.2-4.7.3), not to a page request: group_index is the STAG, kSuccess = retry.
  bool stall = false;
};

// What the IOMMU tells a device (PCIe ATS invalidations and PRG responses). Called on the IOMMU's
// invalidation path (any thread); implementations must be thread-safe and must not call back into
// the DmaSpace synchronously while holding their own locks in a way that can deadlock.
class DmaClient {
 public:
  virtual ~DmaClient() = default;
  virtual void OnPageResponse(const PageResponse& response) {}
  // Invalidate ATC entries overlapping [addr, addr+size) for `pasid` (nullopt: untagged requests).
  virtual void OnDeviceTlbInvalidate(std::optional<uint32_t> pasid, uint64_t addr, uint64_t size) {}
};

class DmaSpace {
 public:
  explicit DmaSpace(PhysMemory& memory) : memory_(memory) {}
  virtual ~DmaSpace() = default;

  virtual Translation Translate(uint64_t iova, uint64_t len, uint32_t access, const DmaAttrs& attrs) = 0;

  // ATS Translation Request. Default: not supported.
  virtual AtsTranslation AtsTranslate(uint64_t iova, uint32_t access, const DmaAttrs& attrs) { return {}; }
  // Is a translated request (AT=10b) from this requester allowed to go untranslated to `gpa`?
  virtual bool AllowTranslatedRequest() { return false; }
  // Queue a page request. Error if the IOMMU cannot accept page requests from this requester.
  virtual absl::Status SendPageRequest(const PageRequest& request) {
    return absl::FailedPreconditionError("this DMA space does not accept page requests");
  }
  // The device stopped waiting for the answer to its stalled transaction `stag` (its own completion
  // timeout, an abort or a reset): the IOMMU drops the held transaction without an answer, so a
  // guest that never resumes cannot keep its stall slots (SMMUv3 IDR5.STALL_MAX) forever. A later
  // CMD_RESUME naming it is ignored. Default: nothing is ever held.
  virtual void AbandonStall(uint16_t stag) {}

  // One DMA in flight on this space, from before its Translate until its last copy (RAII; cheap:
  // two atomic operations, no lock). Take it on the stack around Translate + AccessRegion.
  class [[nodiscard]] InFlight {
   public:
    explicit InFlight(DmaDrain& drain) : drain_(&drain), slot_(drain.Enter()) {}
    InFlight(InFlight&& other) noexcept : drain_(other.drain_), slot_(other.slot_) { other.drain_ = nullptr; }
    InFlight(const InFlight&) = delete;
    InFlight& operator=(const InFlight&) = delete;
    InFlight& operator=(InFlight&&) = delete;
    ~InFlight() {
      if (drain_) drain_->Exit(slot_);
    }

   private:
    friend class DmaSpace;
    DmaDrain* drain_;
    uint32_t slot_;
  };
  InFlight BeginDma() { return InFlight(drain_); }
  // The tracker an IOMMU drains at an invalidation (VtdIommu: at a wait descriptor).
  DmaDrain& drain() { return drain_; }

  void SetClient(DmaClient* client) { client_ = client; }
  DmaClient* client() const { return client_; }

  // Copy through the translation. On a translation fault returns a non-OK status and fills *fault
  // (if given); bytes before the fault may already have been transferred, as on hardware.
  absl::Status Read(uint64_t iova, void* dst, size_t len, const DmaAttrs& attrs = {}, DmaFault* fault = nullptr);
  absl::Status Write(uint64_t iova, const void* src, size_t len, const DmaAttrs& attrs = {},
                     DmaFault* fault = nullptr);
  // Translated (post-ATS) accesses straight to guest-physical memory, if AllowTranslatedRequest().
  absl::Status ReadTranslated(uint64_t gpa, void* dst, size_t len);
  absl::Status WriteTranslated(uint64_t gpa, const void* src, size_t len);

  // Copies within a region that Translate() of this space returned, for a device that keeps its
  // translation while it transfers (as a DMA engine with its own pipeline does): bytes
  // [offset, offset+len) of the region, `access` kDmaRead (memory → buf) or kDmaWrite (buf →
  // memory), which the region's perms must grant. Besides Read/Write, the only way a device model
  // reaches guest memory: there is no raw accessor. `in_flight` is the bracket the device took on
  // this space before the Translate that returned `region` and keeps until its last copy.
  absl::Status AccessRegion(const InFlight& in_flight, const DmaRegion& region, uint64_t offset, void* buf,
                            size_t len, uint32_t access);

 protected:
  PhysMemory& memory() { return memory_; }

 private:
  absl::Status Access(uint64_t iova, uint8_t* buf, size_t len, bool write, const DmaAttrs& attrs, DmaFault* fault);
  PhysMemory& memory_;
  DmaClient* client_ = nullptr;
  DmaDrain drain_;
};

// Identity translation with full permissions: what devices see with --iommu=none.
class IdentityDmaSpace final : public DmaSpace {
 public:
  using DmaSpace::DmaSpace;
  Translation Translate(uint64_t iova, uint64_t len, uint32_t access, const DmaAttrs& attrs) override;
  AtsTranslation AtsTranslate(uint64_t iova, uint32_t access, const DmaAttrs& attrs) override;
  bool AllowTranslatedRequest() override { return true; }
};

// Hands out the DmaSpace for a requester ID (bus<<8 | devfn). The returned reference lives as long
// as the provider. Thread-safe.
class DmaSpaceProvider {
 public:
  virtual ~DmaSpaceProvider() = default;
  virtual DmaSpace& ForRequester(uint16_t rid) = 0;
};

class BypassDmaProvider final : public DmaSpaceProvider {
 public:
  explicit BypassDmaProvider(PhysMemory& memory) : space_(memory) {}
  DmaSpace& ForRequester(uint16_t rid) override { return space_; }

 private:
  IdentityDmaSpace space_;
};

}  // namespace ionest
