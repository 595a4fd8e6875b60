// SPDX-License-Identifier: GPL-2.0
/*
 * ionest_hostile: a hostile guest driver for the ionest DMA test device (1de5:1110, register map
 * devices/testdev/dma_test_device_regs.h). Bound through driver_override, it programs the device
 * to DMA where it must not and to send spoofed interrupts, and reports per attempt, as KTAP lines
 * in the kernel log ("ionest_hostile: ok N name # ..."), whether the emulated VT-d blocked it:
 *   1 mapped_dma        control: a DMA to a live dma_map_single() buffer completes
 *   2 unmapped_iova     DMA to an IOVA that was never mapped         -> DMA fault (VT-d §7.1.3)
 *   3 after_unmap       DMA to a page after dma_unmap_page()          -> DMA fault
 *   4 stale_pasid       untranslated request with a PASID never set up -> SM PASID fault (§7.1.3)
 *   5 pasid_after_teardown  a PASID attached to a paging domain works, then after
 *                       iommu_detach_device_pasid() the same request faults (§6.5.2.x flushes)
 *   6 compat_msi        MSI-X entry in compatibility format with IR on and CFI blocked
 *                       -> interrupt-remapping fault 0x25 (VT-d §5.1.4, Appendix A)
 *   7 foreign_irte      remappable MSI-X entry naming an IRTE whose SID belongs to another
 *                       requester -> interrupt-remapping fault 0x26 (§9.10 SVT/SQ/SID check)
 * DMA attempts check the device's STATUS (ERROR, code 4 = translation fault) and FAULT_INFO (VT-d
 * fault reason, recorded bit); each also logs "expect: dmar <kind> addr=0x.. reason=0x.." so the
 * guest script can match the DMAR driver's fault line. The interrupt attempts log the expected
 * INTR-REMAP reason and that no handler of ours ran.
 */
#include <linux/delay.h>
#include <linux/dma-mapping.h>
#include <linux/interrupt.h>
#include <linux/io.h>
#include <linux/io-64-nonatomic-lo-hi.h>
#include <linux/iommu.h>
#include <linux/module.h>
#include <linux/pci.h>
#include <linux/pci-ats.h>
#include <linux/slab.h>

#define DRV "ionest_hostile"

/* BAR0 registers (dma_test_device_regs.h). */
#define REG_ID 0x00
#define REG_SRC 0x10
#define REG_DST 0x18
#define REG_LEN 0x20
#define REG_PASID 0x28
#define REG_CTRL 0x38
#define REG_DOORBELL 0x40
#define REG_STATUS 0x48
#define REG_FAULT_ADDR 0x50
#define REG_FAULT_INFO 0x58
#define REG_IRQ_COUNT 0x98
#define ID_VALUE 0x3154414d444e4f49ull /* "IONDMAT1" */
#define OP_READ 1
#define CTRL_IRQ (1u << 5)
#define CTRL_NO_PRI (1u << 6)
#define CTRL_VECTOR_SHIFT 8
#define PASID_VALID (1ull << 31)
#define ST_BUSY 1ull
#define ST_DONE 2ull
#define ST_ERROR 4ull
#define ERR_TRANSLATION 4
#define FI_RECORDED (1ull << 12)

/* VT-d registers (§11.4) and IRTE layout (§9.10). */
#define DMAR_IRTA 0xb8
#define IRTE_P 1ull
#define MSIX_ENTRY 16

static char *bdf = "0000:00:03.0";
module_param(bdf, charp, 0444);
MODULE_PARM_DESC(bdf, "PCI function to attack (must be a dmatest bound through driver_override)");
static ulong dmar_base = 0xfed90000;
module_param(dmar_base, ulong, 0444);
MODULE_PARM_DESC(dmar_base, "VT-d register base (DRHD), to find an IRTE owned by another requester");

struct hostile {
	struct pci_dev *pdev;
	void __iomem *regs;
	void __iomem *msix;
	atomic_t irqs;
	int n;
	int failed;
};

static irqreturn_t hostile_irq(int irq, void *data)
{
	struct hostile *h = data;

	atomic_inc(&h->irqs);
	return IRQ_HANDLED;
}

static void report(struct hostile *h, bool ok, const char *name, const char *fmt, ...)
{
	char diag[160];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(diag, sizeof(diag), fmt, ap);
	va_end(ap);
	h->n++;
	if (!ok)
		h->failed++;
	pr_info(DRV ": %s %d %s # %s\n", ok ? "ok" : "not ok", h->n, name, diag);
}

