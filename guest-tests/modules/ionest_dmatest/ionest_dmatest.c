// SPDX-License-Identifier: GPL-2.0
/*
 * ionest_dmatest: guest driver for the ionest DMA test device (PCI 1de5:1110) that lets a process
 * run device DMA on its own virtual addresses (SVA: PASID + first-stage tables shared with the mm).
 * Recoverable faults: on x86 behind the VT-d through PCIe PRI and the IOMMU's page request queue; on
 * arm64 behind the SMMUv3 through the stall model (the device's DT node has dma-can-stall, Linux's
 * arm-smmu-v3 reports stalled faults to its IOPF queue and answers with CMD_RESUME).
 *
 * ABI: ionest_dmatest_uapi.h. Registers: devices/testdev/dma_test_device_regs.h (ionest repo).
 */
#include <linux/delay.h>
#include <linux/fs.h>
#include <linux/idr.h>
#include <linux/interrupt.h>
#include <linux/io.h>
#include <linux/iommu.h>
#include <linux/ktime.h>
#include <linux/miscdevice.h>
#include <linux/module.h>
#include <linux/mutex.h>
#include <linux/pci.h>
#include <linux/sched/mm.h>
#include <linux/slab.h>
#include <linux/uaccess.h>
#include <linux/wait.h>

#include "ionest_dmatest_uapi.h"

#define DMATEST_VENDOR 0x1de5
#define DMATEST_DEVICE 0x1110
#define DMATEST_ID_VALUE 0x3154414d444e4f49ull /* "IONDMAT1" */

/* BAR0 registers (dma_test_device_regs.h). */
#define REG_ID 0x00
#define REG_MAX_LEN 0x08
#define REG_SRC 0x10
#define REG_DST 0x18
#define REG_LEN 0x20
#define REG_PASID 0x28
#define REG_PATTERN 0x30
#define REG_CTRL 0x38
#define REG_DOORBELL 0x40
#define REG_STATUS 0x48
#define REG_FAULT_ADDR 0x50
#define REG_FAULT_INFO 0x58
#define REG_RESULT 0x60
#define REG_PAGE_REQUESTS 0x68
#define REG_BYTES_DONE 0x88
#define REG_STALLS 0xa0
#define REG_STALL_PEAK 0xa8

#define CTRL_USE_ATS (1u << 4)
#define CTRL_IRQ (1u << 5)
#define CTRL_NO_PRI (1u << 6)
#define PASID_VALID (1ull << 31)
#define DOORBELL_START 1
#define DOORBELL_ABORT 2
#define STATUS_BUSY (1ull << 0)
#define STATUS_DONE (1ull << 1)
#define STATUS_ERROR (1ull << 2)

#define DEFAULT_TIMEOUT_MS 30000
#define QUIESCE_TIMEOUT_MS 20000 /* abort waits out the device's bounded page-response wait */

struct dmatest_dev {
	struct pci_dev *pdev;
	void __iomem *regs;
	int id;
	char name[32];
	struct miscdevice misc;
	u64 max_len;
	bool iopf_on, sva_on;
	wait_queue_head_t wq;
	struct mutex lock; /* owner, job bookkeeping */
	struct file *owner; /* fd whose job is outstanding; NULL when idle */
	ktime_t job_start;
	u64 job_preq;
	u64 job_stalls;
};

struct dmatest_file {
	struct dmatest_dev *d;
	struct mutex lock; /* serialises this fd's ioctls and release */
	struct iommu_sva *sva;
	u32 pasid;
};

static DEFINE_IDA(dmatest_ida);

static u64 rd(struct dmatest_dev *d, u32 reg) { return readq(d->regs + reg); }
static void wr(struct dmatest_dev *d, u32 reg, u64 v) { writeq(v, d->regs + reg); }

static bool job_finished(struct dmatest_dev *d)
{
	u64 st = rd(d, REG_STATUS);

	return !(st & STATUS_BUSY) && (st & (STATUS_DONE | STATUS_ERROR));
}

static irqreturn_t dmatest_irq(int irq, void *data)
{
	struct dmatest_dev *d = data;

	wake_up_all(&d->wq);
	return IRQ_HANDLED;
}

