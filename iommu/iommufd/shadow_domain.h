// A shadow of a guest's VT-d second-stage table in a dedicated iommufd IOAS, for a passthrough
// device whose guest-programmed translation is second-stage only (legacy context entry with
// TT=00b/01b, or a scalable-mode PASID entry with PGTT=010b). The host IOMMU can only nest a guest
// FIRST stage, so the second stage is replayed instead: every present leaf of the guest table
// (VT-d §9.8) becomes an IOMMU_IOAS_MAP of IOVA -> the host virtual address of the guest-physical
// page the leaf points at.
//
// The vIOMMU runs with caching mode (CAP.CM=1, VT-d §6.1): the guest invalidates the IOTLB for
// not-present -> present changes as well, so every change to the table is followed by an
// invalidation, and Sync() of the invalidated range is all the shadow needs.
//
// Sync() walks the range first and then brings the IOAS in line with the walk: an existing area
// whose translation the walk confirms (same IOVA span inside one walked run, same host address,
// same writeability) stays mapped, so DMA to unchanged pages keeps working while the guest
// invalidates neighbouring (or all) pages; areas that changed or vanished are unmapped, new pieces
// are mapped, contiguous leaves merged into one mapping. IOMMU_IOAS_UNMAP cannot split an area, so
// a range that cuts through an area is widened to the whole area (and re-walked over the union).
//
// The guest is hostile: every entry is validated (reserved bits as WalkSecondStage does, output
// pages inside one guest RAM range, table pointers inside guest memory), the walk is bounded by
// ShadowLimits::max_table_reads_per_sync and the IOAS by ShadowLimits::max_mappings. What cannot
// be mapped is left unmapped (DMA there faults in the host) and counted in stats(). On failure
// (ResourceExhausted for the limits, the host's status otherwise) the synced range is left with
// nothing mapped, never half-mapped; the caller reports a guest-visible fault.
//
// Order of use: Create() (empty IOAS), attach the device to ioas_id() (the kernel then reserves its
// reserved regions, e.g. the MSI window 0xfee00000-0xfeefffff), SyncAll(), then Sync() per guest
// invalidation. Detach the device before destroying the shadow.
// Thread safety: none; the owner serialises calls. `ops` and `guest` must outlive the shadow.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "iommu/iommufd/iommufd_backend.h"
#include "iommu/iommufd/iommufd_ops.h"
#include "iommu/second_stage.h"
#include "vmm/guest_memory.h"

namespace ionest::iommufd {

struct ShadowLimits {
  uint64_t max_mappings = 1u << 20;              // live IOAS areas of this shadow
  uint64_t max_table_reads_per_sync = 1u << 20;  // guest table entries read by one Sync
};

class ShadowDomain {
 public:
  struct Stats {
    uint64_t mappings = 0;          // live IOAS areas
    uint64_t map_calls = 0;         // IOMMU_IOAS_MAP issued (including failed ones)
    uint64_t unmap_calls = 0;       // IOMMU_IOAS_UNMAP issued (including failed ones)
    uint64_t skipped_leaves = 0;    // present leaves not mapped: reserved bits, no R right, outside RAM
    uint64_t skipped_tables = 0;    // subtrees not walked: pointer outside guest memory, reserved bits, no R
    uint64_t skipped_reserved = 0;  // IOVA spans left unmapped because the host reserves them (MSI window)
  };

  // Allocates a dedicated IOAS. `ram`: guest RAM (GPA -> host VA; page aligned, non-overlapping).
  // `guest`: guest-physical memory the table is read from. `config`: the guest's second-stage
  // table (IsValidSecondStageConfig; SSADE is refused: the host IOMMU would not update the guest's
  // A/D bits). Nothing is mapped until SyncAll().
  static absl::StatusOr<std::unique_ptr<ShadowDomain>> Create(IommufdOps& ops, const PhysMemory& guest,
                                                              std::vector<RamRange> ram,
                                                              const SecondStageConfig& config,
                                                              ShadowLimits limits = {});
  // Unmaps everything and destroys the IOAS (errors logged, never fatal).
  ~ShadowDomain();
  ShadowDomain(const ShadowDomain&) = delete;
  ShadowDomain& operator=(const ShadowDomain&) = delete;

  uint32_t ioas_id() const { return ioas_id_; }
  const SecondStageConfig& config() const { return config_; }

  // Replays [iova, iova+size) (size 0 or a range that wraps: the whole input space; clipped to
  // [0, 2^aw_bits) and widened to 4 KiB pages and to the areas it cuts). R leaves map readable,
  // R+W writeable; leaves without R are not mapped (iommufd mappings are always readable).
  absl::Status Sync(uint64_t iova, uint64_t size);
  absl::Status SyncAll() { return Sync(0, 0); }
  // The guest re-programmed the table (new root, width, ...): validates like Create, then SyncAll.
  // An invalid config is refused and the old one kept.
  absl::Status SetConfig(const SecondStageConfig& config);

  Stats stats() const;

 private:
  struct Area {  // one live IOAS mapping: [iova, iova + len) -> [host, host + len)
    uint64_t len = 0;
    uintptr_t host = 0;
    bool writeable = false;
  };
  struct Run {  // a contiguous piece of the walked translation
    uint64_t iova = 0;
    uint64_t len = 0;
    uintptr_t host = 0;
    bool writeable = false;
  };
  struct WalkState;

  ShadowDomain(IommufdOps& ops, const PhysMemory& guest, std::vector<RamRange> ram, const SecondStageConfig& config,
               ShadowLimits limits, uint32_t ioas_id)
      : ops_(ops), guest_(guest), ram_(std::move(ram)), config_(config), limits_(limits), ioas_id_(ioas_id) {}

  absl::Status WalkTable(uint64_t table, int level, uint64_t base, uint32_t rights, WalkState& st);
  const RamRange* FindRam(uint64_t gpa, uint64_t len) const;
  // Unmaps the given areas (keys of areas_, ascending), batching neighbours into one call.
  absl::Status UnmapAreas(const std::vector<uint64_t>& starts);
  // Unmaps every area inside [first, last] (the failure path: the range ends up empty).
  absl::Status ClearRange(uint64_t first, uint64_t last);
  // Maps `run`, splitting it around host-reserved IOVA ranges if the host refuses it (EINVAL).
  absl::Status MapRun(const Run& run, std::optional<std::vector<IovaRange>>& allowed);
  absl::Status MapPiece(const Run& run);

  IommufdOps& ops_;
  const PhysMemory& guest_;
  std::vector<RamRange> ram_;  // sorted by gpa
  SecondStageConfig config_;
  ShadowLimits limits_;
  uint32_t ioas_id_;
  std::map<uint64_t, Area> areas_;  // what this shadow mapped, by IOVA
  Stats stats_;
};

}  // namespace ionest::iommufd
