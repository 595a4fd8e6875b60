// libFuzzer target: the VT-d nesting backend (issue 9), guest entries -> host requests. A
// Linux-like driver brings up the emulated VT-d (legacy or scalable mode, chosen by the first
// byte) with the nesting backend over FakeIommufd and one or two passthrough devices, optionally
// already where Linux is after boot (contexts, RID_PASID entries, translation on); the rest of the
// input is a sequence of at most 64 guest and host operations:
//   - raw and structured context entries, PASID directory and PASID table entries of the
//     passthrough RIDs (garbage pointers, reserved bits, every PGTT, FLPM, AW), walkable paths and
//     raw words in a pool of guest pages that serve as first- and second-stage tables (the shadows
//     walk them);
//   - invalidation descriptors of every type and granularity (AM, IH, device-TLB, page group
//     responses, raw ones), with or without a wait, the guest recovering from IQE as Linux does;
//     register-based invalidations; translation on/off; platform reset;
//   - host page faults injected into the fake's fault queue (any dev_id/PASID/group/permissions,
//     multi-record groups), PumpFaults, the guest draining its page request queue;
//   - host failures: FailNext on AllocHwpt/InvalidateVtdS1/WriteResponses/MapFixed/Unmap/AllocIoas,
//     FailInvalidationAt, VFIO attach failures, hosts without PASID attach.
// Invariants, checked with __builtin_trap after every operation: nested HWPTs name the nest parent
// and a first-stage root inside guest RAM; shadow mappings point into guest RAM; host invalidation
// entries are well formed (4 KiB aligned, size-aligned power-of-two page counts or "everything");
// outstanding groups stay within the cap; every host object besides the VM IOAS, the nest parent
// and the fault queue is attached to some device (no leak). At the end, after answering every
// outstanding group, the host has none outstanding, and once the backend is gone only the VM IOAS
// is left. IONEST_FUZZ_TRACE=1 prints the operations of an input (to read a reproducer).
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "absl/base/internal/raw_logging.h"
#include "absl/base/log_severity.h"
#include "iommu/iommufd/testing/fake_iommufd.h"
#include "iommu/iommufd/vtd_binding.h"
#include "iommu/iommufd/vtd_nesting.h"
#include "iommu/vtd/fuzz/fuzz_input.h"
#include "iommu/vtd/registers.h"
#include "iommu/vtd/testing/vtd_test_env.h"

namespace {

using namespace ionest;
using namespace ionest::iommufd;
using iommufd_testing::FakeIommufd;
using vtd::InvDescriptor;
using vtd::VtdIommu;
using vtd::VtdProfile;
using vtd::fuzz::FuzzInput;
using vtd::testing::LinuxVtdDriver;
using vtd::testing::VtdTestEnv;
using namespace vtd::testing;  // NOLINT: descriptor builders

// Close to the smallest RAM VtdTestEnv allows (> 33 MiB): its page allocator gets [32 MiB, 34 MiB).
constexpr uint64_t kRam = VtdTestEnv::kTablePool + (2ull << 20);
constexpr uint64_t kPool = 1ull << 20;  // fuzzed table pages [1 MiB, 1 MiB + 64 pages)
constexpr uint64_t kPoolPages = 64;
constexpr uint32_t kIoas = 1;
constexpr int kMaxOps = 64;
constexpr int kMaxResets = 3;
constexpr uint16_t kRids[2] = {0x0010, 0x0098};  // 00:02.0; 00:13.0 (upper half of a scalable context table)
constexpr uint32_t kDevIds[2] = {77, 78};

void Check(bool ok) {
  if (!ok) __builtin_trap();
}

// IONEST_FUZZ_TRACE=1: each operation on stderr (to read a crash reproducer).
bool tracing = false;
#define TRACE(...)                                   \
  do {                                               \
    if (tracing) std::fprintf(stderr, __VA_ARGS__);  \
  } while (0)

// A passthrough device as VFIO drives it. The fake only knows "busy": an object stays marked
// attached while any attachment of any device (RID or PASID) names it (`refs`, per input).
class FuzzDevice final : public NestedDevice {
 public:
  FuzzDevice(FakeIommufd& fake, std::map<uint32_t, int>& refs, uint16_t rid, uint32_t dev_id, bool pri)
      : fake_(fake), refs_(refs), rid_(rid), dev_id_(dev_id), pri_(pri) {}
  const std::string& name() const override { return name_; }
  uint32_t dev_id() const override { return dev_id_; }
  uint16_t rid() const override { return rid_; }
  bool pri() const override { return pri_; }
  absl::Status Attach(uint32_t pt_id) override {
    if (fail_attach) return absl::InvalidArgumentError("VFIO_DEVICE_ATTACH_IOMMUFD_PT: Invalid argument (errno 22)");
    Move(attached, pt_id);
    attached = pt_id;
    return absl::OkStatus();
  }
  absl::Status Detach() override {
    Move(attached, 0);
    attached = 0;
    return absl::OkStatus();
  }
  absl::Status AttachPasid(uint32_t pasid, uint32_t pt_id) override {
    if (!pasid_attach) return absl::FailedPreconditionError("the host kernel lacks VFIO_DEVICE_ATTACH_PASID");
    if (fail_attach) return absl::InvalidArgumentError("VFIO_DEVICE_ATTACH_PASID: Invalid argument (errno 22)");
    uint32_t& cur = pasids[pasid];
    Move(cur, pt_id);
    cur = pt_id;
    return absl::OkStatus();
  }
  absl::Status DetachPasid(uint32_t pasid) override {
    auto it = pasids.find(pasid);
    if (it != pasids.end()) {
      Move(it->second, 0);
      pasids.erase(it);
    }
    return absl::OkStatus();
  }

