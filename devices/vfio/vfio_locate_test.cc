// vfio_locate on a fake host tree (sysfs, /dev, /proc under a temp root) and the region-info
// parser of vfio_cdev. Device nodes are symlinks to /dev/null (a real character device) since a
// test cannot mknod; sysfs `dev` files carry /dev/null's numbers.
#include "devices/vfio/vfio_locate.h"

#include <fcntl.h>
#include <grp.h>
#include <linux/vfio.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/str_format.h"
#include "devices/vfio/vfio_cdev.h"
#include "gtest/gtest.h"

namespace ionest::vfio {
namespace {

namespace fs = std::filesystem;

constexpr char kBdf[] = "0000:00:02.0";

// Fails the test with the message when `s` lacks any of `words`.
void ExpectMentions(const absl::Status& s, std::initializer_list<const char*> words) {
  ASSERT_FALSE(s.ok());
  for (const char* w : words) {
    EXPECT_NE(s.message().find(w), absl::string_view::npos) << "missing '" << w << "' in: " << s.message();
  }
}

class FakeHost {
 public:
  FakeHost() {
    std::string tmpl = ::testing::TempDir() + "/ionest_vfio_locate_XXXXXX";
    std::vector<char> buf(tmpl.begin(), tmpl.end());
    buf.push_back('\0');
    root_ = mkdtemp(buf.data()) ? buf.data() : "";
    chmod(root_.c_str(), 0755);  // traversable by the unprivileged child of RunUnprivileged
    struct stat st;
    stat("/dev/null", &st);
    null_dev_ = absl::StrFormat("%u:%u", major(st.st_rdev), minor(st.st_rdev));
  }
  ~FakeHost() {
    std::error_code ec;
    if (!root_.empty()) fs::remove_all(root_, ec);
  }

  const std::string& root() const { return root_; }
  std::string Path(const std::string& rel) const { return root_ + rel; }
  LocateOptions Options() const {
    LocateOptions o;
    o.root = root_;
    return o;
  }

  void Dir(const std::string& rel) { fs::create_directories(Path(rel)); }
  void File(const std::string& rel, const std::string& content) {
    Dir(fs::path(rel).parent_path().string());
    std::ofstream(Path(rel)) << content;
  }
  void Link(const std::string& rel, const std::string& target) {
    Dir(fs::path(rel).parent_path().string());
    std::error_code ec;
    fs::remove(Path(rel), ec);
    fs::create_symlink(target, Path(rel));
  }
  void Remove(const std::string& rel) {
    std::error_code ec;
    fs::remove_all(Path(rel), ec);
  }

  // A PCI function in IOMMU group `group` (-1: none), bound to `driver` ("" = none), laid out with
  // relative symlinks as sysfs does.
  void AddFunction(const std::string& bdf, const std::string& driver, int group) {
    std::string dir = "/sys/bus/pci/devices/" + bdf;
    Dir(dir);
    if (!driver.empty()) {
      Dir("/sys/bus/pci/drivers/" + driver);
      Link(dir + "/driver", "../../../../bus/pci/drivers/" + driver);
    }
    if (group >= 0) {
      std::string g = absl::StrFormat("/sys/kernel/iommu_groups/%d", group);
      Link(dir + "/iommu_group", "../../../.." + g.substr(4));
      Link(g + "/devices/" + bdf, "../../../../bus/pci/devices/" + bdf);
    }
  }
  // vfio-pci's cdev `name` for `bdf`: the sysfs class device and the /dev node.
  void AddCdev(const std::string& bdf, const std::string& name) {
    std::string dir = "/sys/bus/pci/devices/" + bdf + "/vfio-dev/" + name;
    Dir(dir);
    File(dir + "/dev", null_dev_ + "\n");
    Link(dir + "/device", "../../../" + bdf);
    Link("/sys/class/vfio-dev/" + name, "../../bus/pci/devices/" + bdf + "/vfio-dev/" + name);
    Link("/dev/vfio/devices/" + name, "/dev/null");
  }
  // The usual good setup: kBdf on vfio-pci with cdev vfio0 in group 5, plus a bridge on pcieport
  // and an unbound sibling in the same group.
  void AddGoodDevice() {
    AddFunction(kBdf, "vfio-pci", 5);
    AddCdev(kBdf, "vfio0");
    AddFunction("0000:00:01.0", "pcieport", 5);
    AddFunction("0000:00:02.2", "", 5);
  }

