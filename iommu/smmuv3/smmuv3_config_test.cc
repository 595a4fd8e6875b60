#include "iommu/smmuv3/smmuv3_config.h"

#include <memory>

#include "gtest/gtest.h"
#include "iommu/smmuv3/smmuv3_defs.h"
#include "iommu/testing/vmsa_builder.h"

namespace ionest::smmuv3 {
namespace {

// A valid stage-2 STE: 40-bit IPA from level 1, 4 KiB granule, 48-bit PS, AArch64.
void MakeS2(uint64_t (&w)[8]) {
  w[0] = kSte0V | kSteCfgS2 << 1;
  const uint64_t vtcr = 24 | 1u << 6 | 5u << 16;
  w[2] = 7 | vtcr << 32 | kSte2S2AA64;
  w[3] = 0x10'0000;
}

TEST(Smmuv3ConfigTest, SteIllegalEncodings) {
  DecodeCaps caps;
  uint64_t w[8] = {};
  EXPECT_FALSE(DecodeSte(w, caps));  // V = 0
  w[0] = kSte0V | 1u << 1;           // Config 0b001: reserved, behaves as abort (§5.2)
  ASSERT_TRUE(DecodeSte(w, caps));
  EXPECT_EQ(DecodeSte(w, caps)->config, kSteCfgAbort);
  w[0] = kSte0V;  // abort
  ASSERT_TRUE(DecodeSte(w, caps));
  EXPECT_EQ(DecodeSte(w, caps)->config, kSteCfgAbort);
  MakeS2(w);
  ASSERT_TRUE(DecodeSte(w, caps));
  EXPECT_EQ(DecodeSte(w, caps)->vmid, 7);
  EXPECT_EQ(DecodeSte(w, caps)->s2_config.t0sz, 24);
  uint64_t bad[8];
  std::copy(w, w + 8, bad);
  bad[2] &= ~kSte2S2AA64;  // AArch32 tables
  EXPECT_FALSE(DecodeSte(bad, caps));
  std::copy(w, w + 8, bad);
  bad[2] |= uint64_t{3} << (32 + 14);  // S2TG reserved
  EXPECT_FALSE(DecodeSte(bad, caps));
  std::copy(w, w + 8, bad);
  bad[2] = (bad[2] & ~Bits(37, 32)) | uint64_t{10} << 32;  // T0SZ 10: 54-bit IPA
  EXPECT_FALSE(DecodeSte(bad, caps));
  std::copy(w, w + 8, bad);
  bad[2] |= uint64_t{2} << 38;  // SL0 2 (level 0) with a 40-bit IPA
  EXPECT_FALSE(DecodeSte(bad, caps));
  caps.stage2 = false;
  EXPECT_FALSE(DecodeSte(w, caps));  // stage 2 not implemented
  caps = {};
  w[0] = kSte0V | kSteCfgS1 << 1 | uint64_t{21} << 59;  // S1CDMax beyond SSIDSIZE
  EXPECT_FALSE(DecodeSte(w, caps));
  w[0] = kSte0V | kSteCfgS1 << 1 | uint64_t{3} << 4 | uint64_t{4} << 59;  // S1Fmt 3: behaves as linear
  w[1] = 3;                                                                // S1DSS 3: as terminate
  ASSERT_TRUE(DecodeSte(w, caps));
  EXPECT_EQ(DecodeSte(w, caps)->s1_fmt, kS1FmtLinear);
  EXPECT_EQ(DecodeSte(w, caps)->s1_dss, kS1DssTerminate);
  caps.two_level_cd = false;
  w[0] = kSte0V | kSteCfgS1 << 1 | uint64_t{kS1Fmt4KL2} << 4 | uint64_t{4} << 59;  // 2-level without CD2L
  EXPECT_FALSE(DecodeSte(w, caps));
  caps = {};
  w[0] = kSte0V | kSteCfgS1 << 1;
  w[1] = uint64_t{2} << 30;  // StreamWorld EL2 without HYP
  EXPECT_FALSE(DecodeSte(w, caps));
}

TEST(Smmuv3ConfigTest, CdIllegalEncodings) {
  DecodeCaps caps;
  uint64_t w[8] = {};
  w[0] = 16 | kCd0Epd1 | kCd0V | uint64_t{5} << 32 | kCd0AA64 | uint64_t{0x42} << 48;
  w[1] = 0x20'0000;
  ASSERT_TRUE(DecodeCd(w, caps));
  EXPECT_EQ(DecodeCd(w, caps)->asid, 0x42);
  EXPECT_TRUE(DecodeCd(w, caps)->s1.ttbr[0].enabled);
  EXPECT_FALSE(DecodeCd(w, caps)->s1.ttbr[1].enabled);
  uint64_t bad[8];
  std::copy(w, w + 8, bad);
  bad[0] &= ~kCd0V;
  EXPECT_FALSE(DecodeCd(bad, caps));
  std::copy(w, w + 8, bad);
  bad[0] &= ~kCd0AA64;
  EXPECT_FALSE(DecodeCd(bad, caps));
  std::copy(w, w + 8, bad);
  bad[0] = (bad[0] & ~Bits(5, 0)) | 12;  // T0SZ 12
  EXPECT_FALSE(DecodeCd(bad, caps));
  std::copy(w, w + 8, bad);
  bad[0] |= 3u << 6;  // TG0 reserved
  EXPECT_FALSE(DecodeCd(bad, caps));
  std::copy(w, w + 8, bad);
  bad[0] |= uint64_t{7} << 32;  // IPS 0b111: behaves as 0b110 (52 bits), capped by the OAS
  ASSERT_TRUE(DecodeCd(bad, caps));
  EXPECT_EQ(DecodeCd(bad, caps)->s1.oas_bits, 48);
  std::copy(w, w + 8, bad);
  bad[0] &= ~kCd0Epd1;  // TTB1 half enabled with TG1 = 0 (reserved encoding)
  EXPECT_FALSE(DecodeCd(bad, caps));
  caps.gran4k = false;
  EXPECT_FALSE(DecodeCd(w, caps));  // granule not implemented
  caps = {};
  caps.oas_bits = 40;
  EXPECT_EQ(DecodeCd(w, caps)->s1.oas_bits, 40);  // IPS capped by OAS
}

TEST(Smmuv3ConfigTest, StreamTableLookup) {
  auto mem = *GuestMemory::Create({{0, 16ull << 20}});
  DecodeCaps caps;
  uint64_t ste[8] = {};
  MakeS2(ste);
  // Linear, 2^4 entries at 1 MiB.
  ASSERT_TRUE(mem->Write(0x10'0000 + 3 * kSteSize, ste, sizeof(ste)).ok());
  StreamTable linear{0x10'0000, 4};
  EXPECT_TRUE(FetchSte(*mem, caps, linear, 3).ok());
  EXPECT_EQ(FetchSte(*mem, caps, linear, 16).fault.event, kEvtBadStreamId);
  EXPECT_EQ(FetchSte(*mem, caps, linear, 2).fault.event, kEvtBadSte);
  EXPECT_EQ(FetchSte(*mem, caps, StreamTable{0x4000'0000, 4}, 2).fault.event, kEvtSteFetch);
  EXPECT_EQ(FetchSte(*mem, caps, StreamTable{0x4000'0000, 4}, 2).fault.fetch_addr, 0x4000'0000u + 2 * kSteSize);
  // 2-level, SPLIT 8, level-2 table for StreamIDs 0x100-0x1ff with Span 5 (16 STEs).
  StreamTable two{0x20'0000, 16 | 8 << 6 | kStrtabFmt2Level << 16};
  ASSERT_TRUE(mem->WriteObj<uint64_t>(0x20'0000 + 1 * 8, 0x30'0000 | 5).ok());
  ASSERT_TRUE(mem->Write(0x30'0000 + 0xf * kSteSize, ste, sizeof(ste)).ok());
  EXPECT_TRUE(FetchSte(*mem, caps, two, 0x10f).ok());
  EXPECT_EQ(FetchSte(*mem, caps, two, 0x110).fault.event, kEvtBadStreamId);  // beyond Span
  EXPECT_EQ(FetchSte(*mem, caps, two, 0x20f).fault.event, kEvtBadStreamId);  // Span 0
  StreamTable bad_split{0x20'0000, 16 | 7 << 6 | kStrtabFmt2Level << 16};
  EXPECT_EQ(FetchSte(*mem, caps, bad_split, 0x10f).fault.event, kEvtBadStreamId);
}

}  // namespace
}  // namespace ionest::smmuv3
