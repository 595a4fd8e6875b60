/* SPDX-License-Identifier: GPL-2.0 */
/*
 * ioctl ABI of /dev/ionest-dmatest<N> (guest driver ionest_dmatest.ko for the ionest DMA test
 * device, PCI 1de5:1110). Shared by the driver and guest-tests/programs/sva_test.c.
 *
 *   fd = open("/dev/ionest-dmatest0", O_RDWR);
 *   ioctl(fd, IONEST_DMATEST_BIND, &bind);    bind the caller's mm (iommu_sva_bind_device) -> PASID
 *   ioctl(fd, IONEST_DMATEST_RUN, &job);      start a job with that PASID and wait for it
 *   ioctl(fd, IONEST_DMATEST_START, &job);    start a job, return at once (job.status = 0)
 *   ioctl(fd, IONEST_DMATEST_WAIT, &job);     wait for the job started by this fd
 *   close(fd) / process exit                  aborts this fd's job (device quiesced), then unbinds
 *
 * Recoverable faults: PCIe page requests behind the VT-d (PRI), stalls behind the SMMUv3 (the
 * device's accesses are held until Linux's IOPF handler answers with CMD_RESUME).
 *
 * One job per device at a time (another fd gets -EBUSY while one runs). Addresses are the
 * process's virtual addresses (SVA). RUN/WAIT return 0 when the job ended (successfully or not:
 * see status), -ETIMEDOUT after timeout_ms (the job is aborted), -EINTR on a signal (aborted).
 */
#ifndef IONEST_DMATEST_UAPI_H
#define IONEST_DMATEST_UAPI_H

#include <linux/types.h> /* __u32/__u64: the kernel's, or its uAPI headers' in user space */
#include <linux/ioctl.h>

/* Device operations (devices/testdev/dma_test_device_regs.h, enum Op). */
#define IONEST_DMATEST_OP_READ 1    /* read [src,+len): result = FNV-1a-64 */
#define IONEST_DMATEST_OP_WRITE 2   /* device SRAM (zero unless written) -> [dst,+len) */
#define IONEST_DMATEST_OP_COPY 3    /* [src,+len) -> [dst,+len) */
#define IONEST_DMATEST_OP_FILL 4    /* pattern (64-bit, repeated) -> [dst,+len) */
#define IONEST_DMATEST_OP_COMPARE 5 /* result = 0 or (1<<63 | first differing offset) */

/* job.flags */
#define IONEST_DMATEST_F_ATS (1u << 0)    /* translate via ATS (device ATC) */
#define IONEST_DMATEST_F_NO_PRI (1u << 1) /* never send page requests: faults end the job */

/* job.status: the device STATUS register at the end (DONE bit 1, ERROR bit 2, code 15:8). */
#define IONEST_DMATEST_STATUS_DONE (1u << 1)
#define IONEST_DMATEST_STATUS_ERROR (1u << 2)
#define IONEST_DMATEST_STATUS_CODE(s) (((s) >> 8) & 0xff)
/* error codes (enum Error in dma_test_device_regs.h) */
#define IONEST_DMATEST_ERR_TRANSLATION 4 /* also: a stalled access aborted (SMMUv3 RESUME abort) */
#define IONEST_DMATEST_ERR_PAGE_INVALID 5
#define IONEST_DMATEST_ERR_PAGE_FAILURE 6
#define IONEST_DMATEST_ERR_PAGE_TIMEOUT 7 /* no page response / RESUME in time */
#define IONEST_DMATEST_ERR_RETRY_EXHAUSTED 8
#define IONEST_DMATEST_ERR_PRI_UNAVAILABLE 9
#define IONEST_DMATEST_ERR_ABORTED 14

struct ionest_dmatest_bind {
	__u32 pasid; /* out */
	__u32 flags; /* out: reserved, 0 */
};

struct ionest_dmatest_job {
	/* in */
	__u32 op;
	__u32 flags;
	__u64 src;
	__u64 dst;
	__u64 len;
	__u64 pattern;
	__u32 timeout_ms; /* 0 = 30000 */
	__u32 reserved;
	/* out */
	__u64 status;        /* STATUS register (see above) */
	__u64 fault_addr;    /* FAULT_ADDR */
	__u64 fault_info;    /* FAULT_INFO: reason 7:0, kind 11:8, PRG response 19:16, access 23:20 */
	__u64 result;        /* RESULT (READ hash / COMPARE) */
	__u64 bytes_done;    /* BYTES_DONE */
	__u64 page_requests; /* page requests sent by the device during this job */
	__u64 duration_ns;   /* doorbell to completion interrupt (guest ktime) */
	__u64 stalls;        /* accesses the IOMMU stalled (SMMUv3 stall model) during this job */
	__u64 stall_peak;    /* most stalled accesses the device had outstanding at once in this job */
};

#define IONEST_DMATEST_MAGIC 'I'
#define IONEST_DMATEST_BIND _IOR(IONEST_DMATEST_MAGIC, 0x40, struct ionest_dmatest_bind)
#define IONEST_DMATEST_RUN _IOWR(IONEST_DMATEST_MAGIC, 0x41, struct ionest_dmatest_job)
#define IONEST_DMATEST_START _IOWR(IONEST_DMATEST_MAGIC, 0x42, struct ionest_dmatest_job)
#define IONEST_DMATEST_WAIT _IOWR(IONEST_DMATEST_MAGIC, 0x43, struct ionest_dmatest_job)

#endif /* IONEST_DMATEST_UAPI_H */
