#include "iommu/iommufd/viommu_forwarding.h"

#include <cstdio>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace ionest::iommufd {

absl::StatusOr<std::unique_ptr<ViommuForwarder>> ViommuForwarder::Create(IommufdOps& ops, VirtioIommu& viommu,
                                                                         std::vector<RamRange> ram,
                                                                         uint32_t identity_ioas,
                                                                         std::vector<Endpoint> endpoints,
                                                                         std::vector<IovaRange> host_reserved) {
  std::unique_ptr<ViommuForwarder> f(
      new ViommuForwarder(ops, viommu, std::move(ram), identity_ioas, std::move(host_reserved)));
  {
    absl::MutexLock l(&f->mu_);
    for (const Endpoint& e : endpoints) {
      if (e.device == nullptr || f->endpoints_.count(e.endpoint)) {
        return absl::InvalidArgumentError(absl::StrFormat("virtio-iommu forwarding: bad endpoint %#x", e.endpoint));
      }
      // Passthrough::Open left every function on the identity IOAS.
      f->endpoints_[e.endpoint] = State{e.device, Where::kIdentity, 0};
    }
  }
  for (const Endpoint& e : endpoints) {
    // The device calls back into AttachUntranslated/AttachDomain; on failure ~ViommuForwarder
    // unregisters what was registered and puts every function back on the identity IOAS.
    if (absl::Status s = viommu.SetEndpointHost(e.endpoint, f.get()); !s.ok()) {
      return absl::Status(s.code(), absl::StrCat("virtio-iommu forwarding for ", e.device->name(), ": ", s.message()));
    }
  }
  return f;
}

ViommuForwarder::~ViommuForwarder() {
  std::vector<uint32_t> eps;
  {
    absl::MutexLock l(&mu_);
    for (const auto& [ep, st] : endpoints_) eps.push_back(ep);
  }
  // The device releases this host's domain spaces through ReleaseDomain as each endpoint leaves.
  for (uint32_t ep : eps) (void)viommu_.SetEndpointHost(ep, nullptr);
  absl::MutexLock l(&mu_);
  for (auto& [ep, st] : endpoints_) {
    if (st.where == Where::kIdentity) continue;
    if (absl::Status s = Move(st, ep, Where::kIdentity, 0, identity_ioas_); !s.ok()) {
      std::fprintf(stderr, "ionest: virtio-iommu forwarding teardown: %s\n", s.ToString().c_str());
    }
  }
  while (!spaces_.empty()) DestroySpace(spaces_.begin()->first);
}

absl::Status ViommuForwarder::HostError(const absl::Status& s, const std::string& context) {
  ++stats_.host_failures;
  // ENOMEM (pinning, page tables) is S_NOMEM; anything else the host refuses is a device error
  // (§5.13.6.2 S_DEVERR), whatever errno-derived code the ioctl's status carries.
  const absl::StatusCode code =
      s.code() == absl::StatusCode::kResourceExhausted ? s.code() : absl::StatusCode::kInternal;
  return absl::Status(code, absl::StrCat("virtio-iommu forwarding: ", context, ": ", s.message()));
}

absl::Status ViommuForwarder::Move(State& st, uint32_t ep, Where where, uint32_t domain, uint32_t pt) {
  absl::Status s = where == Where::kBlocked ? st.device->Detach() : st.device->Attach(pt);
  if (!s.ok()) {
    return HostError(s, absl::StrFormat("%s (endpoint %#x) to %s", st.device->name(), ep,
                                        where == Where::kBlocked    ? std::string("blocked (detach)")
                                        : where == Where::kIdentity ? absl::StrFormat("identity IOAS %u", pt)
                                                                    : absl::StrFormat("domain %u IOAS %u", domain, pt)));
  }
  ++stats_.attaches;
  if (st.where == Where::kDomain) {
    if (auto it = spaces_.find(st.domain); it != spaces_.end()) it->second.endpoints.erase(ep);
  }
  st.where = where;
  st.domain = domain;
  if (where == Where::kDomain) spaces_[domain].endpoints.insert(ep);
  return absl::OkStatus();
}

