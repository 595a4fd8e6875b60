#include "vmm/kernel_loader.h"

#include <elf.h>

#include <algorithm>
#include <cstring>
#include <fstream>

#include "absl/strings/str_format.h"

namespace ionest {
namespace {

constexpr size_t kSetupHeaderOffset = 0x1f1;
constexpr uint32_t kHdrSMagic = 0x53726448;  // "HdrS"

bool AddOverflows(uint64_t a, uint64_t b) { return a + b < a; }

}  // namespace

bool LooksLikeElf(std::span<const uint8_t> d) {
  return d.size() >= 4 && d[0] == 0x7f && d[1] == 'E' && d[2] == 'L' && d[3] == 'F';
}

bool LooksLikeBzImage(std::span<const uint8_t> d) {
  if (d.size() < kSetupHeaderOffset + sizeof(setup_header)) return false;
  uint32_t magic;
  std::memcpy(&magic, d.data() + 0x202, 4);
  return d[0x1fe] == 0x55 && d[0x1ff] == 0xaa && magic == kHdrSMagic;
}

absl::StatusOr<LoadedKernel> LoadElfKernel(std::span<const uint8_t> elf, PhysMemory& memory) {
  if (elf.size() < sizeof(Elf64_Ehdr)) return absl::InvalidArgumentError("ELF: file shorter than the ELF header");
  Elf64_Ehdr eh;
  std::memcpy(&eh, elf.data(), sizeof(eh));
  if (std::memcmp(eh.e_ident, ELFMAG, SELFMAG) != 0) return absl::InvalidArgumentError("ELF: bad magic");
  if (eh.e_ident[EI_CLASS] != ELFCLASS64 || eh.e_ident[EI_DATA] != ELFDATA2LSB) {
    return absl::InvalidArgumentError("ELF: not a 64-bit little-endian image");
  }
  if (eh.e_machine != EM_X86_64) return absl::InvalidArgumentError("ELF: not an x86-64 image");
  if (eh.e_type != ET_EXEC) return absl::InvalidArgumentError("ELF: not an executable (ET_EXEC)");
  if (eh.e_phentsize != sizeof(Elf64_Phdr)) return absl::InvalidArgumentError("ELF: bad e_phentsize");
  if (eh.e_phnum == 0 || eh.e_phnum > 64) return absl::InvalidArgumentError("ELF: bad program header count");
  uint64_t ph_end = eh.e_phoff + uint64_t{eh.e_phnum} * sizeof(Elf64_Phdr);
  if (AddOverflows(eh.e_phoff, uint64_t{eh.e_phnum} * sizeof(Elf64_Phdr)) || ph_end > elf.size()) {
    return absl::InvalidArgumentError("ELF: program headers beyond end of file (truncated?)");
  }
  LoadedKernel k;
  k.format = "elf";
  k.load_start = ~0ull;
  int loaded = 0;
  for (int i = 0; i < eh.e_phnum; ++i) {
    Elf64_Phdr ph;
    std::memcpy(&ph, elf.data() + eh.e_phoff + i * sizeof(Elf64_Phdr), sizeof(ph));
    if (ph.p_type != PT_LOAD || ph.p_memsz == 0) continue;
    if (ph.p_filesz > ph.p_memsz) return absl::InvalidArgumentError(absl::StrFormat("ELF: segment %d filesz > memsz", i));
    if (AddOverflows(ph.p_offset, ph.p_filesz) || ph.p_offset + ph.p_filesz > elf.size()) {
      return absl::InvalidArgumentError(absl::StrFormat("ELF: segment %d extends beyond end of file (truncated?)", i));
    }
    if (AddOverflows(ph.p_paddr, ph.p_memsz) || ph.p_paddr < kMinKernelLoadAddr) {
      return absl::InvalidArgumentError(absl::StrFormat("ELF: segment %d at bad physical address 0x%x", i, ph.p_paddr));
    }
    absl::Status s = memory.Write(ph.p_paddr, elf.data() + ph.p_offset, ph.p_filesz);
    if (!s.ok()) {
      return absl::OutOfRangeError(absl::StrFormat("ELF: segment %d [0x%x,+0x%x) does not fit in guest RAM: %s", i,
                                                   ph.p_paddr, ph.p_memsz, s.message()));
    }
    uint64_t bss = ph.p_memsz - ph.p_filesz;
    if (bss) {
      std::vector<uint8_t> zeros(std::min<uint64_t>(bss, 1 << 20));
      for (uint64_t off = 0; off < bss; off += zeros.size()) {
        uint64_t n = std::min<uint64_t>(zeros.size(), bss - off);
        s = memory.Write(ph.p_paddr + ph.p_filesz + off, zeros.data(), n);
        if (!s.ok()) {
          return absl::OutOfRangeError(absl::StrFormat("ELF: segment %d bss does not fit in guest RAM: %s", i, s.message()));
        }
      }
    }
    k.load_start = std::min(k.load_start, ph.p_paddr);
    k.load_end = std::max(k.load_end, ph.p_paddr + ph.p_memsz);
    ++loaded;
  }
  if (loaded == 0) return absl::InvalidArgumentError("ELF: no loadable segments");
  // vmlinux's entry is physical (ENTRY(phys_startup_64)); it must lie inside what we loaded.
  if (eh.e_entry < k.load_start || eh.e_entry >= k.load_end) {
    return absl::InvalidArgumentError(absl::StrFormat("ELF: entry 0x%x outside loaded image", eh.e_entry));
  }
  k.entry = eh.e_entry;
  return k;
}

absl::StatusOr<BzImageInfo> ParseBzImage(std::span<const uint8_t> image) {
  if (!LooksLikeBzImage(image)) {
    return absl::InvalidArgumentError("bzImage: no boot-sector signature / HdrS magic (not a bzImage, or truncated)");
  }
  BzImageInfo info;
  std::memcpy(&info.header, image.data() + kSetupHeaderOffset, sizeof(setup_header));
  const setup_header& h = info.header;
  if (h.version < 0x0208) {
    return absl::InvalidArgumentError(absl::StrFormat("bzImage: boot protocol %x.%02x too old (need 2.08)",
                                                      h.version >> 8, h.version & 0xff));
  }
  if (!(h.loadflags & LOADED_HIGH)) return absl::InvalidArgumentError("bzImage: zImage (not loaded high) unsupported");
  info.setup_sects = h.setup_sects ? h.setup_sects : 4;
  uint64_t pm_start = (uint64_t{info.setup_sects} + 1) * 512;
  uint64_t start = pm_start + h.payload_offset;
  uint64_t len = h.payload_length;
  if (len < 8 || start + len > image.size()) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "bzImage: payload [0x%x,+0x%x) outside the %d-byte file (truncated?)", start, len, image.size()));
  }
  std::span<const uint8_t> payload = image.subspan(start, len);
  std::memcpy(&info.uncompressed_size, payload.data() + len - 4, 4);
  info.payload = payload.first(len - 4);
  info.compression = DetectCompression(info.payload);
  return info;
}

