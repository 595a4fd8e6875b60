#include "iommu/vtd/interrupt_remap.h"

#include "iommu/vtd/fault_reasons.h"

namespace ionest::vtd {

Decoded<Irte> DecodeIrte(uint64_t lo, uint64_t hi, bool eime) {
  using D = Decoded<Irte>;
  Irte e;
  e.fpd = lo & 2;
  if (!(lo & 1)) return D::Fail(kIrEntryNotPresent, true, e.fpd);
  // §9.10 remappable IRTE: lo P 0, FPD 1, DM 2, RH 3, TM 4, DLM 7:5, AVL 11:8, rsvd 14:12, IM 15,
  // V 23:16, rsvd 31:24, DST 63:32; hi SID 15:0, SQ 17:16, SVT 19:18, rsvd 63:20.
  // IM=1 (posted) is unsupported (CAP.PI=0): treated as a reserved field.
  uint64_t lo_rsvd = 0x7000ull | (1ull << 15) | 0xff000000ull;
  if (!eime) lo_rsvd |= 0xffff0000'00000000ull | 0x000000ff'00000000ull;  // xAPIC: DST 47:40 only
  if ((lo & lo_rsvd) || (hi & ~uint64_t{0xfffff})) return D::Fail(kIrEntryReserved, false, e.fpd);
  e.dest_mode_logical = lo & 4;
  e.redirection_hint = lo & 8;
  e.level_trigger = lo & 16;
  e.delivery_mode = (lo >> 5) & 7;
  e.vector = (lo >> 16) & 0xff;
  e.dest = eime ? static_cast<uint32_t>(lo >> 32) : static_cast<uint32_t>((lo >> 40) & 0xff);
  e.sid = hi & 0xffff;
  e.sq = (hi >> 16) & 3;
  e.svt = (hi >> 18) & 3;
  // DLM 011b and 110b are reserved; SVT 11b is reserved.
  if (e.delivery_mode == 3 || e.delivery_mode == 6 || e.svt == 3) return D::Fail(kIrEntryReserved, false, e.fpd);
  return D::Ok(e);
}

bool SourceIdAllowed(const Irte& e, uint16_t requester) {
  switch (e.svt) {
    case 0:
      return true;
    case 1: {  // verify requester id; SQ masks function-number bits (§9.10 Table 9-?)
      static constexpr uint16_t kMasks[4] = {0xffff, 0xfffb, 0xfff9, 0xfff8};
      uint16_t m = kMasks[e.sq];
      return ((e.sid ^ requester) & m) == 0;
    }
    case 2: {  // bus range: SID[15:8] start bus, SID[7:0] end bus
      uint8_t bus = requester >> 8;
      return bus >= (e.sid >> 8) && bus <= (e.sid & 0xff);
    }
    default:
      return false;
  }
}

MsiMessage RemappedMessage(const Irte& e, uint16_t requester) {
  MsiMessage m;
  // Intel SDM vol.3 §11.11.1/§11.11.2 MSI address and data; x2APIC destination bits 31:8 in the
  // upper address dword (the extended destination ID KVM accepts with X2APIC_API).
  m.address = 0xfee00000ull | (uint64_t{e.dest & 0xff} << 12) | (uint64_t{e.redirection_hint} << 3) |
              (uint64_t{e.dest_mode_logical} << 2) | (uint64_t{e.dest & 0xffffff00u} << 32);
  m.data = e.vector | (uint32_t{e.delivery_mode} << 8) | (uint32_t{e.level_trigger} << 15) |
           (e.level_trigger ? (1u << 14) : 0u);
  m.requester_id = requester;
  return m;
}

uint32_t InterruptIndex(const MsiMessage& msi) {
  // §5.1.2.2: handle[14:0] = address 19:5, handle[15] = address 2; SHV (bit 3) adds data[15:0].
  uint32_t handle = ((msi.address >> 5) & 0x7fff) | (((msi.address >> 2) & 1) << 15);
  if (msi.address & (1u << 3)) handle += msi.data & 0xffff;
  return handle;
}

void InterruptRemapper::InvalidateIndex(uint32_t index, uint8_t im) {
  uint64_t count = uint64_t{1} << (im & 31);
  uint64_t first = index & ~(count - 1);
  if (count >= cache_.size()) {
    absl::erase_if(cache_, [&](const auto& kv) { return kv.first >= first && kv.first < first + count; });
  } else {
    for (uint64_t i = first; i < first + count; ++i) cache_.erase(static_cast<uint32_t>(i));
  }
}

RemapResult InterruptRemapper::Remap(const PhysMemory& memory, const IrtConfig& irt, bool compat_allowed,
                                     const MsiMessage& msi) {
  RemapResult r;
  if (!IsRemappableFormat(msi)) {
    // §5.1.2.1: compatibility format passes through only with GSTS.CFIS=1.
    if (compat_allowed) {
      r.message = msi;
    } else {
      r.fault = {kIrCompatBlocked, false, false};
    }
    return r;
  }
  r.index = InterruptIndex(msi);
  // §5.1.2.2: with SHV the data bits 31:16 are reserved; address 63:32 must be 0.
  if (((msi.address & (1u << 3)) && (msi.data & 0xffff0000u)) || (msi.address >> 32)) {
    r.fault = {kIrReservedInRequest, false, false};
    return r;
  }
  if (r.index >= irt.entries) {
    r.fault = {kIrIndexBeyondSize, false, false};
    return r;
  }
  Irte e;
  if (auto it = cache_.find(r.index); it != cache_.end()) {
    e = it->second;
  } else {
    uint64_t raw[2];
    if (!memory.Read(irt.base + uint64_t{r.index} * 16, raw, sizeof(raw)).ok()) {
      r.fault = {kIrTableAccess, false, false};
      return r;
    }
    Decoded<Irte> d = DecodeIrte(raw[0], raw[1], irt.eime);
    if (!d.ok()) {
      r.fault = d.fault;
      return r;
    }
    e = *d.entry;
    if (cache_.size() >= capacity_) cache_.erase(cache_.begin());
    cache_[r.index] = e;
  }
  if (!SourceIdAllowed(e, msi.requester_id)) {
    r.fault = {kIrSidMismatch, true, e.fpd};
    return r;
  }
  r.message = RemappedMessage(e, msi.requester_id);
  return r;
}

}  // namespace ionest::vtd
