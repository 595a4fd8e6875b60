// SPDX-License-Identifier: GPL-2.0
/*
 * ionest_viommu_hostile: a hostile virtio-iommu driver for ionest's virtio-iommu device (virtio 1.2
 * §5.13, device type 23). Loaded with Linux's own virtio-iommu driver kept out
 * (initcall_blacklist=virtio_iommu_drv_init), it binds the device through the virtio core, sends
 * malformed and abusive requests, and checks every answer against the status the spec names
 * (§5.13.6: S_INVAL, S_RANGE, S_NOENT, S_NOMEM; requests it cannot parse are returned with no
 * status written). It drives an unbound ionest DMA test function (1de5:1110, `bdf`) as the
 * endpoint: DMA of an unattached endpoint under both `bypass` values (§5.13.4.2), DMA through a
 * mapping and outside it, with the fault events the device must report on the event queue
 * (§5.13.7). Results are KTAP-style lines in the kernel log:
 *   "ionest_viommu_hostile: ok N name # diagnostics" / "... not ok N name # ...".
 * The last attempts check that the device still serves correct requests afterwards.
 */
#include <linux/delay.h>
#include <linux/io-64-nonatomic-lo-hi.h>
#include <linux/module.h>
#include <linux/pci.h>
#include <linux/random.h>
#include <linux/scatterlist.h>
#include <linux/slab.h>
#include <linux/spinlock.h>
#include <linux/virtio.h>
#include <linux/virtio_config.h>
#include <linux/virtio_ids.h>
#include <uapi/linux/virtio_iommu.h>

#define DRV "ionest_viommu_hostile"

/* ionest DMA test device, BAR0 (devices/testdev/dma_test_device_regs.h). */
#define REG_SRC 0x10
#define REG_DST 0x18
#define REG_LEN 0x20
#define REG_PASID 0x28
#define REG_CTRL 0x38
#define REG_DOORBELL 0x40
#define REG_STATUS 0x48
#define REG_FAULT_ADDR 0x50
#define REG_RESULT 0x60
#define OP_READ 1
#define CTRL_NO_PRI (1u << 6)
#define ST_BUSY 1ull
#define ST_DONE 2ull
#define ST_ERROR 4ull
#define ERR_TRANSLATION 4

#define NR_EVENTS 16
#define IOVA 0x100000ull         /* the 64 KiB test mapping */
#define CAP_IOVA 0x100000000ull  /* where the mapping-cap attempt maps 4 KiB pages */
#define BATCH 64                 /* requests per kick in the cap attempt (2 descriptors each) */
#define STATUS_UNWRITTEN 0xee

static char *bdf = "0000:00:03.0";
module_param(bdf, charp, 0444);
MODULE_PARM_DESC(bdf, "unbound ionest-dmatest function used as the endpoint");

struct vh {
	struct virtio_device *vdev;
	struct virtqueue *req_vq;
	struct virtqueue *evt_vq;
	struct virtio_iommu_fault *evt_bufs; /* NR_EVENTS, owned by the event queue */
	spinlock_t evt_lock;
	struct virtio_iommu_fault seen[NR_EVENTS]; /* received since the last clear_events() */
	int nseen;
	bool broken; /* a request buffer is still with the device: stop */
	struct scatterlist sg_out[BATCH], sg_in[BATCH];
	u32 own_ep;
	struct pci_dev *pdev;
	void __iomem *regs;
	u32 ep;
	u8 *page; /* 4 KiB the endpoint reads */
	u64 page_pa;
	u64 fnv; /* FNV-1a-64 of its first 64 bytes */
	u64 input_end;
	u32 domain_end;
	u32 probe_size;
	u64 msi_start, msi_end;
	int n, failed;
};

static void report(struct vh *h, bool ok, const char *name, const char *fmt, ...)
{
	char diag[192];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(diag, sizeof(diag), fmt, ap);
	va_end(ap);
	h->n++;
	if (!ok)
		h->failed++;
	pr_info(DRV ": %s %d %s # %s\n", ok ? "ok" : "not ok", h->n, name, diag);
}

/* --- the event queue (§5.13.7) --- */

static void add_event_buf(struct vh *h, struct virtio_iommu_fault *f)
{
	struct scatterlist sg;

	sg_init_one(&sg, f, sizeof(*f));
	virtqueue_add_inbuf(h->evt_vq, &sg, 1, f, GFP_ATOMIC);
}

