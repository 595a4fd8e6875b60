#include "guest-tests/harness/disk_image.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "absl/strings/str_cat.h"

namespace ionest::guest {
namespace {

absl::Status Errno(const std::string& what, const std::string& path) {
  return absl::InternalError(absl::StrCat(what, " ", path, ": ", std::strerror(errno)));
}

}  // namespace

absl::Status CreateDiskImage(const std::string& path, uint64_t size_bytes, const std::string& first_line) {
  const std::string data = first_line + "\n";
  if (data.size() > size_bytes) return absl::InvalidArgumentError("disk image smaller than its first line");
  int fd = open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return Errno("cannot create", path);
  absl::Status status;
  if (ftruncate(fd, static_cast<off_t>(size_bytes)) != 0) {
    status = Errno("cannot size", path);
  } else if (pwrite(fd, data.data(), data.size(), 0) != static_cast<ssize_t>(data.size())) {
    status = Errno("cannot write", path);
  }
  if (close(fd) != 0 && status.ok()) status = Errno("cannot close", path);
  return status;
}

absl::StatusOr<std::string> ReadFirstLine(const std::string& path) {
  int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return Errno("cannot open", path);
  char buf[4096];
  ssize_t n = pread(fd, buf, sizeof(buf), 0);
  int saved = errno;
  close(fd);
  if (n < 0) {
    errno = saved;
    return Errno("cannot read", path);
  }
  std::string line(buf, static_cast<size_t>(n));
  if (size_t nl = line.find('\n'); nl != std::string::npos) line.resize(nl);
  return line;
}

}  // namespace ionest::guest
