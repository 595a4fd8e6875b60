// The VT-d nesting backend driven the way Linux drives a VT-d (the model-level test driver), with
// the host iommufd as a test double: binding rules applied to the host, invalidation batching and
// error mapping, fault injection into the guest's page request queue and responses back.
#include "iommu/iommufd/vtd_nesting.h"

#include <poll.h>

#include <chrono>
#include <thread>

#include "gtest/gtest.h"
#include "iommu/iommufd/testing/fake_iommufd.h"
#include "iommu/testing/table_builder.h"
#include "iommu/vtd/page_request.h"
#include "iommu/vtd/registers.h"
#include "iommu/vtd/testing/vtd_test_env.h"

namespace ionest::iommufd {
namespace {

using iommu_testing::SecondStageTableBuilder;
using iommufd_testing::FakeIommufd;
using vtd::testing::VtdTestEnv;
using namespace vtd::testing;  // NOLINT: descriptor builders

constexpr uint16_t kRid = 0x0010;  // 00:02.0
constexpr uint32_t kDevId = 77;
constexpr uint32_t kIoas = 1;

// A passthrough device as VFIO would drive it: records attachments, marks the attached object
// busy in the fake (so destroying it while attached fails as on a kernel).
class RecordingDevice final : public NestedDevice {
 public:
  RecordingDevice(FakeIommufd& fake, uint16_t rid, uint32_t dev_id, bool pri)
      : fake_(fake), rid_(rid), dev_id_(dev_id), pri_(pri) {}
  const std::string& name() const override { return name_; }
  uint32_t dev_id() const override { return dev_id_; }
  uint16_t rid() const override { return rid_; }
  bool pri() const override { return pri_; }
  absl::Status Attach(uint32_t pt_id) override {
    if (fail_attach) return absl::InvalidArgumentError("VFIO_DEVICE_ATTACH_IOMMUFD_PT: Invalid argument (errno 22)");
    Move(attached, pt_id);
    attached = pt_id;
    history.push_back(pt_id);
    return absl::OkStatus();
  }
  absl::Status Detach() override {
    Move(attached, 0);
    attached = 0;
    history.push_back(0);
    return absl::OkStatus();
  }
  absl::Status AttachPasid(uint32_t pasid, uint32_t pt_id) override {
    if (!pasid_attach) return absl::FailedPreconditionError("the host kernel lacks VFIO_DEVICE_ATTACH_PASID");
    Move(pasids[pasid], pt_id);
    pasids[pasid] = pt_id;
    return absl::OkStatus();
  }
  absl::Status DetachPasid(uint32_t pasid) override {
    Move(pasids[pasid], 0);
    pasids.erase(pasid);
    return absl::OkStatus();
  }

  uint32_t attached = kIoas;  // Passthrough::Open attached it to the IOAS
  std::vector<uint32_t> history;
  std::map<uint32_t, uint32_t> pasids;
  bool pasid_attach = true;
  bool fail_attach = false;

 private:
  void Move(uint32_t from, uint32_t to) {
    if (from) fake_.MarkAttached(from, false);
    if (to) fake_.MarkAttached(to, true);
  }
  FakeIommufd& fake_;
  const std::string name_ = "vfio@02.0";
  const uint16_t rid_;
  const uint32_t dev_id_;
  const bool pri_;
};

HostIommuInfo VtdHost() {
  HostIommuInfo info;
  info.type = 1;                    // IOMMU_HW_INFO_TYPE_INTEL_VTD
  info.vtd_ecap = uint64_t{1} << 26;  // NEST
  return info;
}

class NestingTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto env = VtdTestEnv::Create();
    ASSERT_TRUE(env.ok()) << env.status();
    env_ = std::move(*env);
    ASSERT_TRUE(env_->driver->Init(true).ok());
    fake_.SetHwInfo(kDevId, VtdHost());
    ASSERT_EQ(*fake_.AllocIoas(), kIoas);
    device_ = std::make_unique<RecordingDevice>(fake_, kRid, kDevId, /*pri=*/true);
    fake_.MarkAttached(kIoas, true);
  }
  void TearDown() override { backend_.reset(); }

