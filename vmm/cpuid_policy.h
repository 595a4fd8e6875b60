// CPUID policy for the guest.
//
// On this host's software KVM (kvm_pvm) KVM_SET_CPUID2 is accepted but ignored: the guest sees the
// host CPUID. The policy therefore has two halves:
//  (a) a sane CPUID table for KVM_SET_CPUID2 (correct APIC IDs, unemulatable features cleared) —
//      harmless here, correct on a KVM that honours it;
//  (b) guest command-line additions (`noxsave clearcpuid=...`) that stop the guest kernel using
//      instructions KVM's instruction emulator cannot execute (it runs all guest kernel code).
// Pure functions; thread-compatible.
#pragma once

#include <linux/kvm.h>

#include <cstdint>
#include <string>
#include <vector>

namespace ionest {

enum class CpuidReg { kEax, kEbx, kEcx, kEdx };

struct CpuFeature {
  const char* name;  // the kernel's clearcpuid= name (arch/x86/include/asm/cpufeatures.h)
  uint32_t leaf;
  uint32_t subleaf;
  CpuidReg reg;
  int bit;
};

// Features whose instructions the emulator cannot run (measured; docs/vmm.md).
const std::vector<CpuFeature>& UnemulatableFeatures();
// SIMD/crypto extensions used only by SIMD crypto code; cleared when requested.
const std::vector<CpuFeature>& SimdCryptoFeatures();

struct CpuidPolicyOptions {
  bool clear_simd_crypto = false;
};

struct CpuidPolicy {
  std::vector<std::string> clear_features;  // names present in the visible CPUID that must be cleared
  bool noxsave = false;                     // visible CPUID has XSAVE
  // Guest command-line fragment, e.g. "noxsave clearcpuid=popcnt,smap"; empty if nothing to clear.
  std::string CmdlineAdditions() const;
};

// `visible` is what the guest will actually see (the host CPUID here; KVM's supported CPUID on a
// KVM that honours SET_CPUID2).
CpuidPolicy ComputeCpuidPolicy(const std::vector<kvm_cpuid_entry2>& visible, const CpuidPolicyOptions& options);

// KVM_SET_CPUID2 table for vCPU `apic_id`: `supported` with APIC IDs set (leaf 1 EBX[31:24], leaf
// 0xB/0x1F EDX), the hypervisor bit set, and the policy's features cleared.
std::vector<kvm_cpuid_entry2> GuestCpuidTable(const std::vector<kvm_cpuid_entry2>& supported, const CpuidPolicy& policy,
                                              uint32_t apic_id);

// The host CPUID (via the cpuid instruction) for the leaves the policy inspects.
std::vector<kvm_cpuid_entry2> HostCpuid();

}  // namespace ionest