static void fill_result(struct dmatest_dev *d, struct ionest_dmatest_job *job)
{
	job->status = rd(d, REG_STATUS);
	job->fault_addr = rd(d, REG_FAULT_ADDR);
	job->fault_info = rd(d, REG_FAULT_INFO);
	job->result = rd(d, REG_RESULT);
	job->bytes_done = rd(d, REG_BYTES_DONE);
	job->page_requests = rd(d, REG_PAGE_REQUESTS) - d->job_preq;
	job->stalls = rd(d, REG_STALLS) - d->job_stalls;
	job->stall_peak = rd(d, REG_STALL_PEAK);
	job->duration_ns = ktime_to_ns(ktime_sub(ktime_get(), d->job_start));
	/* STATUS DONE/ERROR are RW1C. */
	wr(d, REG_STATUS, STATUS_DONE | STATUS_ERROR);
}

/* Stops the device's job and waits until it no longer touches memory. Caller owns the job. */
static int quiesce(struct dmatest_dev *d)
{
	unsigned long deadline = jiffies + msecs_to_jiffies(QUIESCE_TIMEOUT_MS);

	wr(d, REG_DOORBELL, DOORBELL_ABORT);
	while (rd(d, REG_STATUS) & STATUS_BUSY) {
		if (time_after(jiffies, deadline)) {
			dev_err(&d->pdev->dev, "job did not stop after abort; disabling bus mastering\n");
			pci_clear_master(d->pdev);
			return -EIO;
		}
		msleep(5);
	}
	return 0;
}

static int job_start(struct dmatest_file *f, struct file *file, struct ionest_dmatest_job *job)
{
	struct dmatest_dev *d = f->d;
	u64 ctrl;

	if (!f->sva)
		return -ENOTCONN; /* IONEST_DMATEST_BIND first */
	if (job->op < IONEST_DMATEST_OP_READ || job->op > IONEST_DMATEST_OP_COMPARE ||
	    job->flags & ~(IONEST_DMATEST_F_ATS | IONEST_DMATEST_F_NO_PRI) || job->reserved)
		return -EINVAL;
	if (job->len == 0 || job->len > d->max_len)
		return -EINVAL;
	ctrl = job->op | CTRL_IRQ | (0u << 8) /* MSI-X vector 0 */;
	if (job->flags & IONEST_DMATEST_F_ATS)
		ctrl |= CTRL_USE_ATS;
	if (job->flags & IONEST_DMATEST_F_NO_PRI)
		ctrl |= CTRL_NO_PRI;

	mutex_lock(&d->lock);
	if (d->owner) {
		mutex_unlock(&d->lock);
		return -EBUSY;
	}
	d->owner = file;
	wr(d, REG_STATUS, STATUS_DONE | STATUS_ERROR);
	wr(d, REG_SRC, job->src);
	wr(d, REG_DST, job->dst);
	wr(d, REG_LEN, job->len);
	wr(d, REG_PASID, f->pasid | PASID_VALID);
	wr(d, REG_PATTERN, job->pattern);
	wr(d, REG_CTRL, ctrl);
	d->job_preq = rd(d, REG_PAGE_REQUESTS);
	d->job_stalls = rd(d, REG_STALLS);
	d->job_start = ktime_get();
	wr(d, REG_DOORBELL, DOORBELL_START);
	mutex_unlock(&d->lock);
	return 0;
}

static int job_wait(struct dmatest_file *f, struct file *file, struct ionest_dmatest_job *job)
{
	struct dmatest_dev *d = f->d;
	u32 ms = job->timeout_ms ? job->timeout_ms : DEFAULT_TIMEOUT_MS;
	long left;
	int ret = 0;

	if (READ_ONCE(d->owner) != file)
		return -ENOENT; /* no job started by this fd */
	left = wait_event_interruptible_timeout(d->wq, job_finished(d), msecs_to_jiffies(ms));
	mutex_lock(&d->lock);
	if (left <= 0) {
		ret = left == 0 ? -ETIMEDOUT : -EINTR;
		quiesce(d);
	}
	fill_result(d, job);
	d->owner = NULL;
	mutex_unlock(&d->lock);
	return ret;
}

