// Result of decoding a guest-written table entry: the decoded entry, or the architected fault.
#pragma once

#include <cstdint>
#include <optional>

namespace ionest::vtd {

struct TableFault {
  uint8_t reason = 0;      // Appendix A fault reason
  bool qualified = false;  // qualified faults are suppressed by FPD=1 (§7.2.1)
  bool fpd = false;        // FPD of the entry that produced the fault
};

template <typename T>
struct Decoded {
  std::optional<T> entry;
  TableFault fault;
  static Decoded Ok(T v) { return {std::move(v), {}}; }
  static Decoded Fail(uint8_t reason, bool qualified = false, bool fpd = false) {
    return {std::nullopt, {reason, qualified, fpd}};
  }
  bool ok() const { return entry.has_value(); }
};

}  // namespace ionest::vtd
