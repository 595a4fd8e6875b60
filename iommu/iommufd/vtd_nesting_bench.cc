// VT-d nesting backend micro-benchmarks (issue 9), in-process: the emulated VT-d driven by the
// Linux-like test driver, the backend, and FakeIommufd as the host. See docs/iommu-benchmarks.md
// ("Nesting backend").
//
//  - BM_UnmapInvalidation512/<shape>: the invalidations a Linux 6.12 guest issues to unmap 512
//    pages of a first-stage (nested) domain of an ATS device, from the guest's queue writes to the
//    host's IOMMU_HWPT_INVALIDATE. Shapes:
//      0 "aligned": what cache_tag_flush_range() emits for one 2 MiB-aligned unmap: one
//        PASID-IOTLB descriptor with AM=9, one device-TLB descriptor (S=1, 2 MiB), a wait;
//      1 "pages_qi_batch16": 512 single-page PASID-IOTLB + device-TLB pairs (512 separate 4 KiB
//        unmaps' worth) submitted as Linux 6.12's qi_batch does: QI_MAX_BATCHED_DESC_COUNT = 16
//        descriptors, then qi_submit_sync's wait;
//      2 "pages_queue_full": the same 1024 descriptors in queue-sized submissions (254 + a wait,
//        the emulated queue holding 256 descriptors of 32 bytes).
//    Counters (machine-independent): guest descriptors (waits excluded) per host call, host calls
//    and host entries per unmap, waits per unmap.
//  - BM_FaultToGuestQueue: a host page fault (FakeIommufd::InjectFault) -> PumpFaults -> a page
//    request descriptor in the guest's page request queue.
//  - BM_GuestResponseToHost: the guest's page group response (descriptor + wait) -> the response
//    written to the host (FakeIommufd::WriteResponses).
// The host side of IOMMU_HWPT_INVALIDATE is a counting stub (BenchOps) instead of the fake's,
// which keeps a copy of every call (gigabytes over a benchmark run); everything else is the fake.
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "benchmark/benchmark.h"
#include "iommu/iommufd/testing/fake_iommufd.h"
#include "iommu/iommufd/vtd_nesting.h"
#include "iommu/vtd/page_request.h"
#include "iommu/vtd/registers.h"
#include "iommu/vtd/testing/vtd_test_env.h"

namespace ionest::iommufd {
namespace {

using iommufd_testing::FakeIommufd;
using vtd::InvDescriptor;
using vtd::testing::VtdTestEnv;
using namespace vtd::testing;  // NOLINT: descriptor builders

constexpr uint16_t kRid = 0x0010;
constexpr uint32_t kDevId = 77;
constexpr uint32_t kIoas = 1;
constexpr uint16_t kDid = 5;
constexpr uint64_t kUnmapBase = 0x40000000;  // 2 MiB aligned IOVA

void Check(bool ok, const char* what) {
  if (!ok) {
    std::fprintf(stderr, "benchmark setup failed: %s\n", what);
    std::abort();
  }
}

// The fake, except IOMMU_HWPT_INVALIDATE: counted and checked like the kernel, not recorded.
class BenchOps final : public IommufdOps {
 public:
  explicit BenchOps(FakeIommufd& fake) : fake_(fake) {}
  int fd() const override { return -1; }
  absl::StatusOr<uint32_t> AllocIoas() override { return fake_.AllocIoas(); }
  absl::Status MapFixed(uint32_t ioas, uint64_t iova, void* va, uint64_t len, bool w) override {
    return fake_.MapFixed(ioas, iova, va, len, w);
  }
  absl::Status Unmap(uint32_t ioas, uint64_t iova, uint64_t len) override { return fake_.Unmap(ioas, iova, len); }
  absl::StatusOr<std::vector<IovaRange>> AllowedIovaRanges(uint32_t ioas) override {
    return fake_.AllowedIovaRanges(ioas);
  }
  absl::StatusOr<HostIommuInfo> GetHwInfo(uint32_t dev_id) override { return fake_.GetHwInfo(dev_id); }
  absl::Status Destroy(uint32_t id) override { return fake_.Destroy(id); }
  absl::StatusOr<uint32_t> AllocHwpt(const HwptAllocRequest& r) override { return fake_.AllocHwpt(r); }
  InvalidateResult InvalidateVtdS1(uint32_t hwpt_id, std::span<const VtdS1Invalidation> entries) override {
    ++calls;
    this->entries += entries.size();
    const auto it = fake_.hwpts().find(hwpt_id);
    if (it == fake_.hwpts().end() || it->second.kind != FakeIommufd::HwptKind::kNested)
      return {absl::NotFoundError("IOMMU_HWPT_INVALIDATE: no such nested HWPT"), 0};
    for (uint32_t i = 0; i < entries.size(); ++i) {
      if (entries[i].addr % 4096 || entries[i].npages == 0) return {absl::InvalidArgumentError("bad entry"), i};
    }
    return {absl::OkStatus(), static_cast<uint32_t>(entries.size())};
  }
  absl::StatusOr<FaultQueue> AllocFaultQueue() override { return fake_.AllocFaultQueue(); }
  absl::StatusOr<std::vector<HostPageFault>> ReadFaults(int fd, size_t max) override {
    return fake_.ReadFaults(fd, max);
  }
  absl::Status WriteResponses(int fd, std::span<const HostPageResponse> r) override {
    return fake_.WriteResponses(fd, r);
  }