 private:
  std::string root_;
  std::string null_dev_;
};

// Runs `fn` without root privileges (in a child as nobody when we are root) and returns its result.
bool RunUnprivileged(const std::function<bool()>& fn) {
  if (geteuid() != 0) return fn();
  fflush(nullptr);
  pid_t pid = fork();
  if (pid == 0) {
    if (setgroups(0, nullptr) != 0 || setresgid(65534, 65534, 65534) != 0 || setresuid(65534, 65534, 65534) != 0) {
      _exit(2);
    }
    _exit(fn() ? 0 : 1);
  }
  int status = 0;
  if (pid < 0 || waitpid(pid, &status, 0) != pid) return false;
  return WIFEXITED(status) && WEXITSTATUS(status) == 0;
}

bool Mentions(const absl::Status& s, std::initializer_list<const char*> words) {
  bool ok = !s.ok();
  for (const char* w : words) ok = ok && s.message().find(w) != absl::string_view::npos;
  if (!ok) fprintf(stderr, "unexpected status: %s\n", s.ToString().c_str());
  return ok;
}

// --- PCI addresses ---

TEST(NormalizePciAddressTest, AcceptsAndNormalises) {
  EXPECT_EQ(*NormalizePciAddress("0000:00:02.0"), "0000:00:02.0");
  EXPECT_EQ(*NormalizePciAddress("00:02.0"), "0000:00:02.0");
  EXPECT_EQ(*NormalizePciAddress("0000:AB:1F.7"), "0000:ab:1f.7");
  EXPECT_EQ(*NormalizePciAddress("10000:e1:00.0"), "10000:e1:00.0");  // VMD domains
}

TEST(NormalizePciAddressTest, RejectsWithReason) {
  struct Case {
    const char* text;
    const char* why;
  } cases[] = {
      {"", "no '.'"},
      {"0000:00:02", "no '.'"},
      {"0000:00:20.0", "00-1f"},
      {"0000:00:02.8", "0-7"},
      {"0000:00:02.", "0-7"},
      {"0000:00:02.10", "0-7"},
      {"000:00:02.0", "domain"},
      {"0000:0g:02.0", "bus"},
      {"0000:000:02.0", "bus"},
      {"0000:00:2.0", "device"},
      {"1:2:3:4.0", "domain:bus:device.function"},
      {"02.0", "domain:bus:device.function"},
  };
  for (const Case& c : cases) {
    absl::StatusOr<std::string> r = NormalizePciAddress(c.text);
    ASSERT_FALSE(r.ok()) << c.text;
    EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
    ExpectMentions(r.status(), {c.why, "DDDD:BB:DD.F", "lspci -D"});
  }
}

// --- LocateVfioDevice: happy paths ---

TEST(LocateTest, HostFindsCdevThroughSysfs) {
  FakeHost h;
  h.AddGoodDevice();
  absl::StatusOr<LocatedDevice> d = LocateVfioDevice({.host = "0000:00:02.0"}, h.Options());
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_EQ(d->cdev_path, h.Path("/dev/vfio/devices/vfio0"));
  EXPECT_EQ(d->bdf, kBdf);
  EXPECT_EQ(d->sysfs_dir, h.Path("/sys/bus/pci/devices/0000:00:02.0"));
  // Short and upper-case forms name the same function.
  absl::StatusOr<LocatedDevice> d2 = LocateVfioDevice({.host = "00:02.0"}, h.Options());
  ASSERT_TRUE(d2.ok()) << d2.status();
  EXPECT_EQ(d2->bdf, kBdf);
}

TEST(LocateTest, PathDerivesBdfThroughClassDevice) {
  FakeHost h;
  h.AddGoodDevice();
  absl::StatusOr<LocatedDevice> d = LocateVfioDevice({.path = "/dev/vfio/devices/vfio0"}, h.Options());
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_EQ(d->cdev_path, h.Path("/dev/vfio/devices/vfio0"));
  EXPECT_EQ(d->bdf, kBdf);
  EXPECT_EQ(d->sysfs_dir, h.Path("/sys/bus/pci/devices/0000:00:02.0"));
}

TEST(LocateTest, PathWithTrailingSlashRootAndVariantDriver) {
  FakeHost h;
  h.AddFunction(kBdf, "mlx5_vfio_pci", 3);
  h.AddCdev(kBdf, "vfio4");
  h.AddFunction("0000:00:02.1", "pci-stub", 3);
  h.AddFunction("0000:00:02.2", "vfio-pci", 3);
  LocateOptions o = h.Options();
  o.root += "/";
  absl::StatusOr<LocatedDevice> d = LocateVfioDevice({.path = "/dev/vfio/devices/vfio4"}, o);
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_EQ(d->cdev_path, h.Path("/dev/vfio/devices/vfio4"));
  EXPECT_EQ(d->bdf, kBdf);
}

TEST(LocateTest, PathWithoutPciDeviceLinkStillLocates) {
  FakeHost h;
  h.AddGoodDevice();
  h.Remove("/sys/bus/pci/devices/0000:00:02.0/vfio-dev/vfio0/device");
  absl::StatusOr<LocatedDevice> d = LocateVfioDevice({.path = "/dev/vfio/devices/vfio0"}, h.Options());
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_EQ(d->bdf, "");
  EXPECT_EQ(d->sysfs_dir, "");
}

// --- LocateVfioDevice: errors ---

TEST(LocateTest, SpecNeedsExactlyOneOfPathAndHost) {
  FakeHost h;
  ExpectMentions(LocateVfioDevice({}, h.Options()).status(), {"path=", "host="});
  ExpectMentions(LocateVfioDevice({.path = "/dev/vfio/devices/vfio0", .host = kBdf}, h.Options()).status(),
                 {"exactly one"});
  ExpectMentions(LocateVfioDevice({.path = "vfio0"}, h.Options()).status(), {"absolute"});
}

TEST(LocateTest, PathMissingNamesBindStepsAndKernelOption) {
  FakeHost h;
  absl::Status s = LocateVfioDevice({.path = "/dev/vfio/devices/vfio7"}, h.Options()).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kNotFound);
  ExpectMentions(s, {"/dev/vfio/devices/vfio7 does not exist", "vfio-pci", "driver_override", "drivers_probe",
                     "CONFIG_VFIO_DEVICE_CDEV=y"});
  EXPECT_EQ(s.message().find(h.root()), absl::string_view::npos) << "messages show host paths: " << s.message();
}

TEST(LocateTest, PathNotACharacterDevice) {
  FakeHost h;
  h.File("/dev/vfio/devices/vfio0", "");
  ExpectMentions(LocateVfioDevice({.path = "/dev/vfio/devices/vfio0"}, h.Options()).status(),
                 {"not a VFIO device cdev", "not a character device", "/dev/vfio/devices/vfioN"});
  h.Dir("/dev/vfio/devices/vfio1");
  ExpectMentions(LocateVfioDevice({.path = "/dev/vfio/devices/vfio1"}, h.Options()).status(),
                 {"not a character device"});
}

TEST(LocateTest, PathCharDeviceWithoutVfioSysfsEntry) {
  FakeHost h;
  h.Link("/dev/vfio/devices/vfio3", "/dev/null");
  ExpectMentions(LocateVfioDevice({.path = "/dev/vfio/devices/vfio3"}, h.Options()).status(),
                 {"/dev/vfio/devices/vfio3 is not a VFIO device cdev", "/sys/class/vfio-dev"});
  h.Link("/tmp/mydev", "/dev/null");
  ExpectMentions(LocateVfioDevice({.path = "/tmp/mydev"}, h.Options()).status(), {"not a VFIO device cdev"});
}

TEST(LocateTest, PathStaleNodeWithOtherNumbers) {
  FakeHost h;
  h.AddGoodDevice();
  h.File("/sys/bus/pci/devices/0000:00:02.0/vfio-dev/vfio0/dev", "511:0\n");
  ExpectMentions(LocateVfioDevice({.path = "/dev/vfio/devices/vfio0"}, h.Options()).status(),
                 {"not a VFIO device cdev"});
}

TEST(LocateTest, PathFoundByDeviceNumberUnderAnotherName) {
  FakeHost h;
  h.AddGoodDevice();
  h.Link("/dev/my-nic", "/dev/null");
  absl::StatusOr<LocatedDevice> d = LocateVfioDevice({.path = "/dev/my-nic"}, h.Options());
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_EQ(d->cdev_path, h.Path("/dev/vfio/devices/vfio0"));
  EXPECT_EQ(d->bdf, kBdf);
}

TEST(LocateTest, PathLegacyGroupNode) {
  FakeHost h;
  h.Link("/dev/vfio/12", "/dev/null");
  ExpectMentions(LocateVfioDevice({.path = "/dev/vfio/12"}, h.Options()).status(),
                 {"VFIO group node", "legacy", "/dev/vfio/devices/vfioN", "iommu_groups/12"});
}

TEST(LocateTest, HostBadSyntax) {
  FakeHost h;
  absl::Status s = LocateVfioDevice({.host = "0000:00:33.0"}, h.Options()).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  ExpectMentions(s, {"host=0000:00:33.0", "00-1f", "DDDD:BB:DD.F"});
}

TEST(LocateTest, HostNoSuchDevice) {
  FakeHost h;
  absl::Status s = LocateVfioDevice({.host = "0000:00:03.0"}, h.Options()).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kNotFound);
  ExpectMentions(s, {"no PCI device 0000:00:03.0", "lspci"});
}

