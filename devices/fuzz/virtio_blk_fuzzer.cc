// libFuzzer target: a hostile guest driving a virtio-blk PCI function. The input is a stream of
// operations (config-space writes, BAR MMIO reads/writes, queue notifies) plus the initial guest
// RAM contents (rings and descriptors are whatever the fuzzer puts there). Nothing may crash,
// hang, or touch memory outside GuestMemory (ASan).
#include <fcntl.h>
#include <unistd.h>

#include <cstdint>
#include <cstring>
#include <memory>
#include <string>

#include "devices/pci_regs.h"
#include "devices/virtio_blk.h"
#include "devices/virtio_pci.h"
#include "iommu/dma_space.h"
#include "vmm/guest_memory.h"

namespace {

using namespace ionest;

class NullSink final : public MsiSink {
 public:
  absl::Status SendMsi(const MsiMessage&) override { return absl::OkStatus(); }
};

constexpr uint64_t kRam = 1 << 20;
constexpr uint64_t kBar4 = 0x8000000000, kBar1 = 0xC0000000;

struct Reader {
  const uint8_t* p;
  size_t n;
  template <typename T>
  T Take() {
    T v{};
    const size_t k = std::min(sizeof(T), n);
    std::memcpy(&v, p, k);
    p += k;
    n -= k;
    return v;
  }
};

std::string ImagePath() {
  static std::string path = [] {
    char tmpl[] = "/tmp/ionest-blk-fuzz-XXXXXX";
    const int fd = mkstemp(tmpl);
    if (ftruncate(fd, 64 * 512) != 0) abort();
    close(fd);
    return std::string(tmpl);
  }();
  return path;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  Reader r{data, size};
  auto mem = GuestMemory::Create({{0, kRam}});
  if (!mem.ok()) abort();
  // First up to 64 KiB of input seed the low guest RAM where the fuzzer will point rings.
  const size_t seed = std::min<size_t>(r.Take<uint16_t>(), r.n);
  if (!(*mem)->Write(0, r.p, seed).ok()) abort();
  r.p += seed;
  r.n -= seed;
  IdentityDmaSpace dma(**mem);
  NullSink sink;
  IoBus mmio("mmio"), pio("pio");
  auto blk = VirtioBlk::Open(ImagePath(), {});
  if (!blk.ok()) abort();
  auto dev = VirtioPciDevice::Create("vblk", **blk, VirtioBlk::kPciClass, {});
  if (!dev.ok()) abort();
  (*dev)->Attach(PciAttachment{0x20, &sink, &dma, &mmio, &pio});
  auto cfg32 = [&](uint32_t off, uint32_t v) {
    uint8_t b[4];
    std::memcpy(b, &v, 4);
    (*dev)->ConfigWrite(off, b, 4);
  };
  // Give it a sane PCI setup so the fuzzer reaches the virtio logic quickly.
  cfg32(pci::kBar0 + 4, static_cast<uint32_t>(kBar1));
  cfg32(pci::kBar0 + 16, static_cast<uint32_t>(kBar4));
  cfg32(pci::kBar0 + 20, static_cast<uint32_t>(kBar4 >> 32));
  cfg32(pci::kCommand, pci::kCommandMemory | pci::kCommandBusMaster);
  auto bar_write = [&](uint64_t off, uint64_t v, size_t n) {
    uint8_t b[8];
    std::memcpy(b, &v, 8);
    mmio.Write(kBar4 + off, b, n);
  };
  // Usually bring the device up like a driver (virtio 1.2 §3.1.1) with a 16-entry queue whose rings
  // lie in the fuzzer-seeded RAM, so descriptor/ring handling gets exercised.
  if (r.Take<uint8_t>() & 1) {
    bar_write(0x14, 3, 1);
    bar_write(0x08, 0, 4);
    bar_write(0x0C, VirtioBlk::kFFlush | VirtioBlk::kFSegMax, 4);
    bar_write(0x08, 1, 4);
    bar_write(0x0C, 3, 4);  // VERSION_1 | ACCESS_PLATFORM
    bar_write(0x14, 0xB, 1);
    bar_write(0x16, 0, 2);
    bar_write(0x18, 16, 2);
    bar_write(0x20, 0x0000, 8);
    bar_write(0x28, 0x0100, 8);
    bar_write(0x30, 0x0200, 8);
    bar_write(0x1C, 1, 2);
    bar_write(0x14, 0xF, 1);
  }
  bar_write(VirtioPciDevice::kNotifyOffset, 0, 2);
  for (int ops = 0; r.n > 0 && ops < 4096; ++ops) {
    const uint8_t op = r.Take<uint8_t>();
    const uint8_t sz = static_cast<uint8_t>(1u << (r.Take<uint8_t>() & 3));
    uint8_t buf[8];
    switch (op % 4) {
      case 0: {  // config space
        const uint16_t off = r.Take<uint16_t>() & 0x1FFF;
        const uint64_t v = r.Take<uint64_t>();
        std::memcpy(buf, &v, 8);
        (*dev)->ConfigWrite(off, buf, sz);
        break;
      }
      case 1: {  // virtio BAR write (common config, notify...)
        const uint16_t off = r.Take<uint16_t>() & 0x3FFF;
        const uint64_t v = r.Take<uint64_t>();
        std::memcpy(buf, &v, 8);
        mmio.Write(kBar4 + off, buf, sz);
        break;
      }
      case 2: {  // reads anywhere in either BAR
        const uint16_t off = r.Take<uint16_t>();
        mmio.Read((op & 4 ? kBar1 : kBar4) + (off & 0x3FFF), buf, sz);
        (*dev)->ConfigRead(off & 0xFFF, buf, sz);
        break;
      }
      case 3: {  // MSI-X table or queue notify
        const uint16_t off = r.Take<uint16_t>() & 0xFFF;
        const uint64_t v = r.Take<uint64_t>();
        std::memcpy(buf, &v, 8);
        if (op & 4) {
          mmio.Write(kBar1 + off, buf, sz);
        } else {
          mmio.Write(kBar4 + VirtioPciDevice::kNotifyOffset, buf, 2);
        }
        break;
      }
    }
  }
  return 0;
}
