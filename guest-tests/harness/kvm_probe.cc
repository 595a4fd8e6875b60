#include "guest-tests/harness/kvm_probe.h"

#include <fcntl.h>
#include <linux/kvm.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "absl/strings/str_cat.h"

namespace ionest::guest {

absl::Status ProbeKvm(const std::string& device) {
  int kvm = open(device.c_str(), O_RDWR | O_CLOEXEC);
  if (kvm < 0) {
    return absl::UnavailableError(absl::StrCat("cannot open ", device, ": ", std::strerror(errno)));
  }
  absl::Status status;
  int version = ioctl(kvm, KVM_GET_API_VERSION, 0);
  if (version != KVM_API_VERSION) {
    status = absl::UnavailableError(absl::StrCat(device, ": KVM API version ", version, ", need ", KVM_API_VERSION));
  } else {
    int vm = ioctl(kvm, KVM_CREATE_VM, 0);
    if (vm < 0) {
      status = absl::UnavailableError(absl::StrCat(device, ": KVM_CREATE_VM failed: ", std::strerror(errno)));
    } else {
      close(vm);
    }
  }
  close(kvm);
  return status;
}

}  // namespace ionest::guest
