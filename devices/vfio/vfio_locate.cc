#include "devices/vfio/vfio_locate.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstring>
#include <filesystem>
#include <utility>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "devices/vfio/vfio_cdev.h"

namespace ionest::vfio {
namespace {

namespace fs = std::filesystem;

// The commands that bind `bdf` to vfio-pci.
std::string BindSteps(const std::string& bdf) {
  return absl::StrFormat(
      "modprobe vfio-pci; echo vfio-pci > /sys/bus/pci/devices/%s/driver_override; echo %s > /sys/bus/pci/drivers_probe",
      bdf, bdf);
}

// `path` (absolute, as the host sees it) inside the root.
std::string Under(const LocateOptions& o, std::string_view path) {
  std::string root = o.root;
  while (!root.empty() && root.back() == '/') root.pop_back();
  return root + std::string(path);
}

// The host's view of a path produced by Under (for messages and /proc comparisons).
std::string HostView(const LocateOptions& o, const std::string& path) {
  std::string root = o.root;
  while (!root.empty() && root.back() == '/') root.pop_back();
  if (!root.empty() && absl::StartsWith(path, root) && path.size() > root.size() && path[root.size()] == '/') {
    return path.substr(root.size());
  }
  return path;
}

// Last component of the target of symlink `link`; nullopt if it is not a readable symlink.
std::optional<std::string> LinkName(const std::string& link) {
  std::error_code ec;
  fs::path target = fs::read_symlink(link, ec);
  if (ec) return std::nullopt;
  while (target.has_relative_path() && target.filename().empty()) target = target.parent_path();
  std::string name = target.filename().string();
  if (name.empty() || name == "." || name == "..") return std::nullopt;
  return name;
}

// Sorted entry names of a directory (following symlinks); empty if it cannot be read.
std::vector<std::string> ListDir(const std::string& dir) {
  std::vector<std::string> names;
  std::error_code ec;
  fs::directory_iterator it(dir, ec), end;
  for (int n = 0; !ec && it != end && n < 100000; it.increment(ec), ++n) names.push_back(it->path().filename().string());
  std::sort(names.begin(), names.end());
  return names;
}

bool Exists(const std::string& path) {
  struct stat st;
  return stat(path.c_str(), &st) == 0;
}

// First line of a small text file (sysfs attribute, /proc/<pid>/comm), trimmed.
std::optional<std::string> ReadLine(const std::string& path) {
  UniqueFd fd(open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK));
  if (!fd.valid()) return std::nullopt;
  char buf[256];
  ssize_t n;
  do {
    n = read(fd.get(), buf, sizeof(buf));
  } while (n < 0 && errno == EINTR);
  if (n < 0) return std::nullopt;
  absl::string_view text(buf, static_cast<size_t>(n));
  text = text.substr(0, text.find('\n'));
  return std::string(absl::StripAsciiWhitespace(text));
}

// "MAJ:MIN" (sysfs `dev`) → dev_t.
std::optional<dev_t> ReadDevNumber(const std::string& path) {
  std::optional<std::string> text = ReadLine(path);
  if (!text) return std::nullopt;
  unsigned maj = 0, min = 0;
  const char* b = text->data();
  const char* e = b + text->size();
  auto r1 = std::from_chars(b, e, maj);
  if (r1.ec != std::errc() || r1.ptr == e || *r1.ptr != ':') return std::nullopt;
  auto r2 = std::from_chars(r1.ptr + 1, e, min);
  if (r2.ec != std::errc() || r2.ptr != e) return std::nullopt;
  return makedev(maj, min);
}

bool IsVfioCdevName(absl::string_view name) {
  if (!absl::StartsWith(name, "vfio") || name.size() == 4) return false;
  return std::all_of(name.begin() + 4, name.end(), [](char c) { return absl::ascii_isdigit(c); });
}

// vfio-pci and its variant drivers (mlx5_vfio_pci, hisi_acc_vfio_pci, ...) all create the cdev.
bool IsVfioDriver(absl::string_view driver) { return absl::StrContains(driver, "vfio"); }

// Drivers that do not use the DMA API on the group's behalf (driver_managed_dma), so they do not
// stop another group member from being claimed by iommufd (iommu_device_claim_dma_owner).
bool GroupSafeDriver(absl::string_view driver) {
  return IsVfioDriver(driver) || driver == "pci-stub" || driver == "pcieport";
}

absl::Status CheckDriver(const std::string& sysdir, const std::string& bdf) {
  std::optional<std::string> driver = LinkName(sysdir + "/driver");
  if (!driver) {
    return absl::FailedPreconditionError(absl::StrFormat(
        "%s is not bound to any driver: bind it to vfio-pci (%s)", bdf, BindSteps(bdf)));
  }
  if (!IsVfioDriver(*driver)) {
    return absl::FailedPreconditionError(
        absl::StrFormat("%s is bound to %s, not vfio-pci: echo %s > /sys/bus/pci/drivers/%s/unbind; %s", bdf, *driver,
                        bdf, *driver, BindSteps(bdf)));
  }
  return absl::OkStatus();
}

// The IOMMU group of the function at `sysdir` must hold no device bound to a host DMA driver.
// `group` receives the group number ("" if none).
absl::Status CheckGroup(const std::string& sysdir, const std::string& self, std::string* group) {
  std::optional<std::string> g = LinkName(sysdir + "/iommu_group");
  if (!g) {
    return absl::FailedPreconditionError(absl::StrFormat(
        "%s has no IOMMU group: the host IOMMU is off (boot with intel_iommu=on or amd_iommu=on and check dmesg "
        "for DMAR / AMD-Vi) or the device is not behind one",
        self.empty() ? sysdir : self));
  }
  if (group) *group = *g;
  std::string devices = sysdir + "/iommu_group/devices";
  std::vector<std::string> culprits, fixes;
  for (const std::string& member : ListDir(devices)) {
    if (member == self) continue;
    std::optional<std::string> driver = LinkName(devices + "/" + member + "/driver");
    if (!driver || GroupSafeDriver(*driver)) continue;
    culprits.push_back(absl::StrFormat("%s is bound to %s", member, *driver));
    fixes.push_back(absl::StrFormat("echo %s > /sys/bus/pci/drivers/%s/unbind", member, *driver));
  }
  if (culprits.empty()) return absl::OkStatus();
  bool one = culprits.size() == 1;
  return absl::FailedPreconditionError(absl::StrFormat(
      "IOMMU group %s is not viable: %s; unbind %s or bind %s to vfio-pci too (%s): a group is assigned as a "
      "whole",
      *g, absl::StrJoin(culprits, ", "), one ? "it" : "them", one ? "it" : "them", absl::StrJoin(fixes, "; ")));
}

// The cdev node for sysfs entry `name` at `node` (root applied): a character device whose number
// matches /sys/class/vfio-dev/<name>/dev (when sysfs tells).
absl::Status CheckCdevNode(const LocateOptions& o, const std::string& node, const std::string& name) {
  struct stat st;
  if (stat(node.c_str(), &st) != 0) {
    int e = errno;
    if (e == ENOENT || e == ENOTDIR) {
      return absl::NotFoundError(absl::StrFormat(
          "%s does not exist although sysfs lists %s: /dev is not devtmpfs or udev has not created it yet "
          "(mount -t devtmpfs devtmpfs /dev, or mknod it with the numbers in /sys/class/vfio-dev/%s/dev)",
          HostView(o, node), name, name));
    }
    return VfioErrno(e, absl::StrFormat("stat %s", HostView(o, node)));
  }
  if (!S_ISCHR(st.st_mode)) {
    return absl::FailedPreconditionError(absl::StrFormat("%s is not a character device: remove it and let devtmpfs "
                                                         "or udev create the VFIO device node",
                                                         HostView(o, node)));
  }
  std::optional<dev_t> dev = ReadDevNumber(Under(o, "/sys/class/vfio-dev/" + name + "/dev"));
  if (dev && *dev != st.st_rdev) {
    return absl::FailedPreconditionError(absl::StrFormat(
        "%s is device %u:%u but sysfs says %s is %u:%u: the node is stale; remove it and let devtmpfs or udev "
        "recreate it",
        HostView(o, node), major(st.st_rdev), minor(st.st_rdev), name, major(*dev), minor(*dev)));
  }
  return absl::OkStatus();
}

// PCI sysfs checks shared by path= and host=: bound to a VFIO driver, group viable.
absl::Status CheckFunction(const LocatedDevice& d) {
  if (d.sysfs_dir.empty()) return absl::OkStatus();
  if (!d.bdf.empty()) {
    if (absl::Status s = CheckDriver(d.sysfs_dir, d.bdf); !s.ok()) return s;
  }
  return CheckGroup(d.sysfs_dir, d.bdf, nullptr);
}

absl::StatusOr<LocatedDevice> LocateByHost(const std::string& host, const LocateOptions& o) {
  absl::StatusOr<std::string> bdf = NormalizePciAddress(host);
  if (!bdf.ok()) return absl::InvalidArgumentError(absl::StrFormat("host=%s: %s", host, bdf.status().message()));
  LocatedDevice d;
  d.bdf = *bdf;
  d.sysfs_dir = Under(o, "/sys/bus/pci/devices/" + d.bdf);
  if (!Exists(d.sysfs_dir)) {
    return absl::NotFoundError(absl::StrFormat(
        "no PCI device %s (no /sys/bus/pci/devices/%s): check the address with lspci -D", d.bdf, d.bdf));
  }
  if (absl::Status s = CheckDriver(d.sysfs_dir, d.bdf); !s.ok()) return s;
  std::string name;
  for (const std::string& entry : ListDir(d.sysfs_dir + "/vfio-dev")) {
    if (IsVfioCdevName(entry)) {
      name = entry;
      break;
    }
  }
  if (name.empty()) {
    return absl::FailedPreconditionError(absl::StrFormat(
        "%s is bound to %s but vfio-pci has no cdev for it (no /sys/bus/pci/devices/%s/vfio-dev/vfioN): the host "
        "kernel needs CONFIG_VFIO_DEVICE_CDEV=y (Linux 6.6+); ionest does not use the legacy /dev/vfio/<group> API",
        d.bdf, LinkName(d.sysfs_dir + "/driver").value_or("vfio-pci"), d.bdf));
  }
  d.cdev_path = Under(o, "/dev/vfio/devices/" + name);
  if (absl::Status s = CheckCdevNode(o, d.cdev_path, name); !s.ok()) return s;
  if (absl::Status s = CheckGroup(d.sysfs_dir, d.bdf, nullptr); !s.ok()) return s;
  return d;
}

absl::StatusOr<LocatedDevice> LocateByPath(const std::string& path, const LocateOptions& o) {
  LocatedDevice d;
  d.cdev_path = Under(o, path);
  struct stat st;
  if (stat(d.cdev_path.c_str(), &st) != 0) {
    int e = errno;
    if (e == ENOENT || e == ENOTDIR) {
      return absl::NotFoundError(absl::StrFormat(
          "%s does not exist: bind the device to vfio-pci (echo vfio-pci > /sys/bus/pci/devices/<bdf>/driver_override; "
          "echo <bdf> > /sys/bus/pci/drivers_probe) and check that the host kernel has CONFIG_VFIO_DEVICE_CDEV=y "
          "(ls /dev/vfio/devices)",
          path));
    }
    return VfioErrno(e, absl::StrFormat("stat %s", path));
  }
  std::string base = fs::path(path).filename().string();
  if (!S_ISCHR(st.st_mode)) {
    return absl::FailedPreconditionError(absl::StrFormat(
        "%s is not a VFIO device cdev (not a character device): pass path=/dev/vfio/devices/vfioN (ls "
        "/dev/vfio/devices) or host=DDDD:BB:DD.F",
        path));
  }
  // The sysfs entry: by name, else the one whose device number matches.
  std::string name;
  std::string classdir = Under(o, "/sys/class/vfio-dev");
  if (IsVfioCdevName(base) && Exists(classdir + "/" + base)) {
    std::optional<dev_t> dev = ReadDevNumber(classdir + "/" + base + "/dev");
    if (!dev || *dev == st.st_rdev) name = base;
  }
  if (name.empty()) {
    for (const std::string& entry : ListDir(classdir)) {
      std::optional<dev_t> dev = ReadDevNumber(classdir + "/" + entry + "/dev");
      if (IsVfioCdevName(entry) && dev && *dev == st.st_rdev) {
        name = entry;
        break;
      }
    }
  }
  if (name.empty()) {
    bool group_node = fs::path(path).parent_path() == "/dev/vfio" &&
                      std::all_of(base.begin(), base.end(), [](char c) { return absl::ascii_isdigit(c); });
    if (group_node) {
      return absl::FailedPreconditionError(absl::StrFormat(
          "%s is a VFIO group node (legacy container API), not a device cdev: pass path=/dev/vfio/devices/vfioN "
          "(ls /sys/kernel/iommu_groups/%s/devices/*/vfio-dev) or host=DDDD:BB:DD.F",
          path, base));
    }
    return absl::FailedPreconditionError(absl::StrFormat(
        "%s is not a VFIO device cdev (no matching /sys/class/vfio-dev entry): pass path=/dev/vfio/devices/vfioN "
        "(ls /dev/vfio/devices) or host=DDDD:BB:DD.F",
        path));
  }
  if (name != base && Exists(Under(o, "/dev/vfio/devices/" + name))) {
    d.cdev_path = Under(o, "/dev/vfio/devices/" + name);
  }
  // The function behind it: /sys/class/vfio-dev/vfioN/device → .../0000:00:02.0.
  std::error_code ec;
  fs::path dev_dir = fs::canonical(classdir + "/" + name + "/device", ec);
  if (!ec) {
    absl::StatusOr<std::string> bdf = NormalizePciAddress(dev_dir.filename().string());
    std::string pci_dir = bdf.ok() ? Under(o, "/sys/bus/pci/devices/" + *bdf) : "";
    if (bdf.ok() && *bdf == dev_dir.filename().string() && Exists(pci_dir)) {
      d.bdf = *bdf;
      d.sysfs_dir = pci_dir;
    } else {
      d.sysfs_dir = dev_dir.string();
    }
  }
  if (absl::Status s = CheckFunction(d); !s.ok()) return s;
  return d;
}

// "/dev/vfio/devices/vfio0 (0000:00:02.0)".
std::string DisplayName(const LocatedDevice& d, const LocateOptions& o) {
  std::string path = HostView(o, d.cdev_path);
  return d.bdf.empty() ? path : absl::StrFormat("%s (%s)", path, d.bdf);
}

struct Holder {
  int pid = 0;
  std::string comm;
  std::string path;  // what it holds
};

// A process other than this one with an fd on one of `targets` (host paths), from /proc/*/fd.
std::optional<Holder> FindHolder(const LocateOptions& o, const std::vector<std::string>& targets) {
  std::string proc = Under(o, "/proc");
  const int self = getpid();
  for (const std::string& entry : ListDir(proc)) {
    int pid = 0;
    auto [end, ec] = std::from_chars(entry.data(), entry.data() + entry.size(), pid);
    if (ec != std::errc() || end != entry.data() + entry.size() || pid <= 0 || pid == self) continue;
    std::string fds = proc + "/" + entry + "/fd";
    for (const std::string& fd : ListDir(fds)) {
      std::error_code lec;
      std::string target = fs::read_symlink(fds + "/" + fd, lec).string();
      if (lec) continue;
      if (std::find(targets.begin(), targets.end(), target) == targets.end()) continue;
      return Holder{pid, ReadLine(proc + "/" + entry + "/comm").value_or("?"), HostView(o, target)};
    }
  }
  return std::nullopt;
}

// Ways a process may name a device's cdev in /proc/<pid>/fd.
std::vector<std::string> CdevTargets(const LocateOptions& o, const std::string& cdev_path) {
  std::vector<std::string> t = {cdev_path, HostView(o, cdev_path)};
  std::string name = fs::path(cdev_path).filename().string();
  if (IsVfioCdevName(name)) t.push_back("/dev/vfio/devices/" + name);
  return t;
}

absl::Status WithKernelMessage(absl::StatusCode code, const std::string& text, const absl::Status& bind_error) {
  return absl::Status(code, absl::StrFormat("%s [%s]", text, bind_error.message()));
}

}  // namespace