/* Runs one job; returns STATUS at the end (0 on timeout). */
static u64 run_job(struct hostile *h, u64 src, u64 len, u64 pasid, u64 ctrl)
{
	u64 st;
	int i;

	st = lo_hi_readq(h->regs + REG_STATUS);
	lo_hi_writeq(st & (ST_DONE | ST_ERROR), h->regs + REG_STATUS); /* RW1C */
	lo_hi_writeq(src, h->regs + REG_SRC);
	lo_hi_writeq(0, h->regs + REG_DST);
	lo_hi_writeq(len, h->regs + REG_LEN);
	lo_hi_writeq(pasid, h->regs + REG_PASID);
	lo_hi_writeq(OP_READ | CTRL_NO_PRI | ctrl, h->regs + REG_CTRL);
	lo_hi_writeq(1, h->regs + REG_DOORBELL);
	for (i = 0; i < 400; i++) {
		st = lo_hi_readq(h->regs + REG_STATUS);
		if (!(st & ST_BUSY) && (st & (ST_DONE | ST_ERROR)))
			return st;
		msleep(10);
	}
	return 0;
}

/* A DMA attempt that must end in a recorded translation fault at `iova`. */
/*
 * dmar_fault() spends 3 ratelimit tokens per fault interrupt (10 per 5 s, shared with every
 * other fault): at most two attempts per window keeps every fault line printed.
 */
static void ratelimit_gap(void)
{
	msleep(2600);
}

static void expect_dma_fault(struct hostile *h, const char *name, u64 iova, u64 pasid)
{
	u64 st, info, addr;
	u8 reason;
	bool ok;

	ratelimit_gap();
	st = run_job(h, iova, 64, pasid, 0);
	info = lo_hi_readq(h->regs + REG_FAULT_INFO);
	addr = lo_hi_readq(h->regs + REG_FAULT_ADDR);
	reason = info & 0xff;
	ok = (st & ST_ERROR) && ((st >> 8) & 0xff) == ERR_TRANSLATION && reason && (info & FI_RECORDED) &&
		  addr == iova;

	report(h, ok, name, "status=0x%llx fault_addr=0x%llx fault_info=0x%llx reason=0x%02x", st, addr, info, reason);
	if (ok) {
		if (pasid & PASID_VALID)
			pr_info(DRV ": expect: dmar DMA Read PASID 0x%llx addr=0x%llx reason=0x%02x\n",
				pasid & 0xfffff, iova & ~0xfffull, reason);
		else
			pr_info(DRV ": expect: dmar DMA Read NO_PASID addr=0x%llx reason=0x%02x\n", iova & ~0xfffull,
				reason);
	}
}

static void write_msix(struct hostile *h, int entry, u64 addr, u32 data)
{
	void __iomem *e = h->msix + entry * MSIX_ENTRY;

	writel(lower_32_bits(addr), e + PCI_MSIX_ENTRY_LOWER_ADDR);
	writel(upper_32_bits(addr), e + PCI_MSIX_ENTRY_UPPER_ADDR);
	writel(data, e + PCI_MSIX_ENTRY_DATA);
	writel(0, e + PCI_MSIX_ENTRY_VECTOR_CTRL); /* unmask */
}

/* An interrupt attempt through MSI-X entry `entry` (after the job) that must not reach us. */
static void expect_irq_blocked(struct hostile *h, const char *name, int entry, dma_addr_t buf, u8 reason,
			       const char *what)
{
	int before;
	u32 sent_before, sent;
	u64 st;
	bool ok;

	ratelimit_gap();
	before = atomic_read(&h->irqs);
	sent_before = (u32)lo_hi_readq(h->regs + REG_IRQ_COUNT);
	st = run_job(h, buf, 64, 0, CTRL_IRQ | (u64)entry << CTRL_VECTOR_SHIFT);
	sent = (u32)lo_hi_readq(h->regs + REG_IRQ_COUNT) - sent_before;

	msleep(100); /* let a wrongly delivered interrupt arrive */
	ok = (st & ST_DONE) && sent == 1 && atomic_read(&h->irqs) == before;
	report(h, ok, name, "%s status=0x%llx device_irqs=%u handler_runs=%d", what, st, sent,
	       atomic_read(&h->irqs) - before);
	if (ok)
		pr_info(DRV ": expect: dmar INTR-REMAP reason=0x%02x\n", reason);
}

