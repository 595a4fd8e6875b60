// libFuzzer target: a hostile driver and hostile endpoints against the virtio-iommu device behind
// its virtio-pci transport. The input picks the device options, then a stream of operations:
// requests with fuzzed fields or raw bodies, raw descriptor chains, ring corruption, hostile queue
// layouts, feature sets, resets, config writes, event buffers, and endpoint DMA translations.
//
// Invariants, beyond "no crash / no sanitizer report / no hang":
//  - a reference model (written from virtio 1.2 §5.13, independently of the device) decides for
//    every well-formed request whether it must succeed; the device's S_OK must match exactly, and
//    domain/mapping counts must match the model after every operation;
//  - every translation agrees with the model: each region maps where the model's mapping says
//    with the rights asked for, and a fault stops exactly where the model denies access;
//  - used lengths are 0 or a full tail; statuses are spec codes; fault events are well-formed;
//    pending faults stay within their bound.
// After raw chains or ring corruption the model no longer knows the device state, so only the
// structural invariants are checked until the next device reset resynchronises it.
//
// With a passthrough endpoint (input bit, endpoint 0x13): a ViommuForwarder over the iommufd test
// double is its VirtioIommuHost (issue 12 item 5). The model then also refuses MAPs the host cannot
// take (not guest RAM, MMIO, no right) in domains holding 0x13, and after every operation the host
// must mirror the model exactly: 0x13 on the identity IOAS, detached, or its domain's IOAS holding
// exactly the domain's mappings, and no IOAS beyond those live. Injected host ENOMEMs must come back
// as S_NOMEM with the device's state unchanged.
#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>
#include <optional>
#include <vector>

#include "iommu/iommufd/iommufd_kernel.h"
#include "iommu/iommufd/testing/fake_host_device.h"
#include "iommu/iommufd/testing/fake_iommufd.h"
#include "iommu/iommufd/viommu_forwarding.h"
#include "iommu/virtio/testing/viommu_test_bench.h"
#include "iommu/virtio/virtio_iommu.h"

