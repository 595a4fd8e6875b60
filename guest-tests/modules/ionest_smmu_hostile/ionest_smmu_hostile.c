// SPDX-License-Identifier: GPL-2.0
/*
 * ionest_smmu_hostile: a hostile driver for ionest's emulated Arm SMMUv3 (IHI0070; model in
 * iommu/smmuv3/). With Linux's arm-smmu-v3 kept off (initcall_blacklist=arm_smmu_driver_init), this
 * platform driver binds to the device tree's "arm,smmu-v3" node, owns its register window, builds
 * its own command queue, event queue, stream table, context descriptors and stage-1 tables in
 * coherent memory, enables the SMMU and attacks it. DMA comes from the ionest dmatest function
 * (PCI 1de5:1110, devices/testdev/dma_test_device_regs.h), whose StreamID is its requester ID
 * mapped through the PCIe host's iommu-map. Every attempt is checked against the architected
 * result and reported as one KTAP line in the kernel log ("ionest_smmu_hostile: ok N name # ...");
 * the guest script (guest-tests/suites/smmuv3-hostile) turns them into subtests.
 *
 * Attempts (spec sections of IHI0070):
 *   probe, dmatest, enable          ID registers, the dmatest's StreamID, queues + tables + CMD_SYNC MSI
 *   bad_streamid                    StreamID beyond STRTAB_BASE_CFG.LOG2SIZE -> C_BAD_STREAMID (§7.3.2)
 *   bypass_dma                      control: STE Config=bypass, the data arrives
 *   ste_invalid                     STE.V=0 -> C_BAD_STE (§5.2, §7.3.4)
 *   ste_reserved_config             STE.Config=0b010 behaves as 0b000: abort, no event (§5.2 Config)
 *   ste_s1cdmax_illegal             S1CDMax > IDR1.SSIDSIZE (ILLEGAL) -> C_BAD_STE
 *   cd_invalid, cd_t0sz_illegal,
 *   cd_tg0_reserved, cd_aa32        CD.V=0, T0SZ>39, TG0=0b11, AA64=0 with TTF=AArch64 -> C_BAD_CD (§5.4)
 *   bad_substreamid                 SSID >= 2^S1CDMax -> C_BAD_SUBSTREAMID with SSV/SSID (§5.2 S1CDMax)
 *   substream_on_bypass             SSID on a stage-1-bypass STE -> C_BAD_SUBSTREAMID (§5.2 S1Fmt)
 *   translation_fault               unmapped IOVA -> F_TRANSLATION with the address, RnW; EVTQ MSI (§7.3.12)
 *   translated_dma                  control: the mapped IOVA reads the right bytes
 *   cmd_reserved_opcode, cmd_reserved_bits, cmd_sync_reserved_cs, cmd_tlbi_el3
 *                                   CERROR_ILL in CMDQ_CONS.ERR at the failing index, GERROR.CMDQ_ERR
 *                                   (with its MSI), later commands not run until the driver fixes
 *                                   the entry and acknowledges through GERRORN (§7.1)
 *   cmdq_fetch_abort                CMDQ_BASE outside memory -> CERROR_ABT (§7.1)
 *   cmdq_prod_beyond_size           PROD with bits [19:QS+1] set: no other effect (§6.3.27)
 *   evtq_overflow                   more faults than the event queue holds: OVFLG toggles, the
 *                                   extra events are lost (device told "not recorded"), nothing
 *                                   else; after OVACKFLG, recording resumes (§7.2, §6.3.29)
 *   evtq_write_abort                EVTQ_BASE outside memory -> GERROR.EVTQ_ABT_ERR (§7.2)
 *   still_serving                   after all of it, translated DMA and CMD_SYNC still work
 */
#include <linux/delay.h>
#include <linux/dma-mapping.h>
#include <linux/io.h>
#include <linux/io-64-nonatomic-lo-hi.h>
#include <linux/log2.h>
#include <linux/module.h>
#include <linux/of.h>
#include <linux/pci.h>
#include <linux/platform_device.h>
#include <linux/random.h>

#define DRV "ionest_smmu_hostile"

/* SMMU registers (§6.3); EVTQ PROD/CONS through page 1. */
#define SMMU_IDR0 0x00
#define SMMU_IDR1 0x04
#define SMMU_IDR5 0x14
#define SMMU_AIDR 0x1c
#define SMMU_CR0 0x20
#define SMMU_CR0ACK 0x24
#define SMMU_CR1 0x28
#define SMMU_IRQ_CTRL 0x50
#define SMMU_IRQ_CTRLACK 0x54
#define SMMU_GERROR 0x60
#define SMMU_GERRORN 0x64
#define SMMU_GERROR_IRQ_CFG0 0x68
#define SMMU_GERROR_IRQ_CFG1 0x70
#define SMMU_STRTAB_BASE 0x80
#define SMMU_STRTAB_BASE_CFG 0x88
#define SMMU_CMDQ_BASE 0x90
#define SMMU_CMDQ_PROD 0x98
#define SMMU_CMDQ_CONS 0x9c
#define SMMU_EVTQ_BASE 0xa0
#define SMMU_EVTQ_IRQ_CFG0 0xb0
#define SMMU_EVTQ_IRQ_CFG1 0xb8
#define SMMU_EVTQ_PROD 0x100a8
#define SMMU_EVTQ_CONS 0x100ac

#define CR0_SMMUEN (1u << 0)
#define CR0_EVTQEN (1u << 2)
#define CR0_CMDQEN (1u << 3)
#define IRQ_CTRL_GERROR (1u << 0)
#define IRQ_CTRL_EVTQ (1u << 2)
#define GERROR_CMDQ_ERR (1u << 0)
#define GERROR_EVTQ_ABT_ERR (1u << 2)
#define Q_OVF (1u << 31)
#define CERROR_ILL 1
#define CERROR_ABT 2