  VtdNestingOptions Options() {
    VtdNestingOptions o;
    o.ram = {{0, env_->memory->HostPointer(0, VtdTestEnv::kRamSize), VtdTestEnv::kRamSize}};
    o.ioas_id = kIoas;
    o.reader_thread = false;
    return o;
  }
  void CreateBackend(VtdNestingOptions o) {
    auto b = VtdNestingBackend::Create(fake_, *env_->iommu, *env_->memory, VtdHost(), {device_.get()}, std::move(o));
    ASSERT_TRUE(b.ok()) << b.status();
    backend_ = std::move(*b);
  }
  void CreateBackend() { CreateBackend(Options()); }

  // Scalable context for kRid (PASIDs and page requests enabled), translation on.
  void ScalableContext() {
    ASSERT_TRUE(env_->driver->tables().SetScalableContext(kRid, {.dte = true, .pasid_enable = true, .pre = true}).ok());
    ASSERT_TRUE(env_->driver->EnableTranslation().ok());
  }
  void SetPasid(uint32_t pasid, vtd::testing::PasidEntrySpec spec) {
    ASSERT_TRUE(env_->driver->tables().SetPasidEntry(kRid, pasid, spec).ok());
  }
  absl::Status Sync(std::vector<vtd::InvDescriptor> d) {
    return env_->driver->Invalidate(d, QiErrors::kLeave);  // a refused invalidation stays IQE for the test
  }

  // FRCD 0 (the first fault record): reason and whether it is valid.
  std::pair<bool, uint8_t> FirstFaultRecord() {
    uint64_t hi = env_->iommu->ReadRegister(vtd::VtdProfile::kFaultRecordOffset + 8);
    return {(hi >> 63) & 1, static_cast<uint8_t>((hi >> 32) & 0xff)};
  }
  std::vector<vtd::PageRequestDescriptor> PageRequests() {
    std::vector<vtd::PageRequestDescriptor> out;
    uint64_t head = env_->iommu->ReadRegister(vtd::kPqhReg);
    const uint64_t tail = env_->iommu->ReadRegister(vtd::kPqtReg);
    const uint64_t size = 4096u << (env_->iommu->ReadRegister(vtd::kPqaReg) & 7);
    while (head != tail) {
      std::array<uint64_t, 4> qw;
      EXPECT_TRUE(env_->memory->Read(env_->driver->prq_base() + head, qw.data(), 32).ok());
      out.push_back(vtd::DecodePageRequest(qw));
      head = (head + 32) % size;
    }
    env_->iommu->WriteRegister(vtd::kPqhReg, head);
    return out;
  }

  std::unique_ptr<VtdTestEnv> env_;
  FakeIommufd fake_;
  std::unique_ptr<RecordingDevice> device_;
  std::unique_ptr<VtdNestingBackend> backend_;
};

// ----- creation -----

TEST_F(NestingTest, CreateRefusesHostsThatCannotNestWithCauseAndFix) {
  HostIommuInfo amd;
  amd.type = 0;
  auto b = VtdNestingBackend::Create(fake_, *env_->iommu, *env_->memory, amd, {device_.get()}, Options());
  ASSERT_FALSE(b.ok());
  EXPECT_NE(b.status().message().find("not Intel VT-d"), std::string::npos) << b.status();
  EXPECT_NE(b.status().message().find("run without --iommu=vtd"), std::string::npos);
  HostIommuInfo no_nest = VtdHost();
  no_nest.vtd_ecap = 0;
  b = VtdNestingBackend::Create(fake_, *env_->iommu, *env_->memory, no_nest, {device_.get()}, Options());
  ASSERT_FALSE(b.ok());
  EXPECT_NE(b.status().message().find("NEST"), std::string::npos) << b.status();
  // The kernel's own refusal (EOPNOTSUPP for NEST_PARENT) is reported with context.
  fake_.SetNestingSupported(false);
  b = VtdNestingBackend::Create(fake_, *env_->iommu, *env_->memory, VtdHost(), {device_.get()}, Options());
  ASSERT_FALSE(b.ok());
  EXPECT_NE(b.status().message().find("nest-parent"), std::string::npos) << b.status();
  EXPECT_EQ(fake_.live_objects(), 1u);  // only the IOAS: nothing leaked
}

