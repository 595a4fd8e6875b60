#include "vmm/cli_options.h"

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "iommu/vtd/caps.h"
#include "vmm/memory_layout.h"

namespace ionest {

std::string CliUsage() {
  return R"(usage: ionest --kernel <vmlinux|bzImage> [options]
  --kernel PATH            uncompressed vmlinux ELF or bzImage (gzip/xz/zstd payload)
  --initrd PATH            initramfs (uncompressed cpio recommended)
  --cmdline STR            extra guest command line (after the defaults; later parameters win)
  --no-default-cmdline     do not prepend the fast-boot defaults and CPUID-policy parameters
  --memory SIZE            guest RAM, e.g. 512M (default), 2G
  --cpus N                 vCPUs, 1-8 (default 1)
  --disk PATH              raw disk image for virtio-blk
  --iommu none|vtd|virtio|smmuv3  DMA remapping for devices (default none); vtd: x86 only; smmuv3:
                           arm64 only (iommu/smmuv3); virtio: a virtio-iommu at 00:1f.0
                           described by an ACPI VIOT table
  --virtio-iommu boot-bypass=on|off   with --iommu=virtio: DMA before the guest's driver attaches a
                           device is untranslated (on, default) or blocked and reported (off)
  --vtd-profile OPTS       VT-d capabilities, e.g. "sm=on,prs=on,pasid-bits=20" (iommu/vtd/caps.h)
  --smmuv3-profile OPTS    SMMUv3 choices, e.g. "s1=off" (stage 2 only), "stall=on" (iommu/smmuv3/smmuv3_profile.h)
  --print-vtd-caps         print "cap=0x... ecap=0x..." for --iommu=vtd/--vtd-profile and exit
  --device KIND[,OPTS]     add a PCI function behind the IOMMU (repeatable; 00:02.0, 00:03.0, ... in
                           order, or addr=SS.F): dmatest[,max-len=SIZE,pasid-bits=N,pri-capacity=N]
                           (1de5:1110), pci-epf-test[,max-len=SIZE] (104c:b500, Linux pci_endpoint_test),
                           or vfio,path=/dev/vfio/devices/vfioN | vfio,host=DDDD:BB:DD.F: a host function
                           bound to vfio-pci, passed through with VFIO cdev + iommufd (README "Real hosts")
  --trace CLASSES[:PATH]   IOMMU event trace, one line per event (README "Tracing the IOMMU"): CLASSES
                           a comma list of faults, qi (descriptors/commands), prq (page requests,
                           responses, stalls), ir, virtio (virtio-iommu requests) or all; PATH a file,
                           or - / stderr (default)
  --dump-tables RID[,pasid=N][,iova=ADDR]   dump the IOMMU tables the guest programmed for requester
                           RID (bb:dd.f or number) to stderr at exit and on SIGUSR2; with iova=, the
                           walk of that address
  --console                interactive serial console on this terminal (raw mode; Ctrl-A x quits)
  --timeout SECONDS        stop the guest after this long (host wall time)
  --syscall-workaround auto|on|off   kvm_pvm SYSCALL bug work-around (default auto)
  --platform-tables acpi|mptable   ACPI tables from firmware/ (default) or a bare MP table (no poweroff)
  --clear-simd-crypto      also clearcpuid SSSE3/SSE4/AES/PCLMUL/SHA/GFNI (kernels with SIMD crypto)
The serial console (COM1) always goes to stdout; --console also connects stdin.
Exit status: 0 guest powered off, 1 host/usage error, 2 guest reset (or panic, panic=-1),
3 guest crash (triple fault, unhandled emulation failure), 4 timeout, 5 quit from the console.
A boot-timing and work-around report is printed to stderr at exit.
)";
}

