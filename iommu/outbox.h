// Work an IOMMU model produces while it holds its lock and performs after releasing it: its own
// event MSIs (VT-d: never remapped, §5.1.6; SMMUv3: queue and GERROR interrupts) and callbacks
// into devices and listeners. Keeps device and CPU interrupt code from ever running under an
// IOMMU lock. Used by VtdIommu and Smmuv3Iommu.
#pragma once

#include <functional>
#include <utility>
#include <vector>

#include "absl/base/internal/raw_logging.h"
#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "iommu/msi.h"

namespace ionest {

struct Outbox {
  std::vector<MsiMessage> msis;
  std::vector<std::function<void()>> calls;
  bool empty() const { return msis.empty() && calls.empty(); }

  // Runs the work: MSIs to `sink` (a failure is logged with `model`), then the calls. Call with no
  // IOMMU lock held.
  void Deliver(MsiSink& sink, const char* model) {
    for (const MsiMessage& m : msis) {
      absl::Status s = sink.SendMsi(m);
      if (!s.ok()) ABSL_RAW_LOG(WARNING, "%s: interrupt delivery failed: %s", model, s.ToString().c_str());
    }
    msis.clear();
    for (auto& call : calls) call();
    calls.clear();
  }

  // Delivers what is collected with `mu` released, then retakes it (queue processing that must
  // complete device callbacks before a wait/sync completes). The caller re-checks its state.
  void DeliverUnlocked(absl::Mutex& mu, MsiSink& sink, const char* model) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) {
    if (empty()) return;
    Outbox batch;
    std::swap(batch, *this);
    mu.Unlock();
    batch.Deliver(sink, model);
    mu.Lock();
  }
};

}  // namespace ionest
