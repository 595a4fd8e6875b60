#include "vmm/boot_params.h"

#include <cstring>

#include "gtest/gtest.h"
#include "vmm/x86_boot.h"

namespace ionest {
namespace {

LoadedKernel FakeKernel() {
  LoadedKernel k;
  k.entry = 0x1000000;
  k.load_start = 0x1000000;
  k.load_end = 0x1800000;
  k.format = "elf";
  return k;
}

TEST(BootParamsTest, ZeroPageCarriesE820CmdlineAndInitrd) {
  auto layout = ComputeMemoryLayout(512ull << 20);
  ASSERT_TRUE(layout.ok());
  LoadedKernel k = FakeKernel();
  auto initrd = PlaceInitrd(*layout, k, 3 * 4096 + 5);
  ASSERT_TRUE(initrd.ok()) << initrd.status();
  EXPECT_EQ(initrd->addr % 4096, 0u);
  EXPECT_LE(initrd->addr + initrd->size, layout->low_ram_end);
  EXPECT_GE(initrd->addr, k.load_end);
  EXPECT_GT(initrd->addr, layout->low_ram_end - 5 * 4096);  // placed at the top

  BootParamsInput in{"console=ttyS0 quiet", *initrd, 0xE0000};
  auto bp = BuildBootParams(*layout, k, in);
  ASSERT_TRUE(bp.ok()) << bp.status();
  EXPECT_EQ(bp->hdr.boot_flag, 0xAA55);
  EXPECT_EQ(bp->hdr.header, 0x53726448u);
  EXPECT_EQ(bp->hdr.type_of_loader, 0xff);
  EXPECT_TRUE(bp->hdr.loadflags & LOADED_HIGH);
  EXPECT_EQ(bp->hdr.cmd_line_ptr, kCmdlineAddr);
  EXPECT_EQ(bp->hdr.ramdisk_image, initrd->addr);
  EXPECT_EQ(bp->hdr.ramdisk_size, initrd->size);
  EXPECT_EQ(bp->acpi_rsdp_addr, 0xE0000u);
  ASSERT_EQ(bp->e820_entries, layout->e820.size());
  for (size_t i = 0; i < layout->e820.size(); ++i) {
    EXPECT_EQ(bp->e820_table[i].addr, layout->e820[i].addr);
    EXPECT_EQ(bp->e820_table[i].size, layout->e820[i].size);
    EXPECT_EQ(bp->e820_table[i].type, static_cast<uint32_t>(layout->e820[i].type));
  }

  auto mem = GuestMemory::Create(layout->ram);
  ASSERT_TRUE(mem.ok());
  ASSERT_TRUE(WriteBootParams(**mem, *bp, in.cmdline).ok());
  char buf[32] = {};
  ASSERT_TRUE((*mem)->Read(kCmdlineAddr, buf, in.cmdline.size() + 1).ok());
  EXPECT_STREQ(buf, "console=ttyS0 quiet");
  auto back = (*mem)->ReadObj<boot_params>(kBootParamsAddr);
  ASSERT_TRUE(back.ok());
  EXPECT_EQ(std::memcmp(&*back, &*bp, sizeof(boot_params)), 0);
}

TEST(BootParamsTest, BzImageHeaderIsKeptAndLimitsApply) {
  auto layout = ComputeMemoryLayout(512ull << 20);
  LoadedKernel k = FakeKernel();
  setup_header h{};
  h.boot_flag = 0xAA55;
  h.header = 0x53726448;
  h.version = 0x020f;
  h.cmdline_size = 16;
  h.initrd_addr_max = 0x0fffffff;  // 256 MiB
  h.kernel_alignment = 0x200000;
  k.setup = h;
  auto initrd = PlaceInitrd(*layout, k, 4096);
  ASSERT_TRUE(initrd.ok());
  EXPECT_EQ(initrd->addr + 4096, 0x10000000u);  // highest byte at initrd_addr_max
  auto bp = BuildBootParams(*layout, k, {"short", std::nullopt, 0});
  ASSERT_TRUE(bp.ok());
  EXPECT_EQ(bp->hdr.kernel_alignment, 0x200000u);
  EXPECT_EQ(bp->hdr.ramdisk_image, 0u);
  EXPECT_FALSE(BuildBootParams(*layout, k, {"a command line longer than 16", std::nullopt, 0}).ok());
  h.version = 0x020c;
  k.setup = h;
  EXPECT_FALSE(BuildBootParams(*layout, k, {"x", std::nullopt, 0xE0000}).ok());  // no acpi_rsdp_addr before 2.14
}

TEST(BootParamsTest, InitrdThatDoesNotFitIsAnError) {
  auto layout = ComputeMemoryLayout(64ull << 20);
  LoadedKernel k = FakeKernel();
  EXPECT_FALSE(PlaceInitrd(*layout, k, 50ull << 20).ok());
  EXPECT_FALSE(PlaceInitrd(*layout, k, 0).ok());
  EXPECT_FALSE(PlaceInitrd(*layout, k, ~0ull).ok());
}

TEST(X86BootTest, IdentityMapAndLongModeRegisters) {
  auto mem = GuestMemory::Create({{0, 1 << 20}});
  ASSERT_TRUE(mem.ok());
  ASSERT_TRUE(WriteBootPageTablesAndGdt(**mem).ok());
  auto pml4 = (*mem)->ReadObj<uint64_t>(kPml4Addr);
  EXPECT_EQ(*pml4, kPdptAddr | 3);
  auto pdpt3 = (*mem)->ReadObj<uint64_t>(kPdptAddr + 3 * 8);
  EXPECT_EQ(*pdpt3, (kPdAddr + 3 * 4096) | 3);
  // Last 2 MiB page of the 4th GiB maps itself.
  auto pde = (*mem)->ReadObj<uint64_t>(kPdAddr + 3 * 4096 + 511 * 8);
  EXPECT_EQ(*pde, 0xFFE00000ull | 0x83);
  auto code = (*mem)->ReadObj<uint64_t>(kGdtAddr + kBootCs);
  EXPECT_EQ(*code, 0x00AF9B000000FFFFull);
  auto data = (*mem)->ReadObj<uint64_t>(kGdtAddr + kBootDs);
  EXPECT_EQ(*data, 0x00CF93000000FFFFull);

  kvm_sregs sr = LongModeSregs(kvm_sregs{});
  EXPECT_EQ(sr.cr3, kPml4Addr);
  EXPECT_TRUE(sr.cr0 & 0x80000001);
  EXPECT_EQ(sr.efer & 0x500, 0x500u);
  EXPECT_EQ(sr.cs.l, 1);
  EXPECT_EQ(sr.cs.selector, kBootCs);
  kvm_regs r = EntryRegs(0x1000000, kBootParamsAddr);
  EXPECT_EQ(r.rip, 0x1000000u);
  EXPECT_EQ(r.rsi, kBootParamsAddr);
}

}  // namespace
}  // namespace ionest
