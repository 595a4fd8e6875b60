#include "vmm/passthrough.h"

#include <unistd.h>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "iommu/iommufd/iommufd_kernel.h"

namespace ionest {
namespace {

absl::Status Annotate(const absl::Status& s, const std::string& what) {
  if (s.ok()) return s;
  return absl::Status(s.code(), absl::StrCat(what, ": ", s.message()));
}

// A passthrough function as the VT-d nesting backend drives it: attachments through its VFIO cdev.
class VfioNestedDevice final : public iommufd::NestedDevice {
 public:
  VfioNestedDevice(vfio::VfioPciDevice& device, uint32_t dev_id, uint16_t rid)
      : device_(device), dev_id_(dev_id), rid_(rid) {}
  const std::string& name() const override { return device_.name(); }
  uint32_t dev_id() const override { return dev_id_; }
  uint16_t rid() const override { return rid_; }
  bool pri() const override { return device_.host_has_pri(); }
  absl::Status Attach(uint32_t pt_id) override { return device_.ops().AttachPt(pt_id); }
  absl::Status Detach() override { return device_.ops().DetachPt(); }
  absl::Status AttachPasid(uint32_t pasid, uint32_t pt_id) override { return device_.ops().AttachPasid(pasid, pt_id); }
  absl::Status DetachPasid(uint32_t pasid) override { return device_.ops().DetachPasid(pasid); }