TEST(LocateTest, HostNotBoundToAnyDriver) {
  FakeHost h;
  h.AddFunction(kBdf, "", 5);
  absl::Status s = LocateVfioDevice({.host = kBdf}, h.Options()).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition);
  ExpectMentions(s, {"0000:00:02.0 is not bound to any driver",
                     "echo vfio-pci > /sys/bus/pci/devices/0000:00:02.0/driver_override",
                     "echo 0000:00:02.0 > /sys/bus/pci/drivers_probe"});
}

TEST(LocateTest, HostBoundToAnotherDriver) {
  FakeHost h;
  h.AddFunction(kBdf, "e1000e", 5);
  absl::Status s = LocateVfioDevice({.host = kBdf}, h.Options()).status();
  ExpectMentions(s, {"bound to e1000e, not vfio-pci", "echo 0000:00:02.0 > /sys/bus/pci/drivers/e1000e/unbind",
                     "driver_override", "drivers_probe"});
}

TEST(LocateTest, HostVfioPciWithoutCdev) {
  FakeHost h;
  h.AddFunction(kBdf, "vfio-pci", 5);
  absl::Status s = LocateVfioDevice({.host = kBdf}, h.Options()).status();
  ExpectMentions(s, {"vfio-pci has no cdev for it", "CONFIG_VFIO_DEVICE_CDEV", "6.6"});
  h.Dir("/sys/bus/pci/devices/0000:00:02.0/vfio-dev/bogus");  // odd entries are ignored
  ExpectMentions(LocateVfioDevice({.host = kBdf}, h.Options()).status(), {"no cdev"});
}

TEST(LocateTest, HostCdevListedButNodeMissing) {
  FakeHost h;
  h.AddGoodDevice();
  h.Remove("/dev/vfio/devices/vfio0");
  absl::Status s = LocateVfioDevice({.host = kBdf}, h.Options()).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kNotFound);
  ExpectMentions(s, {"/dev/vfio/devices/vfio0 does not exist although sysfs lists vfio0", "devtmpfs"});
}

TEST(LocateTest, GroupNotViableNamesDeviceDriverAndFix) {
  FakeHost h;
  h.AddGoodDevice();
  h.AddFunction("0000:00:02.1", "pci_endpoint_test", 5);
  for (VfioDeviceSpec spec : {VfioDeviceSpec{.host = kBdf}, VfioDeviceSpec{.path = "/dev/vfio/devices/vfio0"}}) {
    absl::Status s = LocateVfioDevice(spec, h.Options()).status();
    EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition);
    ExpectMentions(s, {"IOMMU group 5 is not viable: 0000:00:02.1 is bound to pci_endpoint_test; unbind it or bind "
                       "it to vfio-pci too",
                       "echo 0000:00:02.1 > /sys/bus/pci/drivers/pci_endpoint_test/unbind"});
  }
  h.AddFunction("0000:00:02.3", "e1000e", 5);
  ExpectMentions(LocateVfioDevice({.host = kBdf}, h.Options()).status(),
                 {"0000:00:02.1 is bound to pci_endpoint_test, 0000:00:02.3 is bound to e1000e; unbind them"});
}

