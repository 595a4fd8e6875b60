// Dispatch of KVM_EXIT_IO / KVM_EXIT_MMIO to the PIO and MMIO buses. Pure functions over a kvm_run
// (no ioctls), so they are unit-tested with a fake kvm_run.
//
// Port I/O: `count` repetitions of `size` bytes at run + io.data_offset (string I/O, rep ins/outs);
// the data area must lie inside the kvm_run mapping of `run_size` bytes. Reads are pre-filled with
// all-ones (an unclaimed port reads 0xFF..). MMIO: 1..8 bytes in run->mmio.data.
// Thread safety: as IoBus (any vCPU thread).
#pragma once

#include <linux/kvm.h>

#include <cstddef>

#include "absl/status/status.h"
#include "devices/io_bus.h"

namespace ionest {

// InvalidArgument for malformed exits (bad size, data outside the mapping).
absl::Status DispatchPortIo(kvm_run& run, size_t run_size, IoBus& pio);
absl::Status DispatchMmio(kvm_run& run, IoBus& mmio);

}  // namespace ionest
