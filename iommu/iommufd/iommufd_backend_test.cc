#include "iommu/iommufd/iommufd_backend.h"

#include <fcntl.h>
#include <linux/iommufd.h>
#include <signal.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstring>
#include <memory>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "iommu/iommufd/iommufd_kernel.h"
#include "iommu/iommufd/testing/fake_iommufd.h"

namespace ionest::iommufd {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using iommufd_testing::FakeIommufd;
using Op = FakeIommufd::Op;
using Mapping = FakeIommufd::Mapping;

constexpr IovaRange kMsi{0xfee00000, 0xfeefffff};
constexpr uint64_t kMiB = 1ull << 20;
constexpr const char* kDevName = "0000:01:00.0";

std::string Msg(const absl::Status& s) { return std::string(s.message()); }

void* Host(uint64_t addr) { return reinterpret_cast<void*>(addr); }

// 256 MiB: 8 MiB low, 248 MiB above 4 GiB (host addresses are never dereferenced).
std::vector<RamRange> TwoRanges() {
  return {{0x0, Host(0x7f0000000000), 8 * kMiB}, {0x100000000, Host(0x7f0010000000), 248 * kMiB}};
}

HostIommuInfo Vtd(uint64_t cap = 0xd2008c40660462, uint64_t ecap = 0xf050da) {
  HostIommuInfo info;
  info.type = 1;  // IOMMU_HW_INFO_TYPE_INTEL_VTD
  info.vtd_cap = cap;
  info.vtd_ecap = ecap;
  return info;
}

class IommufdBackendTest : public ::testing::Test {
 protected:
  std::unique_ptr<IommufdBackend> Create(std::vector<RamRange> ram = TwoRanges()) {
    absl::StatusOr<std::unique_ptr<IommufdBackend>> b = IommufdBackend::Create(fake_.NewOps(), std::move(ram));
    EXPECT_TRUE(b.ok()) << b.status();
    return b.ok() ? std::move(*b) : nullptr;
  }
  // What the device's owner does before OnDeviceAttached: bind and attach, which reserves the
  // device's reserved regions (here the MSI window) in the IOAS.
  void AttachInHost(IommufdBackend& b, uint32_t dev_id, const HostIommuInfo& info = Vtd()) {
    fake_.SetHwInfo(dev_id, info);
    fake_.AddReserved(b.ioas_id(), kMsi);
  }

