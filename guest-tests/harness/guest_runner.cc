#include "guest-tests/harness/guest_runner.h"

#include <poll.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <optional>
#include <random>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "guest-tests/harness/child_process.h"
#include "guest-tests/harness/disk_image.h"
#include "guest-tests/harness/kvm_probe.h"

namespace ionest::guest {
namespace {

using Clock = std::chrono::steady_clock;

// Markers printed by the guest kernel / our /init.
constexpr std::string_view kInitMarker = "ionest-init-start";
constexpr std::string_view kPanicMarker = "Kernel panic - not syncing";
constexpr std::string_view kPowerOffMarkers[] = {"reboot: Power down", "reboot: System halted",
                                                 "reboot: Restarting system", "reboot: Power off not available"};
// Printed by /init after the last test; poweroff follows (kernel shutdown is emulated: be patient).
constexpr std::string_view kTestsDoneMarker = "# ionest: tests done";
constexpr auto kTestsDoneGrace = std::chrono::seconds(120);

double Seconds(Clock::duration d) { return std::chrono::duration<double>(d).count(); }

std::string Nonce() {
  std::random_device rd;
  return absl::StrFormat("%08x%08x", rd(), rd());
}

void WriteSummary(const std::string& path, int passed, int failed, int skipped, const std::string& note) {
  if (path.empty()) return;
  std::ofstream f(path, std::ios::trunc);
  f << "passed " << passed << "\nfailed " << failed << "\nskipped " << skipped << "\n";
  if (!note.empty()) f << "note " << note << "\n";
}

int Skip(const RunnerOptions& o, const std::string& reason) {
  std::cout << "harness[" << o.name << "]: SKIP: " << reason << "\n"
            << "harness[" << o.name << "]: " << FormatCounts(0, 0, 1) << std::endl;
  WriteSummary(o.summary_path, 0, 0, 1, reason);
  return kExitSkip;
}

bool FileExists(const std::string& path) {
  struct stat st;
  return !path.empty() && stat(path.c_str(), &st) == 0;
}

// Splits a byte stream into lines; `sink` gets each complete line.
class LineSplitter {
 public:
  template <typename F>
  void Add(std::string_view bytes, F&& sink) {
    for (char c : bytes) {
      if (c == '\n') {
        sink(std::string_view(buf_));
        buf_.clear();
      } else if (buf_.size() < 64 * 1024) {
        buf_.push_back(c);
      }
    }
  }
  template <typename F>
  void Flush(F&& sink) {
    if (!buf_.empty()) sink(std::string_view(buf_));
    buf_.clear();
  }

