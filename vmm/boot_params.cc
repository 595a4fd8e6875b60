#include "vmm/boot_params.h"

#include <cstring>

#include "absl/strings/str_format.h"

namespace ionest {
namespace {
constexpr uint64_t kPage = 4096;
constexpr uint16_t kDefaultBootVersion = 0x020f;
}  // namespace

absl::StatusOr<InitrdPlacement> PlaceInitrd(const MemoryLayout& layout, const LoadedKernel& kernel, uint64_t size) {
  if (size == 0) return absl::InvalidArgumentError("initrd is empty");
  uint64_t limit = layout.low_ram_end;
  // initrd_addr_max is the highest address the initrd may occupy (boot protocol 2.03+).
  if (kernel.setup && kernel.setup->version >= 0x0203 && kernel.setup->initrd_addr_max) {
    limit = std::min<uint64_t>(limit, uint64_t{kernel.setup->initrd_addr_max} + 1);
  }
  uint64_t floor = (kernel.load_end + kPage - 1) & ~(kPage - 1);
  if (size > limit || limit - size < floor) {
    return absl::ResourceExhaustedError(absl::StrFormat(
        "initrd of %d bytes does not fit between the kernel end 0x%x and 0x%x (give the guest more memory)", size,
        floor, limit));
  }
  uint64_t addr = (limit - size) & ~(kPage - 1);
  return InitrdPlacement{addr, size};
}

absl::StatusOr<boot_params> BuildBootParams(const MemoryLayout& layout, const LoadedKernel& kernel,
                                            const BootParamsInput& in) {
  boot_params bp;
  std::memset(&bp, 0, sizeof(bp));
  setup_header& h = bp.hdr;
  if (kernel.setup) {
    h = *kernel.setup;
  } else {
    h.boot_flag = 0xAA55;
    h.header = 0x53726448;  // "HdrS"
    h.version = kDefaultBootVersion;
    h.cmdline_size = kCmdlineMax - 1;
    h.initrd_addr_max = 0x7fffffff;
  }
  h.type_of_loader = 0xff;  // undefined boot loader
  h.loadflags |= LOADED_HIGH;
  h.vid_mode = 0xffff;  // "normal"
  uint64_t cmdline_limit = h.version >= 0x0206 ? h.cmdline_size : 255;
  if (in.cmdline.size() > cmdline_limit || in.cmdline.size() >= kCmdlineMax) {
    return absl::InvalidArgumentError(
        absl::StrFormat("kernel command line is %d bytes; the kernel accepts at most %d", in.cmdline.size(),
                        std::min<uint64_t>(cmdline_limit, kCmdlineMax - 1)));
  }
  h.cmd_line_ptr = static_cast<uint32_t>(kCmdlineAddr);
  bp.ext_cmd_line_ptr = 0;
  if (in.initrd) {
    h.ramdisk_image = static_cast<uint32_t>(in.initrd->addr);
    h.ramdisk_size = static_cast<uint32_t>(in.initrd->size);
    bp.ext_ramdisk_image = static_cast<uint32_t>(in.initrd->addr >> 32);
    bp.ext_ramdisk_size = static_cast<uint32_t>(in.initrd->size >> 32);
  }
  if (in.acpi_rsdp_addr) {
    if (h.version < 0x020e) {
      return absl::FailedPreconditionError("kernel boot protocol < 2.14 cannot take acpi_rsdp_addr");
    }
    bp.acpi_rsdp_addr = in.acpi_rsdp_addr;
  }
  if (layout.e820.size() > E820_MAX_ENTRIES_ZEROPAGE) return absl::InternalError("too many e820 entries");
  for (size_t i = 0; i < layout.e820.size(); ++i) {
    bp.e820_table[i].addr = layout.e820[i].addr;
    bp.e820_table[i].size = layout.e820[i].size;
    bp.e820_table[i].type = static_cast<uint32_t>(layout.e820[i].type);
  }
  bp.e820_entries = static_cast<uint8_t>(layout.e820.size());
  return bp;
}

absl::Status WriteBootParams(PhysMemory& memory, const boot_params& params, const std::string& cmdline) {
  if (cmdline.size() >= kCmdlineMax) return absl::InvalidArgumentError("command line too long");
  absl::Status s = memory.Write(kCmdlineAddr, cmdline.c_str(), cmdline.size() + 1);
  if (!s.ok()) return s;
  return memory.WriteObj(kBootParamsAddr, params);
}

}  // namespace ionest