 private:
  vfio::VfioPciDevice& device_;
  const uint32_t dev_id_;
  const uint16_t rid_;
};

}  // namespace

PassthroughHost PassthroughHost::Real(const vfio::LocateOptions& options) {
  PassthroughHost h;
  h.locate = [options](const vfio::VfioDeviceSpec& spec) { return vfio::LocateVfioDevice(spec, options); };
  h.open_iommufd = [options]() -> absl::StatusOr<std::unique_ptr<iommufd::IommufdOps>> {
    absl::StatusOr<int> fd = vfio::OpenIommufd(options);
    if (!fd.ok()) return fd.status();
    return iommufd::OpenKernelIommufd(*fd);  // owns the fd from here (closes it on error too)
  };
  h.open_device = [options](const vfio::LocatedDevice& d) { return vfio::OpenVfioCdev(d, options); };
  h.explain_bind_error = [options](const absl::Status& s, const vfio::LocatedDevice& d) {
    return vfio::ExplainBindError(s, d, options);
  };
  return h;
}

absl::StatusOr<std::unique_ptr<Passthrough>> Passthrough::Open(const std::vector<PassthroughRequest>& requests,
                                                               std::vector<iommufd::RamRange> ram,
                                                               const PassthroughHost& host) {
  std::unique_ptr<Passthrough> p(new Passthrough());
  if (requests.empty()) return absl::InvalidArgumentError("no passthrough devices requested");
  // Locate every device before opening anything: the cheapest errors first, nothing to undo.
  for (const PassthroughRequest& r : requests) {
    absl::StatusOr<vfio::LocatedDevice> where = host.locate(r.spec);
    if (!where.ok()) return Annotate(where.status(), r.name);
  }
  absl::StatusOr<std::unique_ptr<iommufd::IommufdOps>> ops = host.open_iommufd();
  if (!ops.ok()) return ops.status();
  absl::StatusOr<std::unique_ptr<iommufd::IommufdBackend>> backend =
      iommufd::IommufdBackend::Create(std::move(*ops), std::move(ram));
  if (!backend.ok()) return Annotate(backend.status(), "iommufd");
  p->backend_ = std::move(*backend);
  for (const PassthroughRequest& r : requests) {
    if (absl::Status s = p->OpenOne(r, host); !s.ok()) return Annotate(s, r.name);  // ~Passthrough undoes
  }
  return p;
}

absl::Status Passthrough::OpenOne(const PassthroughRequest& request, const PassthroughHost& host) {
  absl::StatusOr<vfio::LocatedDevice> where = host.locate(request.spec);
  if (!where.ok()) return where.status();
  absl::StatusOr<std::unique_ptr<vfio::VfioDeviceOps>> ops = host.open_device(*where);
  if (!ops.ok()) return ops.status();
  absl::StatusOr<uint32_t> dev_id = (*ops)->BindIommufd(backend_->fd());
  if (!dev_id.ok()) return host.explain_bind_error(dev_id.status(), *where);
  // From here on, closing the cdev (destroying *ops) unbinds and detaches the device.
  if (absl::Status s = (*ops)->AttachPt(backend_->ioas_id()); !s.ok()) {
    return Annotate(s, absl::StrFormat("attaching %s to IOAS %u", where->cdev_path, backend_->ioas_id()));
  }
  if (absl::Status s = backend_->OnDeviceAttached(*dev_id, where->cdev_path); !s.ok()) {
    backend_->OnDeviceDetaching(*dev_id);
    return s;
  }
  absl::StatusOr<std::unique_ptr<vfio::VfioPciDevice>> dev =
      vfio::VfioPciDevice::Create(request.name, std::move(*ops));
  if (!dev.ok()) {
    backend_->OnDeviceDetaching(*dev_id);
    return dev.status();
  }
  devices_.push_back(Entry{*where, *dev_id, std::move(*dev)});
  return absl::OkStatus();
}

absl::Status Passthrough::EnableVtdNesting(vtd::VtdIommu& iommu, PhysMemory& guest, const std::vector<uint16_t>& rids,
                                           iommufd::VtdNestingOptions options) {
  if (nesting_) return absl::FailedPreconditionError("VT-d nesting is already enabled");
  if (rids.size() != devices_.size()) return absl::InvalidArgumentError("one requester id per passthrough device");
  if (!iommu.profile().caching_mode) {
    return absl::InvalidArgumentError(
        "--vtd-profile cm=off with a passthrough device: the host can only follow the guest's second-stage tables "
        "if the guest announces every new mapping (caching mode, VT-d §6.1); drop cm=off");
  }
  std::vector<iommufd::NestedDevice*> devices;
  for (size_t i = 0; i < devices_.size(); ++i) {
    nested_devices_.push_back(std::make_unique<VfioNestedDevice>(*devices_[i].device, devices_[i].dev_id, rids[i]));
    devices.push_back(nested_devices_.back().get());
  }
  auto info = backend_->host_info().find(devices_[0].dev_id);
  if (info == backend_->host_info().end()) return absl::InternalError("no host IOMMU info for the first device");
  options.ram = backend_->ram();
  options.ioas_id = backend_->ioas_id();
  absl::StatusOr<std::unique_ptr<iommufd::VtdNestingBackend>> nesting =
      iommufd::VtdNestingBackend::Create(backend_->ops(), iommu, guest, info->second, devices, std::move(options));
  if (!nesting.ok()) {
    nested_devices_.clear();
    return nesting.status();
  }
  nesting_ = std::move(*nesting);
  return absl::OkStatus();
}

absl::Status Passthrough::EnableVirtioIommuForwarding(VirtioIommu& viommu, const std::vector<uint16_t>& endpoints) {
  if (nesting_ || forwarding_) return absl::FailedPreconditionError("a vIOMMU backend is already enabled");
  if (endpoints.size() != devices_.size()) return absl::InvalidArgumentError("one endpoint id per passthrough device");
  std::vector<iommufd::ViommuForwarder::Endpoint> eps;
  for (size_t i = 0; i < devices_.size(); ++i) {
    nested_devices_.push_back(
        std::make_unique<VfioNestedDevice>(*devices_[i].device, devices_[i].dev_id, endpoints[i]));
    eps.push_back({endpoints[i], nested_devices_.back().get()});
  }
  absl::StatusOr<std::unique_ptr<iommufd::ViommuForwarder>> f = iommufd::ViommuForwarder::Create(
      backend_->ops(), viommu, backend_->ram(), backend_->ioas_id(), std::move(eps), backend_->reserved_ranges());
  if (!f.ok()) {
    nested_devices_.clear();
    return f.status();
  }
  forwarding_ = std::move(*f);
  return absl::OkStatus();
}

Passthrough::~Passthrough() {
  if (forwarding_) {
    // What the guest's virtio-iommu requests did on the host (arm64-vmm.sh checks it).
    const iommufd::ViommuForwardingStats s = forwarding_->stats();
    fprintf(stderr,
            "ionest: virtio-iommu forwarding: %llu IOMMU_IOAS_MAP, %llu IOMMU_IOAS_UNMAP, %llu attachments, %llu "
            "refused, %llu host failures, %zu domain IOAS(es) live at exit\n",
            (unsigned long long)s.maps, (unsigned long long)s.unmaps, (unsigned long long)s.attaches,
            (unsigned long long)s.refused, (unsigned long long)s.host_failures, s.spaces);
  }
  forwarding_.reset();  // unregistered from the virtio-iommu, functions back on the IOAS
  nesting_.reset();  // devices back on the IOAS, HWPTs and the fault queue destroyed
  nested_devices_.clear();
  // Devices first (their destructors stop interrupt forwarding and close the cdev, which unbinds
  // them from the iommufd), then the IOAS and /dev/iommu.
  while (!devices_.empty()) {
    if (backend_) backend_->OnDeviceDetaching(devices_.back().dev_id);
    devices_.pop_back();
  }
  backend_.reset();
}

void Passthrough::ResetAll() {
  for (Entry& e : devices_) {
    if (absl::Status s = e.device->Reset(/*keep_bars=*/false); !s.ok()) {
      fprintf(stderr, "ionest: resetting %s: %s\n", e.device->name().c_str(), std::string(s.message()).c_str());
    }
  }
}

std::string Passthrough::Describe() const {
  std::string out = backend_ ? backend_->Describe() : "iommufd: none";
  if (nesting_) absl::StrAppend(&out, "\n", nesting_->Describe());
  if (forwarding_) absl::StrAppend(&out, "\n", forwarding_->Describe());
  for (const Entry& e : devices_) {
    absl::StrAppend(&out, absl::StrFormat("\n%s: host %s, %s, iommufd device %u", e.device->name(),
                                          e.located.bdf.empty() ? "?" : e.located.bdf, e.located.cdev_path,
                                          e.dev_id));
  }
  return out;
}

}  // namespace ionest
