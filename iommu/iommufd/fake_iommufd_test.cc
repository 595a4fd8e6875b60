// The fake iommufd's nesting and fault-queue rules (testing/fake_iommufd.h): each test pins one
// rule of drivers/iommu/iommufd (hw_pagetable.c, fault.c; Linux 6.12) that code above the seam
// relies on. The IOAS/mapping rules are tested in iommufd_backend_test.cc.
#include "iommu/iommufd/testing/fake_iommufd.h"

#include <fcntl.h>
#include <poll.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "iommu/iommufd/iommufd_kernel.h"

namespace ionest::iommufd_testing {
namespace {

using iommufd::FormatHwptAlloc;
using iommufd::HostResponseCode;
using iommufd::IommufdOps;
using iommufd::VtdStage1;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using Op = FakeIommufd::Op;
using Kind = FakeIommufd::HwptKind;

constexpr uint32_t kDev = 0x100;
constexpr VtdStage1 kS1{.pgtbl_addr = 0x5000, .addr_width = 48, .sre = false, .eafe = false, .wpe = true};

absl::StatusCode Code(int err) { return absl::ErrnoToStatusCode(err); }

bool Readable(int fd) {
  pollfd p{fd, POLLIN, 0};
  return poll(&p, 1, 0) == 1 && (p.revents & POLLIN);
}

HostPageFault Fault(uint64_t addr, uint32_t cookie = 0) {
  HostPageFault f;
  f.pasid_valid = true;
  f.last = true;
  f.dev_id = kDev;
  f.pasid = 1;
  f.grpid = 3;
  f.perm = iommufd::kPermRead | iommufd::kPermWrite;
  f.addr = addr;
  f.cookie = cookie;
  return f;
}

class FakeNestingTest : public ::testing::Test {
 protected:
  void SetUp() override {
    fake_.SetHwInfo(kDev, {});
    ioas_ = *fake_.AllocIoas();
  }
  void TearDown() override {
    for (int fd : fds_) close(fd);
  }
  uint32_t NestParent() {
    absl::StatusOr<uint32_t> id = fake_.AllocHwpt({.dev_id = kDev, .pt_id = ioas_, .nest_parent = true});
    EXPECT_TRUE(id.ok()) << id.status();
    return id.value_or(0);
  }
  absl::StatusOr<uint32_t> Nested(uint32_t parent, std::optional<uint32_t> fault_id = std::nullopt) {
    return fake_.AllocHwpt({.dev_id = kDev, .pt_id = parent, .fault_id = fault_id, .vtd_s1 = kS1});
  }
  FaultQueue NewFaultQueue() {
    absl::StatusOr<FaultQueue> q = fake_.AllocFaultQueue();
    EXPECT_TRUE(q.ok()) << q.status();
    if (q.ok()) fds_.push_back(q->fd);
    return q.value_or(FaultQueue{});
  }