/* A PASID that worked, torn down: the same request must fault afterwards. */
static void pasid_after_teardown(struct hostile *h, struct page *page)
{
	const char *name = "pasid_after_teardown";
	const unsigned long iova = 0x40000000;
	struct device *dev = &h->pdev->dev;
	struct iommu_domain *d = iommu_paging_domain_alloc(dev);
	ioasid_t pasid = IOMMU_PASID_INVALID;
	int ret = 0;
	u64 st;

	if (IS_ERR(d)) {
		report(h, false, name, "iommu_paging_domain_alloc: %ld", PTR_ERR(d));
		return;
	}
	pasid = iommu_alloc_global_pasid(dev);
	if (pasid == IOMMU_PASID_INVALID) {
		report(h, false, name, "no global PASID");
		goto free_domain;
	}
	ret = iommu_map(d, iova, page_to_phys(page), PAGE_SIZE, IOMMU_READ | IOMMU_WRITE, GFP_KERNEL);
	if (!ret)
		ret = iommu_attach_device_pasid(d, dev, pasid, NULL);
	if (ret) {
		report(h, false, name, "map/attach PASID 0x%x: %d", pasid, ret);
		goto free_pasid;
	}
	st = run_job(h, iova, 64, PASID_VALID | pasid, 0);
	iommu_detach_device_pasid(d, dev, pasid);
	if (!(st & ST_DONE) || (st & ST_ERROR))
		report(h, false, name, "DMA through live PASID 0x%x failed: status=0x%llx", pasid, st);
	else
		expect_dma_fault(h, name, iova, PASID_VALID | pasid);
free_pasid:
	iommu_free_global_pasid(pasid);
free_domain:
	iommu_domain_free(d);
}

/* Finds a present IRTE whose source-id is not `rid`; -1 if none. */
static long foreign_irte(u16 rid, u32 *sid_out)
{
	void __iomem *dmar = ioremap(dmar_base, 0x1000);
	u64 irta;
	u32 entries, i;
	u64 *irt;
	long found = -1;

	if (!dmar)
		return -1;
	irta = lo_hi_readq(dmar + DMAR_IRTA); /* §11.4.9.1: IRTA 63:12, S 3:0 (2^(S+1) entries) */
	iounmap(dmar);
	entries = 1u << ((irta & 0xf) + 1);
	irt = memremap(irta & ~0xfffull, entries * 16, MEMREMAP_WB);
	if (!irt)
		return -1;
	for (i = 0; i < entries; i++) {
		u64 lo = READ_ONCE(irt[2 * i]), hi = READ_ONCE(irt[2 * i + 1]);
		u32 sid = hi & 0xffff, svt = (hi >> 18) & 3;

		if ((lo & IRTE_P) && svt == 1 && sid != rid) {
			found = i;
			*sid_out = sid;
			break;
		}
	}
	memunmap(irt);
	return found;
}

static void hostile_run(struct hostile *h)
{
	struct pci_dev *pdev = h->pdev;
	struct device *dev = &pdev->dev;
	struct iommu_domain *dom = iommu_get_domain_for_dev(dev);
	bool translated = dom && dom->type != IOMMU_DOMAIN_IDENTITY;
	struct page *pages = alloc_pages(GFP_KERNEL | __GFP_ZERO, 1);
	dma_addr_t iova = DMA_MAPPING_ERROR;
	u64 st;
	int pasid_cap;
	u16 pasid_ctrl = 0;
	u32 sid = 0;
	long irte;

	pr_info(DRV ": KTAP version 1\n");
	pr_info(DRV ": 1..7\n");
	if (pages)
		iova = dma_map_page(dev, pages, 0, 2 * PAGE_SIZE, DMA_BIDIRECTIONAL);
	if (dma_mapping_error(dev, iova)) {
		report(h, false, "mapped_dma", "no DMA buffer");
		goto out;
	}
	st = run_job(h, iova, 256, 0, 0);
	report(h, (st & ST_DONE) && !(st & ST_ERROR), "mapped_dma", "iova=0x%llx status=0x%llx domain=%s",
	       (u64)iova, st, translated ? "translated" : "identity");

	if (!translated) {
		report(h, true, "unmapped_iova", "SKIP identity domain: no IOVA space to escape");
		report(h, true, "after_unmap", "SKIP identity domain");
		report(h, true, "stale_pasid", "SKIP identity domain");
		report(h, true, "pasid_after_teardown", "SKIP identity domain");
	} else {
		/* Far above every dma-iommu allocation (top-down below the 48-bit mask, 32-bit first). */
		expect_dma_fault(h, "unmapped_iova", 0x7e5a5a000000ull, 0);
		/* Second page never touched: no IOTLB entry even in lazy mode (the PTE is gone at unmap). */
		dma_unmap_page(dev, iova, 2 * PAGE_SIZE, DMA_BIDIRECTIONAL);
		expect_dma_fault(h, "after_unmap", iova + PAGE_SIZE, 0);
		iova = dma_map_page(dev, pages, 0, 2 * PAGE_SIZE, DMA_BIDIRECTIONAL);
		pasid_cap = pci_find_ext_capability(pdev, PCI_EXT_CAP_ID_PASID);
		if (pasid_cap)
			pci_read_config_word(pdev, pasid_cap + PCI_PASID_CTRL, &pasid_ctrl);
		if (pasid_cap && !(pasid_ctrl & PCI_PASID_CTRL_ENABLE) && pci_enable_pasid(pdev, 0) == 0)
			pasid_ctrl |= PCI_PASID_CTRL_ENABLE;
		if (pasid_ctrl & PCI_PASID_CTRL_ENABLE) {
			expect_dma_fault(h, "stale_pasid", iova, PASID_VALID | 0x5a5a);
			pasid_after_teardown(h, pages);
		} else {
			report(h, true, "stale_pasid", "SKIP PASID not enabled (no scalable mode?)");
			report(h, true, "pasid_after_teardown", "SKIP PASID not enabled");
		}
	}
	if (dma_mapping_error(dev, iova)) {
		report(h, false, "compat_msi", "no DMA buffer");
		report(h, false, "foreign_irte", "no DMA buffer");
		goto out;
	}

	/* Entry 1: compatibility format (address bit 4 = 0) to APIC 0, vector 0x31 (§5.1.2). */
	write_msix(h, 1, 0xfee00000ull, 0x31);
	expect_irq_blocked(h, "compat_msi", 1, iova, 0x25, "compat addr=0xfee00000 data=0x31");

	/* Entry 2: remappable format (§5.1.5.2) naming another requester's IRTE, SHV = 0. */
	irte = foreign_irte(pci_dev_id(pdev), &sid);
	if (irte < 0) {
		report(h, false, "foreign_irte", "no present IRTE with another source-id found");
	} else {
		char what[64];

		snprintf(what, sizeof(what), "irte=%ld sid=0x%04x", irte, sid);
		write_msix(h, 2, 0xfee00000ull | (irte & 0x7fff) << 5 | 1u << 4 | ((irte >> 15) & 1) << 2, 0);
		expect_irq_blocked(h, "foreign_irte", 2, iova, 0x26, what);
	}
	/* Mask the spoofed entries again. */
	writel(PCI_MSIX_ENTRY_CTRL_MASKBIT, h->msix + 1 * MSIX_ENTRY + PCI_MSIX_ENTRY_VECTOR_CTRL);
	writel(PCI_MSIX_ENTRY_CTRL_MASKBIT, h->msix + 2 * MSIX_ENTRY + PCI_MSIX_ENTRY_VECTOR_CTRL);
	dma_unmap_page(dev, iova, 2 * PAGE_SIZE, DMA_BIDIRECTIONAL);
out:
	if (pages)
		__free_pages(pages, 1);
	pr_info(DRV ": # done: %d/%d passed\n", h->n - h->failed, h->n);
}