  FakeIommufd fake_;
};

TEST_F(IommufdBackendTest, CreateAllocatesIoasAndMapsNothing) {
  auto b = Create();
  ASSERT_NE(b, nullptr);
  EXPECT_TRUE(fake_.ioas_exists(b->ioas_id()));
  EXPECT_EQ(fake_.live_objects(), 1u);
  EXPECT_EQ(b->fd(), -1);
  EXPECT_FALSE(b->ram_mapped());
  EXPECT_THAT(fake_.mappings(), IsEmpty());
}

TEST_F(IommufdBackendTest, FirstAttachMapsRamAtGpaWithHostVas) {
  auto b = Create();
  ASSERT_NE(b, nullptr);
  AttachInHost(*b, 7);
  ASSERT_TRUE(b->OnDeviceAttached(7, kDevName).ok());
  EXPECT_TRUE(b->ram_mapped());
  uint32_t ioas = b->ioas_id();
  EXPECT_THAT(fake_.mappings(), ElementsAre(Mapping{ioas, 0x0, 8 * kMiB, Host(0x7f0000000000), true},
                                            Mapping{ioas, 0x100000000, 248 * kMiB, Host(0x7f0010000000), true}));
  EXPECT_EQ(fake_.calls(Op::kMapFixed), 2);
  EXPECT_THAT(b->reserved_ranges(), ElementsAre(kMsi));
}

TEST_F(IommufdBackendTest, SecondDeviceDoesNotRemap) {
  auto b = Create();
  ASSERT_NE(b, nullptr);
  AttachInHost(*b, 7);
  ASSERT_TRUE(b->OnDeviceAttached(7, kDevName).ok());
  auto before = fake_.mappings();
  AttachInHost(*b, 8);
  ASSERT_TRUE(b->OnDeviceAttached(8, "0000:02:00.0").ok());
  EXPECT_EQ(fake_.calls(Op::kMapFixed), 2);
  EXPECT_EQ(fake_.mappings(), before);
  EXPECT_EQ(fake_.calls(Op::kAllowedIovaRanges), 2);  // but it is checked
}

TEST_F(IommufdBackendTest, SecondDeviceWithReservedRangeInRamFailsAndKeepsMappings) {
  auto b = Create();
  ASSERT_NE(b, nullptr);
  AttachInHost(*b, 7);
  ASSERT_TRUE(b->OnDeviceAttached(7, kDevName).ok());
  auto before = fake_.mappings();
  fake_.SetHwInfo(8, Vtd());
  fake_.AddReserved(b->ioas_id(), {0x200000, 0x2fffff});  // e.g. an RMRR in low RAM
  absl::Status s = b->OnDeviceAttached(8, "0000:02:00.0");
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(Msg(s), HasSubstr("guest RAM [0x0, +0x800000) overlaps the host IOMMU's reserved IOVA range "
                                     "[0x200000, 0x2fffff] of 0000:02:00.0"));
  EXPECT_EQ(fake_.mappings(), before);  // device 7 still needs them
  EXPECT_EQ(b->host_info().count(8), 0u);
  EXPECT_THAT(b->reserved_ranges(), ElementsAre(kMsi));
}

TEST_F(IommufdBackendTest, RamInMsiWindowIsRejectedAndNothingMapped) {
  auto b = Create({{0x0, Host(0x7f0000000000), 0x1000000}, {0xfee00000, Host(0x7f0020000000), 0x100000}});
  ASSERT_NE(b, nullptr);
  AttachInHost(*b, 7);
  absl::Status s = b->OnDeviceAttached(7, kDevName);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(Msg(s),
            "iommufd: guest RAM [0xfee00000, +0x100000) overlaps the host IOMMU's reserved IOVA range "
            "[0xfee00000, 0xfeefffff] (the MSI window) of 0000:01:00.0: give the guest less memory or move its RAM");
  EXPECT_EQ(fake_.calls(Op::kMapFixed), 0);
  EXPECT_THAT(fake_.mappings(), IsEmpty());
  EXPECT_FALSE(b->ram_mapped());
  EXPECT_THAT(b->host_info(), IsEmpty());
}

TEST_F(IommufdBackendTest, RamOverlappingSeveralReservedRangesNamesThemAll) {
  auto b = Create({{0xfe000000, Host(0x7f0000000000), 0x2000000}});
  ASSERT_NE(b, nullptr);
  AttachInHost(*b, 7);
  fake_.AddReserved(b->ioas_id(), {0xfe000000, 0xfe0fffff});
  absl::Status s = b->OnDeviceAttached(7, kDevName);
  EXPECT_THAT(Msg(s), HasSubstr("guest RAM [0xfe000000, +0x2000000) overlaps the host IOMMU's reserved IOVA "
                                     "ranges [0xfe000000, 0xfe0fffff], [0xfee00000, 0xfeefffff] (the MSI window) "
                                     "of 0000:01:00.0"));
  EXPECT_THAT(fake_.mappings(), IsEmpty());
}

TEST_F(IommufdBackendTest, RamAboveHostAddressWidthIsRejected) {
  auto b = Create({{1ull << 48, Host(0x7f1000000000), 0x100000}});
  ASSERT_NE(b, nullptr);
  AttachInHost(*b, 7);
  fake_.AddReserved(b->ioas_id(), {1ull << 48, UINT64_MAX});
  absl::Status s = b->OnDeviceAttached(7, kDevName);
  EXPECT_THAT(Msg(s), HasSubstr("[0x1000000000000, 0xffffffffffffffff] (beyond the host IOMMU's address "
                                     "width) of 0000:01:00.0"));
  EXPECT_THAT(fake_.mappings(), IsEmpty());
}

TEST_F(IommufdBackendTest, MapFailureInSecondRangeUnmapsFirst) {
  auto b = Create();
  ASSERT_NE(b, nullptr);
  AttachInHost(*b, 7);
  fake_.FailNext(Op::kMapFixed,
                 absl::ResourceExhaustedError("IOMMU_IOAS_MAP: Cannot allocate memory (errno 12); pinning guest RAM "
                                              "failed: raise RLIMIT_MEMLOCK (ulimit -l) or run as root"),
                 /*skip=*/1);
  absl::Status s = b->OnDeviceAttached(7, kDevName);
  EXPECT_EQ(s.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(Msg(s), HasSubstr("iommufd: mapping guest RAM [0x100000000, +0xf800000) (range 2 of 2) for "
                                     "0000:01:00.0: IOMMU_IOAS_MAP"));
  EXPECT_THAT(Msg(s), HasSubstr("ulimit -l"));
  EXPECT_THAT(fake_.mappings(), IsEmpty());
  EXPECT_EQ(fake_.calls(Op::kUnmap), 1);
  EXPECT_FALSE(b->ram_mapped());
  EXPECT_THAT(b->host_info(), IsEmpty());

  // Nothing left behind: the next attach maps everything.
  ASSERT_TRUE(b->OnDeviceAttached(7, kDevName).ok());
  EXPECT_EQ(fake_.mappings().size(), 2u);
}

TEST_F(IommufdBackendTest, MapRejectedByKernelRulesRollsBack) {
  auto b = Create();
  ASSERT_NE(b, nullptr);
  AttachInHost(*b, 7);
  // Someone else already mapped part of the second range: IOMMU_IOAS_MAP fails with EEXIST.
  ASSERT_TRUE(fake_.MapFixed(b->ioas_id(), 0x100000000, Host(0x7f5000000000), 0x1000, false).ok());
  absl::Status s = b->OnDeviceAttached(7, kDevName);
  EXPECT_EQ(s.code(), absl::StatusCode::kAlreadyExists);
  EXPECT_THAT(Msg(s), HasSubstr("(range 2 of 2)"));
  EXPECT_THAT(Msg(s), HasSubstr("File exists (errno 17)"));
  EXPECT_THAT(fake_.mappings(), ElementsAre(Mapping{b->ioas_id(), 0x100000000, 0x1000, Host(0x7f5000000000), false}));
}

TEST_F(IommufdBackendTest, DestructorUnmapsRamAndDestroysIoas) {
  auto b = Create();
  ASSERT_NE(b, nullptr);
  uint32_t ioas = b->ioas_id();
  AttachInHost(*b, 7);
  ASSERT_TRUE(b->OnDeviceAttached(7, kDevName).ok());
  b->OnDeviceDetaching(7);
  b.reset();
  EXPECT_EQ(fake_.calls(Op::kUnmap), 2);  // unmapped by the backend, not only by IOMMU_DESTROY
  EXPECT_THAT(fake_.mappings(), IsEmpty());
  EXPECT_THAT(fake_.destroyed(), ElementsAre(ioas));
  EXPECT_EQ(fake_.live_objects(), 0u);
}

TEST_F(IommufdBackendTest, DestructorWithoutDevicesOnlyDestroys) {
  auto b = Create();
  ASSERT_NE(b, nullptr);
  b.reset();
  EXPECT_EQ(fake_.calls(Op::kUnmap), 0);
  EXPECT_EQ(fake_.live_objects(), 0u);
}

TEST_F(IommufdBackendTest, DestructorCarriesOnAfterUnmapFailure) {
  auto b = Create();
  ASSERT_NE(b, nullptr);
  AttachInHost(*b, 7);
  ASSERT_TRUE(b->OnDeviceAttached(7, kDevName).ok());
  fake_.FailNext(Op::kUnmap, absl::UnavailableError("IOMMU_IOAS_UNMAP: Device or resource busy (errno 16)"));
  b.reset();
  EXPECT_EQ(fake_.calls(Op::kUnmap), 2);
  EXPECT_EQ(fake_.calls(Op::kDestroy), 1);
  EXPECT_EQ(fake_.live_objects(), 0u);
}

TEST_F(IommufdBackendTest, IoasAllocFailure) {
  fake_.FailNext(Op::kAllocIoas, absl::ResourceExhaustedError("IOMMU_IOAS_ALLOC: Cannot allocate memory (errno 12)"));
  auto b = IommufdBackend::Create(fake_.NewOps(), TwoRanges());
  ASSERT_FALSE(b.ok());
  EXPECT_EQ(b.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(Msg(b.status()),
            "iommufd: allocating the IOAS for guest RAM: IOMMU_IOAS_ALLOC: Cannot allocate memory (errno 12)");
  EXPECT_EQ(fake_.live_objects(), 0u);
  EXPECT_EQ(fake_.calls(Op::kDestroy), 0);
}

TEST_F(IommufdBackendTest, HwInfoKeptPerDeviceAndDroppedOnDetaching) {
  auto b = Create();
  ASSERT_NE(b, nullptr);
  HostIommuInfo a = Vtd(0x1111, 0x2222), c = Vtd(0x3333, 0x4444);
  c.max_pasid_log2 = 20;
  AttachInHost(*b, 7, a);
  AttachInHost(*b, 9, c);
  ASSERT_TRUE(b->OnDeviceAttached(7, kDevName).ok());
  ASSERT_TRUE(b->OnDeviceAttached(9, "0000:03:00.0").ok());
  ASSERT_EQ(b->host_info().size(), 2u);
  EXPECT_EQ(b->host_info().at(7), a);
  EXPECT_EQ(b->host_info().at(9), c);
  b->OnDeviceDetaching(7);
  ASSERT_EQ(b->host_info().size(), 1u);
  EXPECT_EQ(b->host_info().at(9), c);
  EXPECT_EQ(fake_.mappings().size(), 2u);  // the remaining device still uses guest RAM
}

TEST_F(IommufdBackendTest, HwInfoFailureMapsNothing) {
  auto b = Create();
  ASSERT_NE(b, nullptr);
  absl::Status s = b->OnDeviceAttached(7, kDevName);  // the fake knows no device 7
  EXPECT_EQ(s.code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(Msg(s), HasSubstr("iommufd: reading the host IOMMU of 0000:01:00.0: IOMMU_GET_HW_INFO dev 7: "));
  EXPECT_THAT(fake_.mappings(), IsEmpty());
}

TEST_F(IommufdBackendTest, IovaRangesFailureMapsNothing) {
  auto b = Create();
  ASSERT_NE(b, nullptr);
  AttachInHost(*b, 7);
  fake_.FailNext(Op::kAllowedIovaRanges, absl::InternalError("IOMMU_IOAS_IOVA_RANGES ioas 1: Bad address (errno 14)"));
  absl::Status s = b->OnDeviceAttached(7, kDevName);
  EXPECT_THAT(Msg(s), HasSubstr("reading the usable IOVA ranges after attaching 0000:01:00.0: "
                                     "IOMMU_IOAS_IOVA_RANGES"));
  EXPECT_THAT(fake_.mappings(), IsEmpty());
  EXPECT_THAT(b->host_info(), IsEmpty());
}

TEST_F(IommufdBackendTest, SameDeviceTwiceIsAnError) {
  auto b = Create();
  ASSERT_NE(b, nullptr);
  AttachInHost(*b, 7);
  ASSERT_TRUE(b->OnDeviceAttached(7, kDevName).ok());
  EXPECT_EQ(b->OnDeviceAttached(7, kDevName).code(), absl::StatusCode::kFailedPrecondition);
}

TEST_F(IommufdBackendTest, WrappingRamIsRejectedBeforeAllocating) {
  auto b = IommufdBackend::Create(fake_.NewOps(), {{0xfffffffffff00000, Host(0x7f0000000000), 0x200000}});
  ASSERT_FALSE(b.ok());
  EXPECT_EQ(b.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(Msg(b.status()), HasSubstr("guest RAM [0xfffffffffff00000, +0x200000) is empty or wraps"));
  EXPECT_EQ(fake_.calls(Op::kAllocIoas), 0);
}

TEST_F(IommufdBackendTest, RamEndingAtTopOfIovaSpaceIsFine) {
  auto b = Create({{0xffffffffffe00000, Host(0x7f0000000000), 0x200000}});
  ASSERT_NE(b, nullptr);
  fake_.SetHwInfo(7, Vtd());
  ASSERT_TRUE(b->OnDeviceAttached(7, kDevName).ok());
  EXPECT_THAT(fake_.mappings(),
              ElementsAre(Mapping{b->ioas_id(), 0xffffffffffe00000, 0x200000, Host(0x7f0000000000), true}));
}

TEST_F(IommufdBackendTest, BadRamLayoutsAreRejected) {
  struct Case {
    std::vector<RamRange> ram;
    const char* message;
  } cases[] = {
      {{{0x0, Host(0x7f0000000000), 0}}, "is empty or wraps"},
      {{{0x0, nullptr, 0x1000}}, "has no or a wrapping host address"},
      {{{0x0, Host(0xfffffffffffff000), 0x2000}}, "has no or a wrapping host address"},
      {{{0x800, Host(0x7f0000000000), 0x1000}}, "not 4 KiB aligned"},
      {{{0x0, Host(0x7f0000000000), 0x2000}, {0x1000, Host(0x7f0000100000), 0x1000}},
       "guest RAM ranges [0x0, 0x1fff] and [0x1000, 0x1fff] overlap"},
  };
  for (const Case& c : cases) {
    auto b = IommufdBackend::Create(fake_.NewOps(), c.ram);
    ASSERT_FALSE(b.ok());
    EXPECT_EQ(b.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(Msg(b.status()), HasSubstr(c.message));
  }
  EXPECT_EQ(fake_.calls(Op::kAllocIoas), 0);
  EXPECT_EQ(IommufdBackend::Create(nullptr, {}).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST_F(IommufdBackendTest, Describe) {
  auto b = Create();
  ASSERT_NE(b, nullptr);
  EXPECT_EQ(b->Describe(), "iommufd: IOAS 1, 256 MiB guest RAM in 2 ranges not mapped yet, no device attached");
  AttachInHost(*b, 7);
  ASSERT_TRUE(b->OnDeviceAttached(7, kDevName).ok());
  EXPECT_EQ(b->Describe(),
            "iommufd: IOAS 1, 256 MiB guest RAM mapped in 2 ranges, reserved IOVA [0xfee00000-0xfeefffff], "
            "host IOMMU intel-vtd cap=0xd2008c40660462 ecap=0xf050da");
  // A second device behind the same IOMMU is not listed twice; a different one is.
  AttachInHost(*b, 8);
  ASSERT_TRUE(b->OnDeviceAttached(8, "0000:02:00.0").ok());
  EXPECT_THAT(b->Describe(), ::testing::EndsWith("host IOMMU intel-vtd cap=0xd2008c40660462 ecap=0xf050da"));
  HostIommuInfo other = Vtd(0x1, 0x2);
  other.out_capabilities = 1;  // IOMMU_HW_CAP_DIRTY_TRACKING
  AttachInHost(*b, 9, other);
  ASSERT_TRUE(b->OnDeviceAttached(9, "0000:03:00.0").ok());
  EXPECT_THAT(b->Describe(), ::testing::EndsWith("host IOMMUs intel-vtd cap=0xd2008c40660462 ecap=0xf050da; "
                                                 "intel-vtd cap=0x1 ecap=0x2 dirty-tracking"));
}

// --- the fake's kernel rules, which the tests above rely on ---

TEST(FakeIommufdTest, MapRules) {
  FakeIommufd fake;
  uint32_t ioas = *fake.AllocIoas();
  fake.AddReserved(ioas, kMsi);
  EXPECT_TRUE(fake.MapFixed(ioas, 0x10000, Host(0x7f0000000000), 0x10000, true).ok());
  absl::Status overlap = fake.MapFixed(ioas, 0x1f000, Host(0x7f0000100000), 0x2000, true);
  EXPECT_EQ(overlap.code(), absl::StatusCode::kAlreadyExists);
  EXPECT_EQ(Msg(overlap), absl::StrCat("IOMMU_IOAS_MAP ioas 1 iova [0x1f000, +0x2000) from va ",
                                            absl::StrFormat("%p", Host(0x7f0000100000)), ": File exists (errno 17)"));
  EXPECT_EQ(fake.MapFixed(ioas, 0xf000, Host(0x7f0000100000), 0x2000, true).code(), absl::StatusCode::kAlreadyExists);
  EXPECT_EQ(fake.MapFixed(ioas, 0xfef00000 - 0x1000, Host(0x7f0000100000), 0x2000, true).code(),
            absl::StatusCode::kInvalidArgument);  // touches the reserved range
  EXPECT_EQ(fake.MapFixed(ioas, 0x0, Host(0x7f0000100000), 0, true).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(fake.MapFixed(ioas, UINT64_MAX - 0xfff, Host(0x7f0000100000), 0x2000, true).code(),
            absl::StatusCode::kOutOfRange);  // EOVERFLOW
  EXPECT_EQ(fake.MapFixed(ioas + 1, 0x0, Host(0x7f0000100000), 0x1000, true).code(), absl::StatusCode::kNotFound);
  // Adjacent is fine.
  EXPECT_TRUE(fake.MapFixed(ioas, 0x20000, Host(0x7f0000100000), 0x1000, true).ok());
  EXPECT_TRUE(fake.MapFixed(ioas, 0xf000, Host(0x7f0000200000), 0x1000, true).ok());
  EXPECT_EQ(fake.mappings().size(), 3u);
}

TEST(FakeIommufdTest, UnmapRules) {
  FakeIommufd fake;
  uint32_t ioas = *fake.AllocIoas();
  ASSERT_TRUE(fake.MapFixed(ioas, 0x10000, Host(0x7f0000000000), 0x10000, true).ok());
  ASSERT_TRUE(fake.MapFixed(ioas, 0x30000, Host(0x7f0000100000), 0x10000, true).ok());
  // Splitting an area fails (ENOENT), as does a range with nothing mapped.
  EXPECT_EQ(fake.Unmap(ioas, 0x10000, 0x8000).code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(fake.Unmap(ioas, 0x18000, 0x10000).code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(fake.Unmap(ioas, 0x20000, 0x10000).code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(fake.Unmap(ioas, 0x10000, 0).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(fake.mappings().size(), 2u);
  // A superset of whole areas unmaps them.
  EXPECT_TRUE(fake.Unmap(ioas, 0x0, 0x28000).ok());
  EXPECT_THAT(fake.mappings(), ElementsAre(Mapping{ioas, 0x30000, 0x10000, Host(0x7f0000100000), true}));
  // [0, U64_MAX] unmaps everything, even nothing.
  EXPECT_TRUE(fake.Unmap(ioas, 0, UINT64_MAX).ok());
  EXPECT_TRUE(fake.Unmap(ioas, 0, UINT64_MAX).ok());
  EXPECT_THAT(fake.mappings(), IsEmpty());
}

TEST(FakeIommufdTest, AllowedRangesAreTheComplementOfReserved) {
  FakeIommufd fake;
  uint32_t ioas = *fake.AllocIoas();
  EXPECT_THAT(*fake.AllowedIovaRanges(ioas), ElementsAre(IovaRange{0, UINT64_MAX}));
  fake.AddReserved(ioas, {1ull << 48, UINT64_MAX});
  fake.AddReserved(ioas, kMsi);
  fake.AddReserved(ioas, {0xfee80000, 0xfeffffff});  // overlaps the MSI window
  fake.AddReserved(ioas, {0x0, 0xfff});
  EXPECT_THAT(*fake.AllowedIovaRanges(ioas),
              ElementsAre(IovaRange{0x1000, 0xfedfffff}, IovaRange{0xff000000, (1ull << 48) - 1}));
  EXPECT_EQ(fake.AllowedIovaRanges(ioas + 1).status().code(), absl::StatusCode::kNotFound);
}

TEST(FakeIommufdTest, ObjectsInjectionAndHandles) {
  FakeIommufd fake;
  {
    std::unique_ptr<IommufdOps> ops = fake.NewOps();
    uint32_t a = *ops->AllocIoas();
    uint32_t b = *ops->AllocIoas();
    EXPECT_NE(a, b);
    EXPECT_EQ(fake.live_objects(), 2u);
    ASSERT_TRUE(ops->MapFixed(a, 0x0, Host(0x7f0000000000), 0x1000, true).ok());
    EXPECT_TRUE(ops->Destroy(a).ok());  // drops its mappings, as iommufd_ioas_destroy does
    EXPECT_THAT(fake.mappings(), IsEmpty());
    EXPECT_EQ(ops->Destroy(a).code(), absl::StatusCode::kNotFound);
    EXPECT_EQ(ops->Destroy(12345).code(), absl::StatusCode::kNotFound);
    fake.FailNext(Op::kDestroy, absl::UnavailableError("busy"), /*skip=*/0);
    EXPECT_EQ(ops->Destroy(b).code(), absl::StatusCode::kUnavailable);
    EXPECT_TRUE(fake.ioas_exists(b));
    EXPECT_TRUE(ops->Destroy(b).ok());
    EXPECT_THAT(fake.destroyed(), ElementsAre(a, b));
  }
  EXPECT_EQ(fake.live_objects(), 0u);
  EXPECT_EQ(fake.calls(Op::kDestroy), 5);
  EXPECT_EQ(fake.GetHwInfo(3).status().code(), absl::StatusCode::kNotFound);
  fake.SetHwInfo(3, Vtd());
  EXPECT_EQ(*fake.GetHwInfo(3), Vtd());
}

TEST(IommufdKernelTest, RejectsNegativeFd) {
  EXPECT_EQ(OpenKernelIommufd(-1).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(IommufdKernelTest, ErrnoStatus) {
  absl::Status s = IommufdErrno(12, absl::StrCat("IOMMU_IOAS_MAP iova ", FormatIovaLen(0, 0x800000)));
  EXPECT_EQ(s.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(Msg(s), "IOMMU_IOAS_MAP iova [0x0, +0x800000): Cannot allocate memory (errno 12)");
  EXPECT_EQ(FormatIovaRange(kMsi), "[0xfee00000, 0xfeefffff]");
}

// --- the kernel implementation without /dev/iommu: ioctls on /dev/null fail with ENOTTY, the fault
// fd operations run on pipes and eventfds ---

std::unique_ptr<IommufdOps> OnDevNull() {
  int fd = open("/dev/null", O_RDWR | O_CLOEXEC);
  EXPECT_GE(fd, 0);
  absl::StatusOr<std::unique_ptr<IommufdOps>> ops = OpenKernelIommufd(fd);
  EXPECT_TRUE(ops.ok()) << ops.status();
  return ops.ok() ? std::move(*ops) : nullptr;
}

std::string Enotty() { return absl::StrFormat(": %s (errno %d)", std::strerror(ENOTTY), ENOTTY); }

struct Pipe {
  Pipe() {
    int p[2];
    EXPECT_EQ(pipe2(p, O_CLOEXEC), 0);
    r = p[0];
    w = p[1];
  }
  ~Pipe() {
    if (r >= 0) close(r);
    if (w >= 0) close(w);
  }
  int r = -1, w = -1;
};

TEST(IommufdKernelTest, HwptAllocMessageNamesTheIoctlAndArguments) {
  std::unique_ptr<IommufdOps> ops = OnDevNull();
  ASSERT_NE(ops, nullptr);
  HwptAllocRequest r{.dev_id = 3,
                     .pt_id = 2,
                     .fault_id = 5,
                     .vtd_s1 = VtdStage1{.pgtbl_addr = 0x1000, .addr_width = 57, .sre = true, .eafe = true}};
  absl::Status s = ops->AllocHwpt(r).status();
  EXPECT_EQ(s.code(), absl::ErrnoToStatusCode(ENOTTY));
  EXPECT_EQ(Msg(s), "IOMMU_HWPT_ALLOC dev 3 pt 2 (fault 5, VTD_S1 pgtbl 0x1000 aw 57 SRE EAFE)" + Enotty());
  EXPECT_EQ(Msg(ops->AllocHwpt({.dev_id = 3, .pt_id = 1, .nest_parent = true}).status()),
            "IOMMU_HWPT_ALLOC dev 3 pt 1 (nest parent)" + Enotty());
  EXPECT_EQ(Msg(ops->AllocHwpt({.dev_id = 3, .pt_id = 1}).status()), "IOMMU_HWPT_ALLOC dev 3 pt 1" + Enotty());
}

TEST(IommufdKernelTest, InvalidateFailureCarriesDone) {
  std::unique_ptr<IommufdOps> ops = OnDevNull();
  ASSERT_NE(ops, nullptr);
  std::vector<VtdS1Invalidation> e{{0x1000, 1, true}, {0, UINT64_MAX, false}};
  InvalidateResult r = ops->InvalidateVtdS1(7, e);
  EXPECT_EQ(r.status.code(), absl::ErrnoToStatusCode(ENOTTY));
  EXPECT_EQ(r.done, 0u);  // the ioctl never ran: entry_num not written back is not "all done"
  EXPECT_EQ(Msg(r.status),
            "IOMMU_HWPT_INVALIDATE hwpt 7 (2 VTD_S1 entries, 0 done; next addr 0x1000 npages 0x1 leaf)" + Enotty());
  InvalidateResult empty = ops->InvalidateVtdS1(7, {});
  EXPECT_FALSE(empty.status.ok());
  EXPECT_EQ(empty.done, 0u);
  EXPECT_EQ(Msg(empty.status), "IOMMU_HWPT_INVALIDATE hwpt 7 (0 VTD_S1 entries, 0 done)" + Enotty());
}

TEST(IommufdKernelTest, FaultQueueAllocMessage) {
  std::unique_ptr<IommufdOps> ops = OnDevNull();
  ASSERT_NE(ops, nullptr);
  absl::Status s = ops->AllocFaultQueue().status();
  EXPECT_EQ(s.code(), absl::ErrnoToStatusCode(ENOTTY));
  EXPECT_EQ(Msg(s), "IOMMU_FAULT_QUEUE_ALLOC" + Enotty());
}

TEST(IommufdKernelTest, ReadFaultsWithNothingPendingReturnsEmptyWithoutBlocking) {
  std::unique_ptr<IommufdOps> ops = OnDevNull();
  ASSERT_NE(ops, nullptr);
  // Blocking fds, as the kernel's fault fd is: a read(2) here would hang.
  int efd = eventfd(0, EFD_CLOEXEC);
  ASSERT_GE(efd, 0);
  absl::StatusOr<std::vector<HostPageFault>> r = ops->ReadFaults(efd, 8);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_THAT(*r, IsEmpty());
  close(efd);
  Pipe p;
  r = ops->ReadFaults(p.r, 8);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_THAT(*r, IsEmpty());
  // Non-blocking and empty: EAGAIN is "nothing".
  ASSERT_EQ(fcntl(p.r, F_SETFL, O_NONBLOCK), 0);
  EXPECT_THAT(*ops->ReadFaults(p.r, 8), IsEmpty());
  EXPECT_THAT(*ops->ReadFaults(p.r, 0), IsEmpty());
}

TEST(IommufdKernelTest, ReadFaultsParsesWholeRecordsUpToMax) {
  std::unique_ptr<IommufdOps> ops = OnDevNull();
  ASSERT_NE(ops, nullptr);
  Pipe p;
  iommu_hwpt_pgfault recs[3] = {};
  for (uint32_t i = 0; i < 3; ++i) {
    recs[i].flags = IOMMU_PGFAULT_FLAGS_PASID_VALID | (i == 2 ? IOMMU_PGFAULT_FLAGS_LAST_PAGE : 0);
    recs[i].dev_id = 0x100;
    recs[i].pasid = 5 + i;
    recs[i].grpid = 0x1ff;
    recs[i].perm = IOMMU_PGFAULT_PERM_WRITE | IOMMU_PGFAULT_PERM_PRIV;
    recs[i].addr = 0x7000 + i * 0x1000;
    recs[i].length = 0x2000;
    recs[i].cookie = 10 + i;
  }
  ASSERT_EQ(write(p.w, recs, sizeof(recs)), static_cast<ssize_t>(sizeof(recs)));
  absl::StatusOr<std::vector<HostPageFault>> two = ops->ReadFaults(p.r, 2);
  ASSERT_TRUE(two.ok()) << two.status();
  ASSERT_EQ(two->size(), 2u);
  HostPageFault want;
  want.pasid_valid = true;
  want.last = false;
  want.dev_id = 0x100;
  want.pasid = 5;
  want.grpid = 0x1ff;
  want.perm = kPermWrite | kPermPriv;
  want.addr = 0x7000;
  want.length = 0x2000;
  want.cookie = 10;
  EXPECT_EQ((*two)[0], want);
  EXPECT_EQ((*two)[1].cookie, 11u);
  absl::StatusOr<std::vector<HostPageFault>> last = ops->ReadFaults(p.r, 8);
  ASSERT_TRUE(last.ok()) << last.status();
  ASSERT_EQ(last->size(), 1u);
  EXPECT_TRUE((*last)[0].last);
  EXPECT_EQ((*last)[0].addr, 0x9000u);
}

TEST(IommufdKernelTest, ReadFaultsRejectsAPartialRecordAndABadFd) {
  std::unique_ptr<IommufdOps> ops = OnDevNull();
  ASSERT_NE(ops, nullptr);
  Pipe p;
  char junk[20] = {};
  ASSERT_EQ(write(p.w, junk, sizeof(junk)), 20);
  absl::Status s = ops->ReadFaults(p.r, 4).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kInternal);
  EXPECT_THAT(Msg(s), HasSubstr("read of fault fd"));
  EXPECT_THAT(Msg(s), HasSubstr("20 bytes"));
  int closed = dup(p.r);
  close(closed);
  s = ops->ReadFaults(closed, 4).status();
  EXPECT_EQ(s.code(), absl::ErrnoToStatusCode(EBADF));
  EXPECT_EQ(Msg(s), absl::StrFormat("read of fault fd %d (up to 4 records): %s (errno %d)", closed,
                                    std::strerror(EBADF), EBADF));
}

TEST(IommufdKernelTest, WriteResponsesWritesOneArray) {
  std::unique_ptr<IommufdOps> ops = OnDevNull();
  ASSERT_NE(ops, nullptr);
  Pipe p;
  std::vector<HostPageResponse> r{{7, HostResponseCode::kSuccess}, {9, HostResponseCode::kInvalid}};
  ASSERT_TRUE(ops->WriteResponses(p.w, r).ok());
  iommu_hwpt_page_response got[2] = {};
  ASSERT_EQ(read(p.r, got, sizeof(got)), static_cast<ssize_t>(sizeof(got)));
  EXPECT_EQ(got[0].cookie, 7u);
  EXPECT_EQ(got[0].code, static_cast<uint32_t>(IOMMUFD_PAGE_RESP_SUCCESS));
  EXPECT_EQ(got[1].cookie, 9u);
  EXPECT_EQ(got[1].code, static_cast<uint32_t>(IOMMUFD_PAGE_RESP_INVALID));
  EXPECT_TRUE(ops->WriteResponses(p.w, {}).ok());  // nothing to write
}

TEST(IommufdKernelTest, WriteResponsesErrnoAndShortWrite) {
  std::unique_ptr<IommufdOps> ops = OnDevNull();
  ASSERT_NE(ops, nullptr);
  std::vector<HostPageResponse> one{{1, HostResponseCode::kSuccess}};
  {
    // Read end closed: EPIPE (SIGPIPE ignored meanwhile).
    struct sigaction ign {}, old {};
    ign.sa_handler = SIG_IGN;
    ASSERT_EQ(sigaction(SIGPIPE, &ign, &old), 0);
    Pipe p;
    close(p.r);
    p.r = -1;
    absl::Status s = ops->WriteResponses(p.w, one);
    sigaction(SIGPIPE, &old, nullptr);
    EXPECT_EQ(s.code(), absl::ErrnoToStatusCode(EPIPE));
    EXPECT_EQ(Msg(s), absl::StrFormat("write of 1 page responses to fault fd %d: %s (errno %d)", p.w,
                                      std::strerror(EPIPE), EPIPE));
  }
  // A non-blocking pipe with 8 bytes of room in its last page: a write larger than PIPE_BUF takes
  // just those 8 bytes (one response) and stops.
  Pipe p;
  ASSERT_EQ(fcntl(p.w, F_SETFL, O_NONBLOCK), 0);
  std::vector<char> page(4096, 'x');
  while (write(p.w, page.data(), page.size()) == static_cast<ssize_t>(page.size())) {
  }
  ASSERT_EQ(read(p.r, page.data(), page.size()), static_cast<ssize_t>(page.size()));
  ASSERT_EQ(write(p.w, page.data(), page.size() - 8), static_cast<ssize_t>(page.size() - 8));
  std::vector<HostPageResponse> many(513, HostPageResponse{1, HostResponseCode::kSuccess});  // 4104 bytes
  absl::Status s = ops->WriteResponses(p.w, many);
  EXPECT_EQ(s, ShortResponseWrite(p.w, 513, 8));
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(Msg(s), HasSubstr(absl::StrFormat("write of 513 page responses (4104 bytes) to fault fd %d: only 8 "
                                                "bytes (1 responses) taken",
                                                p.w)));
}

}  // namespace
}  // namespace ionest::iommufd