 private:
  std::string buf_;
};

}  // namespace

std::optional<CommandResult> RunCommand(const std::vector<std::string>& argv) {
  auto child = ChildProcess::Spawn(argv);
  if (!child.ok()) return std::nullopt;
  CommandResult result;
  const auto deadline = Clock::now() + std::chrono::seconds(10);
  char buf[4096];
  while ((child->stdout_fd() >= 0 || child->stderr_fd() >= 0) && Clock::now() < deadline) {
    pollfd fds[2] = {{child->stdout_fd(), POLLIN, 0}, {child->stderr_fd(), POLLIN, 0}};
    if (poll(fds, 2, 250) < 0 && errno != EINTR) break;
    for (int i = 0; i < 2; ++i) {
      if (fds[i].fd < 0 || !(fds[i].revents & (POLLIN | POLLHUP | POLLERR))) continue;
      ssize_t got = read(fds[i].fd, buf, sizeof(buf));
      if (got > 0 && result.output.size() < (1 << 20)) {
        result.output.append(buf, static_cast<size_t>(got));
      } else if (got == 0 || (got < 0 && errno != EINTR)) {
        i == 0 ? child->CloseStdout() : child->CloseStderr();
      }
    }
  }
  if (child->stdout_fd() < 0 && child->stderr_fd() < 0) {
    for (int i = 0; i < 50 && !child->TryReap(); ++i) usleep(20 * 1000);
    result.exited_ok = child->exited() && WIFEXITED(child->wait_status()) && WEXITSTATUS(child->wait_status()) == 0;
  }
  return result;  // ~ChildProcess kills and reaps a child still running
}

bool VmmHelpMentions(const std::string& vmm, const std::string& flag) {
  auto r = RunCommand({vmm, "--help"});
  return r && r->output.find(flag) != std::string::npos;
}

std::optional<VtdCaps> ParseVtdCaps(std::string_view output) {
  auto field = [&](std::string_view key) -> std::optional<uint64_t> {
    // `key` at the start or after a space, then 0x and hex digits.
    for (size_t pos = output.find(key); pos != std::string_view::npos; pos = output.find(key, pos + 1)) {
      if (pos != 0 && output[pos - 1] != ' ' && output[pos - 1] != '\n') continue;
      std::string_view rest = output.substr(pos + key.size());
      if (!rest.starts_with("0x")) return std::nullopt;
      rest.remove_prefix(2);
      size_t n = 0;
      while (n < rest.size() && std::isxdigit(static_cast<unsigned char>(rest[n]))) ++n;
      if (n == 0 || n > 16) return std::nullopt;
      return std::stoull(std::string(rest.substr(0, n)), nullptr, 16);
    }
    return std::nullopt;
  };
  auto cap = field("cap="), ecap = field("ecap=");
  if (!cap || !ecap) return std::nullopt;
  return VtdCaps{*cap, *ecap};
}

std::vector<std::string> PrintVtdCapsCommand(const RunnerOptions& o) {
  std::vector<std::string> argv = {o.vmm, "--iommu=vtd"};
  for (size_t i = 0; i < o.vmm_args.size(); ++i) {
    const std::string& a = o.vmm_args[i];
    if (a.starts_with("--vtd-profile=")) {
      argv.push_back(a);
    } else if (a == "--vtd-profile" && i + 1 < o.vmm_args.size()) {
      argv.push_back(a);
      argv.push_back(o.vmm_args[++i]);
    }
  }
  argv.push_back("--print-vtd-caps");
  return argv;
}

std::string FormatCounts(int passed, int failed, int skipped) {
  std::string s = absl::StrCat(passed, " passed, ", failed, " failed");
  if (skipped > 0) absl::StrAppend(&s, ", ", skipped, " skipped");
  return s;
}

int RunGuestSuite(const RunnerOptions& o) {
  const std::string tag = absl::StrCat("harness[", o.name, "]: ");
  for (const auto& [what, path] : {std::pair{"VMM binary", o.vmm}, std::pair{"guest kernel", o.kernel},
                                   std::pair{"initramfs", o.initrd}}) {
    if (!FileExists(path)) return Skip(o, absl::StrCat(what, " not found: '", path, "'"));
  }
  if (o.kvm_check) {
    if (absl::Status kvm = ProbeKvm(); !kvm.ok()) return Skip(o, absl::StrCat("KVM unusable: ", kvm.message()));
  }

  const std::string nonce = Nonce();
  std::string disk_path;
  if (o.disk_mib > 0) {
    disk_path = absl::StrCat(o.work_dir, "/", o.name, "-disk.img");
    absl::Status st = CreateDiskImage(disk_path, uint64_t{static_cast<uint64_t>(o.disk_mib)} << 20,
                                      absl::StrCat("ionest-host-pattern-", nonce));
    if (!st.ok()) {
      std::cerr << tag << "ERROR: " << st << std::endl;
      return kExitFail;
    }
  }

  std::string cmdline = absl::StrCat("console=ttyS0 ionest_cpus=", o.cpus, " ionest_nonce=", nonce);
  if (!o.cmdline_extra.empty()) absl::StrAppend(&cmdline, " ", o.cmdline_extra);
  std::vector<std::string> argv = {o.vmm,      "--kernel", o.kernel,  "--initrd",  o.initrd,
                                   "--cmdline", cmdline,   "--memory", o.memory,  "--cpus",
                                   absl::StrCat(o.cpus), "--timeout", absl::StrCat(o.timeout_s)};
  if (!disk_path.empty()) {
    argv.push_back("--disk");
    argv.push_back(disk_path);
  }
  bool use_vtd = o.iommu == "vtd";
  if (o.iommu == "auto") {
    use_vtd = VmmHelpMentions(o.vmm, "--iommu");
    std::cout << tag << "--iommu auto: " << (use_vtd ? "VMM supports --iommu, using --iommu=vtd" :
                                                       "VMM has no --iommu option, running without an IOMMU")
              << std::endl;
  }
  if (use_vtd) argv.push_back("--iommu=vtd");
  argv.insert(argv.end(), o.vmm_args.begin(), o.vmm_args.end());
  if (use_vtd && o.vtd_caps) {
    const std::vector<std::string> caps_cmd = PrintVtdCapsCommand(o);
    auto r = RunCommand(caps_cmd);
    std::optional<VtdCaps> caps;
    if (r && r->exited_ok) caps = ParseVtdCaps(r->output);
    std::string& guest_cmdline = *(std::find(argv.begin(), argv.end(), "--cmdline") + 1);
    if (caps) {
      absl::StrAppend(&guest_cmdline, absl::StrFormat(" ionest.vtd_cap=0x%016x ionest.vtd_ecap=0x%016x", caps->cap,
                                                      caps->ecap));
      std::cout << tag << absl::StrFormat("expected VT-d cap=0x%016x ecap=0x%016x", caps->cap, caps->ecap)
                << std::endl;
    } else {
      absl::StrAppend(&guest_cmdline, " ionest.vtd_caps=unavailable");
      std::cout << tag << "'" << absl::StrJoin(caps_cmd, " ") << "' gave no cap=/ecap= (VMM without "
                << "--print-vtd-caps?): the guest skips its CAP/ECAP check" << std::endl;
    }
  }

  std::ofstream log;
  if (!o.log_path.empty()) {
    log.open(o.log_path, std::ios::trunc | std::ios::binary);
    if (!log) std::cerr << tag << "WARNING: cannot write log " << o.log_path << "\n";
  }
  const std::string command = absl::StrJoin(argv, " ");
  std::cout << tag << "running: " << command << std::endl;
  log << "# " << command << "\n";

  const auto start = Clock::now();
  auto child_or = ChildProcess::Spawn(argv);
  if (!child_or.ok()) {
    std::cerr << tag << "ERROR: " << child_or.status() << std::endl;
    return kExitFail;
  }
  ChildProcess& child = *child_or;

  ktap::Parser parser;
  LineSplitter out_lines, err_lines;
  std::optional<Clock::time_point> init_at, kill_at;
  std::string ending_reason;
  bool timed_out = false, killed_after_end = false, panicked = false;
  // The VMM's own --timeout should fire first; the harness kills it grace_s later.
  const auto grace = std::chrono::seconds(o.grace_s);
  const auto hard_deadline = start + std::chrono::seconds(o.timeout_s) + grace;

  auto on_console_line = [&](std::string_view line) {
    parser.Feed(line);
    if (!init_at && (line.find(kInitMarker) != std::string_view::npos)) {
      init_at = Clock::now();
      std::cout << "\n" << tag << absl::StrFormat("/init reached after %.1f s", Seconds(*init_at - start)) << "\n";
    }
    // The guest is done: the VMM should exit on its own; kill it after a grace period.
    auto ending = [&](std::string_view reason, Clock::duration wait) {
      const auto at = Clock::now() + wait;
      if (!kill_at || at < *kill_at) {
        kill_at = at;
        ending_reason = std::string(reason);
      }
    };
    if (line.find(kPanicMarker) != std::string_view::npos) {
      ending("guest kernel panic", grace);
      panicked = true;
    }
    for (std::string_view m : kPowerOffMarkers) {
      if (line.find(m) != std::string_view::npos) ending(m, grace);
    }
    if (line.starts_with(kTestsDoneMarker)) ending("tests done", std::max<Clock::duration>(grace, kTestsDoneGrace));
  };
  // A VMM that cannot run here at all (e.g. the arm64 suites' wrapper without qemu-system-aarch64 or
  // EL2) exits kExitSkip with one "SKIP: <reason>" line on stderr.
  std::string vmm_skip_reason;
  auto on_vmm_line = [&](std::string_view line) {
    log << "[vmm] " << line << "\n";
    if (const size_t at = line.find("SKIP: "); at != std::string_view::npos) {
      vmm_skip_reason = std::string(line.substr(at + 6));
    }
  };

  char buf[16384];
  while (child.stdout_fd() >= 0 || child.stderr_fd() >= 0 || !child.TryReap()) {
    const auto now = Clock::now();
    if (now >= hard_deadline && !timed_out) {
      timed_out = true;
      std::cout << "\n" << tag << "TIMEOUT after " << Seconds(now - start) << " s: killing the VMM" << std::endl;
      child.Signal(SIGKILL);
    }
    if (kill_at && now >= *kill_at && !killed_after_end && !child.exited()) {
      killed_after_end = true;
      std::cout << "\n" << tag << "VMM still running after '" << ending_reason << "': killing it" << std::endl;
      child.Signal(SIGKILL);
    }
    pollfd fds[2] = {{child.stdout_fd(), POLLIN, 0}, {child.stderr_fd(), POLLIN, 0}};
    int n = poll(fds, 2, 250);
    if (n < 0 && errno != EINTR) break;
    for (int i = 0; i < 2; ++i) {
      if (fds[i].fd < 0 || !(fds[i].revents & (POLLIN | POLLHUP | POLLERR))) continue;
      ssize_t got = read(fds[i].fd, buf, sizeof(buf));
      if (got <= 0) {
        if (got < 0 && errno == EINTR) continue;
        if (i == 0) {
          out_lines.Flush(on_console_line);
          child.CloseStdout();
        } else {
          err_lines.Flush(on_vmm_line);
          child.CloseStderr();
        }
        continue;
      }
      std::string_view bytes(buf, static_cast<size_t>(got));
      if (i == 0) {
        std::cout.write(buf, got).flush();
        log.write(buf, got);
        log.flush();  // the log is what people tail while a slow guest boots
        out_lines.Add(bytes, on_console_line);
      } else {
        std::cerr.write(buf, got).flush();
        err_lines.Add(bytes, on_vmm_line);
      }
    }
    if (child.stdout_fd() < 0 && child.stderr_fd() < 0 && !child.exited()) {
      child.TryReap();
      if (!child.exited()) usleep(100 * 1000);
    }
  }
  child.Reap();
  const double elapsed = Seconds(Clock::now() - start);
  log.flush();

  ktap::Summary summary = parser.Finish();
  const int ws = child.wait_status();
  if (WIFEXITED(ws) && WEXITSTATUS(ws) == kExitSkip && !summary.saw_plan && !vmm_skip_reason.empty()) {
    return Skip(o, absl::StrCat("the VMM cannot run here: ", vmm_skip_reason));
  }
  auto add_error = [&](std::string msg) {
    summary.errors.push_back(std::move(msg));
    ++summary.failed;
  };
  if (timed_out) add_error(absl::StrCat("timeout: no power-off within ", o.timeout_s, " s (+ grace)"));
  if (panicked) add_error("guest kernel panic");
  const bool vmm_ok = WIFEXITED(ws) && WEXITSTATUS(ws) == 0;
  if (!vmm_ok && !timed_out && !killed_after_end) {
    add_error(absl::StrCat("VMM ", DescribeWaitStatus(ws)));
  }
  if (o.disk_check && !disk_path.empty()) {
    auto line = ReadFirstLine(disk_path);
    const std::string want = absl::StrCat("ionest-guest-pattern-", nonce);
    ktap::Case c{.name = "host.disk_image_has_guest_pattern"};
    if (line.ok() && *line == want) {
      c.outcome = ktap::Outcome::kPass;
      ++summary.passed;
    } else {
      c.outcome = ktap::Outcome::kFail;
      c.directive = line.ok() ? absl::StrCat("first line '", line->substr(0, 80), "'") : line.status().ToString();
      ++summary.failed;
    }
    summary.cases.push_back(c);
  }

  std::cout << "\n";
  for (const auto& c : summary.cases) {
    const char* word = c.outcome == ktap::Outcome::kPass ? "PASS" : c.outcome == ktap::Outcome::kFail ? "FAIL" : "SKIP";
    std::cout << tag << word << " " << c.name << (c.directive.empty() ? "" : "  # " + c.directive) << "\n";
  }
  for (const auto& e : summary.errors) std::cout << tag << "ERROR " << e << "\n";
  if (killed_after_end) {
    std::cout << tag << "WARNING: the VMM did not exit after '" << ending_reason << "' (killed)\n";
  }
  std::cout << tag << absl::StrFormat("VMM %s after %.1f s", DescribeWaitStatus(ws), elapsed);
  if (init_at) std::cout << absl::StrFormat("; /init after %.1f s", Seconds(*init_at - start));
  std::cout << "\n" << tag << FormatCounts(summary.passed, summary.failed, summary.skipped) << std::endl;
  if (!o.log_path.empty()) std::cout << tag << "console log: " << o.log_path << std::endl;
  WriteSummary(o.summary_path, summary.passed, summary.failed, summary.skipped, "");
  const bool pass = summary.failed == 0 && summary.saw_plan;
  return pass ? kExitPass : kExitFail;
}

}  // namespace ionest::guest