static int hostile_probe(struct pci_dev *pdev, const struct pci_device_id *id)
{
	struct hostile *h;
	int ret;

	if (strcmp(pci_name(pdev), bdf) != 0)
		return -ENODEV;
	h = devm_kzalloc(&pdev->dev, sizeof(*h), GFP_KERNEL);
	if (!h)
		return -ENOMEM;
	h->pdev = pdev;
	atomic_set(&h->irqs, 0);
	ret = pcim_enable_device(pdev);
	if (ret)
		return ret;
	pci_set_master(pdev);
	ret = dma_set_mask_and_coherent(&pdev->dev, DMA_BIT_MASK(48));
	if (ret)
		return ret;
	h->regs = pcim_iomap(pdev, 0, 0);
	h->msix = pcim_iomap(pdev, 2, 0);
	if (!h->regs || !h->msix)
		return -ENOMEM;
	if (lo_hi_readq(h->regs + REG_ID) != ID_VALUE) {
		dev_err(&pdev->dev, "not an ionest dmatest\n");
		return -ENODEV;
	}
	ret = pci_alloc_irq_vectors(pdev, 1, 1, PCI_IRQ_MSIX);
	if (ret < 0)
		return ret;
	ret = devm_request_irq(&pdev->dev, pci_irq_vector(pdev, 0), hostile_irq, 0, DRV, h);
	if (ret)
		return ret;
	pci_set_drvdata(pdev, h);
	hostile_run(h);
	return 0;
}

static void hostile_remove(struct pci_dev *pdev)
{
	struct hostile *h = pci_get_drvdata(pdev);

	devm_free_irq(&pdev->dev, pci_irq_vector(pdev, 0), h);
	pci_free_irq_vectors(pdev);
}

/* No IDs: binds only through driver_override. */
static const struct pci_device_id hostile_ids[] = { {} };
MODULE_DEVICE_TABLE(pci, hostile_ids);

static struct pci_driver hostile_driver = {
	.name = DRV,
	.id_table = hostile_ids,
	.probe = hostile_probe,
	.remove = hostile_remove,
};
module_pci_driver(hostile_driver);

MODULE_DESCRIPTION("ionest hostile-guest DMA/interrupt attempts against the ionest dmatest device");
MODULE_LICENSE("GPL");
