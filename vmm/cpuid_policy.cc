#include "vmm/cpuid_policy.h"

#include <cpuid.h>

#include <algorithm>

#include "absl/strings/str_join.h"

namespace ionest {
namespace {

uint32_t* RegOf(kvm_cpuid_entry2& e, CpuidReg r) {
  switch (r) {
    case CpuidReg::kEax: return &e.eax;
    case CpuidReg::kEbx: return &e.ebx;
    case CpuidReg::kEcx: return &e.ecx;
    case CpuidReg::kEdx: return &e.edx;
  }
  return &e.eax;
}

const kvm_cpuid_entry2* FindLeaf(const std::vector<kvm_cpuid_entry2>& t, uint32_t leaf, uint32_t subleaf) {
  for (const auto& e : t) {
    if (e.function == leaf && ((e.flags & KVM_CPUID_FLAG_SIGNIFCANT_INDEX) == 0 || e.index == subleaf)) return &e;
  }
  return nullptr;
}

bool HasFeature(const std::vector<kvm_cpuid_entry2>& t, const CpuFeature& f) {
  const kvm_cpuid_entry2* e = FindLeaf(t, f.leaf, f.subleaf);
  if (!e) return false;
  kvm_cpuid_entry2 copy = *e;
  return (*RegOf(copy, f.reg) >> f.bit) & 1;
}

constexpr CpuFeature kXsave{"xsave", 1, 0, CpuidReg::kEcx, 26};
constexpr CpuFeature kOsxsave{"osxsave", 1, 0, CpuidReg::kEcx, 27};

}  // namespace

const std::vector<CpuFeature>& UnemulatableFeatures() {
  // CPUID bit positions: Intel SDM vol. 2A, CPUID instruction, tables 3-8 (leaf 1), 3-8 (leaf 7).
  static const std::vector<CpuFeature> kList = {
      {"popcnt", 1, 0, CpuidReg::kEcx, 23},     {"smap", 7, 0, CpuidReg::kEbx, 20},
      {"fsgsbase", 7, 0, CpuidReg::kEbx, 0},    {"cx16", 1, 0, CpuidReg::kEcx, 13},
      {"bmi1", 7, 0, CpuidReg::kEbx, 3},        {"bmi2", 7, 0, CpuidReg::kEbx, 8},
      {"rdtscp", 0x80000001, 0, CpuidReg::kEdx, 27}, {"rdpid", 7, 0, CpuidReg::kEcx, 22},
      {"pcid", 1, 0, CpuidReg::kEcx, 17},       {"invpcid", 7, 0, CpuidReg::kEbx, 10},
      {"abm", 0x80000001, 0, CpuidReg::kEcx, 5}, {"movbe", 1, 0, CpuidReg::kEcx, 22},
      {"adx", 7, 0, CpuidReg::kEbx, 19},        {"clflushopt", 7, 0, CpuidReg::kEbx, 23},
      {"clwb", 7, 0, CpuidReg::kEbx, 24},
  };
  return kList;
}

const std::vector<CpuFeature>& SimdCryptoFeatures() {
  static const std::vector<CpuFeature> kList = {
      {"ssse3", 1, 0, CpuidReg::kEcx, 9},     {"sse4_1", 1, 0, CpuidReg::kEcx, 19},
      {"sse4_2", 1, 0, CpuidReg::kEcx, 20},   {"pclmulqdq", 1, 0, CpuidReg::kEcx, 1},
      {"aes", 1, 0, CpuidReg::kEcx, 25},      {"sha_ni", 7, 0, CpuidReg::kEbx, 29},
      {"gfni", 7, 0, CpuidReg::kEcx, 8},
  };
  return kList;
}

std::string CpuidPolicy::CmdlineAdditions() const {
  std::vector<std::string> parts;
  if (noxsave) parts.push_back("noxsave");
  if (!clear_features.empty()) parts.push_back("clearcpuid=" + absl::StrJoin(clear_features, ","));
  return absl::StrJoin(parts, " ");
}

CpuidPolicy ComputeCpuidPolicy(const std::vector<kvm_cpuid_entry2>& visible, const CpuidPolicyOptions& options) {
  CpuidPolicy p;
  auto consider = [&](const std::vector<CpuFeature>& list) {
    for (const auto& f : list) {
      if (HasFeature(visible, f)) p.clear_features.push_back(f.name);
    }
  };
  consider(UnemulatableFeatures());
  if (options.clear_simd_crypto) consider(SimdCryptoFeatures());
  // With XSAVE the kernel would use XSAVE/XRSTOR(S) for FPU state, which the emulator cannot run.
  p.noxsave = HasFeature(visible, kXsave);
  return p;
}

std::vector<kvm_cpuid_entry2> GuestCpuidTable(const std::vector<kvm_cpuid_entry2>& supported, const CpuidPolicy& policy,
                                              uint32_t apic_id) {
  std::vector<kvm_cpuid_entry2> t = supported;
  auto clear = [&](const CpuFeature& f) {
    for (auto& e : t) {
      if (e.function == f.leaf && ((e.flags & KVM_CPUID_FLAG_SIGNIFCANT_INDEX) == 0 || e.index == f.subleaf)) {
        *RegOf(e, f.reg) &= ~(1u << f.bit);
      }
    }
  };
  std::vector<CpuFeature> all = UnemulatableFeatures();
  const auto& simd = SimdCryptoFeatures();
  all.insert(all.end(), simd.begin(), simd.end());
  for (const auto& f : all) {
    if (std::find(policy.clear_features.begin(), policy.clear_features.end(), f.name) != policy.clear_features.end()) {
      clear(f);
    }
  }
  if (policy.noxsave) {
    clear(kXsave);
    clear(kOsxsave);
  }
  for (auto& e : t) {
    if (e.function == 1) {
      e.ebx = (e.ebx & 0x00ffffff) | (apic_id << 24);  // initial APIC ID
      e.ecx |= 1u << 31;                                // hypervisor present
    }
    if (e.function == 0xb || e.function == 0x1f) e.edx = apic_id;  // x2APIC ID
  }
  return t;
}

std::vector<kvm_cpuid_entry2> HostCpuid() {
  std::vector<kvm_cpuid_entry2> t;
  auto add = [&](uint32_t leaf, uint32_t sub, bool indexed) {
    kvm_cpuid_entry2 e{};
    e.function = leaf;
    e.index = sub;
    e.flags = indexed ? KVM_CPUID_FLAG_SIGNIFCANT_INDEX : 0;
    __cpuid_count(leaf, sub, e.eax, e.ebx, e.ecx, e.edx);
    t.push_back(e);
  };
  unsigned max = __get_cpuid_max(0, nullptr);
  add(1, 0, false);
  if (max >= 7) add(7, 0, true);
  if (__get_cpuid_max(0x80000000, nullptr) >= 0x80000001) add(0x80000001, 0, false);
  return t;
}

}  // namespace ionest