  uint32_t attached = kIoas;  // Passthrough::Open attached it to the VM IOAS
  std::map<uint32_t, uint32_t> pasids;
  bool pasid_attach = true;
  bool fail_attach = false;

 private:
  void Move(uint32_t from, uint32_t to) {
    if (from == to) return;
    if (to && refs_[to]++ == 0) fake_.MarkAttached(to, true);
    if (from && --refs_[from] == 0) fake_.MarkAttached(from, false);
  }
  FakeIommufd& fake_;
  std::map<uint32_t, int>& refs_;
  const std::string name_ = "vfio@fuzz";
  const uint16_t rid_;
  const uint32_t dev_id_;
  const bool pri_;
};

struct State {
  std::unique_ptr<VtdTestEnv> env;
  FakeIommufd fake;
  std::map<uint32_t, int> attach_refs;
  std::vector<std::unique_ptr<FuzzDevice>> devices;
  std::unique_ptr<VtdNestingBackend> backend;
  bool scalable = false;
  bool prq = false;
  bool host_fs5lp = false;
  size_t cap = 0;
  size_t inv_checked = 0;  // fake.invalidations() already checked
  int resets = 0;
  std::map<FakeIommufd::Op, int> injected;  // FailNext calls per op (drained at the end)
  int write_fail_calls = -1;  // calls(kWriteResponses) when the pending WriteResponses failure was set
  std::optional<uint32_t> fault_id;
};

uint8_t* RamHost(State& s) { return s.env->memory->HostPointer(0, kRam); }

// An address field for a guest pointer: mostly the pool's root table (page 0, which MapPath fills),
// else a random pool page, anywhere in RAM, beyond RAM, or raw. Bits 63:52 and 11:0 of `w` (flags,
// reserved bits) stay as fuzzed.
uint64_t Pointer(FuzzInput& in, uint64_t w) {
  const uint8_t sel = in.Get<uint8_t>();
  uint64_t addr;
  switch (sel & 7) {
    case 0:
    case 7:
      return w;
    case 1:
    case 2:
    case 3:
      addr = kPool;
      break;
    case 4:
      addr = kPool + ((w >> 12) % kPoolPages) * 4096;
      break;
    case 5:
      addr = ((w >> 12) % (kRam / 4096)) * 4096;
      break;
    default:
      addr = kRam + ((w >> 12) & 0xffff) * 4096;
      break;
  }
  return (w & ~0x000ffffffffff000ull) | addr;
}

uint32_t PickPasid(FuzzInput& in, uint32_t rid_pasid) {
  const uint8_t sel = in.Get<uint8_t>();
  switch (sel & 7) {
    case 0:
    case 1:
      return 0;
    case 2:
      return 1;
    case 3:
      return 7;
    case 4:
      return rid_pasid;
    case 5:
      return 64 + (sel >> 3);  // a second PASID table
    default:
      return in.Get<uint32_t>() & 0xfffff;
  }
}

uint16_t PickRid(State& s, FuzzInput& in) {
  const uint8_t sel = in.Get<uint8_t>();
  if ((sel & 3) == 3) return in.Get<uint16_t>();
  return s.devices[sel % s.devices.size()]->rid();
}

FuzzDevice& PickDevice(State& s, FuzzInput& in) { return *s.devices[in.Get<uint8_t>() % s.devices.size()]; }

// ----- invariants -----

void CheckInvariants(State& s) {
  const std::vector<RamRange> ram = {{0, RamHost(s), kRam}};
  const uint32_t parent = s.backend->nest_parent_id();
  for (const auto& [id, h] : s.fake.hwpts()) {
    if (h.kind == FakeIommufd::HwptKind::kNested) {
      Check(h.request.pt_id == parent);
      Check(h.request.vtd_s1.has_value());
      Check(InGuestRam(ram, h.request.vtd_s1->pgtbl_addr, 4096));
      Check(h.request.vtd_s1->pgtbl_addr % 4096 == 0);
      Check(h.request.vtd_s1->addr_width == 48 || (h.request.vtd_s1->addr_width == 57 && s.host_fs5lp));
      Check(!h.request.fault_id || h.request.fault_id == s.fault_id);
    } else {
      Check(id == parent);  // the backend allocates no other paging HWPT
    }
  }
  const uintptr_t host = reinterpret_cast<uintptr_t>(RamHost(s));
  for (const FakeIommufd::Mapping& m : s.fake.mappings()) {
    if (m.ioas_id == kIoas) continue;
    const uintptr_t va = reinterpret_cast<uintptr_t>(m.va);
    Check(va >= host && va - host < kRam && m.len <= kRam - (va - host));
    Check(va % 4096 == 0 && m.iova % 4096 == 0 && m.len % 4096 == 0);
  }
  const auto& invs = s.fake.invalidations();
  for (; s.inv_checked < invs.size(); ++s.inv_checked) {
    for (const VtdS1Invalidation& e : invs[s.inv_checked].entries) {
      Check(e.addr % 4096 == 0);
      Check(e.npages != 0);
      if (e.npages == UINT64_MAX) {
        Check(e.addr == 0);
      } else {
        // The guest's 2^AM-page block, aligned to its size (VT-d §6.5.2.3: AM masks address bits).
        Check((e.npages & (e.npages - 1)) == 0 && e.npages < (uint64_t{1} << 52));
        Check(e.addr % (e.npages * 4096) == 0);
      }
    }
  }
  Check(s.backend->outstanding_groups() <= s.cap);
  // No leak: every object besides the VM IOAS, the nest parent and the fault queue is attached.
  std::set<uint32_t> attached;
  for (const auto& d : s.devices) {
    if (d->attached) attached.insert(d->attached);
    for (const auto& [pasid, id] : d->pasids) {
      if (id) attached.insert(id);
    }
  }
  attached.erase(kIoas);
  attached.erase(parent);
  for (uint32_t id : attached) Check(s.fake.hwpts().count(id) || s.fake.ioas_exists(id));
  const size_t expected = 2 + (s.fault_id && s.fake.fault_queue_exists(*s.fault_id) ? 1 : 0) + attached.size();
  Check(s.fake.live_objects() == expected);
}

// ----- guest operations -----

// Linux's qi_check_fault on IQE: the descriptor at IQH is replaced by a harmless one and IQE is
// cleared, fetching resumes. The queue must drain after at most one recovery per descriptor.
void RecoverQueue(State& s, size_t submitted) {
  VtdIommu& iommu = *s.env->iommu;
  LinuxVtdDriver& drv = *s.env->driver;
  for (size_t round = 0; round <= submitted + 1; ++round) {
    const uint32_t fsts = static_cast<uint32_t>(iommu.ReadRegister(vtd::kFstsReg, 4));
    if (!(fsts & (vtd::kFstsIqe | vtd::kFstsIce | vtd::kFstsIte))) return;
    if (fsts & vtd::kFstsIqe) {
      const uint64_t head = iommu.ReadRegister(vtd::kIqhReg) & 0x1fff;
      InvDescriptor nop = Wait(0, 0, /*sw=*/false);
      s.env->memory->Write(drv.queue_base() + head, nop.qw.data(), drv.descriptor_bytes()).IgnoreError();
    }
    iommu.WriteRegister(vtd::kFstsReg, vtd::kFstsIqe | vtd::kFstsIce | vtd::kFstsIte, 4);
  }
  // Every descriptor got replaced once and the queue still does not move: the guest is stuck.
  Check(!(iommu.ReadRegister(vtd::kFstsReg, 4) & vtd::kFstsIqe));
}

InvDescriptor FuzzDescriptor(State& s, FuzzInput& in) {
  const uint8_t kind = in.Get<uint8_t>();
  const uint8_t b = in.Get<uint8_t>();
  const uint16_t did = (b & 0x80) ? in.Get<uint16_t>() : (b & 7);
  auto addr = [&] {
    const uint8_t sel = in.Get<uint8_t>();
    if (sel & 1) return in.Get<uint64_t>();
    return uint64_t{in.Get<uint16_t>()} << 12;
  };
  auto am = [&] { return static_cast<uint8_t>(in.Get<uint8_t>() & 0x3f); };
  auto ridp = [&] { return s.env->iommu->profile().scalable_mode ? PickPasid(in, 0) : 0u; };
  switch (kind % 16) {
    case 0:
      return CcGlobal();
    case 1:
      return CcDomain(did);
    case 2:
      return CcDevice(did, PickRid(s, in), b >> 5);
    case 3:
      return IotlbGlobal();
    case 4:
      return IotlbDomain(did);
    case 5: {
      const uint64_t a = addr();
      return IotlbPage(did, a, am(), b & 0x40);
    }
    case 6: {
      const uint16_t sid = PickRid(s, in);
      return DevTlb(sid, addr(), b & 0x40);
    }
    case 7:
      return PIotlbPasid(did, ridp());
    case 8:
    case 9: {
      const uint32_t pasid = ridp();
      const uint64_t a = addr();
      return PIotlbPage(did, pasid, a, am(), b & 0x40);
    }
    case 10: {
      const uint8_t g = (b >> 3) & 3;
      const uint32_t pasid = ridp();
      return PasidCacheInv(g == 2 ? 3 : g, did, pasid);
    }
    case 11: {
      const uint16_t sid = PickRid(s, in);
      const uint32_t pasid = ridp();
      return PDevTlb(sid, pasid, addr(), b & 0x40);
    }
    case 12:
    case 13: {
      const uint16_t rid = PickRid(s, in);
      std::optional<uint32_t> pasid;
      if (b & 0x40) pasid = PickPasid(in, 0);
      const uint16_t index = (b & 0x20) ? (in.Get<uint16_t>() & 0x1ff) : (b & 3);
      static constexpr uint8_t kCodes[4] = {0, 1, 0xf, 2};  // success, invalid, failure, reserved
      return PageGroupResponse(rid, pasid, kCodes[(b >> 2) & 3], index, !(b & 0x10));
    }
    case 14:
      return IecGlobal();
    default: {
      InvDescriptor d;
      d.qw[0] = in.Get<uint64_t>();
      d.qw[1] = in.Get<uint64_t>();
      if (b & 1) {
        d.qw[2] = in.Get<uint64_t>();
        d.qw[3] = in.Get<uint64_t>();
      }
      return d;
    }
  }
}

void SubmitDescriptors(State& s, FuzzInput& in) {
  const uint8_t b = in.Get<uint8_t>();
  std::vector<InvDescriptor> batch;
  const size_t n = 1 + (b & 7);
  for (size_t i = 0; i < n && !in.empty(); ++i) batch.push_back(FuzzDescriptor(s, in));
  for (const InvDescriptor& d : batch) TRACE("  desc %#llx %#llx\n", (unsigned long long)d.qw[0], (unsigned long long)d.qw[1]);
  absl::Status st = (b & 0x80) ? s.env->driver->SubmitRaw(batch) : s.env->driver->Invalidate(batch, QiErrors::kLeave);
  TRACE("  submitted%s: %s\n", (b & 0x80) ? "" : " with wait", st.ToString().c_str());
  RecoverQueue(s, batch.size() + 1);
}

// Context entry of a passthrough RID: structured (fuzzed fields) or raw words.
void WriteContext(State& s, FuzzInput& in) {
  FuzzDevice& d = PickDevice(s, in);
  const uint8_t b = in.Get<uint8_t>();
  VtdTableBuilder& t = s.env->driver->tables();
  absl::StatusOr<uint64_t> addr = t.ContextEntryAddress(d.rid());
  if (!addr.ok()) return;
  if (!(b & 1)) {
    if (s.scalable) {
      ScalableContextSpec spec{.dte = bool(b & 2), .pasid_enable = !(b & 4), .pre = bool(b & 8),
                               .pdts = static_cast<uint8_t>((b & 0x10) ? in.Get<uint8_t>() & 7 : 7),
                               .rid_pasid = (b & 0x20) ? PickPasid(in, 0) : 0u, .fpd = bool(b & 0x40),
                               .present = !(b & 0x80) || (in.Get<uint8_t>() & 1)};
      t.SetScalableContext(d.rid(), spec).IgnoreError();
    } else {
      const uint8_t f = in.Get<uint8_t>();
      LegacyContextSpec spec{.tt = static_cast<uint8_t>((b >> 1) & 3), .aw = static_cast<uint8_t>(f & 7),
                             .did = static_cast<uint16_t>((f >> 3) & 7),
                             .slptptr = Pointer(in, in.Get<uint64_t>()) & ~0xfffull, .fpd = bool(b & 0x40),
                             .present = !(b & 0x80) || (f & 0x80)};
      if (!(f & 0x40)) spec.aw = 2;  // mostly 4-level
      t.SetLegacyContext(d.rid(), spec).IgnoreError();
    }
    if (b & 0x08) {  // reserved bits
      const uint8_t word = in.Get<uint8_t>() % (s.scalable ? 4 : 2);
      absl::StatusOr<uint64_t> w = s.env->memory->ReadObj<uint64_t>(*addr + word * 8);
      if (w.ok()) s.env->memory->WriteObj<uint64_t>(*addr + word * 8, *w ^ in.Get<uint64_t>()).IgnoreError();
    }
  } else {
    const size_t words = s.scalable ? 4 : 2;
    for (size_t i = 0; i < words; ++i) {
      uint64_t w = in.Get<uint64_t>();
      if (i == 0) w = Pointer(in, w);
      s.env->memory->WriteObj<uint64_t>(*addr + i * 8, w).IgnoreError();
    }
  }
}

void WritePasidDirEntry(State& s, FuzzInput& in) {
  FuzzDevice& d = PickDevice(s, in);
  const uint32_t pasid = PickPasid(in, 0);
  absl::StatusOr<uint64_t> dir = s.env->driver->tables().PasidDirectory(d.rid());
  if (!dir.ok()) return;
  const uint64_t w = Pointer(in, in.Get<uint64_t>());
  s.env->memory->WriteObj<uint64_t>(*dir + (pasid >> 6) * 8ull, w).IgnoreError();
}

void WritePasidEntry(State& s, FuzzInput& in) {
  FuzzDevice& d = PickDevice(s, in);
  const uint32_t pasid = PickPasid(in, 0);
  const uint8_t b = in.Get<uint8_t>();
  VtdTableBuilder& t = s.env->driver->tables();
  absl::StatusOr<uint64_t> addr = t.PasidEntryAddress(d.rid(), pasid);
  if (!addr.ok()) return;
  if (!(b & 1)) {
    const uint8_t f = in.Get<uint8_t>();
    PasidEntrySpec spec;
    spec.pgtt = (b >> 1) & 7;
    if ((b & 0x10) == 0 && spec.pgtt > 4) spec.pgtt = 1;  // mostly architected values
    spec.did = f & 7;
    spec.flptptr = Pointer(in, in.Get<uint64_t>()) & ~0xfffull;
    spec.slptptr = Pointer(in, in.Get<uint64_t>()) & ~0xfffull;
    spec.aw = (f & 0x08) ? in.Get<uint8_t>() & 7 : 2;
    spec.flpm = (f & 0x10) ? in.Get<uint8_t>() & 3 : 0;
    spec.sre = f & 0x20;
    spec.wpe = f & 0x40;
    spec.ssade = (b & 0x20) && (f & 0x80);
    spec.fpd = b & 0x40;
    spec.present = !(b & 0x80) || (f & 1);
    s.env->memory->WriteObj(*addr, EncodePasidEntry(spec)).IgnoreError();
    if ((b & 0x20) && !(f & 0x80)) {  // reserved bits
      const uint8_t word = in.Get<uint8_t>() % 8;
      absl::StatusOr<uint64_t> w = s.env->memory->ReadObj<uint64_t>(*addr + word * 8);
      if (w.ok()) s.env->memory->WriteObj<uint64_t>(*addr + word * 8, *w ^ in.Get<uint64_t>()).IgnoreError();
    }
  } else {
    for (size_t i = 0; i < 8; ++i) {
      uint64_t w = in.Get<uint64_t>();
      if (i == 0 || i == 2) w = Pointer(in, w);
      s.env->memory->WriteObj<uint64_t>(*addr + i * 8, w).IgnoreError();
    }
  }
}

// A word of the table pool (first- and second-stage tables for nested HWPTs and shadows).
void WriteTableWord(State& s, FuzzInput& in) {
  const uint16_t slot = in.Get<uint16_t>();
  const uint64_t gpa = kPool + (slot % (kPoolPages * 512)) * 8ull;
  uint64_t w = in.Get<uint64_t>();
  if (in.Get<uint8_t>() & 1) {
    w = Pointer(in, w);
  } else {
    w = (w & 0xfff) | (kPool + ((w >> 12) % kPoolPages) * 4096);  // a table or leaf in the pool, R/W bits fuzzed
  }
  s.env->memory->WriteObj<uint64_t>(gpa, w).IgnoreError();
}

// A walkable path in the pool for one IOVA: root = pool page 0, each lower table a pool page the
// input picks, R/W/X and PS bits fuzzed (mostly R+W), the leaf pointing into the pool, anywhere in
// RAM, or beyond RAM. Serves second-stage tables (shadows) and first-stage ones alike.
void MapPath(State& s, FuzzInput& in) {
  const uint8_t b = in.Get<uint8_t>();
  const uint64_t iova = (uint64_t{in.Get<uint32_t>()} & 0xfffffff) << 12;  // 40-bit IOVAs
  const int levels = (b & 3) == 3 ? 3 : 4;
  const int leaf_level = (b & 0x0c) == 0x0c ? 2 : 1;  // 2 MiB superpage now and then
  uint64_t table = kPool;
  for (int level = levels; level >= leaf_level; --level) {
    const uint64_t idx = (iova >> (12 + 9 * (level - 1))) & 511;
    const uint8_t perm = in.Get<uint8_t>();
    uint64_t rights = (perm & 0x80) ? (perm & 7) : 3;  // R|W
    uint64_t e;
    if (level == leaf_level) {
      uint64_t target = uint64_t{in.Get<uint16_t>()};
      switch ((perm >> 3) & 3) {
        case 0:
          target = kPool + (target % kPoolPages) * 4096;
          break;
        case 1:
        case 2:
          target = (target * 4096) % kRam;
          break;
        default:
          target = kRam + target * 4096;
          break;
      }
      if (level == 2) target &= ~0x1fffffull;
      e = target | rights | (level == 2 ? 0x80 : 0);
    } else {
      const uint64_t next = kPool + (1 + in.Get<uint8_t>() % (kPoolPages - 1)) * 4096;
      e = next | rights;
    }
    if (perm & 0x40) e |= uint64_t{in.Get<uint8_t>()} << 52;  // reserved / ignored high bits
    s.env->memory->WriteObj<uint64_t>(table + idx * 8, e).IgnoreError();
    if (level == leaf_level) break;
    table = e & 0x000ffffffffff000ull;
    if (table < kPool || table >= kPool + kPoolPages * 4096) break;
  }
}

void InjectHostFault(State& s, FuzzInput& in) {
  if (!s.fault_id) return;
  const uint8_t b = in.Get<uint8_t>();
  HostPageFault f;
  switch (b & 3) {
    case 0:
    case 1:
      f.dev_id = s.devices[(b & 1) % s.devices.size()]->dev_id();
      break;
    case 2:
      f.dev_id = s.devices.back()->dev_id();
      break;
    default:
      f.dev_id = in.Get<uint32_t>();
      break;
  }
  f.pasid_valid = b & 4;
  f.pasid = f.pasid_valid ? PickPasid(in, 0) : ((b & 8) ? in.Get<uint32_t>() : 0);
  f.grpid = (b & 0x10) ? in.Get<uint32_t>() : (in.Get<uint8_t>() & 7);
  f.perm = in.Get<uint8_t>() & 0xf;
  f.addr = in.Get<uint64_t>();
  const int records = 1 + ((b >> 5) & 3) % 3;
  uint32_t cookie = 0;
  for (int i = 0; i < records; ++i) {
    HostPageFault r = f;
    r.last = i == records - 1;
    r.cookie = cookie;
    if (i > 0) {
      r.addr = f.addr + 4096ull * i;
      if (b & 0x80) r.pasid = PickPasid(in, 0);  // the kernel matches partial requests by group only
    }
    cookie = s.fake.InjectFault(*s.fault_id, r);
    TRACE("  fault dev %u pasid %s%u grp %#x last %d cookie %u\n", r.dev_id, r.pasid_valid ? "" : "(none) ", r.pasid,
          r.grpid, r.last, cookie);
  }
}

void DrainPageRequests(State& s, FuzzInput& in) {
  VtdIommu& iommu = *s.env->iommu;
  const uint8_t b = in.Get<uint8_t>();
  if (b & 1) {
    iommu.WriteRegister(vtd::kPqhReg, iommu.ReadRegister(vtd::kPqtReg));
  } else {
    iommu.WriteRegister(vtd::kPqhReg, in.Get<uint64_t>());  // a bogus head
  }
  if (b & 2) iommu.WriteRegister(vtd::kPrsReg, vtd::kPrsPro | vtd::kPrsPpr, 4);
}

absl::Status Injected() { return absl::InvalidArgumentError("injected host failure (errno 22)"); }

void InjectHostFailure(State& s, FuzzInput& in) {
  const uint8_t b = in.Get<uint8_t>();
  FakeIommufd::Op op;
  switch (b % 8) {
    case 0:
      op = FakeIommufd::Op::kAllocHwpt;
      break;
    case 1:
      op = FakeIommufd::Op::kInvalidate;
      break;
    case 2: {
      // One at a time: a pending one is consumed by the next write before another is set.
      if (s.write_fail_calls >= 0 && s.fake.calls(FakeIommufd::Op::kWriteResponses) == s.write_fail_calls) return;
      s.write_fail_calls = s.fake.calls(FakeIommufd::Op::kWriteResponses);
      op = FakeIommufd::Op::kWriteResponses;
      break;
    }
    case 3:
      s.fake.FailInvalidationAt(in.Get<uint8_t>() % 8, (b & 0x80) ? ENOMEM : EINVAL);
      return;
    case 4:
      op = FakeIommufd::Op::kMapFixed;
      break;
    case 5:
      op = FakeIommufd::Op::kUnmap;
      break;
    case 6:
      op = FakeIommufd::Op::kAllocIoas;
      break;
    default: {
      FuzzDevice& d = PickDevice(s, in);
      if (b & 0x40) d.pasid_attach = !d.pasid_attach;
      else d.fail_attach = !d.fail_attach;
      return;
    }
  }
  TRACE("  host failure on op %d\n", static_cast<int>(op));
  s.fake.FailNext(op, (b & 0x80) ? absl::ResourceExhaustedError("injected host failure (errno 12)") : Injected());
  ++s.injected[op];
}

bool GuestReset(State& s) {
  if (++s.resets > kMaxResets) return true;
  s.env->iommu->Reset();
  // The guest boots again: a fresh driver (new root table and queue) over the same RAM.
  s.env->driver = std::make_unique<LinuxVtdDriver>(*s.env->iommu, *s.env->memory, *s.env->alloc);
  if (!s.env->driver->Init(s.scalable).ok()) return false;
  if (s.prq && !s.env->driver->EnablePageRequests(0xfee00000, 0x40).ok()) return false;
  return true;
}

void RegisterInvalidation(State& s, FuzzInput& in) {
  VtdIommu& iommu = *s.env->iommu;
  const uint8_t b = in.Get<uint8_t>();
  if (b & 1) {
    // CCMD: ICC | CIRG | DID | SID | FM.
    const uint64_t v = (1ull << 63) | (uint64_t{(b >> 1) & 3u} << 61) | (uint64_t{PickRid(s, in)} << 16) |
                       in.Get<uint8_t>() % 8;
    iommu.WriteRegister(vtd::kCcmdReg, v);
  } else {
    const VtdProfile& p = iommu.profile();
    iommu.WriteRegister(p.iva_offset(), in.Get<uint64_t>());
    iommu.WriteRegister(p.iotlb_offset(), (1ull << 63) | (uint64_t{(b >> 1) & 3u} << 60) |
                                              (uint64_t{in.Get<uint8_t>() % 8u} << 32));
  }
}

// Where a Linux guest is after boot with the devices in use: a context entry per device (scalable:
// PASIDs and page requests on, RID_PASID entry first-stage, second-stage or pass-through as `opts`
// says; legacy: second-stage), every table root at pool page 0, translation on, caches flushed.
void Boot(State& s, uint8_t opts) {
  VtdTableBuilder& t = s.env->driver->tables();
  for (size_t i = 0; i < s.devices.size(); ++i) {
    const uint16_t rid = s.devices[i]->rid();
    const uint16_t did = static_cast<uint16_t>(1 + i);
    if (s.scalable) {
      t.SetScalableContext(rid, {.dte = true, .pasid_enable = true, .pre = true, .pdts = 1}).IgnoreError();
      static constexpr uint8_t kPgtts[4] = {vtd::kPgttFirstStage, vtd::kPgttFirstStage, vtd::kPgttSecondStage,
                                            vtd::kPgttPassThrough};
      PasidEntrySpec e{.pgtt = kPgtts[((opts >> 5) + i) & 3], .did = did, .flptptr = kPool, .slptptr = kPool};
      t.SetPasidEntry(rid, 0, e).IgnoreError();
    } else {
      t.SetLegacyContext(rid, {.tt = 0, .aw = 2, .did = did, .slptptr = kPool}).IgnoreError();
    }
  }
  s.env->driver->EnableTranslation().IgnoreError();
  std::vector<InvDescriptor> inv = {CcGlobal(), IotlbGlobal()};
  if (s.scalable) inv.push_back(PasidCacheInv(3, 0, 0));
  s.env->driver->Invalidate(inv, QiErrors::kLeave).IgnoreError();
}

// Host requests not yet consumed are taken back so they cannot hit the backend's teardown.
void DrainInjectedFailures(State& s) {
  for (const auto& [op, n] : s.injected) {
    for (int i = 0; i < n; ++i) {
      switch (op) {
        case FakeIommufd::Op::kAllocHwpt:
          (void)s.fake.AllocHwpt(HwptAllocRequest{});  // dev 0: ENOENT, nothing created
          break;
        case FakeIommufd::Op::kInvalidate:
          (void)s.fake.InvalidateVtdS1(0, {});
          break;
        case FakeIommufd::Op::kWriteResponses:
          (void)s.fake.WriteResponses(-1, {});
          break;
        case FakeIommufd::Op::kMapFixed:
          (void)s.fake.MapFixed(0, 0, nullptr, 0, false);
          break;
        case FakeIommufd::Op::kUnmap:
          (void)s.fake.Unmap(0, 0, 1);
          break;
        case FakeIommufd::Op::kAllocIoas: {
          absl::StatusOr<uint32_t> id = s.fake.AllocIoas();
          if (id.ok()) (void)s.fake.Destroy(*id);
          break;
        }
        default:
          break;
      }
    }
  }
  s.injected.clear();
  s.inv_checked = s.fake.invalidations().size();
}

}  // namespace