TEST_F(NestingTest, StartsWithTheDeviceOnTheNestParentAndAFaultQueue) {
  CreateBackend();
  const uint32_t parent = backend_->nest_parent_id();
  ASSERT_TRUE(fake_.hwpts().count(parent));
  EXPECT_EQ(fake_.hwpts().at(parent).kind, FakeIommufd::HwptKind::kNestParent);
  EXPECT_EQ(fake_.hwpts().at(parent).request.pt_id, kIoas);
  EXPECT_EQ(device_->attached, parent);  // translation is off: DMA is guest-physical
  ASSERT_TRUE(backend_->fault_queue_id());
  EXPECT_TRUE(fake_.fault_queue_exists(*backend_->fault_queue_id()));
}

// ----- binding -----

TEST_F(NestingTest, FirstStageEntryBecomesANestedHwptWithTheFaultQueue) {
  CreateBackend();
  ScalableContext();
  SetPasid(0, {.pgtt = vtd::kPgttFirstStage, .did = 5, .flptptr = 0x200000, .sre = true, .wpe = true});
  ASSERT_TRUE(Sync({CcDevice(0, kRid)}).ok());
  auto view = backend_->binding(kRid, std::nullopt);
  ASSERT_TRUE(view);
  EXPECT_EQ(view->kind, BindingKind::kNested);
  ASSERT_TRUE(fake_.hwpts().count(view->pt_id));
  const FakeIommufd::Hwpt& h = fake_.hwpts().at(view->pt_id);
  EXPECT_EQ(h.kind, FakeIommufd::HwptKind::kNested);
  EXPECT_EQ(h.request.pt_id, backend_->nest_parent_id());
  EXPECT_EQ(h.request.dev_id, kDevId);
  ASSERT_TRUE(h.request.vtd_s1);
  EXPECT_EQ(*h.request.vtd_s1, (VtdStage1{0x200000, 48, true, false, true}));
  EXPECT_EQ(h.request.fault_id, backend_->fault_queue_id());
  EXPECT_EQ(device_->attached, view->pt_id);
  // The guest moves the table: a new HWPT replaces the old one, which is destroyed.
  const uint32_t old = view->pt_id;
  SetPasid(0, {.pgtt = vtd::kPgttFirstStage, .did = 5, .flptptr = 0x300000});
  ASSERT_TRUE(Sync({PasidCacheInv(1, 5, 0)}).ok());
  view = backend_->binding(kRid, std::nullopt);
  EXPECT_NE(view->pt_id, old);
  EXPECT_FALSE(fake_.hwpts().count(old));
  EXPECT_EQ(fake_.hwpts().at(view->pt_id).request.vtd_s1->pgtbl_addr, 0x300000u);
}

TEST_F(NestingTest, PassThroughGoesToTheNestParentAndAbsentEntriesDetach) {
  CreateBackend();
  ScalableContext();
  SetPasid(0, {.pgtt = vtd::kPgttPassThrough, .did = 5});
  ASSERT_TRUE(Sync({CcDevice(0, kRid)}).ok());
  EXPECT_EQ(device_->attached, backend_->nest_parent_id());
  ASSERT_TRUE(env_->driver->tables().ClearPasidEntry(kRid, 0).ok());
  ASSERT_TRUE(Sync({PasidCacheInv(1, 5, 0)}).ok());
  EXPECT_EQ(device_->attached, 0u);  // blocked: the host's blocking domain
  EXPECT_EQ(backend_->binding(kRid, std::nullopt)->kind, BindingKind::kBlocked);
  // Translation off again: back to guest-physical.
  ASSERT_TRUE(env_->driver->DisableTranslation().ok());
  EXPECT_EQ(device_->attached, backend_->nest_parent_id());
}

TEST_F(NestingTest, BadGuestPointerIsAFaultRecordAndNeverReachesTheHost) {
  CreateBackend();
  ScalableContext();
  const size_t requests = fake_.hwpt_requests().size();
  SetPasid(0, {.pgtt = vtd::kPgttFirstStage, .did = 5, .flptptr = 0x40000000});  // 1 GiB: beyond RAM
  ASSERT_TRUE(Sync({CcDevice(0, kRid)}).ok());
  EXPECT_EQ(fake_.hwpt_requests().size(), requests);
  EXPECT_EQ(device_->attached, 0u);
  auto [valid, reason] = FirstFaultRecord();
  EXPECT_TRUE(valid);
  EXPECT_EQ(reason, vtd::kSmFlAccess);
  EXPECT_EQ(backend_->stats().guest_faults, 1u);
}