absl::StatusOr<std::string> NormalizePciAddress(std::string_view text) {
  auto bad = [&](std::string_view why) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "'%s' is not a PCI address (%s): expected DDDD:BB:DD.F in hex, e.g. 0000:01:00.0 as lspci -D prints", text,
        why));
  };
  auto hex = [](std::string_view s, size_t min_digits, size_t max_digits, uint32_t* out) {
    if (s.size() < min_digits || s.size() > max_digits) return false;
    uint32_t v = 0;
    for (char c : s) {
      if (!absl::ascii_isxdigit(c)) return false;
      v = v * 16 + static_cast<uint32_t>(absl::ascii_isdigit(c) ? c - '0' : absl::ascii_tolower(c) - 'a' + 10);
    }
    *out = v;
    return true;
  };
  size_t dot = text.rfind('.');
  if (dot == std::string_view::npos) return bad("no '.' before the function number");
  std::string_view head = text.substr(0, dot), fn_text = text.substr(dot + 1);
  std::vector<std::string_view> parts;
  for (size_t start = 0;;) {
    size_t colon = head.find(':', start);
    parts.push_back(head.substr(start, colon == std::string_view::npos ? colon : colon - start));
    if (colon == std::string_view::npos) break;
    start = colon + 1;
  }
  if (parts.size() < 2 || parts.size() > 3) return bad("expected domain:bus:device.function");
  uint32_t domain = 0, bus = 0, dev = 0, fn = 0;
  if (parts.size() == 3 && !hex(parts[0], 4, 8, &domain)) return bad("domain must be 4 to 8 hex digits");
  if (!hex(parts[parts.size() - 2], 2, 2, &bus)) return bad("bus must be 2 hex digits");
  if (!hex(parts.back(), 2, 2, &dev)) return bad("device must be 2 hex digits");
  if (dev > 0x1f) return bad("device must be 00-1f");
  if (fn_text.size() != 1 || fn_text[0] < '0' || fn_text[0] > '7') return bad("function must be 0-7");
  fn = static_cast<uint32_t>(fn_text[0] - '0');
  return absl::StrFormat("%04x:%02x:%02x.%x", domain, bus, dev, fn);
}

