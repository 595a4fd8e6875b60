#include "devices/pci_express_caps.h"

namespace ionest {

absl::StatusOr<uint16_t> AddPcieCapability(PciConfigSpace& config, const PcieCapConfig& c) {
  absl::StatusOr<uint16_t> off = config.AddCapability(pci::kCapIdPcie, pcie::kCapSize);
  if (!off.ok()) return off;
  const uint16_t o = *off;
  config.Set16(o + pcie::kCaps, static_cast<uint16_t>(2 | static_cast<uint16_t>(c.type) << 4));  // version 2
  config.Set32(o + pcie::kDevCap, c.devcap | (c.flr ? pcie::kDevCapFlr : 0));
  // DEVCTL (§7.5.3.4): error reporting enables, relaxed ordering, max payload, ext tag, phantom,
  // aux power, no snoop, max read request; reset: RO=1, NS=1, MRRS=512 B.
  config.Set16(o + pcie::kDevCtl, pcie::kDevCtlResetValue);
  config.SetMasks(o + pcie::kDevCtl, 2, 0x7FFF | (c.flr ? pcie::kDevCtlInitiateFlr : 0));
  config.SetMasks(o + pcie::kDevSta, 2, 0, pcie::kDevStaErrorsRw1c);  // error detected bits are RW1C
  if (c.type != PcieDeviceType::kRcIntegratedEndpoint) {
    // One 2.5 GT/s x1 link (§7.5.3.6-7.5.3.8); RCiEPs have no link registers.
    config.Set32(o + pcie::kLnkCap, 0x1 | 0x1 << 4);
    config.SetMasks(o + pcie::kLnkCtl, 2, 0x0FFB);
    config.Set16(o + pcie::kLnkSta, 0x1 | 0x1 << 4);
    config.Set32(o + pcie::kLnkCap2, 0x1 << 1);  // supported speeds: 2.5 GT/s
    config.Set16(o + pcie::kLnkCtl2, 0x1);
    config.SetMasks(o + pcie::kLnkCtl2, 2, 0x000F);
  }
  config.Set32(o + pcie::kDevCap2, c.devcap2);
  // DEVCTL2 (§7.5.3.16): completion timeout value/disable, ARI, atomics, IDO, LTR, 10-bit tags, EE prefix blocking.
  config.SetMasks(o + pcie::kDevCtl2, 2, 0xFFFF);
  return o;
}

void ResetPcieCapabilityForFlr(PciConfigSpace& config, uint16_t offset) {
  const uint16_t kept = pcie::kDevCtlMaxPayloadMask | pcie::kDevCtlAuxPowerPm;
  const uint16_t ctl = config.Get16(offset + pcie::kDevCtl);
  config.Set16(offset + pcie::kDevCtl, static_cast<uint16_t>((pcie::kDevCtlResetValue & ~kept) | (ctl & kept)));
  config.UpdateBits(offset + pcie::kDevSta, 2, 0, pcie::kDevStaErrorsRw1c);
  config.Set16(offset + pcie::kDevCtl2, 0);
}

absl::StatusOr<uint16_t> AddAtsCapability(PciConfigSpace& config, const AtsCapConfig& c) {
  absl::StatusOr<uint16_t> off = config.AddExtCapability(pci::kExtCapIdAts, 1, ats::kCapSize);
  if (!off.ok()) return off;
  config.Set16(*off + ats::kCap, static_cast<uint16_t>((c.invalidate_queue_depth & 0x1F) |
                                                       (c.page_aligned_request ? ats::kCapPageAlignedRequest : 0) |
                                                       (c.global_invalidate ? ats::kCapGlobalInvalidate : 0)));
  config.SetMasks(*off + ats::kControl, 2, ats::kControlEnable | ats::kControlStuMask);
  return off;
}

absl::StatusOr<uint16_t> AddPasidCapability(PciConfigSpace& config, const PasidCapConfig& c) {
  if (c.max_width > 20) return absl::InvalidArgumentError("PASID width > 20");
  absl::StatusOr<uint16_t> off = config.AddExtCapability(pci::kExtCapIdPasid, 1, pasid::kCapSize);
  if (!off.ok()) return off;
  config.Set16(*off + pasid::kCap, static_cast<uint16_t>((c.exec ? pasid::kCapExec : 0) | (c.priv ? pasid::kCapPriv : 0) |
                                                         (c.max_width & 0x1F) << pasid::kCapMaxWidthShift));
  // Exec/Priv enables are RW only when supported (§7.8.8.3).
  config.SetMasks(*off + pasid::kControl, 2,
                  pasid::kControlEnable | (c.exec ? pasid::kControlExec : 0) | (c.priv ? pasid::kControlPriv : 0));
  return off;
}

absl::StatusOr<uint16_t> AddPriCapability(PciConfigSpace& config, const PriCapConfig& c) {
  absl::StatusOr<uint16_t> off = config.AddExtCapability(pci::kExtCapIdPri, 1, pri::kCapSize);
  if (!off.ok()) return off;
  config.SetMasks(*off + pri::kControl, 2, pri::kControlEnable | pri::kControlReset);
  config.Set16(*off + pri::kStatus, static_cast<uint16_t>(
                                        pri::kStatusStopped |
                                        (c.prg_response_pasid_required ? pri::kStatusPrgResponsePasidRequired : 0)));
  config.SetMasks(*off + pri::kStatus, 2, 0, pri::kStatusResponseFailure | pri::kStatusUprgi);
  config.Set32(*off + pri::kCapacity, c.outstanding_capacity);
  config.SetMasks(*off + pri::kAllocation, 4, 0xFFFFFFFF);
  return off;
}

}  // namespace ionest
