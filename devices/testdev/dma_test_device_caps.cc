#include "devices/testdev/dma_test_device_caps.h"

namespace ionest::dmatest {

absl::StatusOr<CapOffsets> AddDmaTestCapabilities(PciConfigSpace& config, const CapOptions& o) {
  CapOffsets off;
  PcieCapConfig pc;
  pc.type = o.port_type;
  pc.devcap2 |= pcie::kDevCap2EndEndTlpPrefix;  // PCIe 6.0 §7.5.3.15
  pc.flr = o.flr;
  absl::StatusOr<uint16_t> p = AddPcieCapability(config, pc);
  if (!p.ok()) return p.status();
  off.pcie = *p;
  absl::StatusOr<uint16_t> a = AddAtsCapability(config, AtsCapConfig{});  // Page Aligned Request set
  if (!a.ok()) return a.status();
  off.ats = *a;
  absl::StatusOr<uint16_t> s = AddPasidCapability(config, PasidCapConfig{o.pasid_width, o.pasid_exec, o.pasid_priv});
  if (!s.ok()) return s.status();
  off.pasid = *s;
  absl::StatusOr<uint16_t> r = AddPriCapability(config, PriCapConfig{o.pri_capacity, true});
  if (!r.ok()) return r.status();
  off.pri = *r;
  return off;
}

}  // namespace ionest::dmatest