static long dmatest_ioctl(struct file *file, unsigned int cmd, unsigned long arg)
{
	struct dmatest_file *f = file->private_data;
	void __user *uarg = (void __user *)arg;
	struct ionest_dmatest_job job;
	long ret;

	mutex_lock(&f->lock);
	switch (cmd) {
	case IONEST_DMATEST_BIND: {
		struct ionest_dmatest_bind b = {};
		struct iommu_sva *sva;

		ret = -EBUSY;
		if (f->sva)
			break;
		ret = -EOPNOTSUPP;
		if (!f->d->sva_on)
			break;
		sva = iommu_sva_bind_device(&f->d->pdev->dev, current->mm);
		if (IS_ERR(sva)) {
			ret = PTR_ERR(sva);
			break;
		}
		f->sva = sva;
		f->pasid = iommu_sva_get_pasid(sva);
		b.pasid = f->pasid;
		ret = copy_to_user(uarg, &b, sizeof(b)) ? -EFAULT : 0;
		break;
	}
	case IONEST_DMATEST_RUN:
	case IONEST_DMATEST_START:
	case IONEST_DMATEST_WAIT:
		ret = -EFAULT;
		if (copy_from_user(&job, uarg, sizeof(job)))
			break;
		if (cmd == IONEST_DMATEST_WAIT) {
			ret = job_wait(f, file, &job);
		} else {
			ret = job_start(f, file, &job);
			if (!ret && cmd == IONEST_DMATEST_RUN)
				ret = job_wait(f, file, &job);
			else if (!ret)
				job.status = 0;
		}
		if (ret == 0 || ret == -ETIMEDOUT || ret == -EINTR) {
			if (copy_to_user(uarg, &job, sizeof(job)))
				ret = -EFAULT;
		}
		break;
	default:
		ret = -ENOTTY;
	}
	mutex_unlock(&f->lock);
	return ret;
}

static int dmatest_open(struct inode *inode, struct file *file)
{
	struct miscdevice *misc = file->private_data;
	struct dmatest_file *f = kzalloc(sizeof(*f), GFP_KERNEL);

	if (!f)
		return -ENOMEM;
	f->d = container_of(misc, struct dmatest_dev, misc);
	mutex_init(&f->lock);
	file->private_data = f;
	return 0;
}

/*
 * Also runs on process exit, after exit_mm(): the device is stopped before the PASID goes away so
 * no DMA outlives the binding.
 */
static int dmatest_release(struct inode *inode, struct file *file)
{
	struct dmatest_file *f = file->private_data;
	struct dmatest_dev *d = f->d;

	mutex_lock(&f->lock);
	mutex_lock(&d->lock);
	if (d->owner == file) {
		quiesce(d);
		wr(d, REG_STATUS, STATUS_DONE | STATUS_ERROR);
		d->owner = NULL;
	}
	mutex_unlock(&d->lock);
	if (f->sva)
		iommu_sva_unbind_device(f->sva);
	f->sva = NULL;
	mutex_unlock(&f->lock);
	kfree(f);
	return 0;
}

static const struct file_operations dmatest_fops = {
	.owner = THIS_MODULE,
	.open = dmatest_open,
	.release = dmatest_release,
	.unlocked_ioctl = dmatest_ioctl,
	.compat_ioctl = compat_ptr_ioctl,
};