/* Commands (§4). */
#define CMD_CFGI_STE 0x03
#define CMD_CFGI_ALL 0x04 /* CFGI_STE_RANGE with Range 31 */
#define CMD_CFGI_CD_ALL 0x06
#define CMD_TLBI_EL3_ALL 0x18
#define CMD_TLBI_NSNH_ALL 0x30
#define CMD_SYNC 0x46
#define SYNC_CS_IRQ 1ull

/* Event types (§7.3). */
#define EVT_C_BAD_STREAMID 0x02
#define EVT_C_BAD_STE 0x04
#define EVT_C_BAD_SUBSTREAMID 0x08
#define EVT_C_BAD_CD 0x0a
#define EVT_F_TRANSLATION 0x10
#define EVT0_SSV (1ull << 11)
#define EVT1_RNW (1ull << 35)

/* STE (§5.2) and CD (§5.4). */
#define STE_V 1ull
#define STE_CFG_BYPASS (4ull << 1)
#define STE_CFG_S1 (5ull << 1)
#define STE_S1CDMAX_SHIFT 59
#define CD_V (1ull << 31)
#define CD_EPD1 (1ull << 30)
#define CD_AA64 (1ull << 41)
#define CD_AFFD (1ull << 35)
#define CD_R (1ull << 45)
#define CD_A (1ull << 46)
#define CD_IPS_SHIFT 32
#define CD_ASID_SHIFT 48

/* dmatest BAR0 (dma_test_device_regs.h). */
#define DT_ID 0x00
#define DT_SRC 0x10
#define DT_DST 0x18
#define DT_LEN 0x20
#define DT_PASID 0x28
#define DT_CTRL 0x38
#define DT_DOORBELL 0x40
#define DT_STATUS 0x48
#define DT_FAULT_ADDR 0x50
#define DT_FAULT_INFO 0x58
#define DT_RESULT 0x60
#define DT_ID_VALUE 0x3154414d444e4f49ull /* "IONDMAT1" */
#define DT_OP_READ 1
#define DT_CTRL_NO_PRI (1u << 6)
#define DT_PASID_VALID (1ull << 31)
#define DT_ST_BUSY 1ull
#define DT_ST_DONE 2ull
#define DT_ST_ERROR 4ull
#define DT_ERR_TRANSLATION 4
#define DT_FI_RECORDED (1ull << 12)

#define CMDQ_LOG2 3 /* 8 commands */
#define EVTQ_LOG2 3 /* 8 events: easy to overflow */
#define MAPPED_IOVA 0x10000000ull
#define UNMAPPED_IOVA 0x20000000ull
#define DMA_LEN 64
#define MSI_GERROR 0 /* u32 slots in the msi page */
#define MSI_EVTQ 1
#define MSI_SYNC 2
#define GERROR_COOKIE 0x6e72
#define EVTQ_COOKIE 0x6576

struct coh {
	void *cpu;
	dma_addr_t dma;
	size_t size;
};

struct hostile {
	struct device *dev;
	void __iomem *smmu;
	struct pci_dev *pdev;
	void __iomem *dt;
	u32 sid;
	u32 idr0, idr1, idr5, aidr;
	int oas_bits;
	struct coh cmdq, evtq, strtab, cds, pt, data, msi;
	u32 strtab_log2;
	u32 cmd_prod; /* software copy, wrap bit included */
	u32 evt_cons; /* software copy, wrap bit + OVACKFLG */
	u32 sync_cookie;
	int n, failed;
};

static void report(struct hostile *h, bool ok, const char *name, const char *fmt, ...)
{
	char diag[200];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(diag, sizeof(diag), fmt, ap);
	va_end(ap);
	h->n++;
	if (!ok)
		h->failed++;
	pr_info(DRV ": %s %d %s # %s\n", ok ? "ok" : "not ok", h->n, name, diag);
}

static u32 rd(struct hostile *h, u32 off) { return readl(h->smmu + off); }
static void wr(struct hostile *h, u32 off, u32 v) { writel(v, h->smmu + off); }
static void wr64(struct hostile *h, u32 off, u64 v) { writeq(v, h->smmu + off); }
static bool gerror_active(struct hostile *h, u32 bit) { return (rd(h, SMMU_GERROR) ^ rd(h, SMMU_GERRORN)) & bit; }
static u32 *msi_word(struct hostile *h, int slot) { return (u32 *)h->msi.cpu + slot; }

static bool cr0_set(struct hostile *h, u32 v)
{
	int i;

	wr(h, SMMU_CR0, v);
	for (i = 0; i < 100; i++) {
		if (rd(h, SMMU_CR0ACK) == v)
			return true;
		udelay(10);
	}
	return false;
}

/* ---- command queue ---- */

static u32 q_ptr_mask(u32 log2) { return (2u << log2) - 1; }

static void cmd_put(struct hostile *h, u64 w0, u64 w1)
{
	u64 *e = (u64 *)h->cmdq.cpu + 2 * (h->cmd_prod & ((1u << CMDQ_LOG2) - 1));

	WRITE_ONCE(e[0], w0);
	WRITE_ONCE(e[1], w1);
	h->cmd_prod = (h->cmd_prod + 1) & q_ptr_mask(CMDQ_LOG2);
}

/* A CMD_SYNC that writes a fresh cookie to the MSI page when it completes (§4.6.1, CS=SIG_IRQ). */
static u32 cmd_put_sync(struct hostile *h, int slot)
{
	u32 cookie = ++h->sync_cookie | 0x5c000000;

	WRITE_ONCE(*msi_word(h, slot), 0);
	cmd_put(h, CMD_SYNC | SYNC_CS_IRQ << 12 | (u64)cookie << 32, h->msi.dma + 4 * slot);
	return cookie;
}

