// Internal to the KVM wrappers (kvm.cc, kvm_x86.cc, arch/arm64/kvm_arm64.cc): the C layout of
// <linux/kvm.h>'s flexible-array ioctl arguments.
#pragma once

#include <linux/kvm.h>
#include <sys/ioctl.h>

#include <cstddef>
#include <cstdint>
#include <vector>

namespace ionest {
namespace kvm_internal {

// <linux/kvm.h> declares its flexible arrays with __DECLARE_FLEX_ARRAY, whose empty struct has size
// 1 in C++: sizeof(kvm_cpuid2)/kvm_msrs/kvm_irq_routing and the entries' offsets differ from the
// kernel's C layout, and so do the ioctl numbers (they encode the size). Use the C layout: an 8-byte
// header followed by the entries, with ioctl numbers built for that 8-byte header.
constexpr size_t kFlexHeader = 8;

// Header word pair + entries, 8-byte aligned.
template <typename Entry>
struct FlexBuffer {
  explicit FlexBuffer(size_t n) : words((kFlexHeader + n * sizeof(Entry) + 7) / 8, 0) {}
  uint32_t* header() { return reinterpret_cast<uint32_t*>(words.data()); }
  Entry* entries() { return reinterpret_cast<Entry*>(reinterpret_cast<uint8_t*>(words.data()) + kFlexHeader); }
  void* data() { return words.data(); }
  std::vector<uint64_t> words;
};

}  // namespace kvm_internal
}  // namespace ionest
