#include "iommu/vtd/pasid.h"

namespace ionest::vtd {

namespace {
constexpr uint64_t kPageMask = ~uint64_t{0xfff};
}

Decoded<PasidEntry> ReadPasidEntry(const PhysMemory& memory, const VtdProfile& profile, const ContextEntry& ctx,
                                   uint32_t pasid) {
  using D = Decoded<PasidEntry>;
  // §9.4: PASIDs beyond the directory size, or beyond what ECAP.PSS reports, fault.
  if (pasid >= ctx.pasid_limit() || pasid >= profile.max_pasid()) return D::Fail(kSmPasidTooLarge, false, ctx.fpd);
  // PASID directory entry §9.5: P 0, FPD 1, SMPTBLPTR 63:12 (11:2 reserved).
  uint64_t dir;
  if (!memory.Read(ctx.pasid_dir + (pasid >> 6) * 8ull, &dir, 8).ok()) return D::Fail(kSmPasidDirAccess, false, ctx.fpd);
  bool fpd = ctx.fpd || (dir & 2);
  if (!(dir & 1)) return D::Fail(kSmPasidDirNotPresent, true, fpd);
  if (dir & 0xffc) return D::Fail(kSmPasidDirReserved, false, fpd);
  // PASID table entry §9.6 (512 bits).
  PasidEntry e;
  e.pasid = pasid;
  if (!memory.Read((dir & kPageMask) + (pasid & 0x3f) * 64ull, e.raw.data(), 64).ok()) {
    return D::Fail(kSmPasidEntryAccess, false, fpd);
  }
  const uint64_t q0 = e.raw[0], q1 = e.raw[1], q2 = e.raw[2];
  e.fpd = fpd || (q0 & 2);
  if (!(q0 & 1)) return D::Fail(kSmPasidEntryNotPresent, true, e.fpd);
  // Reserved: qw2 6:5, 11:8; qw4-7. (qw0 11:10 and qw3 are left unchecked: fields of newer spec
  // revisions live there and Linux never sets them.)
  if ((q2 & 0xf60) || e.raw[4] || e.raw[5] || e.raw[6] || e.raw[7]) {
    return D::Fail(kSmPasidEntryReserved, false, e.fpd);
  }
  e.aw = (q0 >> 2) & 7;
  e.pgtt = (q0 >> 6) & 7;
  e.ssade = q0 & (1u << 9);
  e.slptptr = q0 & kPageMask;
  e.did = q1 & 0xffff;
  e.sre = q2 & 1;
  e.flpm = (q2 >> 2) & 3;
  e.wpe = q2 & (1u << 4);
  e.eafe = q2 & (1u << 7);
  e.flptptr = q2 & kPageMask;
  bool pgtt_ok = (e.pgtt == kPgttFirstStage && profile.first_stage) ||
                 (e.pgtt == kPgttSecondStage && profile.second_stage) ||
                 (e.pgtt == kPgttNested && profile.nesting) || (e.pgtt == kPgttPassThrough && profile.pt);
  bool uses_sl = e.pgtt == kPgttSecondStage || e.pgtt == kPgttNested;
  bool uses_fl = e.pgtt == kPgttFirstStage || e.pgtt == kPgttNested;
  bool invalid = !pgtt_ok || (uses_sl && !AwSupported(profile, e.aw)) ||
                 (uses_fl && (e.flpm > 1 || (e.flpm == 1 && !profile.fl5lp()))) || (e.sre && !profile.srs) ||
                 (e.eafe && !profile.eafs) || (e.did >= profile.domain_count());
  if (invalid) return D::Fail(kSmPasidEntryInvalid, false, e.fpd);
  return D::Ok(e);
}

}  // namespace ionest::vtd
