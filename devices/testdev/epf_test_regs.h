// Register interface of Linux's PCI endpoint test function (drivers/pci/endpoint/functions/
// pci-epf-test.c) as the host driver drivers/misc/pci_endpoint_test.c (Linux 6.12) programs it:
// 32-bit registers at the start of the test register BAR (BAR0 for default_data devices).
#pragma once

#include <cstdint>

namespace ionest::epf {

// TI DRA74x: pci_endpoint_test_tbl entry with default_data (test_reg_bar 0, alignment 4 KiB, MSI).
inline constexpr uint16_t kVendorId = 0x104c;
inline constexpr uint16_t kDeviceId = 0xb500;
inline constexpr uint32_t kClassCode = 0xff0000;  // PCI_CLASS_OTHERS, as pci-epf-test

inline constexpr uint32_t kRegMagic = 0x00;
inline constexpr uint32_t kRegCommand = 0x04;
inline constexpr uint32_t kRegStatus = 0x08;
inline constexpr uint32_t kRegSrcLo = 0x0c;
inline constexpr uint32_t kRegSrcHi = 0x10;
inline constexpr uint32_t kRegDstLo = 0x14;
inline constexpr uint32_t kRegDstHi = 0x18;
inline constexpr uint32_t kRegSize = 0x1c;
inline constexpr uint32_t kRegChecksum = 0x20;
inline constexpr uint32_t kRegIrqType = 0x24;
inline constexpr uint32_t kRegIrqNumber = 0x28;
inline constexpr uint32_t kRegFlags = 0x2c;

// COMMAND bits (one command per write; the function clears COMMAND when it takes it).
inline constexpr uint32_t kCmdRaiseIntx = 1u << 0;
inline constexpr uint32_t kCmdRaiseMsi = 1u << 1;
inline constexpr uint32_t kCmdRaiseMsix = 1u << 2;
inline constexpr uint32_t kCmdRead = 1u << 3;   // function reads SRC, checks CHECKSUM
inline constexpr uint32_t kCmdWrite = 1u << 4;  // function writes random data to DST, sets CHECKSUM
inline constexpr uint32_t kCmdCopy = 1u << 5;   // SRC -> DST

// STATUS bits.
inline constexpr uint32_t kStatusReadSuccess = 1u << 0;
inline constexpr uint32_t kStatusReadFail = 1u << 1;
inline constexpr uint32_t kStatusWriteSuccess = 1u << 2;
inline constexpr uint32_t kStatusWriteFail = 1u << 3;
inline constexpr uint32_t kStatusCopySuccess = 1u << 4;
inline constexpr uint32_t kStatusCopyFail = 1u << 5;
inline constexpr uint32_t kStatusIrqRaised = 1u << 6;
inline constexpr uint32_t kStatusSrcAddrInvalid = 1u << 7;
inline constexpr uint32_t kStatusDstAddrInvalid = 1u << 8;

// IRQ_TYPE values.
inline constexpr uint32_t kIrqTypeIntx = 0;
inline constexpr uint32_t kIrqTypeMsi = 1;
inline constexpr uint32_t kIrqTypeMsix = 2;

inline constexpr uint32_t kFlagUseDma = 1u << 0;  // accepted; every transfer is DMA here

// BAR layout. BAR0: registers + scratch in the first 4 KiB, MSI-X table and PBA after it (as
// pci-epf-test places them in the test register BAR). BAR1-5: RAM-like for the driver's BAR test.
inline constexpr uint32_t kRegWindow = 0x1000;
inline constexpr uint32_t kBar0Size = 0x4000;
inline constexpr uint32_t kMsixTableOffset = 0x2000;
inline constexpr uint32_t kMsixPbaOffset = 0x3000;
inline constexpr unsigned kNumMsiVectors = 32;
inline constexpr unsigned kNumMsixVectors = 32;
inline constexpr uint32_t kBarSizes[6] = {kBar0Size, 512, 1024, 4096, 4096, 16384};

}  // namespace ionest::epf