/* Rings the doorbell (extra: bits written above the pointer) and waits for CONS or an error. */
static int cmd_kick_wait(struct hostile *h, u32 extra)
{
	u32 cons;
	int i;

	dma_wmb();
	wr(h, SMMU_CMDQ_PROD, h->cmd_prod | extra);
	for (i = 0; i < 2000; i++) {
		cons = rd(h, SMMU_CMDQ_CONS);
		if ((cons & q_ptr_mask(CMDQ_LOG2)) == h->cmd_prod)
			return 0;
		if (gerror_active(h, GERROR_CMDQ_ERR))
			return -EIO;
		udelay(50);
	}
	return -ETIMEDOUT;
}

/* CFGI_ALL + TLBI_NSNH_ALL + CMD_SYNC: what a driver does after changing any structure. */
static bool invalidate_all(struct hostile *h)
{
	u32 cookie;

	cmd_put(h, CMD_CFGI_ALL, 31);
	cmd_put(h, CMD_TLBI_NSNH_ALL, 0);
	cookie = cmd_put_sync(h, MSI_SYNC);
	return cmd_kick_wait(h, 0) == 0 && READ_ONCE(*msi_word(h, MSI_SYNC)) == cookie;
}

/* ---- structures ---- */

static void ste_write(struct hostile *h, u32 sid, const u64 *w)
{
	u64 *ste = (u64 *)h->strtab.cpu + 8 * sid;
	int i;

	WRITE_ONCE(ste[0], 0);
	dma_wmb();
	for (i = 1; i < 8; i++)
		WRITE_ONCE(ste[i], w[i]);
	dma_wmb();
	WRITE_ONCE(ste[0], w[0]);
	invalidate_all(h);
}

static void ste_set(struct hostile *h, u64 w0, u64 w1)
{
	u64 w[8] = { w0, w1 };

	ste_write(h, h->sid, w);
}

/* A valid stage-1 CD: 39-bit VA (T0SZ 25) from TTB0 with a 4 KiB granule, TTB1 off. */
static u64 cd_word0(void)
{
	return 25 | CD_EPD1 | CD_V | 5ull << CD_IPS_SHIFT | CD_AFFD | CD_AA64 | CD_R | CD_A | 1ull << CD_ASID_SHIFT;
}

static void cd_write(struct hostile *h, int index, u64 w0)
{
	u64 *cd = (u64 *)h->cds.cpu + 8 * index;

	memset(cd, 0, 64);
	WRITE_ONCE(cd[1], h->pt.dma);      /* TTB0: level-1 table */
	WRITE_ONCE(cd[3], 0xff);           /* MAIR: attr 0 = Normal WB */
	dma_wmb();
	WRITE_ONCE(cd[0], w0);
}

/* Stage-1 tables: L1 -> L2 -> L3 -> one page of data at MAPPED_IOVA (AP[1]=1: unprivileged RW). */
static void pt_build(struct hostile *h)
{
	u64 *l1 = h->pt.cpu, *l2 = l1 + 512, *l3 = l1 + 1024;

	memset(l1, 0, 3 * PAGE_SIZE);
	l1[(MAPPED_IOVA >> 30) & 511] = (h->pt.dma + PAGE_SIZE) | 3;
	l2[(MAPPED_IOVA >> 21) & 511] = (h->pt.dma + 2 * PAGE_SIZE) | 3;
	l3[(MAPPED_IOVA >> 12) & 511] = h->data.dma | 3 | 1ull << 6 | 3ull << 8 | 1ull << 10;
	dma_wmb();
}

static void ste_s1(struct hostile *h, u32 cdmax, u64 s1dss)
{
	ste_set(h, STE_V | STE_CFG_S1 | (h->cds.dma & GENMASK_ULL(51, 6)) | (u64)cdmax << STE_S1CDMAX_SHIFT, s1dss);
}

/* ---- event queue ---- */

static u32 evt_pending(struct hostile *h)
{
	u32 mask = q_ptr_mask(EVTQ_LOG2);

	return ((rd(h, SMMU_EVTQ_PROD) & mask) - (h->evt_cons & mask)) & mask;
}

static bool evt_pop(struct hostile *h, u64 rec[4])
{
	u64 *e;
	int i;

	if (!evt_pending(h))
		return false;
	dma_rmb();
	e = (u64 *)h->evtq.cpu + 4 * (h->evt_cons & ((1u << EVTQ_LOG2) - 1));
	for (i = 0; i < 4; i++)
		rec[i] = READ_ONCE(e[i]);
	h->evt_cons = (h->evt_cons & Q_OVF) | ((h->evt_cons + 1) & q_ptr_mask(EVTQ_LOG2));
	wr(h, SMMU_EVTQ_CONS, h->evt_cons);
	return true;
}

static void evt_drain(struct hostile *h)
{
	u64 rec[4];

	while (evt_pop(h, rec))
		;
	/* Acknowledge an overflow if one is flagged (§6.3.29 OVACKFLG). */
	h->evt_cons = (h->evt_cons & ~Q_OVF) | (rd(h, SMMU_EVTQ_PROD) & Q_OVF);
	wr(h, SMMU_EVTQ_CONS, h->evt_cons);
}

/* ---- queue bases ---- */

/* Points the command or event queue at `base` with PROD = CONS = 0 (its CR0 enable must be off). */
static void queue_program(struct hostile *h, bool cmdq, u64 base)
{
	wr64(h, cmdq ? SMMU_CMDQ_BASE : SMMU_EVTQ_BASE, base | (cmdq ? CMDQ_LOG2 : EVTQ_LOG2));
	wr(h, cmdq ? SMMU_CMDQ_PROD : SMMU_EVTQ_PROD, 0);
	wr(h, cmdq ? SMMU_CMDQ_CONS : SMMU_EVTQ_CONS, 0);
	if (cmdq)
		h->cmd_prod = 0;
	else
		h->evt_cons = 0;
}