TEST_F(NestingTest, MalformedEntryOfAPassthroughDeviceIsItsArchitectedFault) {
  CreateBackend();
  ScalableContext();
  SetPasid(3, {.pgtt = 7, .did = 5});  // reserved PGTT
  ASSERT_TRUE(Sync({CcDevice(0, kRid)}).ok());
  auto [valid, reason] = FirstFaultRecord();
  EXPECT_TRUE(valid);
  EXPECT_EQ(reason, vtd::kSmPasidEntryInvalid);
}

TEST_F(NestingTest, HostRefusalIsLoggedReportedToTheGuestAndBlocks) {
  CreateBackend();
  ScalableContext();
  fake_.FailNext(FakeIommufd::Op::kAllocHwpt, absl::InvalidArgumentError("IOMMU_HWPT_ALLOC: Invalid argument (errno 22)"));
  SetPasid(0, {.pgtt = vtd::kPgttFirstStage, .did = 5, .flptptr = 0x200000});
  ASSERT_TRUE(Sync({CcDevice(0, kRid)}).ok());
  EXPECT_EQ(device_->attached, 0u);
  EXPECT_EQ(backend_->stats().bind_failures, 1u);
  auto [valid, reason] = FirstFaultRecord();
  EXPECT_TRUE(valid);
  EXPECT_EQ(reason, vtd::kSmPasidEntryInvalid);
}

TEST_F(NestingTest, PasidEntriesAttachThroughPasidAttachOrStayBlockedWhereTheHostLacksIt) {
  CreateBackend();
  ScalableContext();
  SetPasid(0, {.pgtt = vtd::kPgttPassThrough, .did = 5});
  SetPasid(9, {.pgtt = vtd::kPgttFirstStage, .did = 6, .flptptr = 0x210000});
  ASSERT_TRUE(Sync({CcDevice(0, kRid)}).ok());
  ASSERT_TRUE(device_->pasids.count(9));
  auto view = backend_->binding(kRid, 9u);
  ASSERT_TRUE(view);
  EXPECT_EQ(view->kind, BindingKind::kNested);
  EXPECT_EQ(device_->pasids[9], view->pt_id);
  // A Linux 6.12 host: no PASID attach. PASID 10 stays blocked, said once, counted.
  device_->pasid_attach = false;
  SetPasid(10, {.pgtt = vtd::kPgttFirstStage, .did = 6, .flptptr = 0x220000});
  SetPasid(11, {.pgtt = vtd::kPgttFirstStage, .did = 6, .flptptr = 0x230000});
  ASSERT_TRUE(Sync({PasidCacheInv(3, 0, 0)}).ok());
  EXPECT_FALSE(device_->pasids.count(10));
  ASSERT_TRUE(backend_->binding(kRid, 10u));
  EXPECT_EQ(backend_->binding(kRid, 10u)->kind, BindingKind::kBlocked);
  EXPECT_EQ(backend_->stats().pasid_attach_unsupported, 2u);  // once per entry, not per rescan
  EXPECT_EQ(fake_.hwpts().size(), 2u);  // nest parent + PASID 9's nested; 10's and 11's released
  ASSERT_TRUE(Sync({PasidCacheInv(3, 0, 0)}).ok());
  EXPECT_EQ(backend_->stats().pasid_attach_unsupported, 2u);
}