static int dmatest_probe(struct pci_dev *pdev, const struct pci_device_id *id)
{
	struct device *dev = &pdev->dev;
	struct dmatest_dev *d;
	int ret;

	d = devm_kzalloc(dev, sizeof(*d), GFP_KERNEL);
	if (!d)
		return -ENOMEM;
	d->pdev = pdev;
	init_waitqueue_head(&d->wq);
	mutex_init(&d->lock);
	ret = pcim_enable_device(pdev);
	if (ret)
		return ret;
	ret = pcim_iomap_regions(pdev, BIT(0), "ionest_dmatest");
	if (ret)
		return ret;
	d->regs = pcim_iomap_table(pdev)[0];
	if (rd(d, REG_ID) != DMATEST_ID_VALUE) {
		dev_err(dev, "unexpected ID register %#llx\n", rd(d, REG_ID));
		return -ENODEV;
	}
	d->max_len = rd(d, REG_MAX_LEN);
	pci_set_master(pdev);

	ret = pci_alloc_irq_vectors(pdev, 1, 1, PCI_IRQ_MSIX);
	if (ret < 0)
		return ret;
	ret = devm_request_irq(dev, pci_irq_vector(pdev, 0), dmatest_irq, 0, "ionest_dmatest", d);
	if (ret)
		goto err_vectors;

	/*
	 * IOPF first: the Intel driver wants PRI enabled before SVA (intel_iommu_enable_sva);
	 * arm-smmu-v3 accepts IOPF only for a stall_enabled master (dma-can-stall, one StreamID) and
	 * SVA then adds the device to its event queue's IOPF queue (arm_smmu_master_enable_sva).
	 */
	ret = iommu_dev_enable_feature(dev, IOMMU_DEV_FEAT_IOPF);
	if (ret)
		dev_warn(dev, "IOPF not enabled (%d): no recoverable faults\n", ret);
	d->iopf_on = !ret;
	ret = iommu_dev_enable_feature(dev, IOMMU_DEV_FEAT_SVA);
	if (ret)
		dev_warn(dev, "SVA not enabled (%d)\n", ret);
	d->sva_on = !ret;

	ret = ida_alloc(&dmatest_ida, GFP_KERNEL);
	if (ret < 0)
		goto err_features;
	d->id = ret;
	snprintf(d->name, sizeof(d->name), "ionest-dmatest%d", d->id);
	d->misc.minor = MISC_DYNAMIC_MINOR;
	d->misc.name = d->name;
	d->misc.fops = &dmatest_fops;
	d->misc.parent = dev;
	d->misc.mode = 0600;
	ret = misc_register(&d->misc);
	if (ret)
		goto err_ida;
	pci_set_drvdata(pdev, d);
	dev_info(dev, "/dev/%s: iopf=%d sva=%d max_len=%llu\n", d->name, d->iopf_on, d->sva_on, d->max_len);
	return 0;

err_ida:
	ida_free(&dmatest_ida, d->id);
err_features:
	if (d->sva_on)
		iommu_dev_disable_feature(dev, IOMMU_DEV_FEAT_SVA);
	if (d->iopf_on)
		iommu_dev_disable_feature(dev, IOMMU_DEV_FEAT_IOPF);
	devm_free_irq(dev, pci_irq_vector(pdev, 0), d);
err_vectors:
	pci_free_irq_vectors(pdev);
	return ret;
}

static void dmatest_remove(struct pci_dev *pdev)
{
	struct dmatest_dev *d = pci_get_drvdata(pdev);

	/* misc_deregister() does not wait for open files: removal with open fds is not supported. */
	misc_deregister(&d->misc);
	ida_free(&dmatest_ida, d->id);
	if (d->sva_on)
		iommu_dev_disable_feature(&pdev->dev, IOMMU_DEV_FEAT_SVA);
	if (d->iopf_on)
		iommu_dev_disable_feature(&pdev->dev, IOMMU_DEV_FEAT_IOPF);
	devm_free_irq(&pdev->dev, pci_irq_vector(pdev, 0), d);
	pci_free_irq_vectors(pdev);
}

static const struct pci_device_id dmatest_ids[] = {
	{ PCI_DEVICE(DMATEST_VENDOR, DMATEST_DEVICE) },
	{}
};
MODULE_DEVICE_TABLE(pci, dmatest_ids);

static struct pci_driver dmatest_driver = {
	.name = "ionest_dmatest",
	.id_table = dmatest_ids,
	.probe = dmatest_probe,
	.remove = dmatest_remove,
};
module_pci_driver(dmatest_driver);

MODULE_DESCRIPTION("ionest DMA test device: SVA jobs from user space");
MODULE_LICENSE("GPL");