/* The same on a running SMMU: that queue off, global errors acknowledged, base changed, back on. */
static bool queue_rebase(struct hostile *h, bool cmdq, u64 base)
{
	const u32 all = CR0_CMDQEN | CR0_EVTQEN | CR0_SMMUEN;
	bool ok = cr0_set(h, all & ~(cmdq ? CR0_CMDQEN : CR0_EVTQEN));

	wr(h, SMMU_GERRORN, rd(h, SMMU_GERROR));
	queue_program(h, cmdq, base);
	return cr0_set(h, all) && ok;
}

/* ---- DMA from the dmatest function ---- */

struct job {
	u64 status, fault_info, fault_addr, result;
};

static struct job dma_read(struct hostile *h, u64 iova, u64 pasid)
{
	struct job j = {};
	int i;

	j.status = lo_hi_readq(h->dt + DT_STATUS);
	lo_hi_writeq(j.status & (DT_ST_DONE | DT_ST_ERROR), h->dt + DT_STATUS); /* RW1C */
	lo_hi_writeq(iova, h->dt + DT_SRC);
	lo_hi_writeq(0, h->dt + DT_DST);
	lo_hi_writeq(DMA_LEN, h->dt + DT_LEN);
	lo_hi_writeq(pasid, h->dt + DT_PASID);
	lo_hi_writeq(DT_OP_READ | DT_CTRL_NO_PRI, h->dt + DT_CTRL);
	lo_hi_writeq(1, h->dt + DT_DOORBELL);
	j.status = 0;
	for (i = 0; i < 400; i++) {
		u64 st = lo_hi_readq(h->dt + DT_STATUS);

		if (!(st & DT_ST_BUSY) && (st & (DT_ST_DONE | DT_ST_ERROR))) {
			j.status = st;
			break;
		}
		usleep_range(1000, 2000);
	}
	j.fault_info = lo_hi_readq(h->dt + DT_FAULT_INFO);
	j.fault_addr = lo_hi_readq(h->dt + DT_FAULT_ADDR);
	j.result = lo_hi_readq(h->dt + DT_RESULT);
	return j;
}

static bool job_faulted(const struct job *j)
{
	return (j->status & DT_ST_ERROR) && ((j->status >> 8) & 0xff) == DT_ERR_TRANSLATION;
}

static u64 fnv1a(const u8 *p, size_t n)
{
	u64 v = 0xcbf29ce484222325ull;

	while (n--)
		v = (v ^ *p++) * 0x100000001b3ull;
	return v;
}

/* A DMA that must complete and read the data page's first bytes. */
static void expect_dma_ok(struct hostile *h, const char *name, u64 iova)
{
	struct job j = dma_read(h, iova, 0);
	u64 want = fnv1a(h->data.cpu, DMA_LEN);
	u32 events = evt_pending(h);

	report(h, (j.status & DT_ST_DONE) && !(j.status & DT_ST_ERROR) && j.result == want && !events, name,
	       "iova=0x%llx status=0x%llx result=0x%llx want=0x%llx new_events=%u", iova, j.status, j.result, want,
	       events);
	evt_drain(h);
}

/*
 * A DMA that must be terminated with exactly one event of `type` for our StreamID (and SSID when
 * pasid is valid); the device must see the fault as recorded with that reason.
 */
static void expect_event(struct hostile *h, const char *name, u64 iova, u64 pasid, u8 type, u64 want_input)
{
	struct job j;
	u64 rec[4] = {};
	bool got, ok, ssv_ok;
	u32 extra;

	evt_drain(h);
	j = dma_read(h, iova, pasid);
	got = evt_pop(h, rec);
	extra = evt_pending(h);
	if (pasid & DT_PASID_VALID)
		ssv_ok = (rec[0] & EVT0_SSV) && ((rec[0] >> 12) & 0xfffff) == (pasid & 0xfffff);
	else
		ssv_ok = !(rec[0] & EVT0_SSV);
	ok = job_faulted(&j) && (j.fault_info & 0xff) == type && (j.fault_info & DT_FI_RECORDED) && got &&
	     (rec[0] & 0xff) == type && (rec[0] >> 32) == h->sid && ssv_ok && !extra &&
	     (want_input == ~0ull || rec[2] == want_input) &&
	     (type < EVT_F_TRANSLATION || (rec[1] & EVT1_RNW)); /* translation faults: a read, RnW=1 */
	report(h, ok, name, "want event 0x%02x: status=0x%llx fault_info=0x%llx event=%016llx %016llx %016llx extra=%u",
	       type, j.status, j.fault_info, rec[0], rec[1], rec[2], extra);
	evt_drain(h);
}

/* ---- attempts ---- */

static bool smmu_setup(struct hostile *h)
{
	bool ok = cr0_set(h, 0);

	wr(h, SMMU_GERRORN, rd(h, SMMU_GERROR)); /* acknowledge anything left over */
	wr(h, SMMU_IRQ_CTRL, 0);
	wr64(h, SMMU_GERROR_IRQ_CFG0, h->msi.dma + 4 * MSI_GERROR);
	wr(h, SMMU_GERROR_IRQ_CFG1, GERROR_COOKIE);
	wr64(h, SMMU_EVTQ_IRQ_CFG0, h->msi.dma + 4 * MSI_EVTQ);
	wr(h, SMMU_EVTQ_IRQ_CFG1, EVTQ_COOKIE);
	wr(h, SMMU_IRQ_CTRL, IRQ_CTRL_GERROR | IRQ_CTRL_EVTQ);
	/* CR1 as Linux programs it: tables and queues inner-shareable write-back. */
	wr(h, SMMU_CR1, 0xd75);
	wr64(h, SMMU_STRTAB_BASE, h->strtab.dma);
	wr(h, SMMU_STRTAB_BASE_CFG, h->strtab_log2); /* linear */
	queue_program(h, true, h->cmdq.dma);
	queue_program(h, false, h->evtq.dma);
	ok = ok && rd(h, SMMU_IRQ_CTRLACK) == (IRQ_CTRL_GERROR | IRQ_CTRL_EVTQ);
	ok = ok && cr0_set(h, CR0_CMDQEN) && invalidate_all(h);
	ok = ok && cr0_set(h, CR0_CMDQEN | CR0_EVTQEN) && cr0_set(h, CR0_CMDQEN | CR0_EVTQEN | CR0_SMMUEN);
	return ok;
}

