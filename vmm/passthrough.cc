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

}  // namespace

absl::StatusOr<std::unique_ptr<Passthrough>> Passthrough::Open(const std::vector<PassthroughRequest>& requests,
                                                               std::vector<iommufd::RamRange> ram,
                                                               const vfio::LocateOptions& options) {
  std::unique_ptr<Passthrough> p(new Passthrough());
  if (requests.empty()) return absl::InvalidArgumentError("no passthrough devices requested");
  // Locate every device before opening anything: the cheapest errors first, nothing to undo.
  for (const PassthroughRequest& r : requests) {
    absl::StatusOr<vfio::LocatedDevice> where = vfio::LocateVfioDevice(r.spec, options);
    if (!where.ok()) return Annotate(where.status(), r.name);
  }
  absl::StatusOr<int> fd = vfio::OpenIommufd(options);
  if (!fd.ok()) return fd.status();
  absl::StatusOr<std::unique_ptr<iommufd::IommufdOps>> ops = iommufd::OpenKernelIommufd(*fd);
  if (!ops.ok()) return ops.status();  // OpenKernelIommufd owns (and closed) the fd
  absl::StatusOr<std::unique_ptr<iommufd::IommufdBackend>> backend =
      iommufd::IommufdBackend::Create(std::move(*ops), std::move(ram));
  if (!backend.ok()) return Annotate(backend.status(), "iommufd");
  p->backend_ = std::move(*backend);
  for (const PassthroughRequest& r : requests) {
    if (absl::Status s = p->OpenOne(r, options); !s.ok()) return Annotate(s, r.name);  // ~Passthrough undoes
  }
  return p;
}

absl::Status Passthrough::OpenOne(const PassthroughRequest& request, const vfio::LocateOptions& options) {
  absl::StatusOr<vfio::LocatedDevice> where = vfio::LocateVfioDevice(request.spec, options);
  if (!where.ok()) return where.status();
  absl::StatusOr<std::unique_ptr<vfio::VfioDeviceOps>> ops = vfio::OpenVfioCdev(*where, options);
  if (!ops.ok()) return ops.status();
  absl::StatusOr<uint32_t> dev_id = (*ops)->BindIommufd(backend_->fd());
  if (!dev_id.ok()) return vfio::ExplainBindError(dev_id.status(), *where, options);
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

Passthrough::~Passthrough() {
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
  for (const Entry& e : devices_) {
    absl::StrAppend(&out, absl::StrFormat("\n%s: host %s, %s, iommufd device %u", e.device->name(),
                                          e.located.bdf.empty() ? "?" : e.located.bdf, e.located.cdev_path,
                                          e.dev_id));
  }
  return out;
}

}  // namespace ionest
