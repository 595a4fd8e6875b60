// A complete VT-d test bench without KVM: fake guest memory, a recording CPU MSI sink, the model
// and a Linux-like driver. For unit tests, machine-less integration tests and fuzzers.
#pragma once

#include <memory>
#include <string_view>

#include "absl/status/statusor.h"
#include "iommu/vtd/caps.h"
#include "iommu/vtd/testing/linux_vtd_driver.h"
#include "iommu/vtd/testing/vtd_builders.h"
#include "iommu/vtd/vtd_iommu.h"
#include "vmm/guest_memory.h"

namespace ionest::vtd::testing {

struct VtdTestEnv {
  static constexpr uint64_t kRamSize = 64ull << 20;     // default guest RAM [0, 64 MiB)
  static constexpr uint64_t kTablePool = 32ull << 20;   // page allocator pool [32 MiB, RAM end)

  std::unique_ptr<GuestMemory> memory;
  std::unique_ptr<PageAllocator> alloc;
  std::unique_ptr<RecordingMsiSink> cpu;
  std::unique_ptr<VtdIommu> iommu;
  std::unique_ptr<LinuxVtdDriver> driver;  // on the model's registers directly

  // `ram_size` must exceed kTablePool (smaller RAM = faster fuzzing iterations).
  static absl::StatusOr<std::unique_ptr<VtdTestEnv>> Create(std::string_view profile_options = "",
                                                            uint64_t ram_size = kRamSize) {
    if (ram_size <= kTablePool + (1 << 20)) return absl::InvalidArgumentError("ram_size too small");
    absl::StatusOr<VtdProfile> profile = ParseVtdProfile(profile_options);
    if (!profile.ok()) return profile.status();
    auto env = std::make_unique<VtdTestEnv>();
    absl::StatusOr<std::unique_ptr<GuestMemory>> mem = GuestMemory::Create({{0, ram_size}});
    if (!mem.ok()) return mem.status();
    env->memory = std::move(*mem);
    env->alloc = std::make_unique<PageAllocator>(*env->memory, kTablePool, ram_size - kTablePool);
    env->cpu = std::make_unique<RecordingMsiSink>();
    env->iommu = std::make_unique<VtdIommu>(*env->memory, *env->cpu, *profile);
    env->driver = std::make_unique<LinuxVtdDriver>(*env->iommu, *env->memory, *env->alloc);
    return env;
  }
};

}  // namespace ionest::vtd::testing