/* Grows the linear stream table to cover our StreamID (SMMUEN off while STRTAB_BASE_CFG changes). */
static bool strtab_cover_sid(struct hostile *h)
{
	bool ok = cr0_set(h, CR0_CMDQEN | CR0_EVTQEN);

	h->strtab_log2 = ilog2(h->sid) + 1;
	wr(h, SMMU_STRTAB_BASE_CFG, h->strtab_log2);
	return ok && cr0_set(h, CR0_CMDQEN | CR0_EVTQEN | CR0_SMMUEN) && invalidate_all(h);
}

/*
 * A bad command at the queue's next slot followed by a CMD_SYNC: the SMMU must stop at the bad one
 * with CMDQ_CONS.ERR = CERROR_ILL, raise GERROR.CMDQ_ERR (and its MSI), and not run the SYNC until
 * the driver replaces the entry and acknowledges through GERRORN (§7.1).
 */
static void expect_cmd_error(struct hostile *h, const char *name, u64 w0, u64 w1)
{
	u32 bad_index = h->cmd_prod, cons, cookie, err;
	u64 *bad = (u64 *)h->cmdq.cpu + 2 * (bad_index & ((1u << CMDQ_LOG2) - 1));
	bool stopped, ran_early, resumed;
	int rc;

	WRITE_ONCE(*msi_word(h, MSI_GERROR), 0);
	cmd_put(h, w0, w1);
	cookie = cmd_put_sync(h, MSI_SYNC);
	rc = cmd_kick_wait(h, 0);
	msleep(20);
	rd(h, SMMU_CMDQ_CONS); /* a CONS read must not restart a stopped queue */
	cons = rd(h, SMMU_CMDQ_CONS);
	err = (cons >> 24) & 0x7f;
	stopped = rc == -EIO && (cons & q_ptr_mask(CMDQ_LOG2)) == bad_index && err == CERROR_ILL;
	ran_early = READ_ONCE(*msi_word(h, MSI_SYNC)) == cookie;
	/* Recovery as Linux does it: overwrite the bad entry with a harmless command, then ack. */
	WRITE_ONCE(bad[0], CMD_TLBI_NSNH_ALL);
	WRITE_ONCE(bad[1], 0);
	dma_wmb();
	wr(h, SMMU_GERRORN, rd(h, SMMU_GERROR));
	resumed = cmd_kick_wait(h, 0) == 0 && READ_ONCE(*msi_word(h, MSI_SYNC)) == cookie;
	report(h, stopped && !ran_early && READ_ONCE(*msi_word(h, MSI_GERROR)) == GERROR_COOKIE && resumed, name,
	       "cmd=%016llx %016llx rc=%d cons=0x%x err=%u (want %u at 0x%x) gerror_msi=0x%x sync_before_ack=%d resumed=%d",
	       w0, w1, rc, cons, err, CERROR_ILL, bad_index, READ_ONCE(*msi_word(h, MSI_GERROR)), ran_early, resumed);
}

/* CMDQ_BASE outside memory: the fetch aborts, CERROR_ABT (§7.1); then the real queue again. */
static void cmdq_fetch_abort(struct hostile *h)
{
	u64 nowhere = 1ull << (h->oas_bits - 1);
	u32 cons = 0, err = 0;
	bool stopped = false, restored;
	int rc = -1;

	WRITE_ONCE(*msi_word(h, MSI_GERROR), 0);
	if (queue_rebase(h, true, nowhere)) {
		h->cmd_prod = 1; /* one (unreadable) command */
		rc = cmd_kick_wait(h, 0);
		cons = rd(h, SMMU_CMDQ_CONS);
		err = (cons >> 24) & 0x7f;
		stopped = rc == -EIO && (cons & q_ptr_mask(CMDQ_LOG2)) == 0 && err == CERROR_ABT;
	}
	restored = queue_rebase(h, true, h->cmdq.dma) && invalidate_all(h);
	report(h, stopped && READ_ONCE(*msi_word(h, MSI_GERROR)) == GERROR_COOKIE && restored, "cmdq_fetch_abort",
	       "base=0x%llx rc=%d cons=0x%x err=%u (want %u) gerror_msi=0x%x restored=%d", nowhere, rc, cons, err,
	       CERROR_ABT, READ_ONCE(*msi_word(h, MSI_GERROR)), restored);
}

/* PROD with bits [19:QS+1] set (RES0): "might be stored but has no other effect" (§6.3.27). */
static void cmdq_prod_beyond_size(struct hostile *h)
{
	u32 garbage = GENMASK(19, CMDQ_LOG2 + 1);
	u32 c1 = cmd_put_sync(h, MSI_SYNC), c2 = cmd_put_sync(h, MSI_SYNC + 1);
	int rc = cmd_kick_wait(h, garbage);
	u32 cons = rd(h, SMMU_CMDQ_CONS);

	report(h, rc == 0 && READ_ONCE(*msi_word(h, MSI_SYNC)) == c1 && READ_ONCE(*msi_word(h, MSI_SYNC + 1)) == c2 &&
		  !gerror_active(h, GERROR_CMDQ_ERR) && !((cons >> 24) & 0x7f),
	       "cmdq_prod_beyond_size", "prod=0x%x cons=0x%x rc=%d syncs=%x/%x", h->cmd_prod | garbage, cons, rc,
	       READ_ONCE(*msi_word(h, MSI_SYNC)), READ_ONCE(*msi_word(h, MSI_SYNC + 1)));
	wr(h, SMMU_CMDQ_PROD, h->cmd_prod);
}

