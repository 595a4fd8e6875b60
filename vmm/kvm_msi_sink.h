// MsiSink that delivers MSIs into the VM with KVM_SIGNAL_MSI (used with --iommu=none, and as the
// downstream of the IOMMU's interrupt remapper).
// Thread safety: SendMsi may be called concurrently from any thread.
#pragma once

#include <atomic>

#include "iommu/msi.h"
#include "vmm/kvm.h"

namespace ionest {

// True for a DWORD write to the interrupt address range 0xFEEx_xxxx (SDM vol. 3 §11.11.1).
inline bool IsCpuInterruptAddress(uint64_t address) { return (address & ~0xFFFFFull) == 0xFEE00000ull; }

class KvmMsiSink final : public MsiSink {
 public:
  explicit KvmMsiSink(KvmVm& vm) : vm_(vm) {}
  // Addresses outside the interrupt range 0xFEEx_xxxx (Intel SDM vol. 3 §11.11.1) are dropped and
  // counted, never handed to KVM.
  absl::Status SendMsi(const MsiMessage& msi) override;
  uint64_t delivered() const { return delivered_.load(); }
  uint64_t dropped() const { return dropped_.load(); }

 private:
  KvmVm& vm_;
  std::atomic<uint64_t> delivered_{0};
  std::atomic<uint64_t> dropped_{0};
};

}  // namespace ionest
