// The passthrough test bed's cases (issue 8), as a library: the inner machine (guest RAM at GPA 0,
// PCI root complex, recording interrupt sink, the passed-through device at 00:02.0) and the
// Linux-like driver checks. The guest program (passthrough_testbed.cc) runs them against a real
// kernel (a guest of ionest that plays the host); tests/passthrough runs the same cases in-process
// against a loopback host (an emulated dmatest behind a fake iommufd), so CI checks the stack even
// where no KVM is available.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "vmm/device_spec.h"
#include "vmm/passthrough.h"

namespace ionest::testbed {

struct TestbedOptions {
  std::vector<TestDeviceSpec> devices;  // --device vfio,...; the first is the one exercised
  uint64_t ram = 8ull << 20;
  // The "second VM" case runs this binary again (--open-only) in a child; off in-process.
  bool second_vm_case = true;
  // Timeouts for a job and an MSI (the real test bed's device sits behind an emulated kernel).
  double job_timeout_s = 30;
};

// Nested KTAP (4-space indent) sink; `out` receives each line without the newline.
class Ktap {
 public:
  Ktap(int planned, std::function<void(const std::string&)> out);
  void Result(const std::string& name, bool ok, const std::string& diag = "");
  void Skip(const std::string& name, const std::string& why);
  void Diag(const std::string& s);
  int failed() const { return failed_; }
  int count() const { return n_; }

 private:
  std::function<void(const std::string&)> out_;
  int n_ = 0;
  int failed_ = 0;
};

inline constexpr int kTestbedCases = 19;

// Runs every case (exactly kTestbedCases results, filling with failures if the run stops early).
void RunTestbedCases(const TestbedOptions& options, const PassthroughHost& host, Ktap& ktap);

// The VT-d nesting cases (issue 9): the inner machine gets ionest's emulated VT-d, a Linux-like
// driver enables scalable mode and programs first-stage, pass-through, second-stage-only and
// legacy entries, the device's page faults travel host fault queue → inner page request queue →
// driver → response; and a hostile inner guest (bad pointers, reserved bits, invalidation storms,
// stray responses, reset with faults outstanding). Exactly kNestingCases results. Needs --ram of at
// least 8M and a device with ATS, PRI (capacity >= 256) and PASID.
inline constexpr int kNestingCases = 20;
void RunNestingCases(const TestbedOptions& options, const PassthroughHost& host, Ktap& ktap);

// --open-only: builds the inner machine (opening the devices) and returns 0, or prints the error
// to stderr and returns 1.
int OpenOnly(const TestbedOptions& options, const PassthroughHost& host);

}  // namespace ionest::testbed