  uint64_t calls = 0;
  uint64_t entries = 0;

 private:
  FakeIommufd& fake_;
};

class BenchDevice final : public NestedDevice {
 public:
  const std::string& name() const override { return name_; }
  uint32_t dev_id() const override { return kDevId; }
  uint16_t rid() const override { return kRid; }
  bool pri() const override { return true; }
  absl::Status Attach(uint32_t) override { return absl::OkStatus(); }
  absl::Status Detach() override { return absl::OkStatus(); }
  absl::Status AttachPasid(uint32_t, uint32_t) override { return absl::OkStatus(); }
  absl::Status DetachPasid(uint32_t) override { return absl::OkStatus(); }

 private:
  const std::string name_ = "vfio@02.0";
};

// A scalable-mode guest with the page request queue on; kRid's RID_PASID entry is a first-stage
// table (a nested HWPT with the fault queue on the host).
struct Bench {
  std::unique_ptr<VtdTestEnv> env;
  FakeIommufd fake;
  BenchOps ops{fake};
  BenchDevice device;
  std::unique_ptr<VtdNestingBackend> backend;
  uint32_t fault_id = 0;

  Bench() {
    env = *VtdTestEnv::Create();
    Check(env->driver->Init(true).ok(), "driver init");
    Check(env->driver->EnablePageRequests(0xfee00000, 0x40).ok(), "page requests");
    HostIommuInfo host;
    host.type = 1;
    host.vtd_ecap = uint64_t{1} << 26;
    fake.SetHwInfo(kDevId, host);
    Check(fake.AllocIoas().value_or(0) == kIoas, "ioas");
    VtdNestingOptions o;
    o.ram = {{0, env->memory->HostPointer(0, VtdTestEnv::kRamSize), VtdTestEnv::kRamSize}};
    o.ioas_id = kIoas;
    o.reader_thread = false;
    auto b = VtdNestingBackend::Create(ops, *env->iommu, *env->memory, host, {&device}, o);
    Check(b.ok(), "backend");
    backend = std::move(*b);
    fault_id = *backend->fault_queue_id();
    Check(env->driver->tables().SetScalableContext(kRid, {.dte = true, .pasid_enable = true, .pre = true}).ok(), "ctx");
    Check(env->driver->EnableTranslation().ok(), "te");
    Check(env->driver->tables()
              .SetPasidEntry(kRid, 0, {.pgtt = vtd::kPgttFirstStage, .did = kDid, .flptptr = 0x200000})
              .ok(),
          "pasid entry");
    Check(env->driver->Invalidate({CcDevice(0, kRid)}).ok(), "bind");
    Check(backend->binding(kRid, std::nullopt)->kind == BindingKind::kNested, "nested binding");
  }
  // The guest consumed every page request (PQH = PQT) and the CPU's MSIs are dropped.
  void DrainPrq() {
    env->iommu->WriteRegister(vtd::kPqhReg, env->iommu->ReadRegister(vtd::kPqtReg));
    env->iommu->WriteRegister(vtd::kPrsReg, vtd::kPrsPpr | vtd::kPrsPro, 4);
    env->cpu->Take();
  }
  uint64_t PrqEntries() {
    const uint64_t size = 4096u << (env->iommu->ReadRegister(vtd::kPqaReg) & 7);
    return ((env->iommu->ReadRegister(vtd::kPqtReg) - env->iommu->ReadRegister(vtd::kPqhReg)) % size) / 32;
  }
  uint32_t InjectFault(uint16_t group) {
    HostPageFault f;
    f.dev_id = kDevId;
    f.grpid = group;
    f.perm = kPermRead | kPermWrite;
    f.addr = 0x7f0000000000ull + group * 4096ull;
    f.last = true;
    return fake.InjectFault(fault_id, f);
  }
};

// ----- invalidations -----

std::vector<std::vector<InvDescriptor>> UnmapSubmissions(int shape) {
  std::vector<std::vector<InvDescriptor>> subs;
  if (shape == 0) {
    // One 2 MiB aligned range: PSI with AM=9, device-TLB with S=1 and address bits 19:12 set.
    subs.push_back({PIotlbPage(kDid, 0, kUnmapBase, 9), DevTlb(kRid, kUnmapBase | 0xff000, true)});
    return subs;
  }
  const size_t per_submit = shape == 1 ? 16 : 254;  // descriptors before the wait
  std::vector<InvDescriptor> cur;
  for (int page = 0; page < 512; ++page) {
    const uint64_t addr = kUnmapBase + page * 4096ull;
    for (const InvDescriptor& d : {PIotlbPage(kDid, 0, addr, 0), DevTlb(kRid, addr, false)}) {
      cur.push_back(d);
      if (cur.size() == per_submit) subs.push_back(std::exchange(cur, {}));
    }
  }
  if (!cur.empty()) subs.push_back(std::move(cur));
  return subs;
}

void BM_UnmapInvalidation512(benchmark::State& state) {
  Bench b;
  const std::vector<std::vector<InvDescriptor>> subs = UnmapSubmissions(static_cast<int>(state.range(0)));
  uint64_t descriptors = 0;
  for (const auto& s : subs) descriptors += s.size();
  const uint64_t calls0 = b.ops.calls, entries0 = b.ops.entries;
  for (auto _ : state) {
    for (const auto& s : subs) {
      if (!b.env->driver->Invalidate(s).ok()) state.SkipWithError("wait did not complete");
    }
  }
  const double unmaps = static_cast<double>(state.iterations());
  const double calls = static_cast<double>(b.ops.calls - calls0);
  state.counters["guest_desc_per_host_call"] = calls > 0 ? descriptors * unmaps / calls : 0;
  state.counters["host_calls_per_unmap"] = calls / unmaps;
  state.counters["host_entries_per_unmap"] = static_cast<double>(b.ops.entries - entries0) / unmaps;
  state.counters["waits_per_unmap"] = static_cast<double>(subs.size());
  state.counters["guest_desc_per_unmap"] = static_cast<double>(descriptors);
  static const char* kShapes[] = {"aligned (AM=9 + devTLB)", "512 pages, qi_batch 16", "512 pages, queue-full batches"};
  state.SetLabel(kShapes[state.range(0)]);
}
BENCHMARK(BM_UnmapInvalidation512)->Arg(0)->Arg(1)->Arg(2)->Unit(benchmark::kMicrosecond);

// ----- faults -----

void BM_FaultToGuestQueue(benchmark::State& state) {
  Bench b;
  uint16_t group = 0;
  uint64_t injected = 0;
  for (auto _ : state) {
    b.InjectFault(group++ & 0x1ff);
    if (b.backend->PumpFaults() != 1) state.SkipWithError("fault not read");
    if ((++injected & 63) == 0) {
      state.PauseTiming();
      if (b.PrqEntries() != 64) state.SkipWithError("page requests missing from the guest queue");
      b.DrainPrq();
      b.backend->AnswerAllOutstanding();
      state.ResumeTiming();
    }
  }
  state.counters["guest_prq_per_fault"] =
      static_cast<double>(b.backend->stats().injected) / static_cast<double>(b.backend->stats().host_faults);
}
BENCHMARK(BM_FaultToGuestQueue)->Unit(benchmark::kMicrosecond);

void BM_GuestResponseToHost(benchmark::State& state) {
  Bench b;
  std::vector<uint16_t> groups;  // outstanding, as the guest read them from its queue
  size_t responses0 = b.fake.responses().size();
  uint64_t answered = 0;
  for (auto _ : state) {
    if (groups.empty()) {
      state.PauseTiming();
      for (uint16_t g = 0; g < 64; ++g) {
        b.InjectFault(g);
        groups.push_back(g);
      }
      while (b.backend->PumpFaults() > 0) {
      }
      b.DrainPrq();
      state.ResumeTiming();
    }
    const uint16_t g = groups.back();
    groups.pop_back();
    if (!b.env->driver->Invalidate({PageGroupResponse(kRid, std::nullopt, 0, g)}).ok())
      state.SkipWithError("wait did not complete");
    ++answered;
  }
  const size_t written = b.fake.responses().size() - responses0;
  if (written != answered) state.SkipWithError("a response did not reach the host");
  state.counters["host_writes_per_response"] = static_cast<double>(b.fake.calls(FakeIommufd::Op::kWriteResponses)) /
                                               static_cast<double>(written ? written : 1);
}
BENCHMARK(BM_GuestResponseToHost)->Unit(benchmark::kMicrosecond);

}  // namespace
}  // namespace ionest::iommufd

int main(int argc, char** argv) {
  // As iommu_bench: Debian's Abseil checks for deadlocks on every mutex acquisition unless told
  // not to; a release VMM turns that off.
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
