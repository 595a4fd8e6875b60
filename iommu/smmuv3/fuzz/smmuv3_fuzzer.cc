// Fuzzes the SMMUv3 model as a hostile guest drives it: register writes and reads (both pages),
// stream table entries, context descriptors, page-table and queue memory, commands, DMA and ATS
// requests with and without SubstreamIDs, page requests and resets, starting from the state a
// Linux-like driver leaves (queues enabled, stage-1, stage-2 and nested streams). Nothing may
// crash, hang or grow without bound.
#include <fuzzer/FuzzedDataProvider.h>

#include <cstdint>
#include <memory>

#include "iommu/smmuv3/smmuv3_iommu.h"
#include "iommu/smmuv3/testing/smmuv3_driver.h"
#include "iommu/testing/vmsa_builder.h"

namespace {

using ionest::smmuv3::Smmuv3Iommu;
using ionest::smmuv3::Smmuv3Profile;
using namespace ionest::smmuv3::testing;  // NOLINT: driver helpers
using ionest::iommu_testing::PageAllocator;
using ionest::iommu_testing::VmsaTableBuilder;
namespace s = ionest::smmuv3;

constexpr uint64_t kRam = 8ull << 20;
constexpr uint64_t kPool = 1ull << 20;  // driver and table pages from here
constexpr uint16_t kSids[] = {0x08, 0x10, 0x18, 0x0100};
constexpr uint32_t kRegs[] = {s::kCr0, s::kCr1, s::kCr2, s::kGbpa, s::kIrqCtrl, s::kGerrorn, s::kGerrorIrqCfg0,
                              s::kStrtabBase, s::kStrtabBaseCfg, s::kCmdqBase, s::kCmdqProd, s::kCmdqCons,
                              s::kEvtqBase, s::kEvtqProd, s::kEvtqCons, s::kEvtqIrqCfg0, s::kPriqBase,
                              s::kPriqProd, s::kPriqCons};
constexpr uint8_t kOpcodes[] = {s::kCmdPrefetchConfig, s::kCmdPrefetchAddr, s::kCmdCfgiSte, s::kCmdCfgiSteRange,
                                s::kCmdCfgiCd, s::kCmdCfgiCdAll, s::kCmdTlbiNhAll, s::kCmdTlbiNhAsid,
                                s::kCmdTlbiNhVa, s::kCmdTlbiNhVaa, s::kCmdTlbiS12Vmall, s::kCmdTlbiS2Ipa,
                                s::kCmdTlbiNsnhAll, s::kCmdAtcInv, s::kCmdPriResp, s::kCmdResume, s::kCmdSync};

struct Env {
  std::unique_ptr<ionest::GuestMemory> mem;
  std::unique_ptr<PageAllocator> alloc;
  ionest::iommu_testing::RecordingMsiSink msi;
  std::unique_ptr<Smmuv3Iommu> smmu;
  std::unique_ptr<Smmuv3Driver> driver;
  uint64_t cd_table = 0;
};

std::unique_ptr<Env> MakeEnv(FuzzedDataProvider& in) {
  auto env = std::make_unique<Env>();
  env->mem = *ionest::GuestMemory::Create({{0, kRam}});
  env->alloc = std::make_unique<PageAllocator>(*env->mem, kPool, kRam - kPool);
  Smmuv3Profile p;
  p.pri = in.ConsumeBool();
  p.ats = in.ConsumeBool();
  p.two_level_stream_table = in.ConsumeBool();
  p.stall = in.ConsumeBool();
  p.max_stalls = 4;
  p.cmdq_log2 = 6;
  p.evtq_log2 = 4;
  p.priq_log2 = 3;
  p.config_cache_entries = 16;
  p.iotlb_entries = 64;
  p.max_commands_per_kick = 128;
  env->smmu = std::make_unique<Smmuv3Iommu>(*env->mem, env->msi, p);
  env->driver = std::make_unique<Smmuv3Driver>(*env->smmu, *env->mem, *env->alloc);
  Smmuv3Driver::Options o;
  o.two_level_stream_table = p.two_level_stream_table;
  o.strtab_log2 = 10;
  o.split = 6;
  if (!env->driver->Probe().ok() || !env->driver->Init(o).ok()) return nullptr;
  // Stage 1 (sid 0x08, 16 CDs), stage 2 (0x10), nested (0x18) over small identity-ish maps.
  auto s1 = VmsaTableBuilder::CreateStage1(*env->mem, *env->alloc, 48);
  auto s2 = VmsaTableBuilder::Create(*env->mem, *env->alloc, 40, 1);
  if (!s1.ok() || !s2.ok()) return nullptr;
  (void)s1->Map(0x10000, 0x10000, 16 * ionest::kPage4K, VmsaTableBuilder::Stage1Attrs(ionest::kDmaRead | ionest::kDmaWrite));
  (void)s2->Map(0, 0, 2ull << 20, VmsaTableBuilder::Stage2Attrs(ionest::kDmaRead | ionest::kDmaWrite), ionest::kPage2M);
  (void)s2->Map(2ull << 20, 2ull << 20, 6ull << 20, VmsaTableBuilder::Stage2Attrs(ionest::kDmaRead | ionest::kDmaWrite),
                ionest::kPage2M);
  env->cd_table = *env->driver->AllocCdTable(4);
  for (uint32_t ssid = 0; ssid < 16; ++ssid)
    (void)env->driver->WriteCd(env->cd_table, 4, s::kS1FmtLinear, ssid, CdStage1(s1->root(), uint16_t(ssid)));
  (void)env->driver->WriteSte(0x08, SteStage1(env->cd_table, 4));
  (void)env->driver->WriteSte(0x10, SteStage2(s2->root(), 1));
  (void)env->driver->WriteSte(0x18, SteNested(env->cd_table, s2->root(), 2, 4));
  return env;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  FuzzedDataProvider in(data, size);
  std::unique_ptr<Env> env = MakeEnv(in);
  if (!env) return 0;
  Smmuv3Iommu& smmu = *env->smmu;
  Smmuv3Driver& drv = *env->driver;
  ionest::GuestMemory& mem = *env->mem;
  for (int ops = 0; ops < 500 && in.remaining_bytes() > 0; ++ops) {
    switch (in.ConsumeIntegralInRange<int>(0, 9)) {
      case 0: {  // register write: named registers, or anywhere in both pages
        uint64_t off = in.ConsumeBool() ? kRegs[in.ConsumeIntegralInRange<size_t>(0, std::size(kRegs) - 1)]
                                        : in.ConsumeIntegralInRange<uint64_t>(0, s::kWindowSize);
        if (in.ConsumeBool()) off += s::kPageSize;
        const unsigned sz = in.ConsumeBool() ? 8 : 4;
        smmu.MmioWrite(off, in.ConsumeIntegral<uint64_t>(), sz);
        break;
      }
      case 1:
        (void)smmu.MmioRead(in.ConsumeIntegralInRange<uint64_t>(0, s::kWindowSize + 8), in.ConsumeBool() ? 8 : 4);
        break;
      case 2: {  // guest memory: tables, queues, data
        const uint64_t addr = in.ConsumeIntegralInRange<uint64_t>(0, kRam - 8) & ~7ull;
        (void)mem.WriteObj<uint64_t>(addr, in.ConsumeIntegral<uint64_t>());
        break;
      }
      case 3:
      case 4: {  // DMA
        const uint16_t sid = in.ConsumeBool() ? kSids[in.ConsumeIntegralInRange<int>(0, 3)]
                                              : in.ConsumeIntegral<uint16_t>();
        ionest::DmaAttrs attrs;
        if (in.ConsumeBool()) attrs.pasid = in.ConsumeIntegralInRange<uint32_t>(0, 0xFFFFF);
        const uint64_t iova = in.ConsumeBool() ? in.ConsumeIntegralInRange<uint64_t>(0, 0x40000)
                                               : in.ConsumeIntegral<uint64_t>();
        uint8_t buf[256];
        const size_t len = in.ConsumeIntegralInRange<size_t>(1, sizeof(buf));
        ionest::DmaSpace& space = smmu.ForRequester(sid);
        switch (in.ConsumeIntegralInRange<int>(0, 4)) {
          case 0: (void)space.Write(iova, buf, len, attrs); break;
          case 1: (void)space.Read(iova, buf, len, attrs); break;
          case 2: (void)space.AtsTranslate(iova, in.ConsumeIntegral<uint8_t>() & 0xF, attrs); break;
          case 3: space.AbandonStall(in.ConsumeIntegral<uint16_t>()); break;  // a device giving up a stall
          default: (void)space.AllowTranslatedRequest(); break;
        }
        break;
      }
      case 5: {  // commands: plausible opcodes with random operands
        std::vector<Command> cmds(in.ConsumeIntegralInRange<size_t>(1, 4));
        for (Command& c : cmds) {
          c[0] = in.ConsumeIntegral<uint64_t>();
          c[1] = in.ConsumeIntegral<uint64_t>();
          if (in.ConsumeBool()) c[0] = (c[0] & ~0xFFull) | kOpcodes[in.ConsumeIntegralInRange<size_t>(0, std::size(kOpcodes) - 1)];
        }
        (void)drv.SubmitRaw(cmds);
        break;
      }
      case 6: {  // an STE of a known stream
        SteWords ste;
        for (uint64_t& w : ste.w) w = in.ConsumeIntegral<uint64_t>();
        if (in.ConsumeBool()) ste.w[0] = (ste.w[0] & ~ionest::smmuv3::Bits(51, 6)) | env->cd_table;
        (void)drv.WriteSte(kSids[in.ConsumeIntegralInRange<int>(0, 3)], ste, false);
        (void)drv.SubmitRaw({CmdCfgiAll()});
        break;
      }
      case 7: {  // a CD
        CdWords cd;
        for (uint64_t& w : cd.w) w = in.ConsumeIntegral<uint64_t>();
        (void)drv.WriteCd(env->cd_table, 4, s::kS1FmtLinear, in.ConsumeIntegralInRange<uint32_t>(0, 15), cd);
        (void)drv.SubmitRaw({CmdCfgiCdAll(0x08), CmdCfgiCdAll(0x18)});
        break;
      }
      case 8: {  // page request
        ionest::PageRequest r;
        if (in.ConsumeBool()) r.pasid = in.ConsumeIntegralInRange<uint32_t>(0, 0xFFFFF);
        r.addr = in.ConsumeIntegral<uint64_t>();
        r.access = in.ConsumeIntegral<uint8_t>() & 0xF;
        r.last = in.ConsumeBool();
        r.group_index = in.ConsumeIntegral<uint16_t>();
        (void)smmu.ForRequester(kSids[in.ConsumeIntegralInRange<int>(0, 3)]).SendPageRequest(r);
        break;
      }
      case 9:
        if (in.ConsumeIntegralInRange<int>(0, 15) == 0) smmu.Reset();
        else (void)drv.DrainEvents();
        break;
    }
  }
  env->msi.Take();
  return 0;
}
