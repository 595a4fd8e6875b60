// Host side of the serial console: guest output to stdout, host input (stdin) to the UART.
// With an interactive terminal, stdin is put in raw mode (restored by Stop()/the destructor and on
// fatal signals' normal exit paths); Ctrl-A x quits the VMM, Ctrl-A Ctrl-A sends a literal Ctrl-A.
//
// Thread safety: Output may be called from any vCPU thread; Start/Stop from the main thread.
#pragma once

#include <termios.h>

#include <atomic>
#include <functional>
#include <thread>

#include "absl/status/status.h"

namespace ionest {

class Console {
 public:
  // `push_input` delivers bytes to the guest UART and returns how many it accepted.
  using PushInputFn = std::function<size_t(const uint8_t* data, size_t len)>;
  Console(PushInputFn push_input, std::function<void()> on_quit);
  ~Console();

  // Starts the stdin reader thread (and raw mode if stdin is a terminal).
  absl::Status Start();
  void Stop();

  // Writes one guest byte to stdout.
  void Output(uint8_t byte);

 private:
  void ReaderLoop();

  PushInputFn push_input_;
  std::function<void()> on_quit_;
  bool raw_mode_ = false;
  termios saved_{};
  int stop_pipe_[2] = {-1, -1};
  std::thread reader_;
  std::atomic<bool> running_{false};
};

}  // namespace ionest
