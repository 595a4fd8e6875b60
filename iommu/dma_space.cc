#include "iommu/dma_space.h"

#include <algorithm>

#include "absl/strings/str_format.h"

namespace ionest {

absl::Status DmaSpace::Access(uint64_t iova, uint8_t* buf, size_t len, bool write, const DmaAttrs& attrs,
                              DmaFault* fault) {
  const uint32_t access = write ? kDmaWrite : kDmaRead;
  if (len == 0) return absl::OkStatus();
  if (iova + len < iova) {
    if (fault) *fault = {DmaFaultKind::kBadAddress, iova, access, attrs.pasid, 0, false};
    return absl::OutOfRangeError(absl::StrFormat("DMA [%#x, +%#x) wraps the address space", iova, len));
  }
  uint64_t done = 0;
  while (done < len) {
    InFlight in_flight = BeginDma();  // one Translate and its copies
    Translation t = Translate(iova + done, len - done, access, attrs);
    for (const DmaRegion& r : t.regions) {
      uint64_t n = std::min<uint64_t>(r.len, len - done);
      if (!(r.perms & access)) {  // defensive: a model must never hand out a region without the access
        if (fault) *fault = {DmaFaultKind::kPermission, r.iova, access, attrs.pasid, 0, false};
        return absl::PermissionDeniedError(absl::StrFormat("DMA %s at %#x not permitted", write ? "write" : "read", r.iova));
      }
      absl::Status s = write ? memory_.Write(r.gpa, buf + done, n) : memory_.Read(r.gpa, buf + done, n);
      if (!s.ok()) {
        if (fault) *fault = {DmaFaultKind::kBadAddress, r.iova, access, attrs.pasid, 0, false};
        return s;
      }
      done += n;
    }
    if (t.fault) {
      if (fault) *fault = *t.fault;
      return absl::PermissionDeniedError(
          absl::StrFormat("DMA %s fault at iova %#x (reason %#x)", write ? "write" : "read", t.fault->iova, t.fault->reason));
    }
    if (t.regions.empty()) {
      if (fault) *fault = {DmaFaultKind::kBlocked, iova + done, access, attrs.pasid, 0, false};
      return absl::InternalError("DMA translation made no progress");
    }
  }
  return absl::OkStatus();
}

absl::Status DmaSpace::AccessRegion(const InFlight& in_flight, const DmaRegion& region, uint64_t offset, void* buf,
                                    size_t len, uint32_t access) {
  if (in_flight.drain_ != &drain_) return absl::InvalidArgumentError("AccessRegion: DMA in flight on another space");
  if (access != kDmaRead && access != kDmaWrite) return absl::InvalidArgumentError("AccessRegion: read or write");
  if ((region.perms & access) != access) {
    return absl::PermissionDeniedError(absl::StrFormat("DMA %s at %#x not permitted", access == kDmaWrite ? "write" : "read",
                                                       region.iova + offset));
  }
  if (offset > region.len || len > region.len - offset || region.gpa + region.len < region.gpa) {
    return absl::OutOfRangeError(absl::StrFormat("AccessRegion: [%#x, +%#x) outside the region of %#x bytes", offset,
                                                 len, region.len));
  }
  return access == kDmaWrite ? memory_.Write(region.gpa + offset, buf, len) : memory_.Read(region.gpa + offset, buf, len);
}

absl::Status DmaSpace::Read(uint64_t iova, void* dst, size_t len, const DmaAttrs& attrs, DmaFault* fault) {
  return Access(iova, static_cast<uint8_t*>(dst), len, false, attrs, fault);
}

absl::Status DmaSpace::Write(uint64_t iova, const void* src, size_t len, const DmaAttrs& attrs, DmaFault* fault) {
  return Access(iova, const_cast<uint8_t*>(static_cast<const uint8_t*>(src)), len, true, attrs, fault);
}

absl::Status DmaSpace::ReadTranslated(uint64_t gpa, void* dst, size_t len) {
  if (!AllowTranslatedRequest()) return absl::PermissionDeniedError("translated requests are not allowed");
  return memory_.Read(gpa, dst, len);
}

absl::Status DmaSpace::WriteTranslated(uint64_t gpa, const void* src, size_t len) {
  if (!AllowTranslatedRequest()) return absl::PermissionDeniedError("translated requests are not allowed");
  return memory_.Write(gpa, src, len);
}

Translation IdentityDmaSpace::Translate(uint64_t iova, uint64_t len, uint32_t access, const DmaAttrs& attrs) {
  Translation t;
  t.regions.push_back({iova, iova, len, kDmaRead | kDmaWrite | kDmaExec | kDmaPriv});
  return t;
}

AtsTranslation IdentityDmaSpace::AtsTranslate(uint64_t iova, uint32_t access, const DmaAttrs& attrs) {
  uint64_t page = iova & ~uint64_t{0xfff};
  return {true, page, page, 4096, kDmaRead | kDmaWrite | kDmaExec | kDmaPriv};
}

}  // namespace ionest