static void event_done(struct virtqueue *vq)
{
	struct vh *h = vq->vdev->priv;
	struct virtio_iommu_fault *f;
	unsigned long flags;
	unsigned int len;

	spin_lock_irqsave(&h->evt_lock, flags);
	while ((f = virtqueue_get_buf(vq, &len))) {
		if (len >= sizeof(*f) && h->nseen < NR_EVENTS)
			h->seen[h->nseen++] = *f;
		add_event_buf(h, f);
	}
	virtqueue_kick(vq);
	spin_unlock_irqrestore(&h->evt_lock, flags);
}

static void clear_events(struct vh *h)
{
	unsigned long flags;

	spin_lock_irqsave(&h->evt_lock, flags);
	h->nseen = 0;
	spin_unlock_irqrestore(&h->evt_lock, flags);
}

/* Waits up to 1 s for a fault event; returns whether one arrived (copied to *out). */
static bool wait_fault_event(struct vh *h, struct virtio_iommu_fault *out)
{
	unsigned long flags;
	bool got = false;
	int i;

	for (i = 0; i < 100 && !got; i++) {
		spin_lock_irqsave(&h->evt_lock, flags);
		if (h->nseen) {
			*out = h->seen[0];
			got = true;
		}
		spin_unlock_irqrestore(&h->evt_lock, flags);
		if (!got)
			msleep(10);
	}
	return got;
}

/* --- the request queue (§5.13.6) --- */

/*
 * Sends the buffers of `bufs` (each `out` readable then `in` writable bytes) with one kick and
 * waits for all of them; used[i] = the device's used length. The device completes requests in
 * the notify exit, so a buffer still outstanding after 2 s means it kept it: marked broken, the
 * buffers stay allocated (the device may still write them).
 */
static int send_batch(struct vh *h, u8 **bufs, int count, size_t out, size_t in, unsigned int *used)
{
	struct scatterlist *so = h->sg_out, *si = h->sg_in, *sgs[2];
	int i, done = 0, ret = 0;
	unsigned long deadline;

	if (h->broken || count > BATCH)
		return -EIO;
	for (i = 0; i < count; i++) {
		int nout = 0, nin = 0;

		used[i] = ~0u;
		if (out) {
			sg_init_one(&so[i], bufs[i], out);
			sgs[nout++] = &so[i];
		}
		if (in) {
			sg_init_one(&si[i], bufs[i] + out, in);
			sgs[nout + nin++] = &si[i];
		}
		ret = virtqueue_add_sgs(h->req_vq, sgs, nout, nin, bufs[i], GFP_KERNEL);
		if (ret) {
			count = i; /* what was added still completes below */
			break;
		}
	}
	virtqueue_kick(h->req_vq);
	deadline = jiffies + 2 * HZ;
	while (done < count && time_before(jiffies, deadline)) {
		unsigned int len;
		u8 *b = virtqueue_get_buf(h->req_vq, &len);

		if (!b) {
			cpu_relax();
			continue;
		}
		for (i = 0; i < count; i++)
			if (bufs[i] == b)
				used[i] = len;
		done++;
	}
	if (done < count) {
		h->broken = true;
		return -ETIMEDOUT;
	}
	return ret ? ret : 0;
}

/* One request of `size` bytes whose last `in` bytes are device-writable, the tail (status) last;
 * returns the status byte, -ENODATA if the device returned it unwritten (used length 0), or -errno. */
static int request_split(struct vh *h, const void *req, size_t size, size_t in)
{
	unsigned int used;
	u8 *buf;
	int ret;

	buf = kmemdup(req, size, GFP_KERNEL);
	if (!buf)
		return -ENOMEM;
	buf[size - sizeof(struct virtio_iommu_req_tail)] = STATUS_UNWRITTEN;
	ret = send_batch(h, &buf, 1, size - in, in, &used);
	if (ret == -ETIMEDOUT)
		return ret; /* buf stays with the device */
	if (!ret)
		ret = used == 0 ? -ENODATA : buf[size - sizeof(struct virtio_iommu_req_tail)];
	kfree(buf);
	return ret;
}

static int request(struct vh *h, const void *req, size_t size)
{
	return request_split(h, req, size, sizeof(struct virtio_iommu_req_tail));
}

static int attach(struct vh *h, u32 domain, u32 ep, u32 flags, u8 reserved0)
{
	struct virtio_iommu_req_attach r = {
		.head.type = VIRTIO_IOMMU_T_ATTACH,
		.domain = cpu_to_le32(domain),
		.endpoint = cpu_to_le32(ep),
		.flags = cpu_to_le32(flags),
	};

	r.reserved[0] = reserved0;
	return request(h, &r, sizeof(r));
}