// The backend logs (ABSL_RAW_LOG WARNING) every guest value and host failure it refuses; at
// fuzzing rates that is only noise and write(2) calls. Errors and worse still print.
static bool QuietRawLog(absl::LogSeverity severity, const char*, int, char**, int*) {
  return severity >= absl::LogSeverity::kError;
}

// libFuzzer reads its flags after this hook returns. Unless the command line says otherwise, start
// with inputs of any length up to 1 KiB (-len_control=0): an input is a sequence of operations and
// the interesting states (a context, a PASID entry, an invalidation, a fault, a response) need a
// few dozen bytes, which libFuzzer's default slow length growth reaches only after minutes at this
// target's execution rate (ctest gives each fuzzer IONEST_FUZZ_SECONDS without a corpus).
extern "C" int LLVMFuzzerInitialize(int* argc, char*** argv) {
  tracing = std::getenv("IONEST_FUZZ_TRACE") != nullptr;
  if (!tracing) absl::raw_logging_internal::RegisterLogFilterAndPrefixHook(QuietRawLog);
  bool len_flags = false;
  for (int i = 1; i < *argc; ++i) {
    const std::string_view a = (*argv)[i];
    if (a.starts_with("-len_control=") || a.starts_with("-max_len=")) len_flags = true;
  }
  if (!len_flags) {
    static std::vector<char*> args;
    args.assign(*argv, *argv + *argc);
    args.push_back(const_cast<char*>("-len_control=0"));
    args.push_back(const_cast<char*>("-max_len=1024"));
    args.push_back(nullptr);
    *argc = static_cast<int>(args.size() - 1);
    *argv = args.data();
  }
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  FuzzInput in(data, size);
  const uint8_t flags = in.Get<uint8_t>();
  const uint8_t opts = in.Get<uint8_t>();
  State s;
  // Mode: 0 legacy-only profile, 1 scalable-capable profile with legacy tables, 2-3 scalable.
  const uint8_t mode = flags & 3;
  s.scalable = mode >= 2;
  // Small model caches: the per-input setup cost is mostly allocating and clearing them.
  std::string profile = "iotlb-entries=64,context-cache-entries=64,pasid-cache-entries=64,irte-cache-entries=64";
  if (mode == 0) profile += ",sm=off";
  if (mode != 0 && (flags & 0x80)) profile += ",aw=57";
  auto env = VtdTestEnv::Create(profile, kRam);
  Check(env.ok());
  s.env = std::move(*env);
  Check(s.env->driver->Init(s.scalable).ok());
  s.prq = s.scalable && (flags & 4);
  if (s.prq) Check(s.env->driver->EnablePageRequests(0xfee00000, 0x40).ok());

  HostIommuInfo host;
  host.type = 1;  // IOMMU_HW_INFO_TYPE_INTEL_VTD
  host.vtd_ecap = uint64_t{1} << 26;
  s.host_fs5lp = opts & 1;
  if (s.host_fs5lp) host.vtd_cap = uint64_t{1} << 60;
  const int ndev = (flags & 8) ? 2 : 1;
  for (int i = 0; i < ndev; ++i) {
    s.fake.SetHwInfo(kDevIds[i], host);
    s.devices.push_back(
        std::make_unique<FuzzDevice>(s.fake, s.attach_refs, kRids[i], kDevIds[i], (flags >> (4 + i)) & 1));
  }
  Check(s.fake.AllocIoas().value_or(0) == kIoas);
  s.fake.MarkAttached(kIoas, true);
  s.attach_refs[kIoas] = ndev;

  VtdNestingOptions o;
  o.ram = {{0, RamHost(s), kRam}};
  o.ioas_id = kIoas;
  o.reader_thread = false;
  o.fault_queue = !(opts & 2);
  o.max_outstanding_groups = 1 + ((opts >> 2) & 7);
  o.max_pasid_bindings = 1 + ((opts >> 5) & 3);
  o.shadow_limits.max_mappings = 64;
  o.shadow_limits.max_table_reads_per_sync = 8192;
  s.cap = o.max_outstanding_groups;
  std::vector<NestedDevice*> devs;
  for (auto& d : s.devices) devs.push_back(d.get());
  auto backend = VtdNestingBackend::Create(s.fake, *s.env->iommu, *s.env->memory, host, devs, o);
  Check(backend.ok());
  s.backend = std::move(*backend);
  s.fault_id = s.backend->fault_queue_id();
  if (flags & 0x40) Boot(s, opts);
  CheckInvariants(s);

  for (int ops = 0; ops < kMaxOps && !in.empty(); ++ops) {
    const uint8_t op = in.Get<uint8_t>();
    TRACE("op %d: %u (outstanding backend %zu host %zu)\n", ops, op % 16, s.backend->outstanding_groups(),
          s.fault_id ? s.fake.outstanding(*s.fault_id) : 0);
    switch (op % 16) {
      case 0:
      case 1:
        WriteContext(s, in);
        break;
      case 2:
        WritePasidDirEntry(s, in);
        break;
      case 3:
      case 4:
        WritePasidEntry(s, in);
        break;
      case 5:
        MapPath(s, in);
        break;
      case 6:
        WriteTableWord(s, in);
        break;
      case 7:
      case 8:
        SubmitDescriptors(s, in);
        break;
      case 9:
        if (op & 0x10) s.env->driver->EnableTranslation().IgnoreError();
        else s.env->driver->DisableTranslation().IgnoreError();
        break;
      case 10:
        InjectHostFault(s, in);
        break;
      case 11: {
        const size_t n = s.backend->PumpFaults();
        TRACE("  pumped %zu\n", n);
        break;
      }
      case 12:
        DrainPageRequests(s, in);
        break;
      case 13:
        InjectHostFailure(s, in);
        break;
      case 14:
        RegisterInvalidation(s, in);
        break;
      default:
        if (op & 0x10) {
          if (!GuestReset(s)) ops = kMaxOps;  // the table pool is exhausted: stop here
        } else {
          s.backend->AnswerAllOutstanding();
        }
        break;
    }
    CheckInvariants(s);
  }

  // Teardown: answer everything, then the backend leaves nothing but the VM IOAS behind.
  for (auto& d : s.devices) d->fail_attach = false;
  DrainInjectedFailures(s);
  s.backend->AnswerAllOutstanding();
  Check(s.backend->outstanding_groups() == 0);
  if (s.fault_id) Check(s.fake.outstanding(*s.fault_id) == 0);
  s.backend.reset();
  Check(s.fake.live_objects() == 1);
  for (auto& d : s.devices) Check(d->attached == kIoas);
  if (s.fault_id) Check(!s.fake.fault_queue_exists(*s.fault_id));
  return 0;
}