absl::StatusOr<LocatedDevice> LocateVfioDevice(const VfioDeviceSpec& spec, const LocateOptions& options) {
  if (spec.path.empty() == spec.host.empty()) {
    return absl::InvalidArgumentError(
        "a VFIO device needs exactly one of path=/dev/vfio/devices/vfioN or host=DDDD:BB:DD.F");
  }
  if (!spec.host.empty()) return LocateByHost(spec.host, options);
  if (spec.path[0] != '/') {
    return absl::InvalidArgumentError(
        absl::StrFormat("path=%s must be absolute (/dev/vfio/devices/vfioN)", spec.path));
  }
  return LocateByPath(spec.path, options);
}

absl::StatusOr<std::unique_ptr<VfioDeviceOps>> OpenVfioCdev(const LocatedDevice& device,
                                                           const LocateOptions& options) {
  std::string shown = HostView(options, device.cdev_path);
  UniqueFd fd(open(device.cdev_path.c_str(), O_RDWR | O_CLOEXEC));
  if (!fd.valid()) {
    int e = errno;
    if (e == EACCES || e == EPERM) {
      return absl::PermissionDeniedError(absl::StrFormat(
          "no permission to open %s: run as root or give your user the device (chown $USER %s) and enough "
          "RLIMIT_MEMLOCK for guest RAM (ulimit -l, or CAP_IPC_LOCK)",
          shown, shown));
    }
    if (e == ENOENT) return absl::NotFoundError(absl::StrFormat("%s does not exist (any more): was the device "
                                                                "unbound from vfio-pci?", shown));
    if (e == ENODEV || e == ENXIO) {
      return absl::FailedPreconditionError(absl::StrFormat(
          "%s is not a VFIO device (%s): the device is gone or no longer bound to vfio-pci", shown, std::strerror(e)));
    }
    return VfioErrno(e, absl::StrFormat("open %s", shown));
  }
  struct stat st;
  if (fstat(fd.get(), &st) != 0) return VfioErrno(errno, absl::StrFormat("fstat %s", shown));
  if (!S_ISCHR(st.st_mode)) {
    return absl::FailedPreconditionError(absl::StrFormat(
        "%s is not a VFIO device cdev (not a character device): pass path=/dev/vfio/devices/vfioN", shown));
  }
  return std::make_unique<VfioCdev>(std::move(fd), DisplayName(device, options), device.sysfs_dir);
}