namespace {

using namespace ionest;
using V = VirtioIommu;
using viommu_testing::ViommuBench;

constexpr uint64_t kDmaArea = 0x40000;
const bool kTrace = std::getenv("VIOMMU_FUZZ_TRACE") != nullptr;  // replaying a crash: print each op  // endpoint DMA targets start here, above the bench's rings

#define FUZZ_CHECK(cond)                                                          \
  do {                                                                            \
    if (!(cond)) {                                                                \
      std::fprintf(stderr, "invariant failed: %s (%s:%d)\n", #cond, __FILE__, __LINE__); \
      std::abort();                                                               \
    }                                                                             \
  } while (0)

class Input {
 public:
  Input(const uint8_t* d, size_t n) : d_(d), n_(n) {}
  template <typename T>
  T Get() {
    T v{};
    const size_t k = std::min(sizeof(T), n_ - pos_);
    std::memcpy(&v, d_ + pos_, k);
    pos_ += k;
    return v;
  }
  bool empty() const { return pos_ >= n_; }

 private:
  const uint8_t* d_;
  size_t n_;
  size_t pos_ = 0;
};

// ---- Reference model (§5.13) ----
struct Model {
  struct Mapping {
    uint64_t end, phys;
    uint32_t flags;
  };
  struct Domain {
    bool bypass = false;
    int endpoints = 0;
    std::map<uint64_t, Mapping> maps;
  };
  const V::Options& o;
  bool known = true;
  bool bypass;
  uint64_t features = 0;
  std::map<uint32_t, Domain> domains;
  std::map<uint32_t, uint32_t> attached;
  size_t mappings = 0;
  std::optional<uint32_t> host_ep;  // the passthrough endpoint, if any
  uint64_t ram = 0;                 // guest RAM [0, ram): all the host may map

  explicit Model(const V::Options& opts) : o(opts), bypass(opts.boot_bypass) {}
  uint64_t granule() const { return o.page_size_mask & -o.page_size_mask; }
  bool IsEp(uint32_t ep) const {
    for (auto& r : o.endpoints)
      if (ep >= r.first && ep <= r.last) return true;
    return false;
  }
  bool InDomains(uint32_t d) const { return d >= o.domain_start && d <= o.domain_end; }
  // What the host IOAS can hold: guest RAM, readable and/or writeable, not MMIO.
  bool HostOk(uint64_t vs, uint64_t ve, uint64_t ps, uint32_t flags) const {
    const uint64_t len = ve - vs + 1;
    return !(flags & V::kMapFMmio) && (flags & (V::kMapFRead | V::kMapFWrite)) && len != 0 && ps < ram &&
           len <= ram - ps;
  }
  bool HostIn(uint32_t dom) const {
    if (!host_ep) return false;
    auto a = attached.find(*host_ep);
    return a != attached.end() && a->second == dom;
  }
  void DeviceReset() {
    domains.clear();
    attached.clear();
    mappings = 0;
    features = 0;
    known = true;
  }
  void Detach(uint32_t ep) {
    const uint32_t d = attached[ep];
    attached.erase(ep);
    Domain& dom = domains[d];
    if (--dom.endpoints == 0) {
      mappings -= dom.maps.size();
      domains.erase(d);
    }
  }
  // Decides a request (readable body) per §5.13.6; applies it when it must succeed.
  bool Apply(const std::vector<uint8_t>& r) {
    auto u32 = [&](size_t off) { uint32_t v; std::memcpy(&v, r.data() + off, 4); return v; };
    auto u64 = [&](size_t off) { uint64_t v; std::memcpy(&v, r.data() + off, 8); return v; };
    switch (r[0]) {
      case V::kTAttach: {
        const uint32_t dom = u32(4), ep = u32(8), flags = u32(12);
        const uint32_t known_flags = (features & V::kFBypassConfig) ? V::kAttachFBypass : 0;
        if (u32(16) || (flags & ~known_flags) || !IsEp(ep) || !InDomains(dom)) return false;
        const bool byp = flags & V::kAttachFBypass;
        auto it = domains.find(dom);
        if (it != domains.end() && it->second.bypass != byp) return false;
        if (attached.count(ep) && attached[ep] == dom) return true;
        if (host_ep && ep == *host_ep && it != domains.end() && !byp) {
          for (auto& [vs, m] : it->second.maps)  // the host IOAS replays them
            if (!HostOk(vs, m.end, m.phys, m.flags)) return false;
        }
        if (it == domains.end()) {
          const bool frees = attached.count(ep) && domains[attached[ep]].endpoints == 1;
          if (domains.size() - (frees ? 1 : 0) >= o.max_domains) return false;  // NOMEM
        }
        if (attached.count(ep)) Detach(ep);
        Domain& d = domains[dom];
        d.bypass = byp;
        ++d.endpoints;
        attached[ep] = dom;
        return true;
      }
      case V::kTDetach: {
        const uint32_t dom = u32(4), ep = u32(8);
        if (!IsEp(ep) || !InDomains(dom) || !attached.count(ep) || attached[ep] != dom) return false;
        Detach(ep);
        return true;
      }
      case V::kTMap: {
        const uint32_t dom = u32(4), flags = u32(32);
        const uint64_t vs = u64(8), ve = u64(16), ps = u64(24);
        const uint32_t known_flags = V::kMapFRead | V::kMapFWrite | ((features & V::kFMmio) ? V::kMapFMmio : 0);
        if (!(features & V::kFMapUnmap) || (flags & ~known_flags) || !InDomains(dom) || ve < vs) return false;
        const uint64_t g = granule();
        if (vs % g || ps % g || (ve - vs + 1) % g) return false;
        if (vs < o.input_start || ve > o.input_end || ps + (ve - vs) < ps) return false;
        for (auto& res : o.reserved)
          if (vs <= res.end && res.start <= ve) return false;
        auto it = domains.find(dom);
        if (it == domains.end() || it->second.bypass) return false;
        for (auto& [s, m] : it->second.maps)
          if (s <= ve && vs <= m.end) return false;
        if (mappings >= o.max_mappings) return false;
        if (HostIn(dom) && !HostOk(vs, ve, ps, flags)) return false;
        it->second.maps[vs] = {ve, ps, flags};
        ++mappings;
        return true;
      }
      case V::kTUnmap: {
        const uint32_t dom = u32(4);
        const uint64_t vs = u64(8), ve = u64(16);
        if (!(features & V::kFMapUnmap) || u32(24) || !InDomains(dom) || ve < vs) return false;
        if (vs < o.input_start || ve > o.input_end) return false;
        auto it = domains.find(dom);
        if (it == domains.end() || it->second.bypass) return false;
        auto& maps = it->second.maps;
        for (auto& [s, m] : maps)  // a mapping partly inside would be split
          if (s <= ve && vs <= m.end && (s < vs || m.end > ve)) return false;
        for (auto m = maps.begin(); m != maps.end();) {
          if (m->first >= vs && m->second.end <= ve) {
            m = maps.erase(m);
            --mappings;
          } else {
            ++m;
          }
        }
        return true;
      }
      case V::kTProbe:
        return (features & V::kFProbe) && IsEp(u32(4));
    }
    return false;
  }
  // Where `addr` of endpoint `ep` goes for `access`, nullopt if blocked.
  std::optional<uint64_t> Lookup(uint32_t ep, uint64_t addr, uint32_t access) const {
    if (!IsEp(ep)) return std::nullopt;
    auto a = attached.find(ep);
    if (a == attached.end()) return bypass ? std::optional<uint64_t>(addr) : std::nullopt;
    const Domain& d = domains.at(a->second);
    if (d.bypass) return addr;
    auto m = d.maps.upper_bound(addr);
    if (m == d.maps.begin() || (--m)->second.end < addr) return std::nullopt;
    if ((access & (kDmaRead | kDmaExec)) && !(m->second.flags & V::kMapFRead)) return std::nullopt;
    if ((access & kDmaWrite) && !(m->second.flags & V::kMapFWrite)) return std::nullopt;
    return m->second.phys + (addr - m->first);
  }
};

struct Fuzz {
  Input in;
  V::Options opts;
  std::unique_ptr<ViommuBench> b;
  std::unique_ptr<Model> model;
  bool running = false;  // the transport processes the bench's rings
  bool trusted = true;   // ring memory holds only what the bench and the device wrote
  // Passthrough endpoint (0x13): the host side, destroyed before the bench.
  static constexpr uint32_t kHostEp = 0x13;
  std::unique_ptr<iommufd_testing::FakeIommufd> host;
  std::unique_ptr<iommufd_testing::FakeHostDevice> host_dev;
  std::unique_ptr<iommufd::ViommuForwarder> fwd;
  uint32_t identity = 0;
  int host_failures_pending = 0;  // injected ENOMEMs not yet seen as S_NOMEM

  void SetUpHost() {
    if (!b->iommu->IsEndpoint(kHostEp)) return;  // Options::endpoints may leave it out
    host = std::make_unique<iommufd_testing::FakeIommufd>();
    host_dev = std::make_unique<iommufd_testing::FakeHostDevice>(*host, kHostEp);
    const MemoryRegion& r = b->mem->regions()[0];
    identity = *host->AllocIoas();
    FUZZ_CHECK(host->MapFixed(identity, r.gpa, r.host, r.size, true).ok());
    FUZZ_CHECK(host_dev->Attach(identity).ok());
    auto f = iommufd::ViommuForwarder::Create(*host, *b->iommu, {{r.gpa, r.host, r.size}}, identity,
                                              {{kHostEp, host_dev.get()}});
    FUZZ_CHECK(f.ok());
    fwd = std::move(*f);
    model->host_ep = kHostEp;
    model->ram = r.size;
  }

  // The host mirrors the device: see the file comment.
  void CheckHost() {
    if (!fwd) return;
    const iommufd::ViommuForwardingStats st = fwd->stats();
    FUZZ_CHECK(st.spaces <= 1 && host->live_objects() == 1 + st.spaces);
    const std::vector<iommufd_testing::FakeIommufd::Mapping> maps = host->mappings();
    size_t in_spaces = 0;
    for (const auto& m : maps) in_spaces += m.ioas_id != identity;
    FUZZ_CHECK(st.mapped_areas == in_spaces);
    if (st.spaces == 1) FUZZ_CHECK(host_dev->attached != identity && host_dev->attached != 0);
    if (!model->known) return;
    auto a = model->attached.find(kHostEp);
    if (a == model->attached.end()) {
      FUZZ_CHECK(host_dev->attached == (model->bypass ? identity : 0u) && st.spaces == 0);
      return;
    }
    const Model::Domain& d = model->domains.at(a->second);
    if (d.bypass) {
      FUZZ_CHECK(host_dev->attached == identity && st.spaces == 0);
      return;
    }
    const std::optional<uint32_t> ioas = fwd->ioas_of(a->second);
    FUZZ_CHECK(ioas && host_dev->attached == *ioas);
    std::vector<iommufd_testing::FakeIommufd::Mapping> want;
    uint8_t* base = static_cast<uint8_t*>(b->mem->regions()[0].host);
    for (const auto& [vs, m] : d.maps)
      want.push_back({*ioas, vs, m.end - vs + 1, base + m.phys, (m.flags & V::kMapFWrite) != 0,
                      (m.flags & V::kMapFRead) != 0});
    std::vector<iommufd_testing::FakeIommufd::Mapping> got;
    for (const auto& m : maps)
      if (m.ioas_id == *ioas) got.push_back(m);
    FUZZ_CHECK(got == want);
  }

  void InjectHostFailure() {
    const uint8_t s = in.Get<uint8_t>();
    if (!fwd) return;
    using Op = iommufd_testing::FakeIommufd::Op;
    host->FailNext(s & 1 ? Op::kMapFixed : Op::kAllocIoas, iommufd::IommufdErrno(ENOMEM, "injected"), (s >> 1) % 3);
    ++host_failures_pending;
  }

  uint32_t Domain() {
    const uint8_t s = in.Get<uint8_t>();
    return s < 240 ? s % 4 : in.Get<uint32_t>();
  }
  uint32_t Ep() {
    const uint8_t s = in.Get<uint8_t>();
    return s < 240 ? 0x10 + s % 4 : in.Get<uint32_t>();
  }
  uint64_t Addr() {
    const uint8_t s = in.Get<uint8_t>();
    if (s < 160) return kDmaArea + (s % 8) * 0x1000ull;
    if (s < 200) return 0x200000ull * (s % 4) + (s & 1 ? 0x1000 : 0);
    if (s < 220) return 0xFEE00000ull + (s % 4) * 0x100000 - 0x1000;
    if (s < 240) return opts.input_end - (s % 4) * 0x1000ull;
    return in.Get<uint64_t>();
  }
  uint64_t End(uint64_t start) {
    const uint8_t s = in.Get<uint8_t>();
    if (s < 200) return start + (s % 8 + 1) * 0x1000ull - 1;
    if (s < 230) return start + 0x200000ull * (s % 3 + 1) - 1;
    return in.Get<uint64_t>();
  }

  void CheckCounts() {
    const V::Stats s = b->iommu->stats();
    FUZZ_CHECK(s.faults_pending <= opts.max_pending_faults);
    FUZZ_CHECK(s.domains <= opts.max_domains && s.mappings <= opts.max_mappings);
    if (!model->known) return;
    FUZZ_CHECK(s.domains == model->domains.size());
    FUZZ_CHECK(s.mappings == model->mappings);
    // Every page of the hot area for the hot endpoints agrees with the model (this also warms the
    // IOTLB, so a missed invalidation shows up right after the request that needed it).
    for (uint32_t ep = 0x10; ep < 0x14; ++ep)
      for (uint64_t p = 0; p < 8; ++p) {
        const uint64_t iova = kDmaArea + p * 0x1000 + 0x10;
        Translation t = b->iommu->ForRequester(static_cast<uint16_t>(ep)).Translate(iova, 8, kDmaRead, {});
        const std::optional<uint64_t> want = model->Lookup(ep, iova, kDmaRead);
        FUZZ_CHECK(want ? (t.regions.size() == 1 && t.regions[0].gpa == *want && !t.fault) : t.fault.has_value());
      }
  }

  // A well-formed chain (readable body, writable part) whose outcome the model predicts.
  void SendModelled(const std::vector<uint8_t>& body, uint32_t writable) {
    ViommuBench::Result r = b->Send(body, writable);
    if (!trusted) model->known = false;  // the notify may have run whatever the rings hold now
    if (!running || !trusted || (b->Status() & VirtioPciDevice::kStatusNeedsReset)) return;
    FUZZ_CHECK(r.used);
    const uint8_t type = body.empty() ? 0 : body[0];
    const bool probe_offered = opts.probe_size > 0;
    const bool parsed = !body.empty() && type >= V::kTAttach && type <= V::kTProbe &&
                        (type != V::kTProbe || probe_offered) && writable >= 4;
    FUZZ_CHECK((r.used_len != 0) == parsed);
    if (!parsed) return;
    const uint32_t tail = type == V::kTProbe && writable >= opts.probe_size + 4 ? opts.probe_size + 4 : 4;
    FUZZ_CHECK(r.used_len == (type == V::kTProbe ? std::min(writable, opts.probe_size + 4) : tail));
    const uint8_t status = *b->mem->ReadObj<uint8_t>(ViommuBench::kReqTail + r.used_len - 4);
    if (kTrace) {
      std::fprintf(stderr, "  req type %u len %zu writable %u -> status %u known %d:", type, body.size(), writable,
                   status, model->known);
      for (size_t i = 0; i < std::min<size_t>(body.size(), 36); ++i) std::fprintf(stderr, " %02x", body[i]);
      std::fprintf(stderr, "\n");
    }
    FUZZ_CHECK(status <= V::kSNoMem);
    const uint32_t need[] = {0, V::kAttachSize, V::kDetachSize, V::kMapSize, V::kUnmapSize, V::kProbeSize};
    if (!model->known) return;
    const Model before = *model;
    bool ok = body.size() >= need[type];
    if (ok) {
      std::vector<uint8_t> req(body.begin(), body.begin() + need[type]);
      ok = model->Apply(req) && (type != V::kTProbe || writable >= opts.probe_size + 4);
    }
    if (ok && status == V::kSNoMem && host_failures_pending > 0) {
      // An injected host ENOMEM: S_NOMEM and nothing changed in the device (§5.13.6.2).
      --host_failures_pending;
      model = std::make_unique<Model>(before);
      return;
    }
    if ((status == V::kSOk) != ok) {
      std::fprintf(stderr, "type %u status %u model %d\n", type, status, ok);
      FUZZ_CHECK(false);
    }
  }

  void Translate() {
    const uint32_t ep = in.Get<uint8_t>() < 250 ? 0x10 + in.Get<uint8_t>() % 5 : in.Get<uint16_t>();
    const uint64_t iova = Addr() + (in.Get<uint8_t>() & 0x3F) * 8;
    const uint8_t l = in.Get<uint8_t>();
    const uint64_t len = l < 200 ? (l % 16 + 1) * 8 : (l < 250 ? 0x1000ull * (l % 40) + 8 : in.Get<uint64_t>());
    const uint32_t access = in.Get<uint8_t>() & 1 ? kDmaWrite : kDmaRead;
    DmaSpace& space = b->iommu->ForRequester(static_cast<uint16_t>(ep));
    Translation t = space.Translate(iova, len, access, {});
    if (kTrace)
      std::fprintf(stderr, "  translate ep %#x iova %#lx len %#lx %s -> %zu regions%s\n", ep, iova, len,
                   access & kDmaWrite ? "W" : "R", t.regions.size(), t.fault ? " fault" : "");
    uint64_t at = iova, covered = 0;
    for (const DmaRegion& r : t.regions) {
      FUZZ_CHECK(r.iova == at && r.len > 0 && r.len <= len - covered);
      // A DMA write over the bench's rings and buffers (bypass lets it) is guest business, but
      // the bench can no longer trust what it reads back.
      if ((access & kDmaWrite) && r.gpa < kDmaArea && r.gpa + std::min<uint64_t>(r.len, 64) > ViommuBench::kReqRing) {
        trusted = false;
        model->known = false;
      }
      FUZZ_CHECK((r.perms & access) == access);
      if (model->known) {
        FUZZ_CHECK(model->Lookup(ep, r.iova, access) == std::optional<uint64_t>(r.gpa));
        FUZZ_CHECK(model->Lookup(ep, r.iova + r.len - 1, access) == std::optional<uint64_t>(r.gpa + r.len - 1));
      }
      covered += r.len;
      at += r.len;
    }
    FUZZ_CHECK(t.regions.size() <= 64);
    if (t.fault) {
      FUZZ_CHECK(t.fault->iova == at);
      if (model->known) FUZZ_CHECK(!model->Lookup(ep, at, access).has_value());
    } else if (covered < len) {
      FUZZ_CHECK(!t.regions.empty() && (t.regions.size() == 64 || at < iova));
    }
    // Through the copy helpers too (guest RAM bounds, page crossing).
    uint8_t buf[64];
    const size_t n = std::min<uint64_t>(len, sizeof(buf));
    if (access & kDmaWrite) {
      std::memset(buf, 0x5A, n);
      (void)space.Write(iova, buf, n);
    } else {
      (void)space.Read(iova, buf, n);
    }
  }

  void Events() {
    const uint8_t s = in.Get<uint8_t>();
    if (!running || !trusted) return;
    if (s & 1) b->PostEventBuffer(s & 2, s & 4 ? 8 + s % 40 : V::kFaultSize, (s >> 3) % ViommuBench::kEvtQueueSize);
    for (const V::Fault& f : b->TakeEvents(nullptr, s & 0x80)) {
      FUZZ_CHECK(f.reason <= V::kFaultRMapping);
      FUZZ_CHECK((f.flags & ~(V::kFaultFRead | V::kFaultFWrite | V::kFaultFAddress)) == 0);
      FUZZ_CHECK(b->iommu->IsEndpoint(f.endpoint));
    }
  }

  void Start() {
    const uint8_t s = in.Get<uint8_t>();
    uint64_t f = ViommuBench::kLinuxFeatures;
    if (s & 1) f &= ~(in.Get<uint8_t>() & 0x7Full);  // drop some device features
    if (s & 2) f = in.Get<uint64_t>();               // anything
    running = b->Start(f, !(s & 4));
    trusted = true;
    model->DeviceReset();
    if (running) model->features = b->pci->driver_features();
  }

  // Raw chain of up to 6 segments (any direction, address, length).
  void RawChain() {
    std::vector<testing::FakeDriverRing::Seg> segs;
    const unsigned n = in.Get<uint8_t>() % 7;
    for (unsigned i = 0; i < n; ++i) {
      const uint8_t s = in.Get<uint8_t>();
      uint64_t addr = ViommuBench::kReqBuf + (s & 0x3F) * 8;
      if (s & 0x40) addr = in.Get<uint64_t>();
      segs.push_back({addr, in.Get<uint16_t>() % 0x300u, (s & 0x80) != 0});
    }
    const uint8_t body = in.Get<uint8_t>();
    for (unsigned i = 0; i < body; ++i) (void)b->mem->WriteObj<uint8_t>(ViommuBench::kReqBuf + i, in.Get<uint8_t>());
    b->SendChain(segs, ViommuBench::kReqTail);
    model->known = false;
    trusted = false;  // writable segments may point anywhere, rings included
  }

  // Corrupt ring memory, or lay the queues out anywhere with any size.
  void Rings() {
    const uint8_t s = in.Get<uint8_t>();
    if (s & 1) {
      const uint64_t off = in.Get<uint16_t>() % 0xA000;
      const unsigned n = in.Get<uint8_t>() % 16;
      for (unsigned i = 0; i < n; ++i) (void)b->mem->WriteObj<uint8_t>(ViommuBench::kReqRing + off + i, in.Get<uint8_t>());
    } else {
      b->Wr(ViommuBench::kBar4 + 0x14, 0, 1);
      b->Wr(ViommuBench::kBar4 + 0x14, 3, 1);
      b->Wr(ViommuBench::kBar4 + 0x08, 0, 4);
      b->Wr(ViommuBench::kBar4 + 0x0C, static_cast<uint32_t>(ViommuBench::kLinuxFeatures), 4);
      b->Wr(ViommuBench::kBar4 + 0x08, 1, 4);
      b->Wr(ViommuBench::kBar4 + 0x0C, static_cast<uint32_t>(ViommuBench::kLinuxFeatures >> 32), 4);
      b->Wr(ViommuBench::kBar4 + 0x14, 0xB, 1);
      model->DeviceReset();
      if (b->Status() & VirtioPciDevice::kStatusFeaturesOk) model->features = b->pci->driver_features();
      for (uint16_t q = 0; q < 2; ++q) {
        b->Wr(ViommuBench::kBar4 + 0x16, q, 2);
        b->Wr(ViommuBench::kBar4 + 0x18, in.Get<uint16_t>(), 2);
        for (uint64_t reg : {0x20, 0x28, 0x30}) {
          const uint8_t a = in.Get<uint8_t>();
          b->Wr(ViommuBench::kBar4 + reg, a < 200 ? ViommuBench::kReqRing + a * 0x40ull : in.Get<uint64_t>(), 8);
        }
        b->Wr(ViommuBench::kBar4 + 0x1C, 1, 2);
      }
      b->Wr(ViommuBench::kBar4 + 0x14, 0xF, 1);
      running = false;  // the bench's rings no longer describe the device's
    }
    b->NotifyQueue(in.Get<uint8_t>() & 1);
    model->known = false;
    trusted = false;
  }

  void Request() {
    const uint8_t kind = in.Get<uint8_t>();
    std::vector<uint8_t> body;
    uint32_t writable = 4;
    switch (kind % 8) {
      case 0: {
        const uint32_t d = Domain(), ep = Ep();
        const uint8_t f = in.Get<uint8_t>();
        body = ViommuBench::AttachReq(d, ep, f < 224 ? (f % 8 == 0) : in.Get<uint32_t>(), f > 250 ? in.Get<uint32_t>() : 0);
        break;
      }
      case 1:
        body = ViommuBench::DetachReq(Domain(), Ep(), in.Get<uint8_t>() > 250 ? in.Get<uint64_t>() : 0);
        break;
      case 2:
      case 3: {
        const uint32_t d = Domain();
        const uint64_t vs = Addr(), ve = End(vs);
        const uint8_t p = in.Get<uint8_t>();
        const uint64_t ps = p < 128 ? 0x100000 + (p % 16) * 0x1000ull : (p < 240 ? vs : in.Get<uint64_t>());
        const uint8_t f = in.Get<uint8_t>();
        body = ViommuBench::MapReq(d, vs, ve, ps, f < 240 ? f % 8 : in.Get<uint32_t>());
        break;
      }
      case 4:
      case 5: {
        const uint32_t d = Domain();
        const uint64_t vs = Addr(), ve = in.Get<uint8_t>() < 128 ? End(vs) : Addr() + 0xFFF;
        body = ViommuBench::UnmapReq(d, vs, ve, in.Get<uint8_t>() > 250 ? 1 : 0);
        break;
      }
      case 6: {
        body = ViommuBench::ProbeReq(Ep());
        const uint8_t w = in.Get<uint8_t>();
        writable = w < 200 ? opts.probe_size + 4 : w * 3u;
        break;
      }
      case 7: {  // raw body: any type, any length
        body.resize(in.Get<uint8_t>() % 90);
        for (auto& x : body) x = in.Get<uint8_t>();
        writable = in.Get<uint16_t>() % 700;
        break;
      }
    }
    if ((kind & 0xF0) == 0xF0 && !body.empty()) body.resize(in.Get<uint8_t>() % (body.size() + 1));  // truncated
    SendModelled(body, writable);
  }

  void Run() {
    const uint8_t a = in.Get<uint8_t>(), c = in.Get<uint8_t>(), d = in.Get<uint8_t>();
    opts.boot_bypass = a & 1;
    if (a & 2) opts.page_size_mask = 1ull << 16;
    opts.max_domains = 1 + (c & 7);
    opts.max_mappings = 1 + (c >> 3);
    opts.max_pending_faults = 1 + (d & 7);
    const uint32_t probe_sizes[] = {512, 24, 64, 0};
    opts.probe_size = probe_sizes[(d >> 3) & 3];
    const size_t iotlbs[] = {4096, 1, 4, 64};
    opts.iotlb_entries = iotlbs[(d >> 5) & 3];
    if (a & 4) opts.endpoints = {{0x10, 0x12}};
    if (a & 8) opts.input_end = 0xFFFFFFFF;
    if (a & 16) opts.domain_start = 1, opts.domain_end = 2;
    auto made = ViommuBench::Create(opts, 2ull << 20);
    FUZZ_CHECK(made.ok());
    b = std::move(*made);
    model = std::make_unique<Model>(b->iommu->options());
    running = b->Start();
    FUZZ_CHECK(running);
    model->features = b->pci->driver_features();
    if (a & 0x40) SetUpHost();
    // Unless the input says otherwise, start from a populated state so that short inputs reach
    // translations through mappings: endpoints 0x10/0x11 in domain 1 with pages at kDmaArea,
    // 0x12 in bypass domain 2.
    if (!(a & 0x80)) {
      SendModelled(ViommuBench::AttachReq(1, 0x10), 4);
      SendModelled(ViommuBench::AttachReq(1, 0x11), 4);
      SendModelled(ViommuBench::AttachReq(2, 0x12, V::kAttachFBypass), 4);
      const uint64_t g = std::max<uint64_t>(model->granule(), 0x1000);
      for (uint64_t i = 0; i < 4; ++i)
        SendModelled(ViommuBench::MapReq(1, kDmaArea + i * 2 * g, kDmaArea + (i * 2 + 1) * g - 1, 0x100000 + i * g,
                                         static_cast<uint32_t>(i & 3) | V::kMapFRead),
                     4);
    }
    for (int ops = 0; ops < 400 && !in.empty(); ++ops) {
      // Mostly requests and translations; state-destroying operations are rare.
      const uint8_t op = in.Get<uint8_t>() % 32;
      if (kTrace) std::fprintf(stderr, "op %u (known %d running %d trusted %d)\n", op, model->known, running, trusted);
      switch (op) {
        default: Request(); break;
        case 13: InjectHostFailure(); break;
        case 14: case 15: case 16: case 17: case 18: case 19: case 20: case 21: Translate(); break;
        case 22: case 23: case 24: Events(); break;
        case 27: Start(); break;
        case 28: RawChain(); break;
        case 29: Rings(); break;
        case 25: case 26: {  // config: bypass write (any value), reads
          const uint8_t v = in.Get<uint8_t>();
          b->WriteDevCfg(V::kCfgBypass, v, 1);
          if ((model->features & V::kFBypassConfig) && v <= 1) model->bypass = v;
          FUZZ_CHECK(b->DevCfg(V::kCfgBypass, 1) == (b->iommu->bypass() ? 1u : 0u));
          FUZZ_CHECK(b->iommu->bypass() == model->bypass);
          break;
        }
        case 30: case 31:
          if (in.Get<uint8_t>() & 1) {
            b->iommu->SystemReset();
            model->bypass = opts.boot_bypass;
            model->DeviceReset();  // device state cleared; the transport still runs
          } else {
            b->Wr(ViommuBench::kBar4 + 0x14, 0, 1);  // device reset through the transport
            model->DeviceReset();
            running = false;
          }
          break;
      }
      CheckCounts();
      CheckHost();
    }
  }
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  Fuzz f{Input(data, size), {}, nullptr, nullptr};
  f.Run();
  return 0;
}
