#include "iommu/vtd/register_map.h"

#include "iommu/vtd/faults.h"

namespace ionest::vtd {

std::vector<RegisterDef> VtdRegisterDefs(const VtdProfile& p, uint32_t version) {
  constexpr uint64_t kPage = ~uint64_t{0xfff};
  const bool sm = p.scalable_mode;
  const bool prq = p.pasid() && p.prs;
  // clang-format off
  std::vector<RegisterDef> defs = {
    // offset       size reset        RW                                              RW1C       name
    {kVerReg,       4, version,      0,                                               0,         "VER"},       // §11.4.1
    {kCapReg,       8, p.Cap(),      0,                                               0,         "CAP"},       // §11.4.2
    {kEcapReg,      8, p.Ecap(),     0,                                               0,         "ECAP"},      // §11.4.3
    {kGcmdReg,      4, 0,            0,                                               0,         "GCMD"},      // §11.4.4 (WO, reads 0)
    {kGstsReg,      4, 0,            0,                                               0,         "GSTS"},      // §11.4.5
    {kRtaddrReg,    8, 0,            kPage | (sm ? 0xc00u : 0u),                      0,         "RTADDR"},    // §11.4.6 (TTM 11:10)
    {kCcmdReg,      8, 0,            (1ull << 63) | (3ull << 61) | (3ull << 32) | 0xffffffffull, 0, "CCMD"},  // §11.4.7
    {kFstsReg,      4, 0,            0,                          kFstsPfo | kFstsIqe | kFstsIce | kFstsIte, "FSTS"},  // §11.4.7.1
    {kFectlReg,     4, kEctlIm,      kEctlIm,                                         0,         "FECTL"},     // §11.4.7.2
    {kFedataReg,    4, 0,            0xffffffff,                                      0,         "FEDATA"},
    {kFeaddrReg,    4, 0,            0xfffffffc,                                      0,         "FEADDR"},
    {kFeuaddrReg,   4, 0,            0xffffffff,                                      0,         "FEUADDR"},
    {kAflogReg,     8, 0,            0,                                               0,         "AFLOG"},     // advanced fault logging: not supported
    {kPmenReg,      4, 0,            0,                                               0,         "PMEN"},      // CAP.PLMR = PHMR = 0
    {kIqhReg,       8, 0,            0,                                               0,         "IQH"},       // §11.4.9.1
    {kIqtReg,       8, 0,            p.qi ? 0x7fff0u : 0u,                            0,         "IQT"},       // §11.4.9.2
    {kIqaReg,       8, 0,            p.qi ? (kPage | (sm ? 0x800u : 0u) | 7u) : 0u,   0,         "IQA"},       // §11.4.9.3 (DW 11, QS 2:0)
    {kIcsReg,       4, 0,            0,                                               kIcsIwc,   "ICS"},       // §11.4.9.4
    {kIectlReg,     4, kEctlIm,      kEctlIm,                                         0,         "IECTL"},     // §11.4.9.5
    {kIedataReg,    4, 0,            0xffffffff,                                      0,         "IEDATA"},
    {kIeaddrReg,    4, 0,            0xfffffffc,                                      0,         "IEADDR"},
    {kIeuaddrReg,   4, 0,            0xffffffff,                                      0,         "IEUADDR"},
    {kIqercdReg,    8, 0,            0,                                               0,         "IQERCD"},    // §11.4.9.9
    {kIrtaReg,      8, 0,            p.ir ? (kPage | (p.eim ? 0x800u : 0u) | 0xfu) : 0u, 0,      "IRTA"},      // §11.4.8.1
    {kPqhReg,       8, 0,            prq ? 0x7ffe0u : 0u,                             0,         "PQH"},       // §11.4.12.1
    {kPqtReg,       8, 0,            0,                                               0,         "PQT"},       // §11.4.12.2
    {kPqaReg,       8, 0,            prq ? (kPage | 7u) : 0u,                         0,         "PQA"},       // §11.4.12.3
    {kPrsReg,       4, 0,            0,                                               prq ? (kPrsPpr | kPrsPro) : 0u, "PRS"},  // §11.4.12.4
    {kPectlReg,     4, kEctlIm,      prq ? kEctlIm : 0u,                              0,         "PECTL"},     // §11.4.12.5
    {kPedataReg,    4, 0,            prq ? 0xffffffffu : 0u,                          0,         "PEDATA"},
    {kPeaddrReg,    4, 0,            prq ? 0xfffffffcu : 0u,                          0,         "PEADDR"},
    {kPeuaddrReg,   4, 0,            prq ? 0xffffffffu : 0u,                          0,         "PEUADDR"},
    // IOTLB registers at ECAP.IRO × 16 (§11.4.8): IVA (ADDR 63:12, IH 6, AM 5:0), IOTLB.
    {p.iva_offset(),    8, 0,        kPage | 0x7f,                                    0,         "IVA"},
    {p.iotlb_offset(),  8, 0,        (1ull << 63) | (3ull << 60) | (3ull << 48) | (0xffffull << 32), 0, "IOTLB"},
  };
  // clang-format on
  for (const RegisterDef& d : FaultRecordRegisterDefs(p.fault_record_offset(), p.nfr)) defs.push_back(d);
  return defs;
}

}  // namespace ionest::vtd