  FakeIommufd fake_;
  uint32_t ioas_ = 0;
  std::vector<int> fds_;  // fault fds: ours to close
};

// --- IOMMU_HWPT_ALLOC ---

TEST_F(FakeNestingTest, AllocatesPagingNestParentAndNestedHwpts) {
  absl::StatusOr<uint32_t> paging = fake_.AllocHwpt({.dev_id = kDev, .pt_id = ioas_});
  ASSERT_TRUE(paging.ok()) << paging.status();
  uint32_t parent = NestParent();
  absl::StatusOr<uint32_t> nested = Nested(parent);
  ASSERT_TRUE(nested.ok()) << nested.status();
  EXPECT_NE(*paging, parent);
  EXPECT_NE(parent, *nested);
  EXPECT_NE(*nested, ioas_);
  ASSERT_EQ(fake_.hwpts().size(), 3u);
  EXPECT_EQ(fake_.hwpts().at(*paging).kind, Kind::kPaging);
  EXPECT_EQ(fake_.hwpts().at(parent).kind, Kind::kNestParent);
  const FakeIommufd::Hwpt& n = fake_.hwpts().at(*nested);
  EXPECT_EQ(n.kind, Kind::kNested);
  EXPECT_EQ(n.request, (HwptAllocRequest{.dev_id = kDev, .pt_id = parent, .vtd_s1 = kS1}));
  EXPECT_EQ(fake_.hwpt_requests().size(), 3u);
  EXPECT_EQ(fake_.live_objects(), 4u);  // the IOAS and three HWPTs
  EXPECT_EQ(fake_.calls(Op::kAllocHwpt), 3);
}

TEST_F(FakeNestingTest, UnknownDeviceIsNotFoundAndMessageNamesTheCall) {
  HwptAllocRequest r{.dev_id = kDev + 1, .pt_id = ioas_, .nest_parent = true};
  absl::Status s = fake_.AllocHwpt(r).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(s.message(), absl::StrCat("IOMMU_HWPT_ALLOC dev 257 pt 1 (nest parent): ", std::strerror(ENOENT),
                                      " (errno 2)"));
  EXPECT_EQ(s.message(), absl::StrCat(FormatHwptAlloc(r), ": ", std::strerror(ENOENT), " (errno 2)"));
  EXPECT_THAT(fake_.hwpt_requests(), ElementsAre(r));  // failed requests are recorded too
  EXPECT_THAT(fake_.hwpts(), IsEmpty());
}

TEST_F(FakeNestingTest, PtMustBeAnIoasOrPagingHwpt) {
  uint32_t parent = NestParent();
  uint32_t nested = *Nested(parent);
  FaultQueue q = NewFaultQueue();
  // Unknown id, a nested HWPT, a fault queue: EINVAL (iommufd_hwpt_alloc's "else" branch).
  EXPECT_EQ(fake_.AllocHwpt({.dev_id = kDev, .pt_id = 999}).status().code(), Code(EINVAL));
  EXPECT_EQ(Nested(999).status().code(), Code(EINVAL));
  EXPECT_EQ(Nested(nested).status().code(), Code(EINVAL));
  EXPECT_EQ(Nested(q.id).status().code(), Code(EINVAL));
  EXPECT_EQ(fake_.hwpts().size(), 2u);
}

TEST_F(FakeNestingTest, NestedNeedsANestParent) {
  uint32_t paging = *fake_.AllocHwpt({.dev_id = kDev, .pt_id = ioas_});
  absl::Status s = Nested(paging).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(s.message()), HasSubstr("VTD_S1 pgtbl 0x5000 aw 48 WPE"));
}

TEST_F(FakeNestingTest, NestedNeedsStage1Data) {
  uint32_t parent = NestParent();
  EXPECT_EQ(fake_.AllocHwpt({.dev_id = kDev, .pt_id = parent}).status().code(), Code(EOPNOTSUPP));
}

TEST_F(FakeNestingTest, NestParentWithStage1DataIsUnsupported) {
  uint32_t parent = NestParent();
  EXPECT_EQ(fake_.AllocHwpt({.dev_id = kDev, .pt_id = ioas_, .nest_parent = true, .vtd_s1 = kS1}).status().code(),
            Code(EOPNOTSUPP));
  EXPECT_EQ(fake_.AllocHwpt({.dev_id = kDev, .pt_id = parent, .nest_parent = true, .vtd_s1 = kS1}).status().code(),
            Code(EOPNOTSUPP));
  EXPECT_EQ(fake_.hwpts().size(), 1u);
}

TEST_F(FakeNestingTest, Stage1DataOnAnIoasIsUnsupported) {
  EXPECT_EQ(Nested(ioas_).status().code(), Code(EOPNOTSUPP));
}

TEST_F(FakeNestingTest, NoNestingOnTheHostRefusesNestParents) {
  fake_.SetNestingSupported(false);
  EXPECT_EQ(fake_.AllocHwpt({.dev_id = kDev, .pt_id = ioas_, .nest_parent = true}).status().code(),
            absl::StatusCode::kUnimplemented);
  EXPECT_TRUE(fake_.AllocHwpt({.dev_id = kDev, .pt_id = ioas_}).ok());
  fake_.SetNestingSupported(true);
  EXPECT_TRUE(fake_.AllocHwpt({.dev_id = kDev, .pt_id = ioas_, .nest_parent = true}).ok());
}

TEST_F(FakeNestingTest, FaultIdMustNameALiveFaultQueue) {
  uint32_t parent = NestParent();
  const size_t before = fake_.live_objects();
  EXPECT_EQ(Nested(parent, 999).status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(Nested(parent, ioas_).status().code(), absl::StatusCode::kNotFound);  // not a fault queue
  EXPECT_EQ(fake_.live_objects(), before);  // nothing created
  FaultQueue q = NewFaultQueue();
  absl::StatusOr<uint32_t> nested = Nested(parent, q.id);
  ASSERT_TRUE(nested.ok()) << nested.status();
  EXPECT_EQ(fake_.hwpts().at(*nested).request.fault_id, q.id);
  ASSERT_TRUE(fake_.Destroy(*nested).ok());
  ASSERT_TRUE(fake_.Destroy(q.id).ok());
  EXPECT_EQ(Nested(parent, q.id).status().code(), absl::StatusCode::kNotFound);
}

// --- IOMMU_DESTROY and references ---

TEST_F(FakeNestingTest, DestroyRefusesReferencedObjects) {
  uint32_t parent = NestParent();
  FaultQueue q = NewFaultQueue();
  uint32_t nested = *Nested(parent, q.id);
  EXPECT_EQ(fake_.Destroy(ioas_).code(), Code(EBUSY));    // a HWPT on the IOAS
  EXPECT_EQ(fake_.Destroy(parent).code(), Code(EBUSY));   // a nested HWPT on the parent
  EXPECT_EQ(fake_.Destroy(q.id).code(), Code(EBUSY));     // a HWPT reports to the queue
  fake_.MarkAttached(nested, true);
  EXPECT_EQ(fake_.Destroy(nested).code(), Code(EBUSY));   // a device attached
  fake_.MarkAttached(nested, false);
  EXPECT_TRUE(fake_.Destroy(nested).ok());
  EXPECT_TRUE(fake_.Destroy(q.id).ok());
  EXPECT_TRUE(fake_.Destroy(parent).ok());
  EXPECT_TRUE(fake_.Destroy(ioas_).ok());
  EXPECT_EQ(fake_.Destroy(parent).code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(fake_.destroyed(), ElementsAre(nested, q.id, parent, ioas_));
  EXPECT_EQ(fake_.live_objects(), 0u);
}

TEST_F(FakeNestingTest, AttachedIoasCannotBeDestroyed) {
  fake_.MarkAttached(ioas_, true);
  absl::Status s = fake_.Destroy(ioas_);
  EXPECT_EQ(s.code(), Code(EBUSY));
  EXPECT_EQ(s.message(), absl::StrCat("IOMMU_DESTROY id 1: ", std::strerror(EBUSY), " (errno 16)"));
  EXPECT_TRUE(fake_.ioas_exists(ioas_));
}

// --- IOMMU_HWPT_INVALIDATE ---

TEST_F(FakeNestingTest, InvalidateRecordsEveryCall) {
  uint32_t nested = *Nested(NestParent());
  std::vector<VtdS1Invalidation> e{{0x1000, 1, true}, {0, UINT64_MAX, false}};
  InvalidateResult r = fake_.InvalidateVtdS1(nested, e);
  EXPECT_TRUE(r.status.ok()) << r.status;
  EXPECT_EQ(r.done, 2u);
  EXPECT_TRUE(fake_.InvalidateVtdS1(nested, {}).status.ok());  // empty: allowed
  EXPECT_THAT(fake_.invalidations(), ElementsAre(FakeIommufd::Invalidation{nested, e},
                                                 FakeIommufd::Invalidation{nested, {}}));
}

TEST_F(FakeNestingTest, InvalidateNeedsANestedHwpt) {
  uint32_t parent = NestParent();
  std::vector<VtdS1Invalidation> e{{0x1000, 1, false}};
  InvalidateResult paging = fake_.InvalidateVtdS1(parent, e);
  EXPECT_EQ(paging.status.code(), absl::StatusCode::kNotFound);  // 6.12: looked up as HWPT_NESTED
  EXPECT_EQ(paging.done, 0u);
  EXPECT_EQ(fake_.InvalidateVtdS1(999, e).status.code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(fake_.InvalidateVtdS1(ioas_, e).status.code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(fake_.invalidations().size(), 3u);
}

TEST_F(FakeNestingTest, InvalidateStopsAtTheFirstBadEntry) {
  uint32_t nested = *Nested(NestParent());
  std::vector<VtdS1Invalidation> misaligned{{0x1000, 1, false}, {0x2000, 2, false}, {0x3800, 1, false}, {0, 1, false}};
  InvalidateResult r = fake_.InvalidateVtdS1(nested, misaligned);
  EXPECT_EQ(r.status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(r.done, 2u);
  EXPECT_EQ(r.status.message(),
            absl::StrCat("IOMMU_HWPT_INVALIDATE hwpt 3 (4 VTD_S1 entries, 2 done; next addr 0x3800 npages 0x1): ",
                         std::strerror(EINVAL), " (errno 22)"));
  std::vector<VtdS1Invalidation> zero{{0x1000, 0, false}};
  EXPECT_EQ(fake_.InvalidateVtdS1(nested, zero).done, 0u);
  EXPECT_EQ(fake_.InvalidateVtdS1(nested, zero).status.code(), absl::StatusCode::kInvalidArgument);
  std::vector<VtdS1Invalidation> all_but_not_from_zero{{0x0, 1, true}, {0x1000, UINT64_MAX, false}};
  r = fake_.InvalidateVtdS1(nested, all_but_not_from_zero);
  EXPECT_EQ(r.status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(r.done, 1u);
}

TEST_F(FakeNestingTest, InvalidateFailureKnobHitsTheFirstCallReachingTheEntry) {
  uint32_t nested = *Nested(NestParent());
  fake_.FailInvalidationAt(2, EIO);
  std::vector<VtdS1Invalidation> two{{0x1000, 1, false}, {0x2000, 1, false}};
  std::vector<VtdS1Invalidation> three{{0x1000, 1, false}, {0x2000, 1, false}, {0x3000, 1, false}};
  EXPECT_TRUE(fake_.InvalidateVtdS1(nested, two).status.ok());  // too short: the knob waits
  InvalidateResult r = fake_.InvalidateVtdS1(nested, three);
  EXPECT_EQ(r.status.code(), Code(EIO));
  EXPECT_THAT(std::string(r.status.message()), HasSubstr("errno 5"));
  EXPECT_EQ(r.done, 2u);
  EXPECT_TRUE(fake_.InvalidateVtdS1(nested, three).status.ok());  // one-shot
}

// --- fault queues ---

TEST_F(FakeNestingTest, FaultQueueFdIsAPollableEventfdReadableWhileFaultsPend) {
  FaultQueue q = NewFaultQueue();
  ASSERT_GE(q.fd, 0);
  EXPECT_TRUE(fake_.fault_queue_exists(q.id));
  EXPECT_FALSE(Readable(q.fd));
  uint32_t c1 = fake_.InjectFault(q.id, Fault(0x10000));
  uint32_t c2 = fake_.InjectFault(q.id, Fault(0x20000));
  EXPECT_EQ(c1, 1u);
  EXPECT_EQ(c2, 2u);
  EXPECT_EQ(fake_.InjectFault(q.id, Fault(0x30000, 77)), 77u);  // a cookie given is kept
  EXPECT_EQ(fake_.InjectFault(999, Fault(0x1000)), 0u);          // no such queue
  EXPECT_TRUE(Readable(q.fd));
  EXPECT_EQ(fake_.pending(q.id), 3u);

  absl::StatusOr<std::vector<HostPageFault>> first = fake_.ReadFaults(q.fd, 1);
  ASSERT_TRUE(first.ok()) << first.status();
  HostPageFault want = Fault(0x10000, 1);
  EXPECT_THAT(*first, ElementsAre(want));
  EXPECT_TRUE(Readable(q.fd));  // more pending
  absl::StatusOr<std::vector<HostPageFault>> rest = fake_.ReadFaults(q.fd, 16);
  ASSERT_TRUE(rest.ok()) << rest.status();
  ASSERT_EQ(rest->size(), 2u);
  EXPECT_EQ((*rest)[0].cookie, 2u);
  EXPECT_EQ((*rest)[1].cookie, 77u);
  EXPECT_FALSE(Readable(q.fd));  // drained
  EXPECT_THAT(*fake_.ReadFaults(q.fd, 16), IsEmpty());
  EXPECT_EQ(fake_.pending(q.id), 0u);
  EXPECT_EQ(fake_.outstanding(q.id), 3u);
}

TEST_F(FakeNestingTest, ReadFaultsDeliversWholeGroupsOnly) {
  FaultQueue q = NewFaultQueue();
  HostPageFault a = Fault(0x1000, 40);
  a.last = false;
  fake_.InjectFault(q.id, a);
  fake_.InjectFault(q.id, Fault(0x2000, 40));  // same cookie: one page request group
  EXPECT_THAT(*fake_.ReadFaults(q.fd, 1), IsEmpty());  // does not fit: stays queued
  EXPECT_EQ(fake_.pending(q.id), 2u);
  EXPECT_TRUE(Readable(q.fd));
  absl::StatusOr<std::vector<HostPageFault>> group = fake_.ReadFaults(q.fd, 2);
  ASSERT_TRUE(group.ok());
  EXPECT_EQ(group->size(), 2u);
  EXPECT_EQ(fake_.outstanding(q.id), 1u);  // one cookie
}

TEST_F(FakeNestingTest, ReadFaultsOnAnUnknownFdIsEbadf) {
  absl::Status s = fake_.ReadFaults(12345, 4).status();
  EXPECT_EQ(s.code(), Code(EBADF));
  EXPECT_THAT(std::string(s.message()), HasSubstr("read of fault fd 12345"));
}

TEST_F(FakeNestingTest, ResponsesNeedAnOutstandingCookie) {
  FaultQueue q = NewFaultQueue();
  uint32_t c1 = fake_.InjectFault(q.id, Fault(0x1000));
  uint32_t c2 = fake_.InjectFault(q.id, Fault(0x2000));
  std::vector<HostPageResponse> r1{{c1, HostResponseCode::kSuccess}};
  // Not yet read: the kernel has no response slot for the cookie.
  EXPECT_EQ(fake_.WriteResponses(q.fd, r1).code(), absl::StatusCode::kInvalidArgument);
  ASSERT_EQ(fake_.ReadFaults(q.fd, 1)->size(), 1u);
  std::vector<HostPageResponse> unknown{{999, HostResponseCode::kSuccess}};
  EXPECT_EQ(fake_.WriteResponses(q.fd, unknown).code(), absl::StatusCode::kInvalidArgument);
  std::vector<HostPageResponse> bad_code{{c1, static_cast<HostResponseCode>(7)}};
  EXPECT_EQ(fake_.WriteResponses(q.fd, bad_code).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(fake_.WriteResponses(q.fd, r1).ok());
  EXPECT_EQ(fake_.outstanding(q.id), 0u);
  EXPECT_EQ(fake_.WriteResponses(q.fd, r1).code(), absl::StatusCode::kInvalidArgument);  // answered already
  EXPECT_THAT(fake_.responses(), ElementsAre(r1[0]));
  EXPECT_EQ(fake_.WriteResponses(777, r1).code(), Code(EBADF));
  (void)c2;
}

TEST_F(FakeNestingTest, BadResponseAfterGoodOnesIsAShortWrite) {
  FaultQueue q = NewFaultQueue();
  uint32_t c1 = fake_.InjectFault(q.id, Fault(0x1000));
  uint32_t c2 = fake_.InjectFault(q.id, Fault(0x2000));
  ASSERT_EQ(fake_.ReadFaults(q.fd, 8)->size(), 2u);
  std::vector<HostPageResponse> r{{c1, HostResponseCode::kInvalid}, {999, HostResponseCode::kSuccess},
                                  {c2, HostResponseCode::kSuccess}};
  absl::Status s = fake_.WriteResponses(q.fd, r);
  EXPECT_EQ(s, iommufd::ShortResponseWrite(q.fd, 3, 8));
  EXPECT_THAT(fake_.responses(), ElementsAre(r[0]));  // taken before the bad one
  EXPECT_EQ(fake_.outstanding(q.id), 1u);             // c2 still waits
}

TEST_F(FakeNestingTest, DestroyingAFaultQueueAnswersItsFaultsInvalid) {
  FaultQueue q = NewFaultQueue();
  uint32_t read = fake_.InjectFault(q.id, Fault(0x1000));
  ASSERT_EQ(fake_.ReadFaults(q.fd, 1)->size(), 1u);
  uint32_t unread = fake_.InjectFault(q.id, Fault(0x2000));
  ASSERT_TRUE(fake_.Destroy(q.id).ok());
  EXPECT_THAT(fake_.auto_responses(), ElementsAre(HostPageResponse{read, HostResponseCode::kInvalid},
                                                  HostPageResponse{unread, HostResponseCode::kInvalid}));
  EXPECT_THAT(fake_.responses(), IsEmpty());
  EXPECT_FALSE(fake_.fault_queue_exists(q.id));
  EXPECT_GE(fcntl(q.fd, F_GETFD), 0);  // the fd is still open: the caller closes it
  EXPECT_EQ(fake_.ReadFaults(q.fd, 1).status().code(), Code(EBADF));
}

TEST_F(FakeNestingTest, ResponseListenerSeesEachAnsweredGroupWithItsLastRecord) {
  std::vector<std::pair<HostPageFault, HostResponseCode>> heard;
  fake_.SetResponseListener([&](const HostPageFault& f, HostResponseCode c) { heard.push_back({f, c}); });
  FaultQueue q = NewFaultQueue();
  HostPageFault first = Fault(0x1000, 50);
  first.last = false;
  fake_.InjectFault(q.id, first);
  HostPageFault last = Fault(0x2000, 50);
  last.grpid = 9;
  fake_.InjectFault(q.id, last);
  const uint32_t other = fake_.InjectFault(q.id, Fault(0x3000));
  ASSERT_EQ(fake_.ReadFaults(q.fd, 8)->size(), 3u);
  std::vector<HostPageResponse> bad{{999, HostResponseCode::kSuccess}};
  EXPECT_FALSE(fake_.WriteResponses(q.fd, bad).ok());
  EXPECT_THAT(heard, IsEmpty());  // refused responses are not reported
  std::vector<HostPageResponse> r{{50, HostResponseCode::kSuccess}};
  ASSERT_TRUE(fake_.WriteResponses(q.fd, r).ok());
  ASSERT_EQ(heard.size(), 1u);
  EXPECT_EQ(heard[0].first, last);
  EXPECT_EQ(heard[0].second, HostResponseCode::kSuccess);
  // Destroying the queue answers the rest (read and unread) INVALID, reported too.
  const uint32_t unread = fake_.InjectFault(q.id, Fault(0x4000));
  ASSERT_TRUE(fake_.Destroy(q.id).ok());
  ASSERT_EQ(heard.size(), 3u);
  EXPECT_EQ(heard[1].first.cookie, other);
  EXPECT_EQ(heard[2].first.cookie, unread);
  EXPECT_EQ(heard[2].first.addr, 0x4000u);
  EXPECT_EQ(heard[2].second, HostResponseCode::kInvalid);
}

// --- injected failures and the forwarding handle ---

TEST_F(FakeNestingTest, FailNextCoversTheNewOps) {
  uint32_t parent = NestParent();
  uint32_t nested = *Nested(parent);
  FaultQueue q = NewFaultQueue();
  fake_.InjectFault(q.id, Fault(0x1000));
  const absl::Status boom = absl::InternalError("boom");
  fake_.FailNext(Op::kAllocHwpt, boom);
  fake_.FailNext(Op::kInvalidate, boom);
  fake_.FailNext(Op::kAllocFaultQueue, boom);
  fake_.FailNext(Op::kReadFaults, boom);
  fake_.FailNext(Op::kWriteResponses, boom);
  const size_t objects = fake_.live_objects();
  EXPECT_EQ(Nested(parent).status(), boom);
  std::vector<VtdS1Invalidation> e{{0x1000, 1, false}};
  InvalidateResult r = fake_.InvalidateVtdS1(nested, e);
  EXPECT_EQ(r.status, boom);
  EXPECT_EQ(r.done, 0u);
  EXPECT_EQ(fake_.AllocFaultQueue().status(), boom);
  EXPECT_EQ(fake_.ReadFaults(q.fd, 4).status(), boom);
  EXPECT_EQ(fake_.pending(q.id), 1u);  // no effect
  std::vector<HostPageResponse> none{{1, HostResponseCode::kSuccess}};
  EXPECT_EQ(fake_.WriteResponses(q.fd, none), boom);
  EXPECT_EQ(fake_.live_objects(), objects);
  EXPECT_THAT(fake_.invalidations(), IsEmpty());
  EXPECT_EQ(fake_.calls(Op::kInvalidate), 1);
  EXPECT_EQ(fake_.calls(Op::kAllocFaultQueue), 2);
  // Injections used up: the next calls work.
  EXPECT_TRUE(fake_.InvalidateVtdS1(nested, e).status.ok());
  EXPECT_EQ(fake_.ReadFaults(q.fd, 4)->size(), 1u);
}

TEST_F(FakeNestingTest, HandleForwardsTheNewOps) {
  std::unique_ptr<IommufdOps> ops = fake_.NewOps();
  uint32_t parent = *ops->AllocHwpt({.dev_id = kDev, .pt_id = ioas_, .nest_parent = true});
  absl::StatusOr<FaultQueue> q = ops->AllocFaultQueue();
  ASSERT_TRUE(q.ok());
  fds_.push_back(q->fd);
  uint32_t nested = *ops->AllocHwpt({.dev_id = kDev, .pt_id = parent, .fault_id = q->id, .vtd_s1 = kS1});
  std::vector<VtdS1Invalidation> e{{0x1000, 1, false}};
  EXPECT_TRUE(ops->InvalidateVtdS1(nested, e).status.ok());
  uint32_t c = fake_.InjectFault(q->id, Fault(0x1000));
  ASSERT_EQ(ops->ReadFaults(q->fd, 4)->size(), 1u);
  std::vector<HostPageResponse> r{{c, HostResponseCode::kSuccess}};
  EXPECT_TRUE(ops->WriteResponses(q->fd, r).ok());
  EXPECT_EQ(fake_.responses().size(), 1u);
  EXPECT_EQ(fake_.invalidations().size(), 1u);
}

}  // namespace
}  // namespace ionest::iommufd_testing
