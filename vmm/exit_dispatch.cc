#include "vmm/exit_dispatch.h"

#include <cstring>

#include "absl/strings/str_format.h"

namespace ionest {

absl::Status DispatchPortIo(kvm_run& run, size_t run_size, IoBus& pio) {
  auto& io = run.io;
  if (io.size != 1 && io.size != 2 && io.size != 4) {
    return absl::InvalidArgumentError(absl::StrFormat("port I/O of size %d at port 0x%x", io.size, io.port));
  }
  uint64_t bytes = uint64_t{io.count} * io.size;
  if (io.data_offset > run_size || bytes > run_size - io.data_offset) {
    return absl::InvalidArgumentError("port I/O data outside the kvm_run mapping");
  }
  uint8_t* data = reinterpret_cast<uint8_t*>(&run) + io.data_offset;
  for (uint32_t i = 0; i < io.count; ++i, data += io.size) {
    if (io.direction == KVM_EXIT_IO_OUT) {
      pio.Write(io.port, data, io.size);
    } else {
      std::memset(data, 0xff, io.size);
      pio.Read(io.port, data, io.size);
    }
  }
  return absl::OkStatus();
}

absl::Status DispatchMmio(kvm_run& run, IoBus& mmio) {
  auto& m = run.mmio;
  if (m.len == 0 || m.len > sizeof(m.data)) {
    return absl::InvalidArgumentError(absl::StrFormat("MMIO of length %d at 0x%x", m.len, m.phys_addr));
  }
  if (m.is_write) {
    mmio.Write(m.phys_addr, m.data, m.len);
  } else {
    std::memset(m.data, 0xff, sizeof(m.data));
    mmio.Read(m.phys_addr, m.data, m.len);
  }
  return absl::OkStatus();
}

}  // namespace ionest