/* More faults than the event queue holds (§7.2): OVFLG toggles, the extra events are lost. */
static void evtq_overflow(struct hostile *h)
{
	const u32 size = 1u << EVTQ_LOG2, extra = 3;
	u32 i, recorded = 0, lost = 0, popped = 0, bad_type = 0, prod, after_ack;
	bool ovf, ovf_after;
	struct job j;
	u64 rec[4];

	ste_set(h, 0, 0); /* V=0: every DMA is a C_BAD_STE */
	evt_drain(h);
	for (i = 0; i < size + extra; i++) {
		j = dma_read(h, MAPPED_IOVA, 0);
		if (!job_faulted(&j))
			continue;
		if (j.fault_info & DT_FI_RECORDED)
			recorded++;
		else
			lost++;
	}
	prod = rd(h, SMMU_EVTQ_PROD);
	ovf = (prod & Q_OVF) != (h->evt_cons & Q_OVF);
	while (evt_pop(h, rec)) {
		popped++;
		if ((rec[0] & 0xff) != EVT_C_BAD_STE || (rec[0] >> 32) != h->sid)
			bad_type++;
	}
	evt_drain(h); /* OVACKFLG = OVFLG */
	j = dma_read(h, MAPPED_IOVA, 0);
	after_ack = evt_pending(h);
	ovf_after = (rd(h, SMMU_EVTQ_PROD) & Q_OVF) != (h->evt_cons & Q_OVF);
	report(h, ovf && recorded == size && lost == extra && popped == size && !bad_type && after_ack == 1 &&
		  (j.fault_info & DT_FI_RECORDED) && !ovf_after,
	       "evtq_overflow", "queue=%u faults=%u recorded=%u lost=%u popped=%u ovflg=%d bad=%u after_ack=%u ovf_after=%d",
	       size, size + extra, recorded, lost, popped, ovf, bad_type, after_ack, ovf_after);
	evt_drain(h);
}

/* EVTQ_BASE outside memory: the record write aborts, GERROR.EVTQ_ABT_ERR (§7.2, §6.3.16). */
static void evtq_write_abort(struct hostile *h)
{
	u64 nowhere = 1ull << (h->oas_bits - 1);
	bool active = false, restored;
	struct job j = {};

	WRITE_ONCE(*msi_word(h, MSI_GERROR), 0);
	if (queue_rebase(h, false, nowhere)) {
		j = dma_read(h, MAPPED_IOVA, 0); /* STE still V=0 */
		active = gerror_active(h, GERROR_EVTQ_ABT_ERR);
	}
	restored = queue_rebase(h, false, h->evtq.dma) && !gerror_active(h, GERROR_EVTQ_ABT_ERR);
	report(h, active && job_faulted(&j) && !(j.fault_info & DT_FI_RECORDED) &&
		  READ_ONCE(*msi_word(h, MSI_GERROR)) == GERROR_COOKIE && restored,
	       "evtq_write_abort", "base=0x%llx status=0x%llx fault_info=0x%llx evtq_abt_err=%d gerror_msi=0x%x restored=%d",
	       nowhere, j.status, j.fault_info, active, READ_ONCE(*msi_word(h, MSI_GERROR)), restored);
}