static int detach(struct vh *h, u32 domain, u32 ep)
{
	struct virtio_iommu_req_detach r = {
		.head.type = VIRTIO_IOMMU_T_DETACH,
		.domain = cpu_to_le32(domain),
		.endpoint = cpu_to_le32(ep),
	};

	return request(h, &r, sizeof(r));
}

static void fill_map(struct virtio_iommu_req_map *r, u32 domain, u64 start, u64 end, u64 phys, u32 flags)
{
	memset(r, 0, sizeof(*r));
	r->head.type = VIRTIO_IOMMU_T_MAP;
	r->domain = cpu_to_le32(domain);
	r->virt_start = cpu_to_le64(start);
	r->virt_end = cpu_to_le64(end);
	r->phys_start = cpu_to_le64(phys);
	r->flags = cpu_to_le32(flags);
}

static int map(struct vh *h, u32 domain, u64 start, u64 end, u64 phys, u32 flags)
{
	struct virtio_iommu_req_map r;

	fill_map(&r, domain, start, end, phys, flags);
	return request(h, &r, sizeof(r));
}

static int unmap(struct vh *h, u32 domain, u64 start, u64 end, u8 reserved0)
{
	struct virtio_iommu_req_unmap r = {
		.head.type = VIRTIO_IOMMU_T_UNMAP,
		.domain = cpu_to_le32(domain),
		.virt_start = cpu_to_le64(start),
		.virt_end = cpu_to_le64(end),
	};

	r.reserved[0] = reserved0;
	return request(h, &r, sizeof(r));
}

/* PROBE with a properties area of `props` bytes; returns the status. */
static int probe(struct vh *h, u32 ep, size_t props)
{
	size_t size = sizeof(struct virtio_iommu_req_probe) + props + sizeof(struct virtio_iommu_req_tail);
	struct virtio_iommu_req_probe *r = kzalloc(size, GFP_KERNEL);
	int ret;

	if (!r)
		return -ENOMEM;
	r->head.type = VIRTIO_IOMMU_T_PROBE;
	r->endpoint = cpu_to_le32(ep);
	/* The properties area and the tail are device-writable. */
	ret = request_split(h, r, size, props + sizeof(struct virtio_iommu_req_tail));
	kfree(r);
	return ret;
}

static const char *status_name(int s)
{
	static const char *const names[] = { "S_OK",	"S_IOERR", "S_UNSUPP", "S_DEVERR", "S_INVAL",
					     "S_RANGE", "S_NOENT", "S_FAULT",  "S_NOMEM" };

	if (s == -ENODATA)
		return "unwritten (used length 0)";
	if (s == -ETIMEDOUT)
		return "no answer";
	if (s >= 0 && s < ARRAY_SIZE(names))
		return names[s];
	return "unknown status";
}

static void expect(struct vh *h, const char *name, int got, int want, const char *what)
{
	report(h, got == want, name, "%s -> %s [%d] (want %s)", what, status_name(got), got, status_name(want));
}

/* --- the endpoint's DMA --- */

static u64 fnv1a(const u8 *p, size_t n)
{
	u64 hash = 0xcbf29ce484222325ull;

	while (n--)
		hash = (hash ^ *p++) * 0x100000001b3ull;
	return hash;
}

/* A 64-byte read at `addr` by the endpoint; returns STATUS at the end (0: never finished). */
static u64 endpoint_read(struct vh *h, u64 addr)
{
	u64 st;
	int i;

	st = lo_hi_readq(h->regs + REG_STATUS);
	lo_hi_writeq(st & (ST_DONE | ST_ERROR), h->regs + REG_STATUS); /* RW1C */
	lo_hi_writeq(addr, h->regs + REG_SRC);
	lo_hi_writeq(0, h->regs + REG_DST);
	lo_hi_writeq(64, h->regs + REG_LEN);
	lo_hi_writeq(0, h->regs + REG_PASID);
	lo_hi_writeq(OP_READ | CTRL_NO_PRI, h->regs + REG_CTRL);
	lo_hi_writeq(1, h->regs + REG_DOORBELL);
	for (i = 0; i < 400; i++) {
		st = lo_hi_readq(h->regs + REG_STATUS);
		if (!(st & ST_BUSY) && (st & (ST_DONE | ST_ERROR)))
			return st;
		msleep(10);
	}
	return 0;
}

static void expect_dma_ok(struct vh *h, const char *name, u64 addr)
{
	u64 st = endpoint_read(h, addr);
	u64 result = lo_hi_readq(h->regs + REG_RESULT);

	report(h, (st & ST_DONE) && !(st & ST_ERROR) && result == h->fnv, name,
	       "read of 0x%llx: status=0x%llx result=0x%llx (want DONE, 0x%llx)", addr, st, result, h->fnv);
}