absl::Status ViommuForwarder::MapOne(uint32_t ioas, const Mapping& m) {
  const uint64_t len = m.virt_end - m.virt_start + 1;  // the device checked virt_end >= virt_start
  const bool read = m.flags & VirtioIommu::kMapFRead, write = m.flags & VirtioIommu::kMapFWrite;
  // §5.13.6.5: MMIO is a memory type the host IOAS cannot give (it pins RAM pages only), and a
  // mapping without READ or WRITE has no IOAS equivalent.
  if ((m.flags & VirtioIommu::kMapFMmio) || !(read || write)) {
    ++stats_.refused;
    return absl::InvalidArgumentError(absl::StrFormat(
        "virtio-iommu forwarding: MAP [%#x, %#x] flags %#x for a passthrough endpoint: %s", m.virt_start, m.virt_end,
        m.flags, (m.flags & VirtioIommu::kMapFMmio) ? "MMIO cannot be mapped by the host IOMMU" : "no access right"));
  }
  const RamRange* r = len == 0 ? nullptr : FindRamRange(ram_, m.phys_start, len);
  if (r == nullptr) {  // never pin or map anything but guest RAM
    ++stats_.refused;
    return absl::OutOfRangeError(absl::StrFormat(
        "virtio-iommu forwarding: MAP [%#x, %#x] -> phys %#x: not inside guest RAM", m.virt_start, m.virt_end,
        m.phys_start));
  }
  for (const IovaRange& res : host_reserved_) {
    if (m.virt_start <= res.last && res.start <= m.virt_end) {
      ++stats_.refused;
      return absl::OutOfRangeError(absl::StrFormat(
          "virtio-iommu forwarding: MAP [%#x, %#x]: overlaps the host's reserved IOVA range [%#x, %#x]", m.virt_start,
          m.virt_end, res.start, res.last));
    }
  }
  void* va = static_cast<uint8_t*>(r->host) + (m.phys_start - r->gpa);
  if (absl::Status s = ops_.MapFixedAccess(ioas, m.virt_start, va, len, read, write); !s.ok()) {
    return HostError(s, absl::StrFormat("MAP [%#x, %#x] -> phys %#x", m.virt_start, m.virt_end, m.phys_start));
  }
  ++stats_.maps;
  return absl::OkStatus();
}

absl::Status ViommuForwarder::AttachDomain(uint32_t ep, uint32_t domain, const std::vector<Mapping>* replay) {
  absl::MutexLock l(&mu_);
  auto st = endpoints_.find(ep);
  if (st == endpoints_.end()) return absl::InternalError(absl::StrFormat("endpoint %#x is not forwarded", ep));
  auto sp = spaces_.find(domain);
  if (replay == nullptr) {
    if (sp == spaces_.end()) return absl::InternalError(absl::StrFormat("domain %u has no host IOAS", domain));
    return Move(st->second, ep, Where::kDomain, domain, sp->second.ioas);
  }
  if (sp != spaces_.end()) DestroySpace(domain);  // stale (cannot happen: the device released it)
  // A fresh IOAS holding the domain's mappings; the function moves only once it is complete, so a
  // failure leaves it where it was (the IOAS and its mappings go with IOMMU_DESTROY).
  absl::StatusOr<uint32_t> ioas = ops_.AllocIoas();
  if (!ioas.ok()) return HostError(ioas.status(), absl::StrFormat("IOAS for domain %u", domain));
  Space space{*ioas, {}, {}};
  absl::Status s;
  for (const Mapping& m : *replay) {
    if (s = MapOne(*ioas, m); !s.ok()) break;
    space.areas[m.virt_start] = m.virt_end;
  }
  spaces_[domain] = std::move(space);
  if (s.ok()) s = Move(st->second, ep, Where::kDomain, domain, *ioas);
  if (!s.ok()) DestroySpace(domain);
  return s;
}

absl::Status ViommuForwarder::AttachUntranslated(uint32_t ep, bool identity) {
  absl::MutexLock l(&mu_);
  auto st = endpoints_.find(ep);
  if (st == endpoints_.end()) return absl::InternalError(absl::StrFormat("endpoint %#x is not forwarded", ep));
  const Where where = identity ? Where::kIdentity : Where::kBlocked;
  if (st->second.where == where) return absl::OkStatus();
  return Move(st->second, ep, where, 0, identity_ioas_);
}