static void attack(struct hostile *h)
{
	u32 ssidsize = (h->idr1 >> 6) & 0x1f, ttf = (h->idr0 >> 2) & 3;
	int pasid_cap = pci_find_ext_capability(h->pdev, PCI_EXT_CAP_ID_PASID);
	struct job j;
	u64 w0;
	u32 got, events;

	/* Configuration through the stream table. */
	if (h->sid == 0) {
		report(h, true, "bad_streamid", "SKIP StreamID 0 is inside every stream table");
	} else {
		/* The table covers StreamIDs below 2^ilog2(sid) only: sid is out of range. */
		expect_event(h, "bad_streamid", MAPPED_IOVA, 0, EVT_C_BAD_STREAMID, ~0ull);
	}
	if (!strtab_cover_sid(h)) {
		report(h, false, "bypass_dma", "could not grow the stream table to StreamID 0x%x", h->sid);
		return;
	}
	ste_set(h, STE_V | STE_CFG_BYPASS, 0);
	expect_dma_ok(h, "bypass_dma", h->data.dma);

	ste_set(h, 0, 0);
	expect_event(h, "ste_invalid", MAPPED_IOVA, 0, EVT_C_BAD_STE, ~0ull);

	/* §5.2 Config: 0b0xx is reserved and behaves as 0b000: abort, no event recorded. */
	ste_set(h, STE_V | 2ull << 1, 0);
	evt_drain(h);
	j = dma_read(h, MAPPED_IOVA, 0);
	events = evt_pending(h);
	report(h, job_faulted(&j) && !(j.fault_info & DT_FI_RECORDED) && !events, "ste_reserved_config",
	       "Config=0b010: status=0x%llx fault_info=0x%llx new_events=%u (want abort, none)", j.status, j.fault_info,
	       events);
	evt_drain(h);

	pt_build(h);
	cd_write(h, 0, cd_word0());
	cd_write(h, 1, cd_word0());
	if (ssidsize < 31) {
		ste_s1(h, ssidsize + 1, 0);
		expect_event(h, "ste_s1cdmax_illegal", MAPPED_IOVA, 0, EVT_C_BAD_STE, ~0ull);
	} else {
		report(h, true, "ste_s1cdmax_illegal", "SKIP SSIDSIZE %u leaves no illegal S1CDMax", ssidsize);
	}

	/* Context descriptors (§5.4). */
	ste_s1(h, 0, 0);
	cd_write(h, 0, cd_word0() & ~CD_V);
	invalidate_all(h);
	expect_event(h, "cd_invalid", MAPPED_IOVA, 0, EVT_C_BAD_CD, ~0ull);
	cd_write(h, 0, (cd_word0() & ~GENMASK_ULL(5, 0)) | 48);
	invalidate_all(h);
	if (h->aidr & 0xf) /* SMMUv3.1+: an out-of-range TxSZ is ILLEGAL */
		expect_event(h, "cd_t0sz_illegal", MAPPED_IOVA, 0, EVT_C_BAD_CD, ~0ull);
	else
		report(h, true, "cd_t0sz_illegal", "SKIP SMMUv3.0: out-of-range T0SZ is CONSTRAINED UNPREDICTABLE");
	cd_write(h, 0, cd_word0() | 3ull << 6);
	invalidate_all(h);
	expect_event(h, "cd_tg0_reserved", MAPPED_IOVA, 0, EVT_C_BAD_CD, ~0ull);
	cd_write(h, 0, cd_word0() & ~CD_AA64);
	invalidate_all(h);
	if (ttf == 2) /* AArch64 tables only */
		expect_event(h, "cd_aa32", MAPPED_IOVA, 0, EVT_C_BAD_CD, ~0ull);
	else
		report(h, true, "cd_aa32", "SKIP IDR0.TTF=%u supports AArch32 tables", ttf);
	cd_write(h, 0, cd_word0());

	/* Substreams: the dmatest sends a PASID once its PASID capability is enabled. */
	if (pasid_cap && ssidsize >= 1) {
		pci_write_config_word(h->pdev, pasid_cap + PCI_PASID_CTRL, PCI_PASID_CTRL_ENABLE);
		ste_s1(h, 1, 0);
		expect_event(h, "bad_substreamid", MAPPED_IOVA, DT_PASID_VALID | 5, EVT_C_BAD_SUBSTREAMID, ~0ull);
		ste_set(h, STE_V | STE_CFG_BYPASS, 0);
		expect_event(h, "substream_on_bypass", h->data.dma, DT_PASID_VALID | 1, EVT_C_BAD_SUBSTREAMID, ~0ull);
		pci_write_config_word(h->pdev, pasid_cap + PCI_PASID_CTRL, 0);
	} else {
		report(h, true, "bad_substreamid", "SKIP no PASID capability or SSIDSIZE 0");
		report(h, true, "substream_on_bypass", "SKIP no PASID capability or SSIDSIZE 0");
	}

	/* Translation: a fault with its address and the EVTQ MSI, then the mapped page. */
	ste_s1(h, 0, 0);
	WRITE_ONCE(*msi_word(h, MSI_EVTQ), 0);
	expect_event(h, "translation_fault", UNMAPPED_IOVA, 0, EVT_F_TRANSLATION, UNMAPPED_IOVA);
	got = READ_ONCE(*msi_word(h, MSI_EVTQ));
	report(h, got == EVTQ_COOKIE, "evtq_msi", "EVTQ_IRQ_CFG0 MSI wrote 0x%x (want 0x%x)", got, EVTQ_COOKIE);
	expect_dma_ok(h, "translated_dma", MAPPED_IOVA);

	/* Command queue errors (§7.1). */
	expect_cmd_error(h, "cmd_reserved_opcode", 0x7f, 0);
	expect_cmd_error(h, "cmd_reserved_bits", CMD_TLBI_NSNH_ALL | 1ull << 12, 0);
	expect_cmd_error(h, "cmd_sync_reserved_cs", CMD_SYNC | 3ull << 12, 0);
	expect_cmd_error(h, "cmd_tlbi_el3", CMD_TLBI_EL3_ALL, 0);
	cmdq_fetch_abort(h);
	cmdq_prod_beyond_size(h);

	/* Event queue (§7.2). */
	evtq_overflow(h);
	evtq_write_abort(h);

	/* Still serving: a valid stage-1 STE translates again, commands complete. */
	ste_s1(h, 0, 0);
	w0 = fnv1a(h->data.cpu, DMA_LEN);
	j = dma_read(h, MAPPED_IOVA, 0);
	report(h, (j.status & DT_ST_DONE) && !(j.status & DT_ST_ERROR) && j.result == w0 && invalidate_all(h) &&
		  !((rd(h, SMMU_GERROR) ^ rd(h, SMMU_GERRORN)) & 0x1fd),
	       "still_serving", "status=0x%llx result=0x%llx want=0x%llx gerror=0x%x gerrorn=0x%x", j.status, j.result,
	       w0, rd(h, SMMU_GERROR), rd(h, SMMU_GERRORN));
}

static int coh_alloc(struct hostile *h, struct coh *c, size_t size)
{
	c->size = size;
	c->cpu = dmam_alloc_coherent(h->dev, size, &c->dma, GFP_KERNEL);
	if (!c->cpu)
		return -ENOMEM;
	memset(c->cpu, 0, size);
	return 0;
}