/* A read that must be blocked, with a fault event of `reason` for this endpoint and address. */
static void expect_dma_blocked(struct vh *h, const char *name, u64 addr, u8 reason)
{
	struct virtio_iommu_fault f = {};
	u64 st, fault_addr;
	bool got, ok;

	clear_events(h);
	st = endpoint_read(h, addr);
	fault_addr = lo_hi_readq(h->regs + REG_FAULT_ADDR);
	got = wait_fault_event(h, &f);
	ok = (st & ST_ERROR) && ((st >> 8) & 0xff) == ERR_TRANSLATION && fault_addr == addr && got &&
	     f.reason == reason && le32_to_cpu(f.endpoint) == h->ep &&
	     (le32_to_cpu(f.flags) & VIRTIO_IOMMU_FAULT_F_READ) &&
	     (!(le32_to_cpu(f.flags) & VIRTIO_IOMMU_FAULT_F_ADDRESS) || le64_to_cpu(f.address) == addr);
	report(h, ok, name,
	       "read of 0x%llx: status=0x%llx fault_addr=0x%llx; event %s: reason %u flags 0x%x endpoint 0x%x address 0x%llx (want reason %u, endpoint 0x%x)",
	       addr, st, fault_addr, got ? "received" : "MISSING", f.reason, le32_to_cpu(f.flags),
	       le32_to_cpu(f.endpoint), le64_to_cpu(f.address), reason, h->ep);
}

static void set_bypass(struct vh *h, u8 on)
{
	virtio_cwrite8(h->vdev, offsetof(struct virtio_iommu_config, bypass), on);
}

/* --- the attempts --- */

/* Requests the device cannot parse: returned with used length 0 and nothing written (§5.13.6.2). */
static void unparsable_requests(struct vh *h)
{
	struct virtio_iommu_req_attach a = { .head.type = VIRTIO_IOMMU_T_ATTACH };
	struct virtio_iommu_req_map m;
	u8 unknown[64] = { 0x7f };
	u8 short_map[8 + sizeof(struct virtio_iommu_req_tail)] = {};

	expect(h, "unknown_type", request(h, unknown, sizeof(unknown)), -ENODATA, "request type 0x7f");
	expect(h, "no_tail", request_split(h, &a, sizeof(a), 2), -ENODATA, "ATTACH with 2 writable bytes");
	expect(h, "no_readable_part", request_split(h, &a, sizeof(struct virtio_iommu_req_tail),
						    sizeof(struct virtio_iommu_req_tail)),
	       -ENODATA, "only a writable tail");
	fill_map(&m, 1, IOVA, IOVA + 0xfff, h->page_pa, VIRTIO_IOMMU_MAP_F_READ);
	/* Only head + domain readable, then the tail: too short for a MAP, but the status has a place. */
	memcpy(short_map, &m, 8);
	expect(h, "short_request", request(h, short_map, sizeof(short_map)), VIRTIO_IOMMU_S_INVAL,
	       "MAP with 8 readable bytes");
}

static void attach_attempts(struct vh *h)
{
	expect(h, "attach_reserved", attach(h, 1, h->ep, 0, 1), VIRTIO_IOMMU_S_INVAL, "ATTACH reserved[0]=1");
	expect(h, "attach_unknown_flag", attach(h, 1, h->ep, 1u << 7, 0), VIRTIO_IOMMU_S_INVAL, "ATTACH flags 0x80");
	expect(h, "attach_unknown_endpoint", attach(h, 1, 0x10000, 0, 0), VIRTIO_IOMMU_S_NOENT,
	       "ATTACH endpoint 0x10000");
	expect(h, "attach_iommu_itself", attach(h, 1, h->own_ep, 0, 0), VIRTIO_IOMMU_S_NOENT,
	       "ATTACH the virtio-iommu's own function");
	if (h->domain_end != U32_MAX)
		expect(h, "attach_domain_range", attach(h, h->domain_end + 1, h->ep, 0, 0), VIRTIO_IOMMU_S_RANGE,
		       "ATTACH domain past domain_range");
	else
		report(h, true, "attach_domain_range", "SKIP domain_range covers every 32-bit domain");
	expect(h, "attach", attach(h, 1, h->ep, 0, 0), VIRTIO_IOMMU_S_OK, "ATTACH endpoint to domain 1");
	expect(h, "attach_bypass_mismatch", attach(h, 1, h->ep, VIRTIO_IOMMU_ATTACH_F_BYPASS, 0),
	       VIRTIO_IOMMU_S_INVAL, "ATTACH_F_BYPASS to paging domain 1");
	expect(h, "detach_wrong_domain", detach(h, 2, h->ep), VIRTIO_IOMMU_S_INVAL,
	       "DETACH from a domain the endpoint is not in");
}

