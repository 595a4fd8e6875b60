#include "vmm/kvm.h"

#include <unistd.h>

#include <string>

#include "gtest/gtest.h"

namespace ionest {
namespace {

TEST(KvmSystemTest, MissingDeviceNamesCauseAndFix) {
  auto kvm = KvmSystem::Open("/nonexistent/kvm");
  ASSERT_FALSE(kvm.ok());
  EXPECT_EQ(kvm.status().code(), absl::StatusCode::kNotFound);
  EXPECT_NE(std::string(kvm.status().message()).find("load the kvm module"), std::string::npos);
}

TEST(KvmSystemTest, NonKvmDeviceIsRejected) {
  // /dev/null opens but KVM_GET_API_VERSION fails: an error, not a crash.
  auto kvm = KvmSystem::Open("/dev/null");
  EXPECT_FALSE(kvm.ok());
}

TEST(FdTest, MoveTransfersOwnership) {
  Fd a(dup(0));
  int raw = a.get();
  ASSERT_GE(raw, 0);
  Fd b(std::move(a));
  EXPECT_FALSE(a.valid());
  EXPECT_EQ(b.get(), raw);
}

}  // namespace
}  // namespace ionest