absl::StatusOr<CliOptions> ParseCli(const std::vector<std::string>& args) {
  CliOptions o;
  MachineOptions& m = o.machine;
  for (size_t i = 0; i < args.size(); ++i) {
    std::string a = args[i];
    if (a.rfind("--", 0) != 0) return absl::InvalidArgumentError(absl::StrFormat("unexpected argument '%s'", a));
    std::string name = a.substr(2), value;
    bool has_value = false;
    if (size_t eq = name.find('='); eq != std::string::npos) {
      value = name.substr(eq + 1);
      name = name.substr(0, eq);
      has_value = true;
    }
    auto flag = [&](bool* out) -> absl::Status {
      if (has_value) return absl::InvalidArgumentError(absl::StrFormat("--%s takes no value", name));
      *out = true;
      return absl::OkStatus();
    };
    auto need = [&]() -> absl::StatusOr<std::string> {
      if (has_value) return value;
      if (i + 1 >= args.size()) return absl::InvalidArgumentError(absl::StrFormat("--%s needs a value", name));
      return args[++i];
    };
    absl::Status s;
    if (name == "help" || name == "h") {
      s = flag(&o.help);
    } else if (name == "console") {
      s = flag(&m.console);
    } else if (name == "print-vtd-caps") {
      s = flag(&o.print_vtd_caps);
    } else if (name == "clear-simd-crypto") {
      s = flag(&m.clear_simd_crypto);
    } else if (name == "no-default-cmdline") {
      bool b = false;
      s = flag(&b);
      m.default_cmdline = !b;
    } else {
      auto v = need();
      if (!v.ok()) return v.status();
      if (name == "kernel") {
        m.kernel = *v;
      } else if (name == "initrd") {
        m.initrd = *v;
      } else if (name == "cmdline") {
        m.cmdline = *v;
      } else if (name == "disk") {
        m.disk = *v;
      } else if (name == "iommu") {
        if (*v != "none" && *v != "vtd" && *v != "virtio" && *v != "smmuv3") {
          return absl::InvalidArgumentError("--iommu must be none, vtd, virtio or smmuv3");
        }
        m.iommu = *v;
      } else if (name == "virtio-iommu") {
        if (*v == "boot-bypass=on") {
          m.virtio_iommu_boot_bypass = true;
        } else if (*v == "boot-bypass=off") {
          m.virtio_iommu_boot_bypass = false;
        } else {
          return absl::InvalidArgumentError("--virtio-iommu takes boot-bypass=on or boot-bypass=off");
        }
      } else if (name == "memory") {
        auto size = ParseMemorySize(*v);
        if (!size.ok()) return size.status();
        m.memory = *size;
      } else if (name == "cpus") {
        if (!absl::SimpleAtoi(*v, &m.cpus) || m.cpus < 1 || m.cpus > kMaxVcpus) {
          return absl::InvalidArgumentError(absl::StrFormat("--cpus must be 1..%d", kMaxVcpus));
        }
      } else if (name == "timeout") {
        if (!absl::SimpleAtod(*v, &m.timeout_seconds) || !(m.timeout_seconds > 0)) {
          return absl::InvalidArgumentError("--timeout must be a positive number of seconds");
        }
      } else if (name == "device") {
        auto spec = ParseTestDeviceSpec(*v);
        if (!spec.ok()) return spec.status();
        if (m.devices.size() >= kMaxTestDevices) {
          return absl::InvalidArgumentError(absl::StrFormat("at most %d --device options", kMaxTestDevices));
        }
        m.devices.push_back(*spec);
      } else if (name == "vtd-profile") {
        m.vtd_profile = *v;
      } else if (name == "smmuv3-profile") {
        m.smmuv3_profile = *v;
      } else if (name == "platform-tables") {
        if (*v != "acpi" && *v != "mptable") return absl::InvalidArgumentError("--platform-tables must be acpi or mptable");
        m.platform_tables = *v;
      } else if (name == "trace") {
        auto spec = trace::ParseTraceSpec(*v);
        if (!spec.ok()) return spec.status();
        m.trace = *spec;
      } else if (name == "dump-tables") {
        auto request = trace::ParseDumpRequest(*v);
        if (!request.ok()) return request.status();
        m.dump_tables = *request;
      } else if (name == "syscall-workaround") {
        auto mode = ParseSyscallWorkaroundMode(*v);
        if (!mode.ok()) return mode.status();
        m.syscall_workaround = *mode;
      } else {
        return absl::InvalidArgumentError(absl::StrFormat("unknown option --%s (see --help)", name));
      }
    }
    if (!s.ok()) return s;
  }
  if (o.print_vtd_caps) {
    if (m.iommu != "vtd") return absl::InvalidArgumentError("--print-vtd-caps needs --iommu=vtd");
    return o;
  }
  if (!m.smmuv3_profile.empty() && m.iommu != "smmuv3") {
    return absl::InvalidArgumentError("--smmuv3-profile needs --iommu=smmuv3 (arm64)");
  }
  if ((m.trace.mask || m.dump_tables) && m.iommu == "none") {
    return absl::InvalidArgumentError(absl::StrFormat("--%s needs an emulated IOMMU (--iommu=vtd, virtio or smmuv3)",
                                                      m.trace.mask ? "trace" : "dump-tables"));
  }
  if (!o.help && m.kernel.empty()) return absl::InvalidArgumentError("--kernel is required (see --help)");
  return o;
}

absl::StatusOr<std::string> VtdCapsLine(const MachineOptions& machine) {
  if (machine.iommu != "vtd") return absl::InvalidArgumentError("--print-vtd-caps needs --iommu=vtd");
  auto profile = vtd::ParseVtdProfile(machine.vtd_profile);
  if (!profile.ok()) return absl::InvalidArgumentError(absl::StrCat("--vtd-profile: ", profile.status().message()));
  return absl::StrFormat("cap=0x%016x ecap=0x%016x", profile->Cap(), profile->Ecap());
}

}  // namespace ionest