static void map_attempts(struct vh *h)
{
	const u32 rd = VIRTIO_IOMMU_MAP_F_READ;
	const u64 pa = h->page_pa;

	expect(h, "map_unknown_flag", map(h, 1, IOVA, IOVA + 0xfff, pa, 1u << 8), VIRTIO_IOMMU_S_INVAL,
	       "MAP flags 0x100");
	expect(h, "map_inverted", map(h, 1, IOVA + 0x1000, IOVA, pa, rd), VIRTIO_IOMMU_S_INVAL,
	       "MAP virt_end < virt_start");
	expect(h, "map_unaligned", map(h, 1, IOVA + 0x800, IOVA + 0x17ff, pa, rd), VIRTIO_IOMMU_S_RANGE,
	       "MAP at 0x100800");
	if (h->input_end != U64_MAX)
		expect(h, "map_outside_input_range", map(h, 1, h->input_end + 1, h->input_end + 0x1000, pa, rd),
		       VIRTIO_IOMMU_S_RANGE, "MAP past input_range");
	else
		report(h, true, "map_outside_input_range", "SKIP input_range is the whole 64-bit space");
	expect(h, "map_phys_wraps", map(h, 1, IOVA, IOVA + 0x1fff, 0xfffffffffffff000ull, rd), VIRTIO_IOMMU_S_RANGE,
	       "MAP whose physical end wraps past 2^64");
	expect(h, "map_huge_range", map(h, 1, 0, U64_MAX, 0, rd | VIRTIO_IOMMU_MAP_F_WRITE), VIRTIO_IOMMU_S_RANGE,
	       "MAP [0, 2^64-1] read/write");
	if (h->msi_end > h->msi_start)
		expect(h, "map_over_msi_region", map(h, 1, h->msi_start, h->msi_start + 0xfff, pa, rd),
		       VIRTIO_IOMMU_S_RANGE, "MAP over PROBE's RESV_MEM MSI region");
	else
		report(h, false, "map_over_msi_region", "PROBE reported no MSI region");
	expect(h, "map_unknown_domain", map(h, 77, IOVA, IOVA + 0xfff, pa, rd), VIRTIO_IOMMU_S_NOENT,
	       "MAP in domain 77 (never attached)");
	expect(h, "map", map(h, 1, IOVA, IOVA + 0xffff, pa, rd), VIRTIO_IOMMU_S_OK, "MAP 64 KiB read-only");
	expect(h, "map_overlap", map(h, 1, IOVA + 0x8000, IOVA + 0x18fff, pa, rd), VIRTIO_IOMMU_S_INVAL,
	       "MAP overlapping the 64 KiB mapping");
	expect(h, "unmap_split", unmap(h, 1, IOVA, IOVA + 0xfff, 0), VIRTIO_IOMMU_S_RANGE,
	       "UNMAP the first page of the 64 KiB mapping");
	expect(h, "unmap_reserved", unmap(h, 1, IOVA, IOVA + 0xffff, 1), VIRTIO_IOMMU_S_INVAL,
	       "UNMAP reserved[0]=1");
	expect(h, "unmap_nothing", unmap(h, 1, 0x40000000, 0x4000ffff, 0), VIRTIO_IOMMU_S_OK,
	       "UNMAP a range with no mapping");
	/* Neither refused UNMAP may have removed anything: the mapping still serves. */
	expect_dma_ok(h, "dma_through_mapping", IOVA);
	expect_dma_blocked(h, "dma_outside_mapping", IOVA + 0x100000, VIRTIO_IOMMU_FAULT_R_MAPPING);
}

/* MAP 4 KiB pages until the device refuses: the first refusal must be S_NOMEM (its cap on what a
 * guest can make it store), then one UNMAP frees them all and a MAP works again. */
