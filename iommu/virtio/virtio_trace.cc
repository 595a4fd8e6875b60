// virtio-iommu event trace and table dump (iommu/trace.h): request lines with their status,
// fault reports, and VirtioIommu::DumpTables (an endpoint's domain and mappings).
#include <cstring>
#include <string_view>

#include "absl/strings/str_format.h"
#include "iommu/trace.h"
#include "iommu/virtio/virtio_iommu.h"

namespace ionest {
namespace {

template <typename T>
T Field(const uint8_t* p, size_t off) {
  T v;
  std::memcpy(&v, p + off, sizeof(T));
  return v;
}

std::string_view StatusName(uint8_t status) {
  static constexpr std::string_view kNames[] = {"OK",    "IOERR", "UNSUPP", "DEVERR", "INVAL",
                                                "RANGE", "NOENT", "FAULT",  "NOMEM"};
  return status < std::size(kNames) ? kNames[status] : "unknown";
}

std::string_view FaultReasonName(uint8_t reason) {
  static constexpr std::string_view kNames[] = {"UNKNOWN", "DOMAIN", "MAPPING"};
  return reason < std::size(kNames) ? kNames[reason] : "unknown";
}

}  // namespace

void VirtioIommu::TraceRequest(uint8_t type, const uint8_t* req, uint8_t status) {
  // Field offsets of struct virtio_iommu_req_* (§5.13.6.3-7); a short request reads as zeros.
  const trace::Field st = trace::Str("status", StatusName(status));
  switch (type) {
    case kTAttach:
      trace::Emit(trace::kRequest, "virtio-iommu", "attach",
                  {trace::Dec("domain", Field<uint32_t>(req, 4)), trace::Hex("endpoint", Field<uint32_t>(req, 8)),
                   trace::Hex("flags", Field<uint32_t>(req, 12)), st});
      break;
    case kTDetach:
      trace::Emit(trace::kRequest, "virtio-iommu", "detach",
                  {trace::Dec("domain", Field<uint32_t>(req, 4)), trace::Hex("endpoint", Field<uint32_t>(req, 8)), st});
      break;
    case kTMap:
      trace::Emit(trace::kRequest, "virtio-iommu", "map",
                  {trace::Dec("domain", Field<uint32_t>(req, 4)), trace::Hex("virt_start", Field<uint64_t>(req, 8)),
                   trace::Hex("virt_end", Field<uint64_t>(req, 16)), trace::Hex("phys_start", Field<uint64_t>(req, 24)),
                   trace::Hex("flags", Field<uint32_t>(req, 32)), st});
      break;
    case kTUnmap:
      trace::Emit(trace::kRequest, "virtio-iommu", "unmap",
                  {trace::Dec("domain", Field<uint32_t>(req, 4)), trace::Hex("virt_start", Field<uint64_t>(req, 8)),
                   trace::Hex("virt_end", Field<uint64_t>(req, 16)), st});
      break;
    case kTProbe:
      trace::Emit(trace::kRequest, "virtio-iommu", "probe", {trace::Hex("endpoint", Field<uint32_t>(req, 4)), st});
      break;
    default:
      break;
  }
}

void VirtioIommu::TraceFault(const Fault& fault, bool queued) {
  trace::Emit(trace::kFault, "virtio-iommu", "fault",
              {trace::Hex("endpoint", fault.endpoint), trace::Hex("addr", fault.address),
               trace::Dec("reason", fault.reason), trace::Str("name", FaultReasonName(fault.reason)),
               trace::Hex("flags", fault.flags), trace::Str("result", queued ? "queued" : "dropped")});
}

std::string VirtioIommu::DumpTables(const trace::DumpRequest& req) const {
  trace::DumpWriter out;
  const uint32_t ep = req.rid;
  absl::ReaderMutexLock l(&mu_);
  auto it = attached_.find(ep);
  if (it == attached_.end()) {
    out.Line(absl::StrFormat("virtio-iommu dump endpoint=0x%x: not attached (%s)", ep,
                             !IsEndpoint(ep) ? "not an endpoint of this device"
                             : bypass_       ? "config.bypass=1: DMA untranslated"
                                             : "config.bypass=0: DMA blocked"));
    return out.Finish();
  }
  const Domain& d = *it->second;
  out.Line(absl::StrFormat("virtio-iommu dump endpoint=0x%x domain=%d bypass=%d endpoints=%d mappings=%d", ep, d.id,
                           d.bypass, d.endpoints, d.mappings.size()));
  if (req.iova) {
    auto m = d.mappings.upper_bound(*req.iova);
    if (m != d.mappings.begin() && (--m)->second.end >= *req.iova) {
      out.Line(absl::StrFormat("iova=0x%x: mapping [0x%x, 0x%x] -> 0x%x flags=0x%x output=0x%x", *req.iova, m->first,
                               m->second.end, m->second.phys, m->second.flags, m->second.phys + (*req.iova - m->first)));
    } else {
      out.Line(absl::StrFormat("iova=0x%x: no mapping", *req.iova));
    }
  }
  size_t listed = 0;
  for (const auto& [start, m] : d.mappings) {
    if (out.full()) break;  // bounded: the cap, not the guest's mapping count, ends the list
    out.Line(absl::StrFormat("  [0x%x, 0x%x] -> 0x%x flags=0x%x", start, m.end, m.phys, m.flags));
    ++listed;
  }
  out.Cut(d.mappings.size() - listed);
  return out.Finish();
}

}  // namespace ionest