TEST(LocateTest, NoIommuGroup) {
  FakeHost h;
  h.AddFunction(kBdf, "vfio-pci", -1);
  h.AddCdev(kBdf, "vfio0");
  absl::Status s = LocateVfioDevice({.host = kBdf}, h.Options()).status();
  ExpectMentions(s, {"0000:00:02.0 has no IOMMU group", "IOMMU is off", "intel_iommu=on", "amd_iommu=on"});
}

TEST(LocateTest, OddSysfsDoesNotCrash) {
  FakeHost h;
  h.AddGoodDevice();
  h.File("/sys/class/vfio-dev/vfio0/dev", "garbage");  // through the class link
  h.Link("/sys/kernel/iommu_groups/5/devices/dangling", "../../../../nowhere");
  h.File("/sys/kernel/iommu_groups/5/devices/plainfile", "x");
  h.Link("/sys/bus/pci/devices/0000:00:02.2/driver", "/");
  EXPECT_TRUE(LocateVfioDevice({.host = kBdf}, h.Options()).ok());
  EXPECT_TRUE(LocateVfioDevice({.path = "/dev/vfio/devices/vfio0"}, h.Options()).ok());
  h.Remove("/sys/bus/pci/devices/0000:00:02.0/iommu_group");
  h.File("/sys/bus/pci/devices/0000:00:02.0/iommu_group", "not a link");
  ExpectMentions(LocateVfioDevice({.host = kBdf}, h.Options()).status(), {"no IOMMU group"});
}

// --- OpenIommufd ---

TEST(OpenIommufdTest, Missing) {
  FakeHost h;
  absl::Status s = OpenIommufd(h.Options()).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kNotFound);
  ExpectMentions(s, {"/dev/iommu missing", "CONFIG_IOMMUFD", "modprobe iommufd", "IOMMU"});
}

TEST(OpenIommufdTest, OpensCharacterDevice) {
  FakeHost h;
  h.Link("/dev/iommu", "/dev/null");
  absl::StatusOr<int> fd = OpenIommufd(h.Options());
  ASSERT_TRUE(fd.ok()) << fd.status();
  EXPECT_GE(*fd, 0);
  EXPECT_NE(fcntl(*fd, F_GETFD) & FD_CLOEXEC, 0);
  close(*fd);
}

TEST(OpenIommufdTest, NotACharacterDevice) {
  FakeHost h;
  h.File("/dev/iommu", "");
  ExpectMentions(OpenIommufd(h.Options()).status(), {"not a character device"});
}

TEST(OpenIommufdTest, NoPermission) {
  FakeHost h;
  h.File("/dev/iommu", "");
  chmod(h.Path("/dev/iommu").c_str(), 0);
  LocateOptions o = h.Options();
  EXPECT_TRUE(RunUnprivileged([&] {
    absl::Status s = OpenIommufd(o).status();
    return s.code() == absl::StatusCode::kPermissionDenied &&
           Mentions(s, {"no permission to open /dev/iommu", "run as root", "chown"});
  }));
}

// --- OpenVfioCdev and VfioCdev on a non-VFIO fd ---

TEST(OpenVfioCdevTest, OpensAndNamesDevice) {
  FakeHost h;
  h.AddGoodDevice();
  std::vector<uint8_t> config(4096);
  for (size_t i = 0; i < config.size(); ++i) config[i] = static_cast<uint8_t>(i * 7);
  h.File("/sys/bus/pci/devices/0000:00:02.0/config", std::string(config.begin(), config.end()));
  absl::StatusOr<LocatedDevice> d = LocateVfioDevice({.host = kBdf}, h.Options());
  ASSERT_TRUE(d.ok()) << d.status();
  absl::StatusOr<std::unique_ptr<VfioDeviceOps>> ops = OpenVfioCdev(*d, h.Options());
  ASSERT_TRUE(ops.ok()) << ops.status();
  EXPECT_EQ((*ops)->name(), "/dev/vfio/devices/vfio0 (0000:00:02.0)");

  // /dev/null has no VFIO ioctls: errors name the ioctl, the device and errno, which is kept.
  absl::Status info = (*ops)->GetInfo().status();
  ExpectMentions(info, {"VFIO_DEVICE_GET_INFO on /dev/vfio/devices/vfio0 (0000:00:02.0)", std::strerror(ENOTTY),
                        "errno 25"});
  EXPECT_EQ(StatusErrno(info), ENOTTY);
  absl::Status bind = (*ops)->BindIommufd(3).status();
  ExpectMentions(bind, {"VFIO_DEVICE_BIND_IOMMUFD", "vfio0"});
  ExpectMentions((*ops)->GetRegionInfo(0).status(), {"VFIO_DEVICE_GET_REGION_INFO (region 0)"});
  uint32_t v = 0;
  ExpectMentions((*ops)->RegionRead(7, 0, &v, 4), {"VFIO_DEVICE_GET_REGION_INFO (region 7)"});
  ExpectMentions((*ops)->Mmap(0, 0, 4096).status(), {"VFIO_DEVICE_GET_REGION_INFO"});
  int efd = -1;
  ExpectMentions((*ops)->SetIrqEventfds(kIrqMsix, 0, {&efd, 1}), {"VFIO_DEVICE_SET_IRQS"});
  ExpectMentions((*ops)->SetIrqEventfds(kIrqMsix, 0, {}), {"DisableIrqs"});
  ExpectMentions((*ops)->DisableIrqs(kIrqMsi), {"VFIO_DEVICE_SET_IRQS (disable"});
  ExpectMentions((*ops)->UnmaskIntx(), {"VFIO_DEVICE_SET_IRQS (unmask"});
  ExpectMentions((*ops)->Reset(), {"VFIO_DEVICE_RESET"});
  ExpectMentions((*ops)->AttachPt(2), {"VFIO_DEVICE_ATTACH_IOMMUFD_PT"});
  ExpectMentions((*ops)->DetachPt(), {"VFIO_DEVICE_DETACH_IOMMUFD_PT"});
  ExpectMentions((*ops)->GetIrqInfo(2).status(), {"VFIO_DEVICE_GET_IRQ_INFO"});
  (*ops)->Unmap(reinterpret_cast<void*>(0x1000), 4096);  // not ours: ignored

  absl::StatusOr<std::vector<uint8_t>> unfiltered = (*ops)->ReadUnfilteredConfig();
  ASSERT_TRUE(unfiltered.ok()) << unfiltered.status();
  EXPECT_EQ(*unfiltered, config);
}