TEST_F(NestingTest, LegacySecondStageIsShadowedAndFollowsInvalidations) {
  // Legacy mode: a second-stage table the host cannot nest becomes a shadow IOAS.
  auto env = VtdTestEnv::Create();
  ASSERT_TRUE(env.ok());
  env_ = std::move(*env);
  ASSERT_TRUE(env_->driver->Init(false).ok());
  CreateBackend();
  auto ss = SecondStageTableBuilder::Create(*env_->memory, *env_->alloc, 4);
  ASSERT_TRUE(ss.ok());
  ASSERT_TRUE(ss->Map(0x10000, 0x500000, 0x2000, kDmaRead | kDmaWrite).ok());
  ASSERT_TRUE(env_->driver->tables().SetLegacyContext(kRid, {.tt = 0, .aw = 2, .did = 4, .slptptr = ss->root()}).ok());
  ASSERT_TRUE(env_->driver->EnableTranslation().ok());
  ASSERT_TRUE(Sync({CcDevice(0, kRid)}).ok());
  auto view = backend_->binding(kRid, std::nullopt);
  ASSERT_TRUE(view);
  ASSERT_EQ(view->kind, BindingKind::kShadow);
  EXPECT_EQ(device_->attached, view->pt_id);
  auto shadow_maps = [&] {
    std::vector<FakeIommufd::Mapping> m;
    for (const auto& x : fake_.mappings()) {
      if (x.ioas_id == view->pt_id) m.push_back(x);
    }
    return m;
  };
  ASSERT_EQ(shadow_maps().size(), 1u);
  EXPECT_EQ(shadow_maps()[0].iova, 0x10000u);
  EXPECT_EQ(shadow_maps()[0].len, 0x2000u);
  EXPECT_EQ(shadow_maps()[0].va, env_->memory->HostPointer(0x500000, 1));
  // Unmap one page + page-selective IOTLB invalidation: the shadow drops it (no stale mapping).
  ASSERT_TRUE(ss->WriteEntry(0x11000, 1, 0).ok());
  ASSERT_TRUE(Sync({IotlbPage(4, 0x11000, 0)}).ok());
  ASSERT_EQ(shadow_maps().size(), 1u);
  EXPECT_EQ(shadow_maps()[0].len, 0x1000u);
  // Caching mode: a new mapping is announced by an invalidation too, and appears.
  ASSERT_TRUE(ss->Map(0x40000, 0x600000, 0x1000, kDmaRead).ok());
  ASSERT_TRUE(Sync({IotlbPage(4, 0x40000, 0)}).ok());
  EXPECT_EQ(shadow_maps().size(), 2u);
}

// ----- invalidations -----

TEST_F(NestingTest, A512PageUnmapIsOneHostCall) {
  CreateBackend();
  ScalableContext();
  SetPasid(0, {.pgtt = vtd::kPgttFirstStage, .did = 5, .flptptr = 0x200000});
  ASSERT_TRUE(Sync({CcDevice(0, kRid)}).ok());
  const uint32_t hwpt = backend_->binding(kRid, std::nullopt)->pt_id;
  // What Linux's qi_batch does for an unmap: one PASID-IOTLB and one device-TLB descriptor per
  // page, one wait at the end (the queue holds 256 descriptors of 32 bytes: two submissions).
  for (int half = 0; half < 2; ++half) {
    std::vector<vtd::InvDescriptor> batch;
    for (int i = 0; i < 127; ++i) batch.push_back(PIotlbPage(5, 0, 0x1000000 + (half * 127 + i) * 4096ull, 0));
    ASSERT_TRUE(Sync(batch).ok());
  }
  ASSERT_EQ(fake_.invalidations().size(), 2u);
  EXPECT_EQ(fake_.invalidations()[0].hwpt_id, hwpt);
  EXPECT_EQ(fake_.invalidations()[0].entries.size(), 127u);
  EXPECT_EQ(fake_.invalidations()[1].entries[0], (VtdS1Invalidation{0x1000000 + 127 * 4096ull, 1, false}));
  EXPECT_EQ(backend_->stats().forwarded_descriptors, 254u);
}

TEST_F(NestingTest, InvalidationsReachOnlyTheirDomainAndPasid) {
  CreateBackend();
  ScalableContext();
  SetPasid(0, {.pgtt = vtd::kPgttFirstStage, .did = 5, .flptptr = 0x200000});
  ASSERT_TRUE(Sync({CcDevice(0, kRid)}).ok());
  ASSERT_TRUE(Sync({PIotlbPage(6, 0, 0x1000, 0), PIotlbPage(5, 3, 0x1000, 0), IotlbDomain(9)}).ok());
  EXPECT_TRUE(fake_.invalidations().empty());
  ASSERT_TRUE(Sync({PIotlbPasid(5, 0), PIotlbPage(5, 0, 0x8000, 3, true), IotlbGlobal()}).ok());
  ASSERT_EQ(fake_.invalidations().size(), 1u);
  EXPECT_EQ(fake_.invalidations()[0].entries,
            (std::vector<VtdS1Invalidation>{{0, UINT64_MAX, false}, {0x8000, 8, true}, {0, UINT64_MAX, false}}));
}