absl::StatusOr<int> OpenIommufd(const LocateOptions& options) {
  std::string path = Under(options, options.iommufd_path);
  const std::string& shown = options.iommufd_path;
  UniqueFd fd(open(path.c_str(), O_RDWR | O_CLOEXEC));
  if (!fd.valid()) {
    int e = errno;
    if (e == ENOENT || e == ENODEV || e == ENXIO) {
      return absl::NotFoundError(absl::StrFormat(
          "%s missing (%s): the host kernel needs CONFIG_IOMMUFD (modprobe iommufd) and an enabled IOMMU "
          "(intel_iommu=on / amd_iommu=on)",
          shown, std::strerror(e)));
    }
    if (e == EACCES || e == EPERM) {
      return absl::PermissionDeniedError(absl::StrFormat(
          "no permission to open %s: run as root or give your user the device (chown $USER %s, or a udev rule) "
          "and enough RLIMIT_MEMLOCK for guest RAM",
          shown, shown));
    }
    return VfioErrno(e, absl::StrFormat("open %s", shown));
  }
  struct stat st;
  if (fstat(fd.get(), &st) != 0) return VfioErrno(errno, absl::StrFormat("fstat %s", shown));
  if (!S_ISCHR(st.st_mode)) {
    return absl::FailedPreconditionError(absl::StrFormat(
        "%s is not a character device: remove it; the iommufd module creates /dev/iommu (modprobe iommufd)", shown));
  }
  return fd.Release();
}