// PASID attach on fds that are no VFIO device: /dev/null has no ioctls (ENOTTY, reported as is);
// /dev/urandom answers unknown ioctls with EINVAL, which is what a pre-6.15 vfio says to the
// PASID flag, so it stands in for an old host kernel.
TEST(OpenVfioCdevTest, PasidAttachErrors) {
  VfioCdev null_dev(UniqueFd(open("/dev/null", O_RDWR | O_CLOEXEC)), "nulldev");
  absl::Status s = null_dev.AttachPasid(1, 5);
  EXPECT_EQ(s.code(), absl::ErrnoToStatusCode(ENOTTY));
  EXPECT_EQ(StatusErrno(s), ENOTTY);
  EXPECT_EQ(s.message(), absl::StrFormat("VFIO_DEVICE_ATTACH_IOMMUFD_PT (ATTACH_PASID, pasid 1, pt 5) on nulldev: "
                                         "%s (errno %d)",
                                         std::strerror(ENOTTY), ENOTTY));
  ExpectMentions(null_dev.DetachPasid(1), {"VFIO_DEVICE_DETACH_IOMMUFD_PT (DETACH_PASID, pasid 1) on nulldev"});

  VfioCdev old_kernel(UniqueFd(open("/dev/urandom", O_RDONLY | O_CLOEXEC)), "olddev");
  ASSERT_GE(old_kernel.fd(), 0);
  s = old_kernel.AttachPasid(2, 7);
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(s, NoPasidAttachError(PasidAttachWhat("olddev", 2, 7)));
  ExpectMentions(s, {"VFIO_DEVICE_ATTACH_IOMMUFD_PT (ATTACH_PASID, pasid 2, pt 7) on olddev", "errno 22",
                     "lacks PASID attach", "VFIO_DEVICE_ATTACH_PASID, Linux 6.15+", "PASID > 0 cannot be bound",
                     "run a host kernel with it"});
  s = old_kernel.DetachPasid(2);
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(s, NoPasidAttachError(PasidDetachWhat("olddev", 2)));
  // The plain attach on the same fd stays an ordinary EINVAL.
  EXPECT_EQ(old_kernel.AttachPt(7).code(), absl::StatusCode::kInvalidArgument);
}

TEST(OpenVfioCdevTest, UnfilteredConfigUnavailable) {
  FakeHost h;
  h.Link("/dev/vfio/devices/vfio0", "/dev/null");
  h.File("/sys/bus/pci/devices/0000:00:02.0/config", std::string(64, 'x'));  // what non-root reads
  LocatedDevice d{h.Path("/dev/vfio/devices/vfio0"), kBdf, h.Path("/sys/bus/pci/devices/0000:00:02.0")};
  absl::StatusOr<std::unique_ptr<VfioDeviceOps>> ops = OpenVfioCdev(d, h.Options());
  ASSERT_TRUE(ops.ok()) << ops.status();
  absl::Status s = (*ops)->ReadUnfilteredConfig().status();
  EXPECT_EQ(s.code(), absl::StatusCode::kNotFound);
  ExpectMentions(s, {"only 64 bytes"});
  h.Remove("/sys/bus/pci/devices/0000:00:02.0/config");
  EXPECT_EQ((*ops)->ReadUnfilteredConfig().status().code(), absl::StatusCode::kNotFound);

  d.sysfs_dir = "";
  d.bdf = "";
  ops = OpenVfioCdev(d, h.Options());
  ASSERT_TRUE(ops.ok()) << ops.status();
  EXPECT_EQ((*ops)->name(), "/dev/vfio/devices/vfio0");
  EXPECT_EQ((*ops)->ReadUnfilteredConfig().status().code(), absl::StatusCode::kNotFound);
}

TEST(OpenVfioCdevTest, Errors) {
  FakeHost h;
  LocatedDevice d{h.Path("/dev/vfio/devices/vfio0"), kBdf, ""};
  ExpectMentions(OpenVfioCdev(d, h.Options()).status(), {"/dev/vfio/devices/vfio0 does not exist"});
  h.File("/dev/vfio/devices/vfio0", "");
  ExpectMentions(OpenVfioCdev(d, h.Options()).status(), {"not a character device"});
  chmod(h.Path("/dev/vfio/devices/vfio0").c_str(), 0);
  LocateOptions o = h.Options();
  EXPECT_TRUE(RunUnprivileged([&] {
    absl::Status s = OpenVfioCdev(d, o).status();
    return s.code() == absl::StatusCode::kPermissionDenied &&
           Mentions(s, {"no permission to open /dev/vfio/devices/vfio0", "run as root", "chown", "RLIMIT_MEMLOCK"});
  }));
}

// --- ExplainBindError ---