// §6.5.2.3: AM masks the low address bits; the host gets the aligned block (fuzzer-found: the
// unaligned address used to leave the pages below it stale on the host).
TEST_F(NestingTest, AddressMaskSelectsTheAlignedBlock) {
  CreateBackend();
  ScalableContext();
  SetPasid(0, {.pgtt = vtd::kPgttFirstStage, .did = 5, .flptptr = 0x200000});
  ASSERT_TRUE(Sync({CcDevice(0, kRid)}).ok());
  ASSERT_TRUE(Sync({PIotlbPage(5, 0, 0x5000, 2), PIotlbPage(5, 0, 0x7000, 0), PIotlbPage(5, 0, 0x0, 60)}).ok());
  ASSERT_EQ(fake_.invalidations().size(), 1u);
  EXPECT_EQ(fake_.invalidations()[0].entries,
            (std::vector<VtdS1Invalidation>{{0x4000, 4, false}, {0x7000, 1, false}, {0, UINT64_MAX, false}}));
}

TEST_F(NestingTest, HostRefusalOfAnInvalidationIsIqeAtTheGuestsDescriptor) {
  CreateBackend();
  ScalableContext();
  SetPasid(0, {.pgtt = vtd::kPgttFirstStage, .did = 5, .flptptr = 0x200000});
  ASSERT_TRUE(Sync({CcDevice(0, kRid)}).ok());
  fake_.FailInvalidationAt(2, EINVAL);
  const uint32_t first = env_->iommu->ReadRegister(vtd::kIqtReg, 4);
  absl::Status s = Sync({PIotlbPage(5, 0, 0x1000, 0), DevTlb(kRid, 0x1000), PIotlbPage(5, 0, 0x2000, 0),
                         PIotlbPage(5, 0, 0x3000, 0)});
  EXPECT_FALSE(s.ok());  // the wait did not complete
  EXPECT_TRUE(env_->iommu->ReadRegister(vtd::kFstsReg, 4) & vtd::kFstsIqe);
  // Host entry 2 came from guest descriptor 3 (the device-TLB one made no host entry).
  EXPECT_EQ(env_->iommu->ReadRegister(vtd::kIqhReg, 4), first + 3 * env_->driver->descriptor_bytes());
  EXPECT_EQ(backend_->stats().invalidate_refusals, 1u);
}

// ----- faults -----

class FaultTest : public NestingTest {
 protected:
  void SetUp() override {
    NestingTest::SetUp();
    CreateBackend();
    ASSERT_TRUE(env_->driver->EnablePageRequests(0xfee00000, 0x40).ok());
    ScalableContext();
    SetPasid(0, {.pgtt = vtd::kPgttFirstStage, .did = 5, .flptptr = 0x200000});
    SetPasid(7, {.pgtt = vtd::kPgttFirstStage, .did = 6, .flptptr = 0x210000});
    ASSERT_TRUE(Sync({CcDevice(0, kRid)}).ok());
    fault_id_ = *backend_->fault_queue_id();
  }
  uint32_t Inject(uint32_t grpid, uint64_t addr, bool last = true, std::optional<uint32_t> pasid = 7,
                  uint32_t perm = kPermRead | kPermWrite) {
    HostPageFault f;
    f.dev_id = kDevId;
    f.pasid_valid = pasid.has_value();
    f.pasid = pasid.value_or(0);
    f.grpid = grpid;
    f.perm = perm;
    f.addr = addr;
    f.last = last;
    return fake_.InjectFault(fault_id_, f);
  }
  uint32_t fault_id_ = 0;
};

