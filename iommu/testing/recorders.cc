#include "iommu/testing/recorders.h"

#include <utility>

namespace ionest::iommu_testing {

absl::Status RecordingMsiSink::SendMsi(const MsiMessage& msi) {
  absl::MutexLock l(&mu_);
  msis_.push_back(msi);
  return absl::OkStatus();
}

std::vector<MsiMessage> RecordingMsiSink::Take() {
  absl::MutexLock l(&mu_);
  return std::exchange(msis_, {});
}

size_t RecordingMsiSink::count() const {
  absl::MutexLock l(&mu_);
  return msis_.size();
}

void RecordingDmaClient::OnPageResponse(const PageResponse& response) {
  absl::MutexLock l(&mu_);
  responses_.push_back(response);
}

void RecordingDmaClient::OnDeviceTlbInvalidate(std::optional<uint32_t> pasid, uint64_t addr, uint64_t size) {
  absl::MutexLock l(&mu_);
  invalidations_.push_back({pasid, addr, size});
}

std::vector<PageResponse> RecordingDmaClient::responses() const {
  absl::MutexLock l(&mu_);
  return responses_;
}

std::vector<RecordingDmaClient::AtcInvalidation> RecordingDmaClient::invalidations() const {
  absl::MutexLock l(&mu_);
  return invalidations_;
}

}  // namespace ionest::iommu_testing
