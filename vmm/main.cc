// ionest: boots a Linux guest on KVM. See `ionest --help`.
#include <pthread.h>
#include <signal.h>

#include <atomic>
#include <cstdio>
#include <memory>
#include <optional>
#include <thread>

#include "absl/strings/str_format.h"
#include "iommu/trace.h"
#include "vmm/cli_options.h"
#include "vmm/machine.h"

int main(int argc, char** argv) {
  using namespace ionest;
  std::vector<std::string> args(argv + 1, argv + argc);
  auto cli = ParseCli(args);
  if (!cli.ok()) {
    std::fprintf(stderr, "ionest: %s\n", std::string(cli.status().message()).c_str());
    return 1;
  }
  if (cli->help) {
    std::fputs(CliUsage().c_str(), stdout);
    return 0;
  }
  if (cli->print_vtd_caps) {
    auto line = VtdCapsLine(cli->machine);
    if (!line.ok()) {
      std::fprintf(stderr, "ionest: %s\n", std::string(line.status().message()).c_str());
      return 1;
    }
    std::printf("%s\n", line->c_str());
    return 0;
  }
  // SIGINT/SIGTERM/SIGHUP stop the machine cleanly (terminal restored, report printed): they are
  // blocked in every thread and taken by a sigwait thread. SIGUSR2 dumps the --dump-tables
  // requester's IOMMU tables to stderr (SIGUSR1 kicks vCPUs).
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGINT);
  sigaddset(&stop_signals, SIGTERM);
  sigaddset(&stop_signals, SIGHUP);
  sigaddset(&stop_signals, SIGUSR2);
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);

  // --trace: opened before the machine (a bad path fails at once); outlives the machine, so no
  // device thread can still be writing to it when it closes.
  std::unique_ptr<trace::Sink> trace_sink;
  if (cli->machine.trace.mask) {
    auto sink = trace::Sink::Open(cli->machine.trace);
    if (!sink.ok()) {
      std::fprintf(stderr, "ionest: %s\n", std::string(sink.status().message()).c_str());
      return 1;
    }
    trace_sink = std::move(*sink);
  }

  auto machine = Machine::Create(cli->machine);
  if (!machine.ok()) {
    std::fprintf(stderr, "ionest: %s\n", std::string(machine.status().message()).c_str());
    return 1;
  }
  std::fprintf(stderr, "ionest: %d vCPU(s), %s RAM, %s; guest cmdline: %s\n", cli->machine.cpus,
               absl::StrFormat("%d MiB", cli->machine.memory >> 20).c_str(), (*machine)->platform_tables().c_str(),
               (*machine)->guest_cmdline().c_str());
  std::atomic<bool> done{false};
  Machine* m = machine->get();
  const std::optional<trace::DumpRequest> dump = cli->machine.dump_tables;
  auto dump_tables = [&](const char* when) {
    if (!dump) {
      std::fprintf(stderr, "ionest: SIGUSR2: no --dump-tables requester given\n");
      return;
    }
    std::fprintf(stderr, "\r\nionest: IOMMU tables (%s):\n%s", when, m->DumpTables(*dump).c_str());
  };
  std::thread signal_thread([&] {
    int sig = 0;
    while (sigwait(&stop_signals, &sig) == 0 && !done.load()) {
      if (sig == SIGUSR2) {
        dump_tables("SIGUSR2");
        continue;
      }
      m->RequestStop(StopReason::kUserQuit, absl::StrFormat("signal %d", sig));
    }
  });
  if (trace_sink) trace::Install(trace_sink.get());
  std::string detail;
  StopReason reason = (*machine)->Run(&detail);
  if (trace_sink) {
    trace::Uninstall();
    trace_sink->Flush();
  }
  done = true;
  pthread_kill(signal_thread.native_handle(), SIGHUP);
  signal_thread.join();
  std::fprintf(stderr, "\r\nionest: stopped: %s%s%s\n", StopReasonName(reason), detail.empty() ? "" : ": ",
               detail.c_str());
  if (reason != StopReason::kPowerOff && reason != StopReason::kReset) {
    std::fprintf(stderr, "ionest: vCPU state: %s\n", (*machine)->DescribeVcpus().c_str());
  }
  std::fprintf(stderr, "ionest: boot timing: %s\n", (*machine)->timing().Report().c_str());
  if (dump) dump_tables("at exit");
  if (trace_sink) std::fprintf(stderr, "ionest: %s\n", trace_sink->Summary().c_str());
  std::fprintf(stderr, "ionest: emulation-failure work-arounds: %s\n",
               (*machine)->emulation_stats().Summary().c_str());
#if defined(__x86_64__)  // the kvm_pvm SYSCALL work-around is x86 only
  if (const SyscallWorkaround* sw = (*machine)->syscall_workaround()) {
    std::fprintf(stderr, "ionest: SYSCALL work-around: %llu syscalls rewritten, %llu page faults passed, armed %llu times\n",
                 (unsigned long long)sw->syscalls_rewritten(), (unsigned long long)sw->faults_passed_through(),
                 (unsigned long long)sw->arm_count());
  }
#endif
  return ExitStatusFor(reason);
}