static void mapping_cap(struct vh *h)
{
	u8 *bufs[BATCH];
	unsigned int used[BATCH];
	u64 mapped = 0, limit = 1ull << 20; /* far past any sane cap: the attempt must end by a refusal */
	int first_bad = VIRTIO_IOMMU_S_OK, i, ret = 0;
	const size_t sz = sizeof(struct virtio_iommu_req_map);
	const size_t tail = sizeof(struct virtio_iommu_req_tail);

	for (i = 0; i < BATCH; i++) {
		bufs[i] = kzalloc(sz, GFP_KERNEL);
		if (!bufs[i]) {
			while (i--)
				kfree(bufs[i]);
			report(h, false, "mapping_cap", "out of guest memory");
			return;
		}
	}
	while (first_bad == VIRTIO_IOMMU_S_OK && mapped < limit && !ret) {
		for (i = 0; i < BATCH; i++) {
			u64 iova = CAP_IOVA + (mapped + i) * 4096;

			fill_map((struct virtio_iommu_req_map *)bufs[i], 1, iova, iova + 0xfff, h->page_pa,
				 VIRTIO_IOMMU_MAP_F_READ);
			bufs[i][sz - tail] = STATUS_UNWRITTEN;
		}
		ret = send_batch(h, bufs, BATCH, sz - tail, tail, used);
		for (i = 0; i < BATCH && !ret; i++) {
			int s = used[i] ? bufs[i][sz - tail] : -ENODATA;

			if (s != VIRTIO_IOMMU_S_OK) {
				first_bad = s;
				break;
			}
			mapped++;
		}
		if ((mapped & 0x3fff) == 0)
			pr_info(DRV ": mapping_cap: %llu pages mapped\n", mapped);
	}
	if (ret != -ETIMEDOUT)
		for (i = 0; i < BATCH; i++)
			kfree(bufs[i]);
	report(h, !ret && first_bad == VIRTIO_IOMMU_S_NOMEM && mapped >= 1024, "mapping_cap",
	       "%llu 4 KiB MAPs accepted, then %s (want S_NOMEM)", mapped, ret ? "send error" : status_name(first_bad));
	if (!mapped)
		return;
	expect(h, "unmap_all_capped", unmap(h, 1, CAP_IOVA, CAP_IOVA + mapped * 4096 - 1, 0), VIRTIO_IOMMU_S_OK,
	       "one UNMAP over every capped page");
	expect(h, "map_after_unmap_all", map(h, 1, CAP_IOVA, CAP_IOVA + 0xfff, h->page_pa, VIRTIO_IOMMU_MAP_F_READ),
	       VIRTIO_IOMMU_S_OK, "MAP after the UNMAP freed the slots");
	unmap(h, 1, CAP_IOVA, CAP_IOVA + 0xfff, 0);
}

/* Reads PROBE's RESV_MEM MSI region of the endpoint; checks PROBE's error answers. */
static void probe_attempts(struct vh *h)
{
	size_t props = h->probe_size;
	size_t size = sizeof(struct virtio_iommu_req_probe) + props + sizeof(struct virtio_iommu_req_tail);
	struct virtio_iommu_req_probe *r;
	unsigned int used;
	size_t off = 0;
	u8 *buf;
	int ret;

	expect(h, "probe_unknown_endpoint", probe(h, 0x10000, props), VIRTIO_IOMMU_S_NOENT,
	       "PROBE endpoint 0x10000");
	expect(h, "probe_short_properties", probe(h, h->ep, 16), VIRTIO_IOMMU_S_INVAL,
	       "PROBE with 16 bytes for properties (< probe_size)");
	buf = kzalloc(size, GFP_KERNEL);
	if (!buf)
		return;
	r = (struct virtio_iommu_req_probe *)buf;
	r->head.type = VIRTIO_IOMMU_T_PROBE;
	r->endpoint = cpu_to_le32(h->ep);
	buf[size - sizeof(struct virtio_iommu_req_tail)] = STATUS_UNWRITTEN;
	ret = send_batch(h, &buf, 1, sizeof(*r), props + sizeof(struct virtio_iommu_req_tail), &used);
	if (ret == -ETIMEDOUT)
		return;
	ret = ret ? ret : buf[size - sizeof(struct virtio_iommu_req_tail)];
	while (ret == VIRTIO_IOMMU_S_OK && off + sizeof(struct virtio_iommu_probe_property) <= props) {
		struct virtio_iommu_probe_property *p = (void *)(r->properties + off);
		u16 type = le16_to_cpu(p->type) & VIRTIO_IOMMU_PROBE_T_MASK;
		size_t len = sizeof(*p) + le16_to_cpu(p->length);

		if (type == VIRTIO_IOMMU_PROBE_T_NONE || off + len > props)
			break;
		if (type == VIRTIO_IOMMU_PROBE_T_RESV_MEM && len >= sizeof(struct virtio_iommu_probe_resv_mem)) {
			struct virtio_iommu_probe_resv_mem *m = (void *)p;

			if (m->subtype == VIRTIO_IOMMU_RESV_MEM_T_MSI) {
				h->msi_start = le64_to_cpu(m->start);
				h->msi_end = le64_to_cpu(m->end);
			}
		}
		off += len;
	}
	report(h, ret == VIRTIO_IOMMU_S_OK && h->msi_end > h->msi_start, "probe", "%s, MSI region 0x%llx-0x%llx",
	       status_name(ret), h->msi_start, h->msi_end);
	kfree(buf);
}