absl::Status ExplainBindError(const absl::Status& bind_error, int err, const LocatedDevice& device,
                              const LocateOptions& options) {
  if (bind_error.ok()) return bind_error;
  std::string name = DisplayName(device, options);
  if (err == EINVAL) {
    if (std::optional<Holder> h = FindHolder(options, CdevTargets(options, device.cdev_path))) {
      return WithKernelMessage(
          absl::StatusCode::kFailedPrecondition,
          absl::StrFormat("%s is already in use by process %d (%s): a device can belong to one VM at a time; stop "
                          "that process or pass another device",
                          name, h->pid, h->comm),
          bind_error);
    }
    return WithKernelMessage(
        absl::StatusCode::kFailedPrecondition,
        absl::StrFormat("%s cannot be bound to iommufd: it is probably in use by another process (a device can belong "
                        "to one VM at a time; fuser -v %s shows who), or the host IOMMU cannot enforce cache coherency",
                        name, HostView(options, device.cdev_path)),
        bind_error);
  }
  if (err == EBUSY) {
    std::string group;
    if (!device.sysfs_dir.empty()) {
      absl::Status g = CheckGroup(device.sysfs_dir, device.bdf, &group);
      if (!g.ok()) return WithKernelMessage(g.code(), absl::StrFormat("%s: %s", name, g.message()), bind_error);
      // Viable on paper: another VFIO user holds the group (legacy /dev/vfio/<group>) or one of its devices.
      std::vector<std::string> targets = {"/dev/vfio/" + group, Under(options, "/dev/vfio/" + group)};
      std::string devices = device.sysfs_dir + "/iommu_group/devices";
      for (const std::string& member : ListDir(devices)) {
        for (const std::string& cdev : ListDir(devices + "/" + member + "/vfio-dev")) {
          if (!IsVfioCdevName(cdev)) continue;
          std::vector<std::string> t = CdevTargets(options, Under(options, "/dev/vfio/devices/" + cdev));
          targets.insert(targets.end(), t.begin(), t.end());
        }
      }
      if (std::optional<Holder> h = FindHolder(options, targets)) {
        return WithKernelMessage(
            absl::StatusCode::kFailedPrecondition,
            absl::StrFormat("%s: IOMMU group %s is in use by process %d (%s), which holds %s: a group can belong to "
                            "one VM at a time; stop that process",
                            name, group, h->pid, h->comm, h->path),
            bind_error);
      }
    }
    std::string where = group.empty() ? "its IOMMU group" : absl::StrFormat("IOMMU group %s", group);
    return WithKernelMessage(
        absl::StatusCode::kFailedPrecondition,
        absl::StrFormat("%s: %s is not viable or in use: another device of the group is bound to a host driver or "
                        "used by another VFIO process (ls -l /sys/kernel/iommu_groups/%s/devices; fuser -v "
                        "/dev/vfio/%s /dev/vfio/devices/*)",
                        name, where, group.empty() ? "<group>" : group, group.empty() ? "<group>" : group),
        bind_error);
  }
  if (err == EPERM) {
    return WithKernelMessage(
        absl::StatusCode::kFailedPrecondition,
        absl::StrFormat("%s: the host cannot isolate the device's MSIs (interrupt remapping is off): enable it "
                        "(intel_iommu=on with x2apic/IR, amd_iommu=on; dmesg | grep -i remapping) or, accepting the "
                        "risk, echo 1 > /sys/module/iommufd/parameters/allow_unsafe_interrupts",
                        name),
        bind_error);
  }
  if (absl::StrContains(bind_error.message(), HostView(options, device.cdev_path))) return bind_error;
  return absl::Status(bind_error.code(), absl::StrFormat("%s: %s", name, bind_error.message()));
}

absl::Status ExplainBindError(const absl::Status& bind_error, const LocatedDevice& device,
                              const LocateOptions& options) {
  return ExplainBindError(bind_error, StatusErrno(bind_error), device, options);
}

}  // namespace ionest::vfio
