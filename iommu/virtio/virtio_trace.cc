// virtio-iommu event trace and table dump (iommu/trace.h): request lines with their status,
// fault reports, and VirtioIommu::DumpTables (an endpoint's domain and mappings).
#include <cstring>
#include <string_view>

#include "absl/strings/str_format.h"
#include "iommu/trace.h"
#include "iommu/virtio/virtio_iommu.h"

namespace ionest {
namespace {

// The request layouts of §5.13.6.3-7 (little-endian host; 4-byte head first), as far as traced.
struct AttachFields {  // also DETACH (flags reserved there)
  uint8_t head[4];
  uint32_t domain, endpoint, flags;
};
struct MapFields {
  uint8_t head[4];
  uint32_t domain;
  uint64_t virt_start, virt_end, phys_start;
  uint32_t flags;
};
struct ProbeFields {
  uint8_t head[4];
  uint32_t endpoint;
};
template <typename T>
T As(const uint8_t* req) {  // `req` holds the largest request (PROBE, 72 bytes)
  static_assert(sizeof(T) <= VirtioIommu::kProbeSize);
  T v;
  std::memcpy(&v, req, sizeof(T));
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
    case kTDetach: {
      const auto r = As<AttachFields>(req);
      if (type == kTAttach) {
        trace::Emit(trace::kRequest, "virtio-iommu", "attach",
                    {trace::Dec("domain", r.domain), trace::Hex("endpoint", r.endpoint), trace::Hex("flags", r.flags), st});
      } else {
        trace::Emit(trace::kRequest, "virtio-iommu", "detach",
                    {trace::Dec("domain", r.domain), trace::Hex("endpoint", r.endpoint), st});
      }
      break;
    }
    case kTMap:
    case kTUnmap: {  // UNMAP is MAP's first fields
      const auto r = As<MapFields>(req);
      if (type == kTMap) {
        trace::Emit(trace::kRequest, "virtio-iommu", "map",
                    {trace::Dec("domain", r.domain), trace::Hex("virt_start", r.virt_start),
                     trace::Hex("virt_end", r.virt_end), trace::Hex("phys_start", r.phys_start),
                     trace::Hex("flags", r.flags), st});
      } else {
        trace::Emit(trace::kRequest, "virtio-iommu", "unmap",
                    {trace::Dec("domain", r.domain), trace::Hex("virt_start", r.virt_start),
                     trace::Hex("virt_end", r.virt_end), st});
      }
      break;
    }
    case kTProbe:
      trace::Emit(trace::kRequest, "virtio-iommu", "probe", {trace::Hex("endpoint", As<ProbeFields>(req).endpoint), st});
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
