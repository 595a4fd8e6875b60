// Test doubles that record what an IOMMU model sends out: its own MSIs and its DmaClient calls
// (page responses, ATC invalidations). Shared by the VT-d and SMMUv3 tests, fuzzers and
// benchmarks. Thread-safe.
#pragma once

#include <cstdint>
#include <optional>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "iommu/dma_space.h"
#include "iommu/msi.h"

namespace ionest::iommu_testing {

class RecordingMsiSink final : public MsiSink {
 public:
  absl::Status SendMsi(const MsiMessage& msi) override;
  std::vector<MsiMessage> Take();  // the MSIs so far, forgetting them
  size_t count() const;

 private:
  mutable absl::Mutex mu_;
  std::vector<MsiMessage> msis_ ABSL_GUARDED_BY(mu_);
};

class RecordingDmaClient final : public DmaClient {
 public:
  struct AtcInvalidation {
    std::optional<uint32_t> pasid;
    uint64_t addr;
    uint64_t size;
  };
  void OnPageResponse(const PageResponse& response) override;
  void OnDeviceTlbInvalidate(std::optional<uint32_t> pasid, uint64_t addr, uint64_t size) override;
  std::vector<PageResponse> responses() const;
  std::vector<AtcInvalidation> invalidations() const;

 private:
  mutable absl::Mutex mu_;
  std::vector<PageResponse> responses_ ABSL_GUARDED_BY(mu_);
  std::vector<AtcInvalidation> invalidations_ ABSL_GUARDED_BY(mu_);
};

}  // namespace ionest::iommu_testing