static void run_attempts(struct vh *h)
{
	u8 initial = virtio_cread8(h->vdev, offsetof(struct virtio_iommu_config, bypass));

	pr_info(DRV ": endpoint %s (0x%x), iommu function 0x%x, boot bypass=%u, probe_size %u\n", bdf, h->ep,
		h->own_ep, initial, h->probe_size);
	/* §5.13.4.2: an endpoint not attached to any domain is translated by identity when `bypass`
	 * is 1, and its DMA is blocked (and reported) when it is 0. */
	set_bypass(h, 1);
	expect_dma_ok(h, "unattached_bypass_on", h->page_pa);
	set_bypass(h, 0);
	expect_dma_blocked(h, "unattached_bypass_off", h->page_pa, VIRTIO_IOMMU_FAULT_R_DOMAIN);

	unparsable_requests(h);
	probe_attempts(h);
	attach_attempts(h);
	map_attempts(h);
	mapping_cap(h);

	/* A bypass domain: MAP refused, DMA by identity. */
	expect(h, "attach_bypass_domain", attach(h, 3, h->ep, VIRTIO_IOMMU_ATTACH_F_BYPASS, 0), VIRTIO_IOMMU_S_OK,
	       "ATTACH_F_BYPASS domain 3");
	expect(h, "map_in_bypass_domain", map(h, 3, IOVA, IOVA + 0xfff, h->page_pa, VIRTIO_IOMMU_MAP_F_READ),
	       VIRTIO_IOMMU_S_INVAL, "MAP in a bypass domain");
	expect_dma_ok(h, "dma_in_bypass_domain", h->page_pa);

	/* Still serving after all of it: back to domain 1, whose 64 KiB mapping is intact. */
	expect(h, "reattach", attach(h, 1, h->ep, 0, 0), VIRTIO_IOMMU_S_OK, "ATTACH back to domain 1");
	expect(h, "map_again", map(h, 1, IOVA, IOVA + 0xffff, h->page_pa, VIRTIO_IOMMU_MAP_F_READ), VIRTIO_IOMMU_S_OK,
	       "MAP 64 KiB (domain 1 was re-created empty)");
	expect_dma_ok(h, "still_serving", IOVA);
	expect(h, "detach", detach(h, 1, h->ep), VIRTIO_IOMMU_S_OK, "DETACH");
	expect_dma_blocked(h, "detached_blocked", IOVA, VIRTIO_IOMMU_FAULT_R_DOMAIN);
	set_bypass(h, initial);
	pr_info(DRV ": done: %d attempts, %d failed\n", h->n, h->failed);
}

/* --- binding --- */

static int endpoint_setup(struct vh *h)
{
	unsigned int dom, bus, slot, fn;

	if (sscanf(bdf, "%x:%x:%x.%x", &dom, &bus, &slot, &fn) != 4)
		return -EINVAL;
	h->pdev = pci_get_domain_bus_and_slot(dom, bus, PCI_DEVFN(slot, fn));
	if (!h->pdev || h->pdev->vendor != 0x1de5 || h->pdev->device != 0x1110 || h->pdev->driver) {
		pr_err(DRV ": %s is not an unbound ionest-dmatest function\n", bdf);
		return -ENODEV;
	}
	if (pci_enable_device_mem(h->pdev))
		return -EIO;
	pci_set_master(h->pdev);
	h->regs = pci_iomap(h->pdev, 0, 0);
	if (!h->regs)
		return -ENOMEM;
	h->ep = pci_dev_id(h->pdev);
	h->page = (u8 *)get_zeroed_page(GFP_KERNEL);
	if (!h->page)
		return -ENOMEM;
	get_random_bytes(h->page, 64);
	h->page_pa = virt_to_phys(h->page);
	h->fnv = fnv1a(h->page, 64);
	return 0;
}

