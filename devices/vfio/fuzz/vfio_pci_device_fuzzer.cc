// libFuzzer target: a hostile guest (and a flaky host) against a VfioPciDevice on a FakeVfioDevice.
// The first bytes pick the host function's shape (MSI-X vector count, MSI, I/O BAR, mmap areas,
// hidden PASID, reset support); the rest is a sequence of operations: config reads/writes at any
// offset and size, BAR accesses at any offset (MSI-X table and PBA included) directly and through
// the MMIO/PIO buses, host interrupts, resets, host error injection.
//
// Deterministic: the forwarding thread is off; a host interrupt writes the vector's eventfd and
// ForwardPendingInterrupts() forwards it on this thread.
#include <dirent.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstring>
#include <memory>
#include <string>

#include "devices/io_bus.h"
#include "devices/pci_express_caps.h"
#include "devices/pci_regs.h"
#include "devices/vfio/testing/fake_vfio_device.h"
#include "devices/vfio/vfio_pci_device.h"
#include "iommu/msi.h"

namespace {

using namespace ionest;
using namespace ionest::vfio;

class CountingSink final : public MsiSink {
 public:
  absl::Status SendMsi(const MsiMessage& msi) override {
    ++sent;
    return (msi.data & 0xFFFF) == 0xDEAD ? absl::InternalError("sink failure") : absl::OkStatus();
  }
  uint64_t sent = 0;
};

class Input {
 public:
  Input(const uint8_t* data, size_t size) : data_(data), size_(size) {}
  bool empty() const { return pos_ >= size_; }
  uint64_t Take(size_t n) {
    uint64_t v = 0;
    for (size_t k = 0; k < n && pos_ < size_; ++k) v |= uint64_t{data_[pos_++]} << (8 * k);
    return v;
  }