class ExplainBindErrorTest : public ::testing::Test {
 protected:
  void SetUp() override {
    h_.AddGoodDevice();
    absl::StatusOr<LocatedDevice> d = LocateVfioDevice({.host = kBdf}, h_.Options());
    ASSERT_TRUE(d.ok()) << d.status();
    dev_ = *d;
  }
  absl::Status Bind(int err) {
    return VfioErrno(err, "VFIO_DEVICE_BIND_IOMMUFD (iommufd 5) on /dev/vfio/devices/vfio0 (0000:00:02.0)");
  }
  FakeHost h_;
  LocatedDevice dev_;
};

TEST_F(ExplainBindErrorTest, InUseNamesHolderProcess) {
  h_.Link("/proc/1234/fd/3", dev_.cdev_path);
  h_.File("/proc/1234/comm", "qemu-system-x86\n");
  h_.Dir("/proc/self");  // non-numeric entries are skipped
  absl::Status s = ExplainBindError(Bind(EINVAL), EINVAL, dev_, h_.Options());
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition);
  ExpectMentions(s, {"/dev/vfio/devices/vfio0 (0000:00:02.0) is already in use by process 1234 (qemu-system-x86)",
                     "one VM at a time", "Invalid argument"});
  // The errno can also come from the status itself (VfioCdev attaches it).
  EXPECT_EQ(ExplainBindError(Bind(EINVAL), dev_, h_.Options()), s);
}

TEST_F(ExplainBindErrorTest, InUseByHostPathLinkWithoutComm) {
  h_.Link("/proc/77/fd/10", "/dev/vfio/devices/vfio0");  // what the kernel shows
  h_.Link("/proc/77/fd/11", "/dev/vfio/devices/vfio9");
  ExpectMentions(ExplainBindError(Bind(EINVAL), EINVAL, dev_, h_.Options()), {"in use by process 77 (?)"});
}

TEST_F(ExplainBindErrorTest, OwnProcessIsNotTheHolder) {
  h_.Link(absl::StrFormat("/proc/%d/fd/3", getpid()), dev_.cdev_path);
  h_.Link("/proc/55/fd/0", "/dev/null");
  absl::Status s = ExplainBindError(Bind(EINVAL), EINVAL, dev_, h_.Options());
  ExpectMentions(s, {"probably in use by another process", "fuser -v /dev/vfio/devices/vfio0"});
  EXPECT_EQ(s.message().find("process 55"), absl::string_view::npos);
}

TEST_F(ExplainBindErrorTest, BusyNamesGroupCulprit) {
  h_.AddFunction("0000:00:02.1", "pci_endpoint_test", 5);
  absl::Status s = ExplainBindError(Bind(EBUSY), EBUSY, dev_, h_.Options());
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition);
  ExpectMentions(s, {"IOMMU group 5 is not viable: 0000:00:02.1 is bound to pci_endpoint_test", "vfio-pci too"});
}

TEST_F(ExplainBindErrorTest, BusyNamesLegacyGroupHolder) {
  h_.Link("/proc/4321/fd/7", "/dev/vfio/5");
  h_.File("/proc/4321/comm", "dpdk\n");
  ExpectMentions(ExplainBindError(Bind(EBUSY), EBUSY, dev_, h_.Options()),
                 {"IOMMU group 5 is in use by process 4321 (dpdk), which holds /dev/vfio/5"});
}

TEST_F(ExplainBindErrorTest, BusyNamesHolderOfSiblingCdev) {
  h_.AddFunction("0000:00:02.1", "vfio-pci", 5);
  h_.AddCdev("0000:00:02.1", "vfio1");
  h_.Link("/proc/99/fd/4", "/dev/vfio/devices/vfio1");
  ExpectMentions(ExplainBindError(Bind(EBUSY), EBUSY, dev_, h_.Options()),
                 {"IOMMU group 5 is in use by process 99", "/dev/vfio/devices/vfio1"});
}

TEST_F(ExplainBindErrorTest, BusyWithoutVisibleCause) {
  ExpectMentions(ExplainBindError(Bind(EBUSY), EBUSY, dev_, h_.Options()),
                 {"IOMMU group 5 is not viable or in use", "/sys/kernel/iommu_groups/5/devices", "Device or resource busy"});
  LocatedDevice bare{dev_.cdev_path, "", ""};
  ExpectMentions(ExplainBindError(Bind(EBUSY), EBUSY, bare, h_.Options()), {"its IOMMU group"});
}

TEST_F(ExplainBindErrorTest, InterruptRemappingOff) {
  ExpectMentions(ExplainBindError(Bind(EPERM), EPERM, dev_, h_.Options()),
                 {"interrupt remapping", "allow_unsafe_interrupts"});
}

TEST_F(ExplainBindErrorTest, OtherErrorsPassThroughWithDeviceName) {
  absl::Status nomem = Bind(ENOMEM);
  EXPECT_EQ(ExplainBindError(nomem, ENOMEM, dev_, h_.Options()), nomem);
  absl::Status bare = absl::InternalError("fake failure");
  absl::Status s = ExplainBindError(bare, dev_, h_.Options());
  EXPECT_EQ(s.code(), absl::StatusCode::kInternal);
  ExpectMentions(s, {"/dev/vfio/devices/vfio0 (0000:00:02.0): fake failure"});
  EXPECT_TRUE(ExplainBindError(absl::OkStatus(), 0, dev_, h_.Options()).ok());
}

TEST(VfioErrnoTest, CarriesErrno) {
  absl::Status s = VfioErrno(EBUSY, "thing");
  EXPECT_EQ(s.code(), absl::ErrnoToStatusCode(EBUSY));
  EXPECT_EQ(StatusErrno(s), EBUSY);
  ExpectMentions(s, {"thing: Device or resource busy (errno 16)"});
  EXPECT_EQ(StatusErrno(absl::UnavailableError("x")), 0);
  EXPECT_EQ(StatusErrno(absl::OkStatus()), 0);
}

// --- Region info parsing ---

