#include "iommu/vtd/registers.h"

#include <algorithm>

#include "absl/base/internal/raw_logging.h"

namespace ionest::vtd {

RegisterFile::RegisterFile(uint32_t window, std::vector<RegisterDef> defs)
    : window_(window), defs_(std::move(defs)), values_(defs_.size(), 0), dword_index_(window / 4, -1) {
  ABSL_RAW_CHECK(window % 4 == 0u, "bad register window");
  for (size_t i = 0; i < defs_.size(); ++i) {
    const RegisterDef& d = defs_[i];
    ABSL_RAW_CHECK(d.size == 4 || d.size == 8, "bad register");
    ABSL_RAW_CHECK(d.offset % d.size == 0u, "bad register definition");
    ABSL_RAW_CHECK(uint64_t{d.offset} + d.size <= window, "register outside window");
    for (uint32_t s = d.offset / 4; s < (d.offset + d.size) / 4; ++s) {
      ABSL_RAW_CHECK(dword_index_[s] == -1, "bad register definition");
      dword_index_[s] = static_cast<int16_t>(i);
    }
  }
  Reset();
}

void RegisterFile::Reset() {
  for (size_t i = 0; i < defs_.size(); ++i) values_[i] = defs_[i].reset;
}

int RegisterFile::Find(uint64_t offset) const {
  if (offset >= window_) return -1;
  return dword_index_[offset / 4];
}

bool RegisterFile::Defined(uint32_t reg) const {
  int i = Find(reg);
  return i >= 0 && defs_[i].offset == reg;
}

const RegisterDef* RegisterFile::Def(uint32_t reg) const {
  int i = Find(reg);
  return i >= 0 && defs_[i].offset == reg ? &defs_[i] : nullptr;
}

uint64_t RegisterFile::Get(uint32_t reg) const {
  int i = Find(reg);
  ABSL_RAW_CHECK(i >= 0 && defs_[i].offset == reg, "bad register");
  return values_[i];
}

void RegisterFile::Set(uint32_t reg, uint64_t value) {
  int i = Find(reg);
  ABSL_RAW_CHECK(i >= 0 && defs_[i].offset == reg, "bad register");
  const RegisterDef& d = defs_[i];
  values_[i] = d.size == 8 ? value : (value & 0xffffffffu);
}

static uint64_t ByteMask(uint32_t nbytes) { return nbytes >= 8 ? ~uint64_t{0} : ((uint64_t{1} << (8 * nbytes)) - 1); }

uint64_t RegisterFile::Read(uint64_t offset, uint32_t size) const {
  if (size == 0 || size > 8) return 0;
  uint64_t result = 0;
  for (uint64_t pos = offset; pos < offset + size;) {
    int i = Find(pos);
    if (i < 0) {
      ++pos;  // unimplemented bytes read 0 (§11.4: reserved registers read as 0)
      continue;
    }
    const RegisterDef& d = defs_[i];
    uint64_t end = std::min<uint64_t>(offset + size, uint64_t{d.offset} + d.size);
    uint32_t n = static_cast<uint32_t>(end - pos);
    uint64_t bytes = (values_[i] >> (8 * (pos - d.offset))) & ByteMask(n);
    result |= bytes << (8 * (pos - offset));
    pos = end;
  }
  return result;
}

WriteEffects RegisterFile::Write(uint64_t offset, uint32_t size, uint64_t value) {
  WriteEffects effects;
  if (size == 0 || size > 8) return effects;
  for (uint64_t pos = offset; pos < offset + size;) {
    int i = Find(pos);
    if (i < 0) {
      ++pos;
      continue;
    }
    const RegisterDef& d = defs_[i];
    uint64_t end = std::min<uint64_t>(offset + size, uint64_t{d.offset} + d.size);
    uint32_t n = static_cast<uint32_t>(end - pos);
    uint32_t shift = 8 * static_cast<uint32_t>(pos - d.offset);
    uint64_t covered = ByteMask(n) << shift;
    uint64_t written = ((value >> (8 * (pos - offset))) & ByteMask(n)) << shift;
    uint64_t old = values_[i];
    uint64_t v = (old & ~(d.rw & covered)) | (written & d.rw & covered);
    v &= ~(written & d.rw1c & covered);
    values_[i] = v;
    effects.push_back({d.offset, old, v, written, covered});
    pos = end;
  }
  return effects;
}

}  // namespace ionest::vtd