/* The dmatest function and its StreamID through the PCIe host's iommu-map. */
static int find_dmatest(struct hostile *h)
{
	struct pci_dev *pdev = pci_get_device(0x1de5, 0x1110, NULL);
	struct pci_bus *root;
	struct device_node *host_np = NULL, *target = NULL;
	u32 rid;
	int ret;

	if (!pdev) {
		report(h, false, "dmatest", "no PCI function 1de5:1110 (--device dmatest)");
		return -ENODEV;
	}
	h->pdev = pdev;
	rid = pci_dev_id(pdev);
	for (root = pdev->bus; root->parent; root = root->parent)
		;
	if (root->bridge && root->bridge->parent)
		host_np = root->bridge->parent->of_node;
	ret = host_np ? of_map_id(host_np, rid, "iommu-map", "iommu-map-mask", &target, &h->sid) : -ENODEV;
	if (ret || !target || target != h->dev->of_node) {
		report(h, false, "dmatest", "%s: iommu-map of %pOF does not map RID 0x%x to this SMMU (%d, %pOF)",
		       pci_name(pdev), host_np, rid, ret, target);
		of_node_put(target);
		return -ENODEV;
	}
	of_node_put(target);
	ret = pci_enable_device(pdev);
	if (ret) {
		report(h, false, "dmatest", "pci_enable_device: %d", ret);
		return ret;
	}
	pci_set_master(pdev);
	h->dt = pci_iomap(pdev, 0, 0);
	if (!h->dt || lo_hi_readq(h->dt + DT_ID) != DT_ID_VALUE) {
		report(h, false, "dmatest", "%s: BAR0 is not an ionest dmatest", pci_name(pdev));
		return -ENODEV;
	}
	report(h, true, "dmatest", "%s RID 0x%x -> StreamID 0x%x through %pOF's iommu-map", pci_name(pdev), rid,
	       h->sid, host_np);
	return 0;
}

static void release_dmatest(struct hostile *h)
{
	if (!h->pdev)
		return;
	if (h->dt) {
		pci_clear_master(h->pdev);
		pci_iounmap(h->pdev, h->dt);
		pci_disable_device(h->pdev);
	}
	pci_dev_put(h->pdev);
	h->pdev = NULL;
}

static int hostile_probe(struct platform_device *plat)
{
	static const int oas[] = { 32, 36, 40, 42, 44, 48, 52, 52 };
	struct hostile *h;
	int ret;

	h = devm_kzalloc(&plat->dev, sizeof(*h), GFP_KERNEL);
	if (!h)
		return -ENOMEM;
	h->dev = &plat->dev;
	pr_info(DRV ": KTAP version 1\n");
	h->smmu = devm_platform_ioremap_resource(plat, 0);
	if (IS_ERR(h->smmu)) {
		report(h, false, "probe", "%pOF: cannot map the register window: %ld", plat->dev.of_node,
		       PTR_ERR(h->smmu));
		return PTR_ERR(h->smmu);
	}
	h->idr0 = rd(h, SMMU_IDR0);
	h->idr1 = rd(h, SMMU_IDR1);
	h->idr5 = rd(h, SMMU_IDR5);
	h->aidr = rd(h, SMMU_AIDR);
	h->oas_bits = oas[h->idr5 & 7];
	report(h, (h->idr0 & 2) && ((h->idr1 >> 16) & 0x1f) >= EVTQ_LOG2 && ((h->idr1 >> 21) & 0x1f) >= CMDQ_LOG2,
	       "probe", "%pOF IDR0=0x%x IDR1=0x%x IDR5=0x%x AIDR=0x%x (needs S1P, queues of 2^3)", plat->dev.of_node,
	       h->idr0, h->idr1, h->idr5, h->aidr);
	ret = find_dmatest(h);
	if (ret)
		goto out;
	ret = dma_set_mask_and_coherent(h->dev, DMA_BIT_MASK(32));
	ret = ret ?: coh_alloc(h, &h->cmdq, 16 << CMDQ_LOG2);
	ret = ret ?: coh_alloc(h, &h->evtq, 32 << EVTQ_LOG2);
	ret = ret ?: coh_alloc(h, &h->strtab, 64 * 2 * roundup_pow_of_two(h->sid + 1));
	ret = ret ?: coh_alloc(h, &h->cds, PAGE_SIZE);
	ret = ret ?: coh_alloc(h, &h->pt, 3 * PAGE_SIZE);
	ret = ret ?: coh_alloc(h, &h->data, PAGE_SIZE);
	ret = ret ?: coh_alloc(h, &h->msi, PAGE_SIZE);
	if (ret) {
		report(h, false, "enable", "no coherent memory: %d", ret);
		goto out;
	}
	get_random_bytes(h->data.cpu, PAGE_SIZE);
	/* Start with a stream table that stops just below our StreamID (bad_streamid). */
	h->strtab_log2 = h->sid ? ilog2(h->sid) : 1;
	ret = smmu_setup(h) ? 0 : -EIO;
	report(h, !ret, "enable", "CR0=0x%x GERROR=0x%x CMDQ_CONS=0x%x sync_msi=0x%x (cookie 0x%x)",
	       rd(h, SMMU_CR0ACK), rd(h, SMMU_GERROR), rd(h, SMMU_CMDQ_CONS), READ_ONCE(*msi_word(h, MSI_SYNC)),
	       h->sync_cookie | 0x5c000000);
	if (!ret)
		attack(h);
	/* Leave the SMMU off (GBPA decides again) and the queues quiet. */
	cr0_set(h, 0);
	wr(h, SMMU_IRQ_CTRL, 0);
out:
	release_dmatest(h);
	pr_info(DRV ": 1..%d\n", h->n);
	pr_info(DRV ": # done: %d/%d passed\n", h->n - h->failed, h->n);
	return 0;
}

static const struct of_device_id hostile_of_match[] = {
	{ .compatible = "arm,smmu-v3" },
	{},
};
MODULE_DEVICE_TABLE(of, hostile_of_match);

static struct platform_driver hostile_driver = {
	.driver = {
		.name = DRV,
		.of_match_table = hostile_of_match,
	},
	.probe = hostile_probe,
};
module_platform_driver(hostile_driver);

MODULE_DESCRIPTION("ionest hostile driver for the emulated Arm SMMUv3: bad STEs/CDs/StreamIDs/commands, queue games");
MODULE_LICENSE("GPL");
