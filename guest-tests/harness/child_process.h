// A child process in its own process group with stdout/stderr on pipes and
// stdin from /dev/null. Thread-compatible.
#pragma once

#include <sys/types.h>

#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace ionest::guest {

class ChildProcess {
 public:
  static absl::StatusOr<ChildProcess> Spawn(const std::vector<std::string>& argv);
  ChildProcess(ChildProcess&& other) noexcept;
  ChildProcess& operator=(ChildProcess&&) = delete;
  ~ChildProcess();  // kills and reaps the group if still running

  int stdout_fd() const { return out_fd_; }
  int stderr_fd() const { return err_fd_; }
  void CloseStdout();
  void CloseStderr();
  // Sends `sig` to the whole process group.
  void Signal(int sig);
  // Non-blocking reap; true once exited (status in wait_status()).
  bool TryReap();
  // Blocking reap.
  void Reap();
  bool exited() const { return exited_; }
  int wait_status() const { return wait_status_; }

 private:
  ChildProcess(pid_t pid, int out_fd, int err_fd) : pid_(pid), out_fd_(out_fd), err_fd_(err_fd) {}
  pid_t pid_ = -1;
  int out_fd_ = -1;
  int err_fd_ = -1;
  bool exited_ = false;
  int wait_status_ = 0;
};

// "exit status N" / "killed by signal N".
std::string DescribeWaitStatus(int wait_status);

}  // namespace ionest::guest