TEST_F(FaultTest, HostFaultReachesTheGuestQueueAndItsAnswerReachesTheHost) {
  const uint32_t cookie = Inject(0x1a5, 0x7fff12345678, true, 7, kPermWrite | kPermPriv);
  EXPECT_EQ(backend_->PumpFaults(), 1u);
  std::vector<vtd::PageRequestDescriptor> prs = PageRequests();
  ASSERT_EQ(prs.size(), 1u);
  EXPECT_EQ(prs[0].rid, kRid);
  EXPECT_EQ(prs[0].pasid, 7u);
  EXPECT_EQ(prs[0].addr, 0x7fff12345000u);
  EXPECT_TRUE(prs[0].write);
  EXPECT_FALSE(prs[0].read);
  EXPECT_TRUE(prs[0].priv);
  EXPECT_TRUE(prs[0].last);
  EXPECT_EQ(prs[0].group_index, 0x1a5);
  EXPECT_EQ(backend_->outstanding_groups(), 1u);
  ASSERT_TRUE(Sync({PageGroupResponse(kRid, 7u, 0, 0x1a5)}).ok());
  ASSERT_EQ(fake_.responses().size(), 1u);
  EXPECT_EQ(fake_.responses()[0], (HostPageResponse{cookie, HostResponseCode::kSuccess}));
  EXPECT_EQ(backend_->outstanding_groups(), 0u);
  // Invalid Request answers Invalid.
  const uint32_t c2 = Inject(3, 0x5000, true, std::nullopt);
  backend_->PumpFaults();
  ASSERT_EQ(PageRequests().size(), 1u);
  ASSERT_TRUE(Sync({PageGroupResponse(kRid, std::nullopt, 1, 3)}).ok());
  EXPECT_EQ(fake_.responses().back(), (HostPageResponse{c2, HostResponseCode::kInvalid}));
}

TEST_F(FaultTest, MultiPageGroupIsAnsweredOnceWithItsCookie) {
  const uint32_t cookie = Inject(4, 0x1000, false);
  HostPageFault more;
  more.dev_id = kDevId;
  more.pasid_valid = true;
  more.pasid = 7;
  more.grpid = 4;
  more.addr = 0x2000;
  more.last = true;
  more.cookie = cookie;
  fake_.InjectFault(fault_id_, more);
  EXPECT_EQ(backend_->PumpFaults(), 2u);
  std::vector<vtd::PageRequestDescriptor> prs = PageRequests();
  ASSERT_EQ(prs.size(), 2u);
  EXPECT_FALSE(prs[0].last);
  EXPECT_TRUE(prs[1].last);
  ASSERT_TRUE(Sync({PageGroupResponse(kRid, 7u, 0, 4)}).ok());
  ASSERT_EQ(fake_.responses().size(), 1u);
  EXPECT_EQ(fake_.responses()[0].cookie, cookie);
}

TEST_F(FaultTest, TwoHundredFiftySixFaultsInFlight) {
  std::vector<uint32_t> cookies;
  for (uint32_t i = 0; i < 256; ++i) cookies.push_back(Inject(i & 0x1ff, 0x100000 + i * 4096ull, true, 7));
  while (backend_->PumpFaults() > 0) {
  }
  std::vector<vtd::PageRequestDescriptor> prs = PageRequests();
  ASSERT_EQ(prs.size(), 256u);
  EXPECT_EQ(backend_->outstanding_groups(), 256u);
  std::vector<vtd::InvDescriptor> answers;
  for (uint32_t i = 0; i < 256; ++i) {
    answers.push_back(PageGroupResponse(kRid, 7u, 0, prs[255 - i].group_index));  // any order
    if (answers.size() == 100) {
      ASSERT_TRUE(Sync(answers).ok());
      answers.clear();
    }
  }
  ASSERT_TRUE(Sync(answers).ok());
  EXPECT_EQ(fake_.responses().size(), 256u);
  EXPECT_EQ(fake_.outstanding(fault_id_), 0u);
  EXPECT_EQ(backend_->outstanding_groups(), 0u);
}

TEST_F(FaultTest, GuestQueueOverflowIsAnsweredSuccessToTheHostAsTheSpecSays) {
  env_->iommu->WriteRegister(vtd::kPqaReg, env_->driver->prq_base() | 0);  // 4 KiB: 128 descriptors
  for (uint32_t i = 0; i < 130; ++i) Inject(i, 0x100000 + i * 4096ull, true, 7);
  while (backend_->PumpFaults() > 0) {
  }
  // §7.5.1: the queue holds 127; the rest set PRO and are answered Success (the device retries).
  EXPECT_TRUE(env_->iommu->ReadRegister(vtd::kPrsReg, 4) & 2);  // PRS.PRO
  EXPECT_EQ(fake_.responses().size(), 3u);
  for (const HostPageResponse& r : fake_.responses()) EXPECT_EQ(r.code, HostResponseCode::kSuccess);
  EXPECT_EQ(backend_->outstanding_groups(), 127u);
}