 private:
  const uint8_t* data_;
  size_t size_;
  size_t pos_ = 0;
};

// Where op 5 puts the BARs of every shape: BAR0 (64-bit), BAR2 (64-bit), BAR4 (I/O).
constexpr uint64_t kBarAddr[6] = {0xC0000000, 0, 0x8000000000, 0, 0xC000, 0};
constexpr uint32_t kBarReg[6] = {0xC0000000, 0, 0, 0x80, 0xC000, 0};
constexpr unsigned kMsiCounts[] = {0, 1, 2, 4, 8, 16, 32};

// Open eventfd/epoll fds (anon inodes); libFuzzer's own fds (symbolizer pipes...) do not count.
int AnonFds() {
  int n = 0;
  if (DIR* d = opendir("/proc/self/fd")) {
    while (dirent* e = readdir(d)) {
      char target[64] = {};
      const std::string path = std::string("/proc/self/fd/") + e->d_name;
      if (readlink(path.c_str(), target, sizeof(target) - 1) > 0 && std::strncmp(target, "anon_inode:", 11) == 0) ++n;
    }
    closedir(d);
  }
  return n;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  Input in(data, size);
  const uint64_t shape = in.Take(3);
  testing::FakeDeviceSpec spec;
  spec.msix_vectors = (shape & 0x80) ? 0 : static_cast<unsigned>(shape & 0x7F) + 1;  // table must fit before the PBA
  spec.msi_vectors = kMsiCounts[((shape >> 8) & 0xFF) % 7];
  spec.io_bar_size = (shape & (1u << 16)) ? 32 : 0;
  spec.bar0_mmap = !(shape & (1u << 17));
  spec.bar2_mmap = !(shape & (1u << 18));
  spec.hide_pasid = !(shape & (1u << 19));
  spec.unfiltered_config = !(shape & (1u << 20));
  spec.can_reset = !(shape & (1u << 21));
  spec.pcie = !(shape & (1u << 22));
  std::unique_ptr<testing::FakeVfioDevice> fake = testing::FakeVfioDevice::Typical(spec);
  absl::StatusOr<std::unique_ptr<VfioPciDevice>> created = VfioPciDevice::Create(
      "vfio-fuzz", std::make_unique<testing::FakeVfioDeviceRef>(*fake), VfioPciOptions{.forwarding_thread = false});
  if (!created.ok()) abort();  // every shape above is a valid function
  std::unique_ptr<VfioPciDevice> dev = *std::move(created);
  CountingSink sink;
  IoBus mmio("mmio"), pio("pio");
  dev->Attach(PciAttachment{0x18, &sink, nullptr, &mmio, &pio});

  // Registers worth hitting with whole-register writes.
  std::vector<uint16_t> regs = {pci::kCommand, pci::kBar0, pci::kBar0 + 4, pci::kBar0 + 8, pci::kBar0 + 12,
                                pci::kBar0 + 16};
  if (PciMsix* m = dev->msix()) regs.push_back(m->offset() + PciMsix::kControl);
  if (PciMsi* m = dev->msi()) {
    for (uint16_t r : {PciMsi::kControl, PciMsi::kAddressLo, PciMsi::kData, PciMsi::kMask})
      regs.push_back(m->offset() + r);
  }
  if (std::optional<uint16_t> p = dev->config().FindCapability(pci::kCapIdPcie)) regs.push_back(*p + pcie::kDevCtl);
  if (dev->ats_offset()) regs.push_back(dev->ats_offset() + ats::kControl);
  if (dev->pri_offset()) {
    regs.push_back(dev->pri_offset() + pri::kControl);
    regs.push_back(dev->pri_offset() + pri::kAllocation);
  }
  if (dev->pasid_offset()) regs.push_back(dev->pasid_offset() + pasid::kControl);

  for (int ops = 0; !in.empty() && ops < 2048; ++ops) {
    const uint8_t op = static_cast<uint8_t>(in.Take(1));
    const size_t sz = size_t{1} << ((op >> 4) & 3);
    uint8_t buf[8];
    const uint64_t v = in.Take(sz);
    std::memcpy(buf, &v, 8);
    switch (op & 0xF) {
      case 0:  // config write, any offset (a little past 4 KiB too) and size
        dev->ConfigWrite(in.Take(2) % 0x1010, buf, sz);
        break;
      case 1:
        dev->ConfigRead(in.Take(2) % 0x1010, buf, sz);
        break;
      case 2:  // whole-register write of an interesting register
        dev->ConfigWrite(regs[in.Take(1) % regs.size()], buf, (op & 0x40) ? 2 : 4);
        break;
      case 3:
      case 4: {  // BAR access at any offset, bypassing decode (MSI-X table, PBA, forwarded windows)
        PciBar* b = dev->bar(static_cast<unsigned>(in.Take(1) % 6));
        if (!b) break;
        const uint64_t off = in.Take(2) % (b->size() + 16);
        if ((op & 0xF) == 3) {
          b->IoWrite(off, buf, sz);
        } else {
          b->IoRead(off, buf, sz);
        }
        break;
      }
      case 5: {  // map the BARs where the guest would and turn decoding on
        for (unsigned i = 0; i < 6; ++i)
          dev->ConfigWrite(pci::kBar0 + 4 * i, reinterpret_cast<const uint8_t*>(&kBarReg[i]), 4);
        const uint16_t cmd = pci::kCommandMemory | pci::kCommandIo | pci::kCommandBusMaster;
        dev->ConfigWrite(pci::kCommand, reinterpret_cast<const uint8_t*>(&cmd), 2);
        break;
      }
      case 6:
      case 7: {  // through the buses, at whatever the guest programmed
        const unsigned i = static_cast<unsigned>(in.Take(1) % 6);
        PciBar* b = dev->bar(i);
        if (!b) break;
        IoBus& bus = b->is_io() ? pio : mmio;
        const uint64_t addr = dev->BarMappedAt(i).value_or(kBarAddr[i]) + in.Take(2) % (b->size() + 16);
        if ((op & 0xF) == 6) {
          bus.Write(addr, buf, sz);
        } else {
          bus.Read(addr, buf, sz);
        }
        break;
      }
      case 8: {  // host interrupt
        const uint32_t vec = static_cast<uint32_t>(in.Take(2) % 2100);
        if (std::optional<uint32_t> idx = fake->enabled_irq_index()) fake->FireInterrupt(*idx, vec);
        dev->ForwardPendingInterrupts();
        break;
      }
      case 9:
        dev->Reset(/*keep_bars=*/op & 0x40).IgnoreError();
        break;
      case 10: {  // the host starts failing an operation for a while
        const auto what = static_cast<testing::FakeOp>(in.Take(1) % static_cast<size_t>(testing::FakeOp::kCount));
        fake->InjectError(what, absl::InternalError("injected: EIO"), static_cast<int>(in.Take(1) % 4));
        break;
      }
      case 11:
        fake->ClearErrors();
        break;
      case 12:  // straight to the MSI-X table entries with a message
        if (PciMsix* m = dev->msix()) {
          const uint64_t entry = (in.Take(1) % m->vectors()) * PciMsix::kEntrySize;
          m->table().IoWrite(entry + (op & 0x40 ? 8 : 0), buf, sz);
        }
        break;
      default:
        dev->ForwardPendingInterrupts();
        break;
    }
  }
  fake->ClearErrors();
  dev.reset();
  // Destruction disables what it enabled (a host index can stay enabled only after a failed disable).
  if (fake->enabled_irq_index() && fake->disable_irq_calls().empty()) abort();
  if (fake->live_mappings() != 0) abort();
  fake.reset();
  // Every eventfd/epoll fd is closed again (checked now and then: it costs a directory scan).
  static int baseline = -1, runs = 0;
  if (runs++ % 256 == 0) {
    const int n = AnonFds();
    if (baseline < 0) baseline = n;
    if (n > baseline) {
      fprintf(stderr, "%d eventfd/epoll fds open, %d after the first run\n", n, baseline);
      abort();
    }
  }
  return 0;
}