// Builds a GET_REGION_INFO reply: struct vfio_region_info then raw capability bytes.
class ReplyBuilder {
 public:
  ReplyBuilder(uint32_t flags, uint64_t size, uint64_t offset = 0x30000000000ull) : buf_(32, 0) {
    Put32(0, 32);
    Put32(4, flags);
    Put32(8, 0);  // index
    Put64(16, size);
    Put64(24, offset);
  }
  void SetCapOffset(uint32_t off) {
    Put32(4, Get32(4) | VFIO_REGION_INFO_FLAG_CAPS);
    Put32(12, off);
  }
  // Appends a header (id, version 1, next); returns its offset.
  size_t AddHeader(uint16_t id, uint32_t next) {
    size_t at = buf_.size();
    buf_.resize(at + 8, 0);
    std::memcpy(&buf_[at], &id, 2);
    uint16_t version = 1;
    std::memcpy(&buf_[at + 2], &version, 2);
    Put32(at + 4, next);
    return at;
  }
  size_t AddSparse(uint32_t next, std::vector<MmapArea> areas, uint32_t claimed = UINT32_MAX) {
    size_t at = AddHeader(VFIO_REGION_INFO_CAP_SPARSE_MMAP, next);
    buf_.resize(at + 16 + areas.size() * 16, 0);
    Put32(at + 8, claimed == UINT32_MAX ? static_cast<uint32_t>(areas.size()) : claimed);
    for (size_t i = 0; i < areas.size(); ++i) {
      Put64(at + 16 + i * 16, areas[i].offset);
      Put64(at + 24 + i * 16, areas[i].size);
    }
    return at;
  }
  void Put32(size_t at, uint32_t v) { std::memcpy(&buf_[at], &v, 4); }
  void Put64(size_t at, uint64_t v) { std::memcpy(&buf_[at], &v, 8); }
  uint32_t Get32(size_t at) const {
    uint32_t v;
    std::memcpy(&v, &buf_[at], 4);
    return v;
  }
  const std::vector<uint8_t>& bytes() const { return buf_; }
  absl::StatusOr<ParsedRegion> Parse(size_t trim = 0) const { return ParseRegionInfo(buf_.data(), buf_.size() - trim); }

 private:
  std::vector<uint8_t> buf_;
};

constexpr uint32_t kRwMmap = VFIO_REGION_INFO_FLAG_READ | VFIO_REGION_INFO_FLAG_WRITE | VFIO_REGION_INFO_FLAG_MMAP;

bool SameAreas(const std::vector<MmapArea>& a, const std::vector<MmapArea>& b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    if (a[i].offset != b[i].offset || a[i].size != b[i].size) return false;
  }
  return true;
}

TEST(ParseRegionInfoTest, WholeRegionWithoutCaps) {
  ReplyBuilder r(kRwMmap, 0x4000);
  absl::StatusOr<ParsedRegion> p = r.Parse();
  ASSERT_TRUE(p.ok()) << p.status();
  EXPECT_EQ(p->info.size, 0x4000u);
  EXPECT_EQ(p->fd_offset, 0x30000000000ull);
  EXPECT_TRUE(p->info.readable());
  EXPECT_TRUE(p->info.writable());
  EXPECT_TRUE(SameAreas(p->info.mmap_areas, {{0, 0x4000}}));
  EXPECT_FALSE(p->caps.has_sparse_mmap);
}

TEST(ParseRegionInfoTest, NoMmapNoAreas) {
  ReplyBuilder r(VFIO_REGION_INFO_FLAG_READ | VFIO_REGION_INFO_FLAG_WRITE, 0x100);
  r.SetCapOffset(32);
  r.AddSparse(0, {{0, 0x100}});
  absl::StatusOr<ParsedRegion> p = r.Parse();
  ASSERT_TRUE(p.ok()) << p.status();
  EXPECT_TRUE(p->info.mmap_areas.empty());
  ReplyBuilder empty(kRwMmap, 0);
  ASSERT_TRUE(empty.Parse().ok());
  EXPECT_TRUE(empty.Parse()->info.mmap_areas.empty());
}

TEST(ParseRegionInfoTest, SparseChainWithOtherCaps) {
  ReplyBuilder r(kRwMmap, 0x4000);
  r.SetCapOffset(32);
  r.AddHeader(VFIO_REGION_INFO_CAP_MSIX_MAPPABLE, 40);
  r.AddHeader(/*unknown id*/ 77, 48);
  r.AddSparse(0, {{0, 0x1000}, {0x2000, 0}, {0x3000, 0x1000}});
  absl::StatusOr<ParsedRegion> p = r.Parse();
  ASSERT_TRUE(p.ok()) << p.status();
  EXPECT_TRUE(p->caps.msix_mappable);
  EXPECT_TRUE(p->caps.has_sparse_mmap);
  EXPECT_TRUE(SameAreas(p->info.mmap_areas, {{0, 0x1000}, {0x3000, 0x1000}}));  // empty area dropped

  // Direct use of the chain walker.
  absl::StatusOr<RegionCaps> caps = ParseRegionInfoCaps(r.bytes().data(), r.bytes().size(), 32, 0x4000);
  ASSERT_TRUE(caps.ok()) << caps.status();
  EXPECT_EQ(caps->sparse_areas.size(), 2u);
  // CAPS flag without an offset (the kernel's "buffer too small" answer) means no chain.
  ReplyBuilder small(kRwMmap, 0x4000);
  small.SetCapOffset(0);
  ASSERT_TRUE(small.Parse().ok());
  EXPECT_TRUE(SameAreas(small.Parse()->info.mmap_areas, {{0, 0x4000}}));
}