absl::StatusOr<std::vector<uint8_t>> ExtractBzImagePayload(const BzImageInfo& info) {
  if (info.compression == Compression::kUnsupported) {
    return absl::UnimplementedError(
        "bzImage: payload compression not supported (ionest reads gzip, xz, zstd or uncompressed)");
  }
  if (info.uncompressed_size == 0 || info.uncompressed_size > kMaxKernelPayload) {
    return absl::InvalidArgumentError(absl::StrFormat("bzImage: implausible uncompressed size %d", info.uncompressed_size));
  }
  auto out = Decompress(info.compression, info.payload, info.uncompressed_size);
  if (!out.ok()) return absl::Status(out.status().code(), "bzImage payload: " + std::string(out.status().message()));
  if (out->size() != info.uncompressed_size) {
    return absl::DataLossError(absl::StrFormat("bzImage: payload decompressed to %d bytes, header says %d",
                                               out->size(), info.uncompressed_size));
  }
  if (!LooksLikeElf(*out)) return absl::InvalidArgumentError("bzImage: payload is not an ELF vmlinux");
  return out;
}

absl::StatusOr<LoadedKernel> LoadKernel(std::span<const uint8_t> image, PhysMemory& memory) {
  if (LooksLikeElf(image)) return LoadElfKernel(image, memory);
  if (!LooksLikeBzImage(image)) {
    return absl::InvalidArgumentError("kernel image is neither an ELF vmlinux nor a bzImage");
  }
  auto info = ParseBzImage(image);
  if (!info.ok()) return info.status();
  auto elf = ExtractBzImagePayload(*info);
  if (!elf.ok()) return elf.status();
  auto k = LoadElfKernel(*elf, memory);
  if (!k.ok()) return absl::Status(k.status().code(), "bzImage inner vmlinux: " + std::string(k.status().message()));
  k->format = absl::StrFormat("bzImage/%s", CompressionName(info->compression));
  k->setup = info->header;
  return k;
}

absl::StatusOr<std::vector<uint8_t>> ReadFileBytes(const std::string& path, size_t max_size) {
  std::ifstream f(path, std::ios::binary | std::ios::ate);
  if (!f) return absl::NotFoundError(absl::StrFormat("cannot open '%s'", path));
  std::streamoff size = f.tellg();
  if (size < 0) return absl::InternalError(absl::StrFormat("cannot size '%s'", path));
  if (static_cast<uint64_t>(size) > max_size) {
    return absl::InvalidArgumentError(absl::StrFormat("'%s' is larger than %d bytes", path, max_size));
  }
  std::vector<uint8_t> data(size);
  f.seekg(0);
  if (!f.read(reinterpret_cast<char*>(data.data()), size)) {
    return absl::DataLossError(absl::StrFormat("short read of '%s'", path));
  }
  return data;
}

}  // namespace ionest