static void endpoint_teardown(struct vh *h)
{
	if (h->page)
		free_page((unsigned long)h->page);
	if (!h->pdev)
		return;
	if (h->regs) {
		lo_hi_writeq(2, h->regs + 0x40); /* abort a job still running */
		pci_iounmap(h->pdev, h->regs);
		pci_clear_master(h->pdev);
		pci_disable_device(h->pdev);
	}
	pci_dev_put(h->pdev);
}

static int hostile_probe(struct virtio_device *vdev)
{
	struct virtqueue_info vqs_info[] = { { "request" }, { "event", event_done } };
	struct virtqueue *vqs[2];
	struct vh *h;
	int ret, i;

	h = kzalloc(sizeof(*h), GFP_KERNEL);
	if (!h)
		return -ENOMEM;
	vdev->priv = h;
	h->vdev = vdev;
	spin_lock_init(&h->evt_lock);
	if (vdev->dev.parent && dev_is_pci(vdev->dev.parent))
		h->own_ep = pci_dev_id(to_pci_dev(vdev->dev.parent));
	if (!virtio_has_feature(vdev, VIRTIO_IOMMU_F_MAP_UNMAP) || !virtio_has_feature(vdev, VIRTIO_IOMMU_F_PROBE) ||
	    !virtio_has_feature(vdev, VIRTIO_IOMMU_F_BYPASS_CONFIG)) {
		pr_err(DRV ": device lacks MAP_UNMAP, PROBE or BYPASS_CONFIG\n");
		ret = -ENODEV;
		goto err_free;
	}
	h->input_end = U64_MAX;
	h->domain_end = U32_MAX;
	if (virtio_has_feature(vdev, VIRTIO_IOMMU_F_INPUT_RANGE))
		virtio_cread_le(vdev, struct virtio_iommu_config, input_range.end, &h->input_end);
	if (virtio_has_feature(vdev, VIRTIO_IOMMU_F_DOMAIN_RANGE))
		virtio_cread_le(vdev, struct virtio_iommu_config, domain_range.end, &h->domain_end);
	virtio_cread_le(vdev, struct virtio_iommu_config, probe_size, &h->probe_size);
	if (h->probe_size < sizeof(struct virtio_iommu_probe_resv_mem) || h->probe_size > 4096) {
		pr_err(DRV ": probe_size %u\n", h->probe_size);
		ret = -ENODEV;
		goto err_free;
	}
	ret = virtio_find_vqs(vdev, 2, vqs, vqs_info, NULL);
	if (ret)
		goto err_free;
	h->req_vq = vqs[0];
	h->evt_vq = vqs[1];
	h->evt_bufs = kcalloc(NR_EVENTS, sizeof(*h->evt_bufs), GFP_KERNEL);
	if (!h->evt_bufs) {
		ret = -ENOMEM;
		goto err_vqs;
	}
	virtio_device_ready(vdev);
	for (i = 0; i < NR_EVENTS; i++)
		add_event_buf(h, &h->evt_bufs[i]);
	virtqueue_kick(h->evt_vq);

	ret = endpoint_setup(h);
	if (!ret)
		run_attempts(h);
	else
		pr_err(DRV ": endpoint %s unusable (%d): no attempts run\n", bdf, ret);
	endpoint_teardown(h);
	/* Stay bound (so the module's remove resets the device) even if attempts failed. */
	return 0;

err_vqs:
	vdev->config->del_vqs(vdev);
err_free:
	kfree(h);
	return ret;
}

static void hostile_remove(struct virtio_device *vdev)
{
	struct vh *h = vdev->priv;

	virtio_reset_device(vdev);
	vdev->config->del_vqs(vdev);
	kfree(h->evt_bufs);
	kfree(h);
}

static unsigned int features[] = {
	VIRTIO_IOMMU_F_INPUT_RANGE, VIRTIO_IOMMU_F_DOMAIN_RANGE, VIRTIO_IOMMU_F_MAP_UNMAP,
	VIRTIO_IOMMU_F_PROBE,	    VIRTIO_IOMMU_F_MMIO,	 VIRTIO_IOMMU_F_BYPASS_CONFIG,
};

static struct virtio_device_id id_table[] = {
	{ VIRTIO_ID_IOMMU, VIRTIO_DEV_ANY_ID },
	{ 0 },
};

static struct virtio_driver hostile_driver = {
	.driver.name = DRV,
	.id_table = id_table,
	.feature_table = features,
	.feature_table_size = ARRAY_SIZE(features),
	.probe = hostile_probe,
	.remove = hostile_remove,
};
module_virtio_driver(hostile_driver);

MODULE_DESCRIPTION("Hostile virtio-iommu driver for ionest's guest tests");
MODULE_LICENSE("GPL");