absl::Status ViommuForwarder::Map(uint32_t domain, const Mapping& m) {
  absl::MutexLock l(&mu_);
  auto sp = spaces_.find(domain);
  if (sp == spaces_.end()) return absl::InternalError(absl::StrFormat("domain %u has no host IOAS", domain));
  if (absl::Status s = MapOne(sp->second.ioas, m); !s.ok()) return s;
  sp->second.areas[m.virt_start] = m.virt_end;
  return absl::OkStatus();
}

absl::Status ViommuForwarder::Unmap(uint32_t domain, uint64_t virt_start, uint64_t virt_end) {
  absl::MutexLock l(&mu_);
  auto sp = spaces_.find(domain);
  if (sp == spaces_.end()) return absl::InternalError(absl::StrFormat("domain %u has no host IOAS", domain));
  // The device removes whole mappings only (§5.13.6.6: no split), each one IOAS area here, so the
  // kernel's rule (every area touched lies inside the range) holds for exactly that span.
  if (absl::Status s = ops_.Unmap(sp->second.ioas, virt_start, virt_end - virt_start + 1); !s.ok()) {
    return HostError(s, absl::StrFormat("UNMAP [%#x, %#x] of domain %u", virt_start, virt_end, domain));
  }
  ++stats_.unmaps;
  std::map<uint64_t, uint64_t>& areas = sp->second.areas;
  areas.erase(areas.lower_bound(virt_start), areas.upper_bound(virt_end));
  return absl::OkStatus();
}

std::vector<VirtioIommuHost::Reserved> ViommuForwarder::ReservedIova(uint32_t) {
  std::vector<VirtioIommuHost::Reserved> out;
  for (const IovaRange& r : host_reserved_) out.push_back({r.start, r.last});
  return out;
}

void ViommuForwarder::ReleaseDomain(uint32_t domain) {
  absl::MutexLock l(&mu_);
  DestroySpace(domain);
}

void ViommuForwarder::DestroySpace(uint32_t domain) {
  auto sp = spaces_.find(domain);
  if (sp == spaces_.end()) return;
  // A function still on it (its move elsewhere failed) is detached first: it must never keep
  // translating through mappings the guest no longer has, and an attached IOAS cannot be destroyed.
  for (uint32_t ep : std::set<uint32_t>(sp->second.endpoints)) {
    if (absl::Status s = Move(endpoints_[ep], ep, Where::kBlocked, 0, 0); !s.ok()) {
      std::fprintf(stderr, "ionest: %s\n", s.ToString().c_str());
    }
  }
  if (absl::Status s = ops_.Destroy(sp->second.ioas); !s.ok()) {  // drops its mappings
    (void)HostError(s, absl::StrFormat("destroying IOAS %u of domain %u", sp->second.ioas, domain));
    std::fprintf(stderr, "ionest: virtio-iommu forwarding: destroying IOAS %u of domain %u: %s\n", sp->second.ioas,
                 domain, s.ToString().c_str());
  }
  spaces_.erase(sp);
}

ViommuForwardingStats ViommuForwarder::stats() const {
  absl::MutexLock l(&mu_);
  ViommuForwardingStats s = stats_;
  s.spaces = spaces_.size();
  s.mapped_areas = 0;
  for (const auto& [d, sp] : spaces_) s.mapped_areas += sp.areas.size();
  return s;
}

std::optional<uint32_t> ViommuForwarder::ioas_of(uint32_t domain) const {
  absl::MutexLock l(&mu_);
  auto sp = spaces_.find(domain);
  if (sp == spaces_.end()) return std::nullopt;
  return sp->second.ioas;
}

std::string ViommuForwarder::Describe() const {
  absl::MutexLock l(&mu_);
  std::string out;
  for (const auto& [ep, st] : endpoints_) {
    if (!out.empty()) out += "\n";
    absl::StrAppend(&out, absl::StrFormat(
                              "%s: translated via virtio-iommu forwarding (endpoint %#x; guest MAP/UNMAP -> "
                              "IOMMU_IOAS_MAP/UNMAP of one host IOAS per domain, bypass -> IOAS %u, blocked -> "
                              "detached)",
                              st.device->name(), ep, identity_ioas_));
  }
  return out;
}

}  // namespace ionest::iommufd
