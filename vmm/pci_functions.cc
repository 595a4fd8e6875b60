#include "vmm/pci_functions.h"

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "devices/testdev/dma_test_device.h"
#include "devices/testdev/epf_test_device.h"
#include "vmm/device_spec.h"

namespace ionest {
namespace {

absl::Status Annotate(const absl::Status& s, const std::string& what) {
  if (s.ok()) return s;
  return absl::Status(s.code(), absl::StrCat(what, ": ", s.message()));
}

// Every requester but the virtio-iommu function itself goes through the virtio-iommu.
class VirtioIommuProvider final : public DmaSpaceProvider {
 public:
  VirtioIommuProvider(VirtioIommu& viommu, PhysMemory& memory, uint16_t self)
      : viommu_(viommu), self_space_(memory), self_(self) {}
  DmaSpace& ForRequester(uint16_t rid) override { return rid == self_ ? self_space_ : viommu_.ForRequester(rid); }

 private:
  VirtioIommu& viommu_;
  IdentityDmaSpace self_space_;
  const uint16_t self_;
};

}  // namespace

absl::StatusOr<VirtioIommuFunction> CreateVirtioIommu(PhysMemory& memory, bool boot_bypass, uint64_t msi_start,
                                                      uint64_t msi_end) {
  VirtioIommu::Options o;
  o.boot_bypass = boot_bypass;
  o.endpoints = {{0, kVirtioIommuDevfn - 1u}, {kVirtioIommuDevfn + 1u, 0xff}};
  o.reserved = {{msi_start, msi_end, VirtioIommu::kResvMemTMsi}};
  auto viommu = VirtioIommu::Create(memory, o);
  if (!viommu.ok()) return Annotate(viommu.status(), "virtio-iommu");
  VirtioIommuFunction f;
  f.device = std::move(*viommu);
  f.provider = std::make_unique<VirtioIommuProvider>(*f.device, memory, kVirtioIommuDevfn);
  return f;
}

absl::Status AttachVirtioIommu(PciHost& pci, VirtioIommuFunction& function) {
  auto t = VirtioPciDevice::Create("virtio-iommu", *function.device, VirtioIommu::kPciClass, {});
  if (!t.ok()) return Annotate(t.status(), "virtio-iommu");
  function.transport = std::move(*t);
  if (absl::Status s = pci.AddDevice(kVirtioIommuDevfn, *function.transport); !s.ok()) {
    return Annotate(s, "virtio-iommu");
  }
  VirtioPciDevice* transport = function.transport.get();
  function.device->SetEventNotifier([transport] { transport->Kick(VirtioIommu::kEventQueue); });
  return absl::OkStatus();
}

absl::Status AddVirtioBlk(PciHost& pci, const std::string& disk, std::unique_ptr<VirtioBlk>& blk,
                          std::unique_ptr<VirtioPciDevice>& transport) {
  auto b = VirtioBlk::Open(disk, {});
  if (!b.ok()) return Annotate(b.status(), "--disk");
  blk = std::move(*b);
  auto t = VirtioPciDevice::Create("virtio-blk", *blk, VirtioBlk::kPciClass, {});
  if (!t.ok()) return t.status();
  transport = std::move(*t);
  return pci.AddDevice(kVirtioBlkDevfn, *transport);
}

absl::Status AddEmulatedTestDevices(PciHost& pci, const std::vector<TestDeviceSpec>& devices,
                                    std::vector<std::unique_ptr<PciDevice>>& out) {
  for (size_t i = 0; i < devices.size(); ++i) {
    const TestDeviceSpec& spec = devices[i];
    if (spec.kind == TestDeviceKind::kVfio) continue;
    const uint8_t devfn = DeviceDevfn(spec, static_cast<int>(i));
    const std::string name = absl::StrFormat("%s@%02x.%x", TestDeviceKindName(spec.kind), devfn >> 3, devfn & 7);
    std::unique_ptr<PciDevice> dev;
    absl::Status init;
    if (spec.kind == TestDeviceKind::kDmaTest) {
      DmaTestDeviceOptions o;
      if (spec.max_len) o.max_job_length = spec.max_len;
      o.caps.pasid_width = spec.pasid_bits;
      o.caps.pri_capacity = spec.pri_capacity;
      auto d = std::make_unique<DmaTestDevice>(name, o);
      init = d->init_status();
      dev = std::move(d);
    } else {
      EpfTestDeviceOptions o;
      if (spec.max_len) o.max_transfer = spec.max_len;
      auto d = std::make_unique<EpfTestDevice>(name, o);
      init = d->init_status();
      dev = std::move(d);
    }
    if (!init.ok()) return Annotate(init, name);
    if (absl::Status s = pci.AddDevice(devfn, *dev); !s.ok()) return Annotate(s, name);
    out.push_back(std::move(dev));
  }
  return absl::OkStatus();
}

PassthroughPlan PlanPassthrough(const std::vector<TestDeviceSpec>& devices) {
  PassthroughPlan plan;
  for (size_t i = 0; i < devices.size(); ++i) {
    const TestDeviceSpec& spec = devices[i];
    if (spec.kind != TestDeviceKind::kVfio) continue;
    const uint8_t devfn = DeviceDevfn(spec, static_cast<int>(i));
    plan.requests.push_back(
        {{spec.vfio_path, spec.vfio_host}, absl::StrFormat("vfio@%02x.%x", devfn >> 3, devfn & 7)});
    plan.devfns.push_back(devfn);
  }
  return plan;
}

std::vector<iommufd::RamRange> PassthroughRam(const GuestMemory& memory) {
  std::vector<iommufd::RamRange> ram;
  for (const MemoryRegion& r : memory.regions()) ram.push_back({r.gpa, r.host, r.size});
  return ram;
}

absl::StatusOr<std::unique_ptr<Passthrough>> AddPassthroughFunctions(PciHost& pci, const GuestMemory& memory,
                                                                     const PassthroughPlan& plan,
                                                                     const PassthroughBinder& bind) {
  if (plan.requests.empty()) return std::unique_ptr<Passthrough>();
  absl::StatusOr<std::unique_ptr<Passthrough>> pt = Passthrough::Open(plan.requests, PassthroughRam(memory));
  if (!pt.ok()) return pt.status();
  if (bind) {
    if (absl::Status s = bind(**pt, plan); !s.ok()) return s;
  }
  for (size_t i = 0; i < (*pt)->size(); ++i) {
    if (absl::Status s = pci.AddDevice(plan.devfns[i], (*pt)->device(i)); !s.ok()) {
      return Annotate(s, plan.requests[i].name);
    }
  }
  fprintf(stderr, "ionest: %s\n", (*pt)->Describe().c_str());
  return pt;
}

PassthroughBinder VirtioIommuBinder(VirtioIommu& viommu) {
  return [&viommu](Passthrough& pt, const PassthroughPlan& plan) {
    std::vector<uint16_t> endpoints(plan.devfns.begin(), plan.devfns.end());  // bus 0: endpoint = devfn
    return Annotate(pt.EnableVirtioIommuForwarding(viommu, endpoints), "--device vfio with --iommu=virtio");
  };
}

}  // namespace ionest
