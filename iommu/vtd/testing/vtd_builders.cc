#include "iommu/vtd/testing/vtd_builders.h"

#include "absl/strings/str_format.h"
#include "iommu/vtd/registers.h"

namespace ionest::vtd::testing {

constexpr uint64_t kPageMask = ~uint64_t{0xfff};

std::array<uint64_t, 2> EncodeLegacyContext(const LegacyContextSpec& s) {
  return {uint64_t{s.present} | (uint64_t{s.fpd} << 1) | (uint64_t{s.tt & 3u} << 2) | (s.slptptr & kPageMask),
          uint64_t{s.aw & 7u} | (uint64_t{s.did} << 8)};
}

std::array<uint64_t, 4> EncodeScalableContext(const ScalableContextSpec& s, uint64_t pasid_dir) {
  return {uint64_t{s.present} | (uint64_t{s.fpd} << 1) | (uint64_t{s.dte} << 2) | (uint64_t{s.pasid_enable} << 3) |
              (uint64_t{s.pre} << 4) | (uint64_t{s.pdts & 7u} << 9) | (pasid_dir & kPageMask),
          uint64_t{s.rid_pasid & 0xfffffu}, 0, 0};
}

std::array<uint64_t, 8> EncodePasidEntry(const PasidEntrySpec& s) {
  std::array<uint64_t, 8> e{};
  e[0] = uint64_t{s.present} | (uint64_t{s.fpd} << 1) | (uint64_t{s.aw & 7u} << 2) | (uint64_t{s.pgtt & 7u} << 6) |
         (uint64_t{s.ssade} << 9) | (s.slptptr & kPageMask);
  e[1] = s.did;
  e[2] = uint64_t{s.sre} | (uint64_t{s.flpm & 3u} << 2) | (uint64_t{s.wpe} << 4) | (s.flptptr & kPageMask);
  return e;
}

VtdTableBuilder::VtdTableBuilder(PhysMemory& memory, PageAllocator& alloc, bool scalable)
    : memory_(memory), alloc_(alloc), scalable_(scalable) {}

absl::Status VtdTableBuilder::Init() {
  absl::StatusOr<uint64_t> p = alloc_.AllocPage();
  if (!p.ok()) return p.status();
  root_ = *p;
  return absl::OkStatus();
}

absl::StatusOr<uint64_t> VtdTableBuilder::ContextTable(uint16_t rid) {
  const uint64_t re = root_ + (rid >> 8) * 16ull + ((scalable_ && (rid & 0xff) >= 128) ? 8 : 0);
  absl::StatusOr<uint64_t> cur = memory_.ReadObj<uint64_t>(re);
  if (!cur.ok()) return cur.status();
  if (*cur & 1) return *cur & kPageMask;
  absl::StatusOr<uint64_t> table = alloc_.AllocPage();
  if (!table.ok()) return table.status();
  if (absl::Status s = memory_.WriteObj<uint64_t>(re, *table | 1); !s.ok()) return s;
  return *table;
}

absl::StatusOr<uint64_t> VtdTableBuilder::ContextEntryAddress(uint16_t rid) {
  absl::StatusOr<uint64_t> t = ContextTable(rid);
  if (!t.ok()) return t.status();
  return scalable_ ? *t + (rid & 0x7f) * 32ull : *t + (rid & 0xff) * 16ull;
}

absl::Status VtdTableBuilder::SetLegacyContext(uint16_t rid, const LegacyContextSpec& s) {
  if (scalable_) return absl::FailedPreconditionError("scalable-mode table");
  absl::StatusOr<uint64_t> a = ContextEntryAddress(rid);
  if (!a.ok()) return a.status();
  return memory_.WriteObj(*a, EncodeLegacyContext(s));
}

absl::Status VtdTableBuilder::SetScalableContext(uint16_t rid, const ScalableContextSpec& s) {
  if (!scalable_) return absl::FailedPreconditionError("legacy-mode table");
  absl::StatusOr<uint64_t> a = ContextEntryAddress(rid);
  if (!a.ok()) return a.status();
  absl::StatusOr<std::array<uint64_t, 4>> cur = memory_.ReadObj<std::array<uint64_t, 4>>(*a);
  if (!cur.ok()) return cur.status();
  uint64_t dir = (*cur)[0] & kPageMask;
  if (dir == 0) {
    // A directory for 2^(pdts+7) entries of 8 bytes: up to 128 KiB, allocated contiguously.
    uint64_t pages = std::max<uint64_t>(1, ((uint64_t{1} << (s.pdts + 7)) * 8) / 4096);
    for (uint64_t i = 0; i < pages; ++i) {
      absl::StatusOr<uint64_t> p = alloc_.AllocPage();
      if (!p.ok()) return p.status();
      if (i == 0) dir = *p;
      if (*p != dir + i * 4096) return absl::InternalError("PASID directory pages not contiguous");
    }
  }
  return memory_.WriteObj(*a, EncodeScalableContext(s, dir));
}

absl::Status VtdTableBuilder::ClearContext(uint16_t rid) {
  absl::StatusOr<uint64_t> a = ContextEntryAddress(rid);
  if (!a.ok()) return a.status();
  // Keep the PASID directory pointer so a later SetScalableContext reuses it; clear P.
  absl::StatusOr<uint64_t> lo = memory_.ReadObj<uint64_t>(*a);
  if (!lo.ok()) return lo.status();
  return memory_.WriteObj<uint64_t>(*a, *lo & ~uint64_t{1});
}

absl::StatusOr<uint64_t> VtdTableBuilder::PasidDirectory(uint16_t rid) const {
  const uint64_t re = root_ + (rid >> 8) * 16ull + (((rid & 0xff) >= 128) ? 8 : 0);
  absl::StatusOr<uint64_t> root = memory_.ReadObj<uint64_t>(re);
  if (!root.ok()) return root.status();
  if (!(*root & 1)) return absl::NotFoundError("no context table");
  absl::StatusOr<uint64_t> ctx = memory_.ReadObj<uint64_t>((*root & kPageMask) + (rid & 0x7f) * 32ull);
  if (!ctx.ok()) return ctx.status();
  if (!(*ctx & kPageMask)) return absl::NotFoundError("no PASID directory");
  return *ctx & kPageMask;
}

absl::StatusOr<uint64_t> VtdTableBuilder::PasidEntryAddress(uint16_t rid, uint32_t pasid) {
  absl::StatusOr<uint64_t> dir = PasidDirectory(rid);
  if (!dir.ok()) return dir.status();
  const uint64_t de_addr = *dir + (pasid >> 6) * 8ull;
  absl::StatusOr<uint64_t> de = memory_.ReadObj<uint64_t>(de_addr);
  if (!de.ok()) return de.status();
  if (!(*de & 1)) {
    absl::StatusOr<uint64_t> table = alloc_.AllocPage();
    if (!table.ok()) return table.status();
    if (absl::Status s = memory_.WriteObj<uint64_t>(de_addr, *table | 1); !s.ok()) return s;
    *de = *table | 1;
  }
  return (*de & kPageMask) + (pasid & 0x3f) * 64ull;
}

absl::Status VtdTableBuilder::SetPasidEntry(uint16_t rid, uint32_t pasid, const PasidEntrySpec& s) {
  absl::StatusOr<uint64_t> a = PasidEntryAddress(rid, pasid);
  if (!a.ok()) return a.status();
  return memory_.WriteObj(*a, EncodePasidEntry(s));
}

absl::Status VtdTableBuilder::ClearPasidEntry(uint16_t rid, uint32_t pasid) {
  absl::StatusOr<uint64_t> a = PasidEntryAddress(rid, pasid);
  if (!a.ok()) return a.status();
  return memory_.WriteObj(*a, std::array<uint64_t, 8>{});
}

std::array<uint64_t, 2> EncodeIrte(const IrteSpec& s) {
  uint64_t lo = uint64_t{s.present} | (uint64_t{s.fpd} << 1) | (uint64_t{s.dest_logical} << 2) |
                (uint64_t{s.redirection_hint} << 3) | (uint64_t{s.level} << 4) |
                (uint64_t{s.delivery_mode & 7u} << 5) | (uint64_t{s.vector} << 16);
  lo |= s.x2apic ? (uint64_t{s.dest} << 32) : (uint64_t{s.dest & 0xffu} << 40);
  uint64_t hi = s.sid | (uint64_t{s.sq & 3u} << 16) | (uint64_t{s.svt & 3u} << 18);
  return {lo, hi};
}

MsiMessage RemappableMsi(uint32_t index, uint16_t requester_id) {
  MsiMessage m;
  m.address = 0xfee00000ull | (uint64_t{index & 0x7fff} << 5) | (1u << 4) | (uint64_t{(index >> 15) & 1} << 2);
  m.data = 0;
  m.requester_id = requester_id;
  return m;
}

// ----- Descriptors -----

static InvDescriptor D(uint64_t q0, uint64_t q1 = 0) {
  InvDescriptor d;
  d.qw[0] = q0;
  d.qw[1] = q1;
  return d;
}

InvDescriptor CcGlobal() { return D(kDescContextCache | (1u << 4)); }
InvDescriptor CcDomain(uint16_t did) { return D(kDescContextCache | (2u << 4) | (uint64_t{did} << 16)); }
InvDescriptor CcDevice(uint16_t did, uint16_t sid, uint8_t fm) {
  return D(kDescContextCache | (3u << 4) | (uint64_t{did} << 16) | (uint64_t{sid} << 32) | (uint64_t{fm & 3u} << 48));
}
InvDescriptor IotlbGlobal() { return D(kDescIotlb | (1u << 4)); }
InvDescriptor IotlbDomain(uint16_t did) { return D(kDescIotlb | (2u << 4) | (uint64_t{did} << 16)); }
InvDescriptor IotlbPage(uint16_t did, uint64_t addr, uint8_t am, bool ih) {
  return D(kDescIotlb | (3u << 4) | (uint64_t{did} << 16), (addr & kPageMask) | (uint64_t{ih} << 6) | (am & 0x3f));
}
InvDescriptor DevTlb(uint16_t sid, uint64_t addr, bool size_bit) {
  return D(kDescDeviceTlb | (uint64_t{sid} << 32), (addr & kPageMask) | uint64_t{size_bit});
}
InvDescriptor IecGlobal() { return D(kDescIec); }
InvDescriptor IecIndex(uint16_t index, uint8_t im) {
  return D(kDescIec | (1u << 4) | (uint64_t{im & 0x1fu} << 27) | (uint64_t{index} << 32));
}
InvDescriptor Wait(uint64_t status_addr, uint32_t data, bool sw, bool interrupt) {
  return D(kDescWait | (uint64_t{interrupt} << 4) | (uint64_t{sw} << 5) | (uint64_t{data} << 32), status_addr & ~3ull);
}
InvDescriptor PIotlbPasid(uint16_t did, uint32_t pasid) {
  return D(kDescPasidIotlb | (2u << 4) | (uint64_t{did} << 16) | (uint64_t{pasid & 0xfffff} << 32));
}
InvDescriptor PIotlbPage(uint16_t did, uint32_t pasid, uint64_t addr, uint8_t am, bool ih) {
  return D(kDescPasidIotlb | (3u << 4) | (uint64_t{did} << 16) | (uint64_t{pasid & 0xfffff} << 32),
           (addr & kPageMask) | (uint64_t{ih} << 6) | (am & 0x3f));
}
InvDescriptor PasidCacheInv(uint8_t g, uint16_t did, uint32_t pasid) {
  return D(kDescPasidCache | (uint64_t{g & 3u} << 4) | (uint64_t{did} << 16) | (uint64_t{pasid & 0xfffff} << 32));
}
InvDescriptor PDevTlb(uint16_t sid, uint32_t pasid, uint64_t addr, bool size_bit) {
  return D(kDescPasidDeviceTlb | (uint64_t{sid} << 16) | (uint64_t{pasid & 0xfffff} << 32),
           (addr & kPageMask) | (uint64_t{size_bit} << 11));
}
InvDescriptor PageGroupResponse(uint16_t rid, std::optional<uint32_t> pasid, uint8_t code, uint16_t index,
                                bool last) {
  return D(kDescPageGroupResponse | (uint64_t{pasid.has_value()} << 4) | (uint64_t{code & 0xfu} << 12) |
               (uint64_t{rid} << 16) | (uint64_t{pasid.value_or(0) & 0xfffff} << 32),
           (uint64_t{last} << 2) | (uint64_t{index & 0x1ffu} << 3));
}

// ----- Recorders -----

}  // namespace ionest::vtd::testing