TEST_F(FaultTest, ResponsesToUnknownGroupsAreIgnored) {
  ASSERT_TRUE(Sync({PageGroupResponse(kRid, 7u, 0, 99), PageGroupResponse(0x0123, std::nullopt, 0, 1)}).ok());
  EXPECT_TRUE(fake_.responses().empty());
  EXPECT_EQ(backend_->stats().unknown_responses, 1u);  // 0x0123 is not a passthrough requester
}

TEST_F(FaultTest, ResetUnbindAndExitAnswerEveryOutstandingGroup) {
  Inject(1, 0x1000, true, 7);
  Inject(2, 0x2000, true, std::nullopt);
  backend_->PumpFaults();
  ASSERT_EQ(backend_->outstanding_groups(), 2u);
  // Unbinding PASID 7 answers its group only.
  ASSERT_TRUE(env_->driver->tables().ClearPasidEntry(kRid, 7).ok());
  ASSERT_TRUE(Sync({PasidCacheInv(1, 6, 7)}).ok());
  ASSERT_EQ(fake_.responses().size(), 1u);
  EXPECT_EQ(fake_.responses()[0].code, HostResponseCode::kInvalid);
  EXPECT_EQ(backend_->outstanding_groups(), 1u);
  // Guest reset answers the rest, and the device is back on guest-physical DMA.
  env_->iommu->Reset();
  EXPECT_EQ(fake_.responses().size(), 2u);
  EXPECT_EQ(backend_->outstanding_groups(), 0u);
  EXPECT_EQ(device_->attached, backend_->nest_parent_id());
  // Exit with one outstanding: answered, every object but the IOAS destroyed, device on the IOAS.
  Inject(3, 0x3000, true, std::nullopt);
  backend_->PumpFaults();
  backend_.reset();
  EXPECT_EQ(fake_.responses().size() + fake_.auto_responses().size(), 3u);
  EXPECT_EQ(fake_.live_objects(), 1u);
  EXPECT_EQ(device_->attached, kIoas);
}

// The kernel stops at the first response it refuses; the others must still be answered
// (fuzzer-found: a failed batched write used to drop every answer of the batch).
TEST_F(FaultTest, AFailedBatchedAnswerIsRetriedOneByOne) {
  Inject(1, 0x1000, true, std::nullopt);
  Inject(2, 0x2000, true, std::nullopt);
  Inject(3, 0x3000, true, std::nullopt);
  backend_->PumpFaults();
  ASSERT_EQ(backend_->outstanding_groups(), 3u);
  fake_.FailNext(FakeIommufd::Op::kWriteResponses, absl::InvalidArgumentError("injected short write"));
  env_->iommu->Reset();
  EXPECT_EQ(fake_.responses().size(), 3u);
  EXPECT_EQ(fake_.outstanding(fault_id_), 0u);
}

TEST_F(FaultTest, OutstandingGroupsAreCapped) {
  backend_.reset();
  VtdNestingOptions o = Options();
  o.max_outstanding_groups = 2;
  CreateBackend(o);
  ScalableContext();
  ASSERT_TRUE(Sync({CcDevice(0, kRid)}).ok());
  fault_id_ = *backend_->fault_queue_id();
  for (uint32_t i = 0; i < 4; ++i) Inject(i, 0x1000 * (i + 1), true, std::nullopt);
  while (backend_->PumpFaults() > 0) {
  }
  EXPECT_EQ(backend_->outstanding_groups(), 2u);
  ASSERT_EQ(fake_.responses().size(), 2u);
  EXPECT_EQ(fake_.responses()[0].code, HostResponseCode::kInvalid);
}

TEST_F(FaultTest, TheReaderThreadDeliversWithoutPumping) {
  backend_.reset();
  VtdNestingOptions o = Options();
  o.reader_thread = true;
  CreateBackend(o);
  ScalableContext();
  ASSERT_TRUE(Sync({CcDevice(0, kRid)}).ok());
  fault_id_ = *backend_->fault_queue_id();
  Inject(5, 0x5000, true, std::nullopt);
  for (int i = 0; i < 2000 && backend_->stats().injected == 0; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  EXPECT_EQ(backend_->stats().injected, 1u);
}

}  // namespace
}  // namespace ionest::iommufd
