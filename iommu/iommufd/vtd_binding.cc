#include "iommu/iommufd/vtd_binding.h"

#include "iommu/vtd/fault_reasons.h"

namespace ionest::iommufd {

using vtd::ContextEntry;
using vtd::PasidEntry;
using vtd::TableFault;

const char* BindingKindName(BindingKind kind) {
  switch (kind) {
    case BindingKind::kBlocked: return "blocked";
    case BindingKind::kIdentity: return "identity";
    case BindingKind::kNested: return "nested";
    case BindingKind::kShadow: return "shadow";
  }
  return "?";
}

bool GuestBinding::operator==(const GuestBinding& o) const {
  if (kind != o.kind || did != o.did || note != o.note) return false;
  if (fault.has_value() != o.fault.has_value() || (fault && fault->reason != o.fault->reason)) return false;
  switch (kind) {
    case BindingKind::kNested:
      return stage1 == o.stage1;
    case BindingKind::kShadow:
      return stage2.root == o.stage2.root && stage2.levels == o.stage2.levels && stage2.aw_bits == o.stage2.aw_bits &&
             stage2.superpage_mask == o.stage2.superpage_mask && stage2.haw_bits == o.stage2.haw_bits;
    default:
      return true;
  }
}

bool InGuestRam(std::span<const RamRange> ram, uint64_t gpa, uint64_t len) {
  if (len == 0 || gpa + len < gpa) return false;
  for (const RamRange& r : ram) {
    if (gpa >= r.gpa && gpa - r.gpa <= r.size && len <= r.size - (gpa - r.gpa)) return true;
  }
  return false;
}

namespace {

GuestBinding Blocked(std::optional<TableFault> fault = std::nullopt, std::string note = "") {
  GuestBinding b;
  b.kind = BindingKind::kBlocked;
  b.fault = fault;
  b.note = std::move(note);
  return b;
}

GuestBinding Identity() {
  GuestBinding b;
  b.kind = BindingKind::kIdentity;
  return b;
}

// A second-stage table the shadow follows (§9.8); `aw` is the entry's AW field.
GuestBinding Shadow(const BindingEnv& env, uint16_t did, uint64_t root, uint8_t aw, bool fpd, uint8_t bad_pointer,
                    uint8_t bad_entry) {
  if (!InGuestRam(env.ram, root, 4096)) return Blocked(TableFault{bad_pointer, true, fpd});
  GuestBinding b;
  b.kind = BindingKind::kShadow;
  b.did = did;
  b.stage2.root = root;
  b.stage2.levels = static_cast<int>(vtd::AwLevels(aw));
  b.stage2.aw_bits = static_cast<int>(vtd::AwBits(aw));
  b.stage2.superpage_mask = env.profile.sl_large_pages ? (kSuperpage2M | kSuperpage1G) : 0;
  b.stage2.haw_bits = static_cast<int>(env.profile.aw > 52 ? 52 : env.profile.aw);
  if (!IsValidSecondStageConfig(b.stage2)) {
    return Blocked(TableFault{bad_entry, false, fpd});
  }
  return b;
}

GuestBinding FromPasidEntry(const BindingEnv& env, const PasidEntry& e) {
  switch (e.pgtt) {
    case vtd::kPgttPassThrough:
      return Identity();
    case vtd::kPgttFirstStage: {
      // §9.6: FLPTPTR is the first-stage root; it is a guest-physical address (the nest parent's
      // IOVA), read by the host IOMMU on every walk: outside guest RAM the walk could only fault.
      if (!InGuestRam(env.ram, e.flptptr, 4096)) return Blocked(TableFault{vtd::kSmFlAccess, true, e.fpd});
      if (e.flpm == 1 && !env.host_fs5lp) {
        // The guest's profile offered 5-level paging but the host IOMMU cannot walk it.
        return Blocked(TableFault{vtd::kSmPasidEntryInvalid, false, e.fpd});
      }
      GuestBinding b;
      b.kind = BindingKind::kNested;
      b.did = e.did;
      b.stage1.pgtbl_addr = e.flptptr;
      b.stage1.addr_width = e.flpm == 1 ? 57 : 48;
      b.stage1.sre = e.sre;
      b.stage1.wpe = e.wpe;
      b.stage1.eafe = e.eafe;
      return b;
    }
    case vtd::kPgttSecondStage:
      return Shadow(env, e.did, e.slptptr, e.aw, e.fpd, vtd::kSmSlInvalidPointer, vtd::kSmPasidEntryInvalid);
    case vtd::kPgttNested:
      return Blocked(std::nullopt,
                     "PASID entry with PGTT=011b (nested): a passthrough device cannot nest a guest's own nesting "
                     "on the host; use first-stage (PGTT=001b) or second-stage translation for it");
    default:
      return Blocked(TableFault{vtd::kSmPasidEntryInvalid, false, e.fpd});
  }
}

}  // namespace

GuestBinding BindRequester(const BindingEnv& env, bool translation_enabled, const std::optional<ContextEntry>& ctx,
                           const std::optional<PasidEntry>& rid_pasid_entry) {
  if (!translation_enabled) return Identity();
  if (!ctx) return Blocked();
  if (!ctx->scalable) {
    // §9.3 legacy context entry: TT 10b pass-through, 00b/01b second-stage tables.
    if (ctx->tt == vtd::kTtPassThrough) return Identity();
    if (ctx->tt == vtd::kTtUntranslatedOnly || ctx->tt == vtd::kTtAllWithDeviceTlb) {
      return Shadow(env, ctx->did, ctx->slptptr, ctx->aw, ctx->fpd, vtd::kFrSlPtrError, vtd::kFrContextInvalid);
    }
    return Blocked(TableFault{vtd::kFrContextInvalid, false, ctx->fpd});
  }
  if (!rid_pasid_entry) return Blocked();
  return FromPasidEntry(env, *rid_pasid_entry);
}

GuestBinding BindPasid(const BindingEnv& env, bool translation_enabled, const std::optional<PasidEntry>& entry) {
  if (!translation_enabled || !entry) return Blocked();
  return FromPasidEntry(env, *entry);
}

}  // namespace ionest::iommufd
