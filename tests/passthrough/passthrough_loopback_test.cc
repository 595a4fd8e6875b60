// The passthrough test bed's cases (the ones the guest suite runs against a real /dev/iommu and
// vfio-pci) run in-process against the loopback host, plus a negative control and a teardown check.
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_join.h"
#include "devices/vfio/vfio_cdev.h"
#include "guest-tests/passthrough/testbed_cases.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/passthrough/loopback_host.h"
#include "vmm/guest_memory.h"
#include "vmm/passthrough.h"

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

testbed::TestbedOptions Options() {
  testbed::TestbedOptions o;
  TestDeviceSpec d;
  d.kind = TestDeviceKind::kVfio;
  d.vfio_path = kLoopbackCdev;
  o.devices = {d};
  o.ram = 8ull << 20;
  o.second_vm_case = false;
  o.job_timeout_s = 10;
  return o;
}

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

CaseRun RunCases(LoopbackWorld& world) {
  CaseRun run;
  testbed::Ktap ktap(testbed::kTestbedCases, [&](const std::string& line) {
    run.lines.push_back(line);
    if (Result r = Parse(line); !r.name.empty()) run.results.push_back(r);
  });
  testbed::RunTestbedCases(Options(), MakeLoopbackHost(world), ktap);
  return run;
}

TEST(PassthroughLoopbackTest, EveryTestbedCasePasses) {
  absl::StatusOr<std::unique_ptr<LoopbackWorld>> world = LoopbackWorld::Create();
  ASSERT_TRUE(world.ok()) << world.status();
  const CaseRun run = RunCases(**world);
  ASSERT_EQ(run.results.size(), static_cast<size_t>(testbed::kTestbedCases)) << run.text();
  int skipped = 0;
  for (const Result& r : run.results) {
    EXPECT_TRUE(r.ok) << r.name << " failed:\n" << run.text();
    if (r.skip) {
      ++skipped;
      EXPECT_EQ(r.name, "second_vm_refused");
    }
  }
  EXPECT_LE(skipped, 1) << run.text();
  // Host interrupts really went through the outer MSI-X table (none arrived unrouted).
  EXPECT_EQ((*world)->irqs().stray(), 0u);
  // Everything released: no IOAS, no mapping, device closed and unbound.
  EXPECT_EQ((*world)->iommu().live_objects(), 0u);
  EXPECT_TRUE((*world)->iommu().mappings().empty());
  EXPECT_FALSE((*world)->open());
  EXPECT_FALSE((*world)->bound());
}

// Negative control: a host IOMMU that translates one page off. The DMA checks must notice.
TEST(PassthroughLoopbackTest, SkewedTranslationFailsTheDmaCases) {
  absl::StatusOr<std::unique_ptr<LoopbackWorld>> world = LoopbackWorld::Create({.translate_skew = 4096});
  ASSERT_TRUE(world.ok()) << world.status();
  const CaseRun run = RunCases(**world);
  for (const char* name : {"dma_write_1b", "dma_write_64b", "dma_write_4k", "dma_write_cross_page",
                           "dma_write_66k_cross_pages", "dma_write_1m", "dma_read_cross_page",
                           "dma_copy_cross_page", "dma_after_reset"}) {
    const Result* r = run.Find(name);
    ASSERT_NE(r, nullptr) << name << " missing:\n" << run.text();
    EXPECT_FALSE(r->ok) << name << " passed with skewed DMA:\n" << run.text();
  }
  // The rest does not depend on where DMA lands.
  for (const char* name : {"open_bind_attach_map", "config_ids", "bar_read_write", "released_and_reopened"}) {
    const Result* r = run.Find(name);
    ASSERT_NE(r, nullptr) << name;
    EXPECT_TRUE(r->ok) << name << ":\n" << run.text();
  }
}

TEST(PassthroughLoopbackTest, OpenThenDestroyReleasesEverything) {
  absl::StatusOr<std::unique_ptr<LoopbackWorld>> world = LoopbackWorld::Create();
  ASSERT_TRUE(world.ok()) << world.status();
  LoopbackWorld& w = **world;
  absl::StatusOr<std::unique_ptr<GuestMemory>> mem = GuestMemory::Create({{0, 4ull << 20}});
  ASSERT_TRUE(mem.ok()) << mem.status();
  std::vector<iommufd::RamRange> ram;
  for (const MemoryRegion& r : (*mem)->regions()) ram.push_back({r.gpa, r.host, r.size});
  {
    absl::StatusOr<std::unique_ptr<Passthrough>> pt =
        Passthrough::Open({{{kLoopbackCdev, ""}, "vfio@02.0"}}, ram, MakeLoopbackHost(w));
    ASSERT_TRUE(pt.ok()) << pt.status();
    EXPECT_TRUE(w.open());
    EXPECT_TRUE(w.bound());
    EXPECT_EQ(w.iommu().live_objects(), 1u);
    ASSERT_EQ(w.iommu().mappings().size(), 1u);
    EXPECT_EQ(w.iommu().mappings()[0].va, (*mem)->regions()[0].host);
    EXPECT_THAT((*pt)->Describe(), testing::HasSubstr(kLoopbackBdf));
    // A second VM on the same device is refused while the first holds it.
    absl::StatusOr<std::unique_ptr<Passthrough>> second =
        Passthrough::Open({{{"", kLoopbackBdf}, "vfio@02.0"}}, ram, MakeLoopbackHost(w));
    EXPECT_FALSE(second.ok());
    EXPECT_THAT(second.status().message(), testing::HasSubstr("in use"));
    EXPECT_EQ(w.iommu().live_objects(), 1u);  // the failed open released its IOAS
  }
  EXPECT_EQ(w.iommu().live_objects(), 0u);
  EXPECT_TRUE(w.iommu().mappings().empty());
  EXPECT_FALSE(w.bound());
  EXPECT_FALSE(w.open());
  EXPECT_EQ(w.irqs().stray(), 0u);
}

TEST(PassthroughLoopbackTest, LocateAndBindErrors) {
  absl::StatusOr<std::unique_ptr<LoopbackWorld>> world = LoopbackWorld::Create();
  ASSERT_TRUE(world.ok()) << world.status();
  PassthroughHost host = MakeLoopbackHost(**world);
  absl::StatusOr<vfio::LocatedDevice> missing = host.locate({"/dev/vfio/devices/vfio7", ""});
  EXPECT_TRUE(absl::IsNotFound(missing.status())) << missing.status();
  EXPECT_THAT(missing.status().message(), testing::HasSubstr("vfio7"));

  absl::StatusOr<vfio::LocatedDevice> located = host.locate({"", kLoopbackBdf});
  ASSERT_TRUE(located.ok()) << located.status();
  absl::StatusOr<std::unique_ptr<vfio::VfioDeviceOps>> dev = host.open_device(*located);
  ASSERT_TRUE(dev.ok()) << dev.status();
  ASSERT_TRUE((*dev)->BindIommufd(-1).ok());
  absl::StatusOr<uint32_t> again = (*dev)->BindIommufd(-1);
  ASSERT_FALSE(again.ok());
  EXPECT_EQ(vfio::StatusErrno(again.status()), EINVAL);
  const absl::Status explained = host.explain_bind_error(again.status(), *located);
  EXPECT_EQ(vfio::StatusErrno(explained), EINVAL);
  EXPECT_THAT(explained.message(), testing::HasSubstr(kLoopbackBdf));
}

}  // namespace
}  // namespace ionest::passthrough_test
