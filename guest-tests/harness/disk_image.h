// Scratch disk images for guest tests: a sparse file whose first line is a
// known pattern, so the guest can check reads and the host can check guest
// writes after the run. Thread-compatible.
#pragma once

#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace ionest::guest {

// Creates (truncates) `path` with `size_bytes` (sparse) and writes
// `first_line` + '\n' at offset 0.
absl::Status CreateDiskImage(const std::string& path, uint64_t size_bytes, const std::string& first_line);

// Returns the bytes at offset 0 up to (not including) the first '\n'
// (at most 4096 bytes).
absl::StatusOr<std::string> ReadFirstLine(const std::string& path);

}  // namespace ionest::guest
