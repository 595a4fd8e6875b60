// The passthrough test bed's VT-d nesting cases (issue 9; guest-tests/passthrough/testbed_cases.h,
// RunNestingCases) in-process against the loopback host: the inner guest's first-stage tables
// nested on the host (a FakeIommufd nested HWPT the loopback's host IOMMU walks and caches),
// shadows, page faults through the host fault queue into the inner page request queue and back
// to the device; plus negative controls (a host that translates one page off, a host IOTLB that
// ignores invalidations) showing the cases notice.
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_join.h"
#include "guest-tests/passthrough/testbed_cases.h"
#include "gtest/gtest.h"
#include "tests/passthrough/loopback_host.h"

namespace ionest::passthrough_test {
namespace {

struct Result {
  std::string name;
  bool ok = false;
  bool skip = false;
};

struct CaseRun {
  std::vector<std::string> lines;
  std::vector<Result> results;
  std::string text() const { return absl::StrJoin(lines, "\n"); }
  const Result* Find(const std::string& name) const {
    for (const Result& r : results)
      if (r.name == name) return &r;
    return nullptr;
  }
};

// "    ok 3 name", "    not ok 4 name", "    ok 18 name # SKIP why".
Result Parse(const std::string& line) {
  Result r;
  std::string rest;
  if (absl::StartsWith(line, "    ok ")) {
    r.ok = true;
    rest = line.substr(7);
  } else if (absl::StartsWith(line, "    not ok ")) {
    rest = line.substr(11);
  } else {
    return {};
  }
  const size_t sp = rest.find(' ');
  r.name = sp == std::string::npos ? "" : rest.substr(sp + 1);
  if (size_t h = r.name.find(" # SKIP"); h != std::string::npos) {
    r.skip = true;
    r.name.resize(h);
  }
  return r;
}

CaseRun RunNesting(LoopbackWorld& world) {
  testbed::TestbedOptions o;
  TestDeviceSpec d;
  d.kind = TestDeviceKind::kVfio;
  d.vfio_path = kLoopbackCdev;
  o.devices = {d};
  o.ram = 8ull << 20;
  o.second_vm_case = false;
  o.job_timeout_s = 10;
  CaseRun run;
  testbed::Ktap ktap(testbed::kNestingCases, [&](const std::string& line) {
    run.lines.push_back(line);
    if (Result r = Parse(line); !r.name.empty()) run.results.push_back(r);
  });
  testbed::RunNestingCases(o, MakeLoopbackHost(world), ktap);
  if (getenv("IONEST_TESTBED_VERBOSE")) printf("%s\n", run.text().c_str());
  return run;
}

TEST(NestingLoopbackTest, EveryNestingCasePasses) {
  absl::StatusOr<std::unique_ptr<LoopbackWorld>> world = LoopbackWorld::Create();
  ASSERT_TRUE(world.ok()) << world.status();
  const CaseRun run = RunNesting(**world);
  ASSERT_EQ(run.results.size(), static_cast<size_t>(testbed::kNestingCases)) << run.text();
  for (const Result& r : run.results) {
    EXPECT_TRUE(r.ok && !r.skip) << r.name << (r.skip ? " skipped" : " failed") << ":\n" << run.text();
  }
  // The host side really did the work: nested walks, cached translations, whole page request
  // groups on the fault queue and PRG responses back to the device.
  const HostIommuStats st = (*world)->iommu().stats();
  EXPECT_GT(st.nested_walks, 0u);
  EXPECT_GT(st.iotlb_hits, 0u);
  EXPECT_GT(st.iotlb_invalidated, 0u);
  EXPECT_GE(st.faults_queued, 256u + 2u);
  EXPECT_GE(st.responses_to_device, 4u);
  EXPECT_EQ((*world)->irqs().stray(), 0u);
  // Everything released: no HWPT, fault queue, IOAS or mapping; the device closed and unbound.
  EXPECT_EQ((*world)->iommu().live_objects(), 0u);
  EXPECT_TRUE((*world)->iommu().mappings().empty());
  EXPECT_FALSE((*world)->open());
  EXPECT_FALSE((*world)->bound());
}

// Negative control: a host IOMMU that translates one page off. Every byte check must notice.
TEST(NestingLoopbackTest, SkewedTranslationFailsTheByteCases) {
  absl::StatusOr<std::unique_ptr<LoopbackWorld>> world = LoopbackWorld::Create({.translate_skew = 4096});
  ASSERT_TRUE(world.ok()) << world.status();
  const CaseRun run = RunNesting(**world);
  for (const char* name : {"fs_dma_write_4k", "fs_dma_read_4k", "fs_dma_superpage_2m", "fs_pasid_dma",
                           "pasid_passthrough_dma_at_gpa", "sl_only_shadow_follows", "prq_fault_success",
                           "prq_256_in_flight", "legacy_shadow_follows"}) {
    const Result* r = run.Find(name);
    ASSERT_NE(r, nullptr) << name << " missing:\n" << run.text();
    EXPECT_FALSE(r->ok) << name << " passed with skewed DMA:\n" << run.text();
  }
  for (const char* name : {"nest_bind_first_stage", "prq_fault_invalid", "hostile_reset_with_faults_outstanding",
                           "nest_released_and_reopened"}) {
    const Result* r = run.Find(name);
    ASSERT_NE(r, nullptr) << name;
    EXPECT_TRUE(r->ok) << name << ":\n" << run.text();
  }
}

// Negative control: a host whose IOTLB keeps first-stage translations across
// IOMMU_HWPT_INVALIDATE. The unmap cases must see the stale translation used.
TEST(NestingLoopbackTest, StaleHostTlbFailsTheUnmapCases) {
  absl::StatusOr<std::unique_ptr<LoopbackWorld>> world = LoopbackWorld::Create({.ignore_s1_invalidations = true});
  ASSERT_TRUE(world.ok()) << world.status();
  const CaseRun run = RunNesting(**world);
  for (const char* name : {"fs_unmap_invalidate_blocks", "hostile_invalidation_storm"}) {
    const Result* r = run.Find(name);
    ASSERT_NE(r, nullptr) << name << " missing:\n" << run.text();
    EXPECT_FALSE(r->ok) << name << " passed with a stale host IOTLB:\n" << run.text();
  }
  for (const char* name : {"fs_dma_write_4k", "fs_dma_superpage_2m", "prq_fault_success"}) {
    const Result* r = run.Find(name);
    ASSERT_NE(r, nullptr) << name;
    EXPECT_TRUE(r->ok) << name << ":\n" << run.text();
  }
}

}  // namespace
}  // namespace ionest::passthrough_test
