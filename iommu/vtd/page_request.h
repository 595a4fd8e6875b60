// Page request queue (VT-d §7.5.1, registers §11.4.12): page request descriptors written into the
// guest's queue at PQA/PQT, PRS.PPR/PRO, overflow and the page request event.
// Not thread-safe: VtdIommu calls it under its lock.
#pragma once

#include <array>
#include <cstdint>
#include <optional>

#include "iommu/outbox.h"
#include "iommu/vtd/registers.h"
#include "vmm/guest_memory.h"

namespace ionest::vtd {

struct PageRequestDescriptor {
  uint16_t rid = 0;
  std::optional<uint32_t> pasid;
  uint64_t addr = 0;  // page address
  bool read = false, write = false, exec = false, priv = false;
  bool last = false;  // LPIG
  uint16_t group_index = 0;  // PRGI, 9 bits
  std::optional<std::array<uint64_t, 2>> private_data;
};

// §7.5.1.1 page request descriptor (32 bytes): qw0 type 7:0 = 01h, PP 8, PDP 9, RID 31:16,
// PASID 51:32, EXE 52, PM 53; qw1 RD 0, WR 1, LPIG 2, PRGI 11:3, ADDR 63:12; qw2-3 private data.
std::array<uint64_t, 4> EncodePageRequest(const PageRequestDescriptor& d);
PageRequestDescriptor DecodePageRequest(const std::array<uint64_t, 4>& qw);

enum class PageRequestOutcome {
  kQueued,
  kOverflow,     // queue full or PRS.PRO pending: PRO set; the caller auto-responds (§7.5.1)
  kWriteFailed,  // the queue is not in guest memory
};

class PageRequestQueue {
 public:
  explicit PageRequestQueue(RegisterFile& regs) : regs_(regs) {}
  PageRequestOutcome Enqueue(PhysMemory& memory, const PageRequestDescriptor& d, Outbox& out);
  // After a guest write to PRS: drop a masked event once PPR and PRO are both clear.
  void OnStatusWrite();
  uint32_t QueueBytes() const { return 4096u << (regs_.Get(kPqaReg) & 7); }
  uint64_t queued() const { return queued_; }
  uint64_t overflows() const { return overflows_; }

 private:
  RegisterFile& regs_;
  uint64_t queued_ = 0;
  uint64_t overflows_ = 0;
};

}  // namespace ionest::vtd