TEST(ParseRegionInfoTest, SparseWithNoAreasMeansNothingMappable) {
  ReplyBuilder r(kRwMmap, 0x4000);
  r.SetCapOffset(32);
  r.AddSparse(0, {});
  absl::StatusOr<ParsedRegion> p = r.Parse();
  ASSERT_TRUE(p.ok()) << p.status();
  EXPECT_TRUE(p->caps.has_sparse_mmap);
  EXPECT_TRUE(p->info.mmap_areas.empty());
}

TEST(ParseRegionInfoTest, Truncated) {
  ReplyBuilder r(kRwMmap, 0x4000);
  EXPECT_FALSE(r.Parse(1).ok());  // shorter than struct vfio_region_info
  ExpectMentions(ParseRegionInfo(r.bytes().data(), 0).status(), {"truncated"});

  ReplyBuilder areas(kRwMmap, 0x4000);
  areas.SetCapOffset(32);
  areas.AddSparse(0, {{0, 0x1000}, {0x2000, 0x1000}}, /*claimed=*/3);
  ExpectMentions(areas.Parse().status(), {"claims 3 areas"});
  ExpectMentions(areas.Parse(/*trim=*/1).status(), {"claims 3 areas"});

  ReplyBuilder huge(kRwMmap, 0x4000);
  huge.SetCapOffset(32);
  huge.AddSparse(0, {{0, 0x1000}}, /*claimed=*/0xffffffff - 1);
  ExpectMentions(huge.Parse().status(), {"areas"});

  ReplyBuilder header(kRwMmap, 0x4000);
  header.SetCapOffset(32);
  header.AddSparse(0, {});
  ExpectMentions(header.Parse(/*trim=*/4).status(), {"truncated"});  // nr_areas/reserved cut
  ExpectMentions(header.Parse(/*trim=*/12).status(), {"outside the reply"});  // header cut
}

TEST(ParseRegionInfoTest, Loops) {
  ReplyBuilder self(kRwMmap, 0x4000);
  self.SetCapOffset(32);
  self.AddHeader(99, 32);  // points at itself
  ExpectMentions(self.Parse().status(), {"loops"});

  ReplyBuilder back(kRwMmap, 0x4000);
  back.SetCapOffset(32);
  back.AddHeader(99, 40);
  back.AddHeader(98, 32);  // back to the first
  ExpectMentions(back.Parse().status(), {"loops"});

  ReplyBuilder overlap(kRwMmap, 0x4000);
  overlap.SetCapOffset(32);
  overlap.AddHeader(99, 36);  // into its own header
  overlap.AddHeader(98, 0);
  ExpectMentions(overlap.Parse().status(), {"loops"});

  // A long forward chain still ends: more than 64 capabilities is refused.
  ReplyBuilder many(kRwMmap, 0x4000);
  many.SetCapOffset(32);
  for (int i = 0; i < 70; ++i) many.AddHeader(99, i == 69 ? 0 : 32 + 8 * (i + 1));
  ExpectMentions(many.Parse().status(), {"more than 64"});
}

TEST(ParseRegionInfoTest, OutOfBounds) {
  ReplyBuilder past(kRwMmap, 0x4000);
  past.SetCapOffset(4096);
  ExpectMentions(past.Parse().status(), {"outside the reply"});

  ReplyBuilder inside_info(kRwMmap, 0x4000);
  inside_info.SetCapOffset(8);  // inside struct vfio_region_info
  inside_info.AddHeader(99, 0);
  ExpectMentions(inside_info.Parse().status(), {"outside the reply"});

  ReplyBuilder next_past(kRwMmap, 0x4000);
  next_past.SetCapOffset(32);
  next_past.AddHeader(99, 0xfffffff8);
  ExpectMentions(next_past.Parse().status(), {"outside the reply"});

  ReplyBuilder area(kRwMmap, 0x4000);
  area.SetCapOffset(32);
  area.AddSparse(0, {{0x3000, 0x2000}});
  ExpectMentions(area.Parse().status(), {"outside the region"});

  ReplyBuilder wrap(kRwMmap, 0x4000);
  wrap.SetCapOffset(32);
  wrap.AddSparse(0, {{0x1000, ~0ull}});
  ExpectMentions(wrap.Parse().status(), {"outside the region"});

  ReplyBuilder region_wraps(kRwMmap, 0x4000, ~0ull - 0x100);
  ExpectMentions(region_wraps.Parse().status(), {"wraps"});
}

TEST(ParseRegionInfoTest, RandomRepliesNeverCrash) {
  std::mt19937 rng(42);
  for (int iter = 0; iter < 20000; ++iter) {
    ReplyBuilder r(static_cast<uint32_t>(rng()), rng() % 0x10000);
    r.SetCapOffset(rng() % 3 ? 32 : static_cast<uint32_t>(rng() % 256));
    int n = static_cast<int>(rng() % 4);
    for (int i = 0; i < n; ++i) {
      uint32_t next = rng() % 4 ? static_cast<uint32_t>(r.bytes().size() + 8 + 16 * (rng() % 3)) : rng() % 256;
      if (rng() % 2) {
        r.AddSparse(i == n - 1 ? 0 : next, {{rng() % 0x8000, rng() % 0x8000}}, rng() % 4 ? UINT32_MAX : rng() % 8);
      } else {
        r.AddHeader(static_cast<uint16_t>(rng() % 5), i == n - 1 ? 0 : next);
      }
    }
    absl::StatusOr<ParsedRegion> p = r.Parse(rng() % 8 == 0 ? rng() % 16 : 0);
    if (p.ok()) {
      for (const MmapArea& a : p->info.mmap_areas) EXPECT_LE(a.offset + a.size, p->info.size);
    }
  }
}

}  // namespace
}  // namespace ionest::vfio
