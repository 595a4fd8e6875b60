#include "vmm/console.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <unistd.h>

#include <chrono>

namespace ionest {
namespace {
constexpr uint8_t kEscape = 0x01;  // Ctrl-A
}

Console::Console(PushInputFn push_input, std::function<void()> on_quit)
    : push_input_(std::move(push_input)), on_quit_(std::move(on_quit)) {}

Console::~Console() { Stop(); }

absl::Status Console::Start() {
  if (pipe2(stop_pipe_, O_CLOEXEC) != 0) return absl::ErrnoToStatus(errno, "pipe2");
  if (isatty(STDIN_FILENO)) {
    if (tcgetattr(STDIN_FILENO, &saved_) == 0) {
      termios raw = saved_;
      cfmakeraw(&raw);
      raw.c_oflag |= OPOST | ONLCR;  // keep host-side newline translation for our own messages
      if (tcsetattr(STDIN_FILENO, TCSANOW, &raw) == 0) raw_mode_ = true;
    }
  }
  running_ = true;
  reader_ = std::thread([this] { ReaderLoop(); });
  return absl::OkStatus();
}

void Console::Stop() {
  if (running_.exchange(false)) {
    char c = 0;
    (void)!write(stop_pipe_[1], &c, 1);
    if (reader_.joinable()) reader_.join();
  }
  if (raw_mode_) {
    tcsetattr(STDIN_FILENO, TCSANOW, &saved_);
    raw_mode_ = false;
  }
  for (int& fd : stop_pipe_) {
    if (fd >= 0) close(fd);
    fd = -1;
  }
}

void Console::Output(uint8_t byte) {
  while (write(STDOUT_FILENO, &byte, 1) < 0 && errno == EINTR) {
  }
}

void Console::ReaderLoop() {
  bool escape = false;
  while (running_) {
    pollfd fds[2] = {{STDIN_FILENO, POLLIN, 0}, {stop_pipe_[0], POLLIN, 0}};
    int r = poll(fds, 2, -1);
    if (r < 0 && errno == EINTR) continue;
    if (r < 0 || (fds[1].revents & POLLIN)) return;
    if (!(fds[0].revents & (POLLIN | POLLHUP))) continue;
    uint8_t buf[256];
    ssize_t n = read(STDIN_FILENO, buf, sizeof(buf));
    if (n <= 0) return;  // EOF: the guest keeps running without input
    uint8_t out[256];
    size_t m = 0;
    for (ssize_t i = 0; i < n; ++i) {
      if (raw_mode_ && escape) {
        escape = false;
        if (buf[i] == 'x' || buf[i] == 'X') {
          on_quit_();
          return;
        }
        if (buf[i] == kEscape) out[m++] = kEscape;
        continue;
      }
      if (raw_mode_ && buf[i] == kEscape) {
        escape = true;
        continue;
      }
      out[m++] = buf[i];
    }
    size_t done = 0;
    while (done < m && running_) {
      done += push_input_(out + done, m - done);
      if (done < m) std::this_thread::sleep_for(std::chrono::milliseconds(5));  // guest has not drained yet
    }
  }
}

}  // namespace ionest
