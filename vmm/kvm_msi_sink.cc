#include "vmm/kvm_msi_sink.h"

namespace ionest {

absl::Status KvmMsiSink::SendMsi(const MsiMessage& msi) {
  if (!IsCpuInterruptAddress(msi.address)) {
    dropped_.fetch_add(1);
    return absl::OkStatus();
  }
  auto r = vm_.SignalMsi(msi.address, msi.data);
  if (!r.ok()) return r.status();
  if (*r > 0) {
    delivered_.fetch_add(1);
  } else {
    dropped_.fetch_add(1);  // no destination accepted it (masked/disabled APIC): as on hardware
  }
  return absl::OkStatus();
}

}  // namespace ionest
