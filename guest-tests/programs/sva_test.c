// SPDX-License-Identifier: GPL-2.0
/*
 * sva_test: shared virtual addressing with page requests, end to end, through the ionest DMA test
 * device (guest driver guest-tests/modules/ionest_dmatest, ABI ionest_dmatest_uapi.h).
 * Static guest program, KTAP output, one process for every case (process starts are expensive).
 *
 *   sva_test [-n] [-s] [DEVICE [MANY_PAGES [OVERFLOW_PAGES]]]   default /dev/ionest-dmatest0 512 2304
 *   -n: indent the KTAP output by 4 spaces (nested subtests of a guest test script)
 *   -s: stall model (arm64, SMMUv3): faults are stalled accesses the guest resumes (CMD_RESUME), not
 *       page requests; counted in job.stalls; no ATS, no page request queue (those cases skip);
 *       a refused access ends the job with ERR_TRANSLATION (RESUME abort) instead of PAGE_INVALID
 *
 * Cases: bind; DMA on present pages; on never-touched pages (translation fault -> page request ->
 * guest iopf handler -> page response -> device retry), with and without ATS; write to a
 * read-only mapping and access to an unmapped address (Invalid response, nothing written); many
 * faults in one job (with -s: many stalls in flight at once); page request queue overflow (needs a device that keeps > 2047 requests in
 * flight; Linux logs "PRQ overflow detected"); process exit with DMA outstanding.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "ionest_dmatest_uapi.h"

#define PAGE 4096ul
#define RUNS 5
#define FAULT_PAGES 16

static int n_test, n_fail;
static int stall_mode; /* -s */
static const char *indent = ""; /* "-n": nested KTAP (4 spaces), for a test script's subtests */

static void emit(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	fputs(indent, stdout);
	vprintf(fmt, ap);
	va_end(ap);
	fflush(stdout);
}
static const char *dev_path = "/dev/ionest-dmatest0";
static int fd = -1;
static uint32_t pasid;

static void result(int ok, const char *name, const char *fmt, ...)
{
	char diag[256] = "";
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(diag, sizeof(diag), fmt, ap);
	va_end(ap);
	n_test++;
	if (!ok)
		n_fail++;
	emit("%sok %d %s%s%s\n", ok ? "" : "not ", n_test, name, diag[0] ? " # " : "", diag);
	fflush(stdout);
}

static void skip(const char *name, const char *why)
{
	emit("ok %d %s # SKIP %s\n", ++n_test, name, why);
	fflush(stdout);
}

static void *map(size_t len, int prot)
{
	void *p = mmap(NULL, len, prot, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	if (p == MAP_FAILED) {
		emit("# mmap %zu: %s\n", len, strerror(errno));
		exit(1);
	}
	return p;
}

static int run(int f, struct ionest_dmatest_job *j)
{
	int r = ioctl(f, IONEST_DMATEST_RUN, j);

	return r < 0 ? -errno : 0;
}

static struct ionest_dmatest_job job(uint32_t op, void *src, void *dst, size_t len, uint64_t pattern)
{
	struct ionest_dmatest_job j = { 0 };

	j.op = op;
	j.src = (uintptr_t)src;
	j.dst = (uintptr_t)dst;
	j.len = len;
	j.pattern = pattern;
	j.timeout_ms = 120000;
	return j;
}

static int job_ok(int r, const struct ionest_dmatest_job *j)
{
	return r == 0 && (j->status & IONEST_DMATEST_STATUS_DONE) && !(j->status & IONEST_DMATEST_STATUS_ERROR);
}

/* Recoverable faults the device reported for the job: page requests (PRI) or stalls (-s). */
static uint64_t faults_of(const struct ionest_dmatest_job *j)
{
	return stall_mode ? j->stalls : j->page_requests;
}

/* The error code of a refused access: PRG response Invalid (PRI) or RESUME abort (-s). */
static unsigned refused_code(void)
{
	return stall_mode ? IONEST_DMATEST_ERR_TRANSLATION : IONEST_DMATEST_ERR_PAGE_INVALID;
}

static const char *describe(int r, const struct ionest_dmatest_job *j)
{
	static char buf[200];

	snprintf(buf, sizeof(buf),
		 "ret=%d status=%#llx code=%llu fault_addr=%#llx fault_info=%#llx preq=%llu stalls=%llu bytes=%llu",
		 r, (unsigned long long)j->status, (unsigned long long)IONEST_DMATEST_STATUS_CODE(j->status),
		 (unsigned long long)j->fault_addr, (unsigned long long)j->fault_info,
		 (unsigned long long)j->page_requests, (unsigned long long)j->stalls, (unsigned long long)j->bytes_done);
	return buf;
}

/* Index of the first 64-bit word != want, or -1. */
static long check_pattern(const void *p, size_t len, uint64_t want)
{
	const uint64_t *w = p;

	for (size_t i = 0; i < len / 8; i++)
		if (w[i] != want)
			return (long)i;
	return -1;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

static uint64_t median(uint64_t *v, int n)
{
	qsort(v, n, sizeof(*v), cmp_u64);
	return v[n / 2];
}

/* FILL into a fresh never-touched buffer; checks data + page requests (or stalls). Returns duration
 * or 0; *peak = the most stalls the device had in flight at once. */
static uint64_t fill_untouched_peak(size_t pages, uint32_t flags, int *ok, char *why, size_t why_len,
				    uint64_t *peak)
{
	uint64_t pat = 0x5156410000000000ull | pages;
	uint8_t *b = map(pages * PAGE, PROT_READ | PROT_WRITE);
	struct ionest_dmatest_job j = job(IONEST_DMATEST_OP_FILL, NULL, b, pages * PAGE, pat);
	int r;
	long bad;

	j.flags = flags;
	r = run(fd, &j);
	bad = job_ok(r, &j) ? check_pattern(b, pages * PAGE, pat) : 0;
	*ok = job_ok(r, &j) && bad < 0 && faults_of(&j) >= pages;
	if (peak)
		*peak = j.stall_peak;
	if (!*ok)
		snprintf(why, why_len, "%s bad_word=%ld", describe(r, &j), bad);
	else if (stall_mode)
		snprintf(why, why_len, "%zu pages, %llu stalls (at most %llu at once), %llu us", pages,
			 (unsigned long long)j.stalls, (unsigned long long)j.stall_peak,
			 (unsigned long long)j.duration_ns / 1000);
	else
		snprintf(why, why_len, "%zu pages, %llu page requests, %llu us", pages,
			 (unsigned long long)j.page_requests, (unsigned long long)j.duration_ns / 1000);
	munmap(b, pages * PAGE);
	return *ok ? j.duration_ns : 0;
}

static uint64_t fill_untouched(size_t pages, uint32_t flags, int *ok, char *why, size_t why_len)
{
	return fill_untouched_peak(pages, flags, ok, why, why_len, NULL);
}

static void test_present(uint64_t *present_us)
{
	size_t len = FAULT_PAGES * PAGE;
	uint8_t *src = map(len, PROT_READ | PROT_WRITE), *dst = map(len, PROT_READ | PROT_WRITE);
	uint64_t t[RUNS];
	int ok = 1;
	char why[300] = "";

	for (size_t i = 0; i < len; i++)
		src[i] = (uint8_t)(i * 7 + 3);
	for (int k = 0; k < RUNS && ok; k++) {
		memset(dst, 0, len);
		struct ionest_dmatest_job j = job(IONEST_DMATEST_OP_COPY, src, dst, len, 0);
		int r = run(fd, &j);

		ok = job_ok(r, &j) && memcmp(src, dst, len) == 0 && j.page_requests == 0 && j.stalls == 0;
		if (!ok)
			snprintf(why, sizeof(why), "%s memcmp=%d", describe(r, &j), memcmp(src, dst, len));
		t[k] = j.duration_ns;
	}
	/* Timing baseline for the fault cost: FILL on present pages, same size as fill_untouched. */
	for (int k = 0; k < RUNS && ok; k++) {
		struct ionest_dmatest_job j = job(IONEST_DMATEST_OP_FILL, NULL, dst, len, 0x1122334455667788ull);
		int r = run(fd, &j);

		ok = job_ok(r, &j) && check_pattern(dst, len, 0x1122334455667788ull) < 0;
		if (!ok)
			snprintf(why, sizeof(why), "fill: %s", describe(r, &j));
		t[k] = j.duration_ns;
	}
	*present_us = ok ? median(t, RUNS) : 0;
	result(ok, "present_pages", "%s", why);
	munmap(src, len);
	munmap(dst, len);
}

static void test_untouched(uint64_t present_ns)
{
	uint64_t per_page[RUNS];
	int ok = 1;
	char why[300] = "";

	for (int k = 0; k < RUNS && ok; k++) {
		uint64_t t = fill_untouched(FAULT_PAGES, 0, &ok, why, sizeof(why));

		per_page[k] = t > present_ns ? (t - present_ns) / FAULT_PAGES : 0;
	}
	result(ok, "untouched_pages_fault_and_retry", "%s", why);
	if (ok && present_ns) {
		emit("# bench: sva_fault_roundtrip_us=%llu us\n", (unsigned long long)median(per_page, RUNS) / 1000);
		emit("# bench: sva_present_job_us=%llu us\n", (unsigned long long)present_ns / 1000);
	}

	/* COPY from never-touched source (reads resolve to zero pages) into never-touched dst. */
	{
		size_t len = FAULT_PAGES * PAGE;
		uint8_t *src = map(len, PROT_READ | PROT_WRITE), *dst = map(len, PROT_READ | PROT_WRITE);
		struct ionest_dmatest_job j = job(IONEST_DMATEST_OP_COPY, src, dst, len, 0);
		int r = run(fd, &j);
		long bad = job_ok(r, &j) ? check_pattern(dst, len, 0) : 0;

		result(job_ok(r, &j) && bad < 0 && faults_of(&j) >= 2 * FAULT_PAGES, "untouched_copy_read_and_write_faults",
		       "%s", describe(r, &j));
		munmap(src, len);
		munmap(dst, len);
	}
	if (stall_mode) {
		/* Linux's arm-smmu-v3 enables ATS only with PRI-less ATS support; ionest's SMMUv3 default
		 * profile has no ATS (IDR0.ATS = 0), so the device's ATS stays disabled. */
		skip("untouched_pages_via_ats", "stall model: no ATS behind the SMMUv3");
		return;
	}
	fill_untouched(FAULT_PAGES, IONEST_DMATEST_F_ATS, &ok, why, sizeof(why));
	result(ok, "untouched_pages_via_ats", "%s", why);
}

static void test_invalid(void)
{
	/* Device write to a read-only mapping: the iopf handler answers Invalid; bytes unchanged. */
	uint8_t *ro = map(2 * PAGE, PROT_READ | PROT_WRITE);
	struct ionest_dmatest_job j;
	int r;

	memset(ro, 0xa5, 2 * PAGE);
	mprotect(ro, 2 * PAGE, PROT_READ);
	j = job(IONEST_DMATEST_OP_FILL, NULL, ro, 2 * PAGE, 0);
	r = run(fd, &j);
	result(r == 0 && (j.status & IONEST_DMATEST_STATUS_ERROR) &&
		       IONEST_DMATEST_STATUS_CODE(j.status) == refused_code() &&
		       j.fault_addr == (uintptr_t)ro && check_pattern(ro, 2 * PAGE, 0xa5a5a5a5a5a5a5a5ull) < 0,
	       "write_to_readonly_is_invalid", "%s", describe(r, &j));
	munmap(ro, 2 * PAGE);

	/* Read from an unmapped address into a present buffer: Invalid, destination untouched. */
	uint8_t *hole = map(4 * PAGE, PROT_READ | PROT_WRITE), *dst = map(PAGE, PROT_READ | PROT_WRITE);

	munmap(hole, 4 * PAGE);
	memset(dst, 0x5a, PAGE);
	j = job(IONEST_DMATEST_OP_COPY, hole + PAGE, dst, PAGE, 0);
	r = run(fd, &j);
	result(r == 0 && (j.status & IONEST_DMATEST_STATUS_ERROR) &&
		       IONEST_DMATEST_STATUS_CODE(j.status) == refused_code() &&
		       j.fault_addr == (uintptr_t)(hole + PAGE) && check_pattern(dst, PAGE, 0x5a5a5a5a5a5a5a5aull) < 0,
	       "unmapped_address_is_invalid", "%s", describe(r, &j));
	/* Write to an unmapped address. */
	j = job(IONEST_DMATEST_OP_FILL, NULL, hole, PAGE, 1);
	r = run(fd, &j);
	result(r == 0 && (j.status & IONEST_DMATEST_STATUS_ERROR) &&
		       IONEST_DMATEST_STATUS_CODE(j.status) == refused_code(),
	       "write_to_unmapped_is_invalid", "%s", describe(r, &j));
	munmap(dst, PAGE);
}

/* Counts kernel log lines containing `needle` written since `kfd` was opened at the log's end. */
static int kmsg_count(int kfd, const char *needle)
{
	char rec[1024];
	int n = 0;
	ssize_t got;

	if (kfd < 0)
		return -1;
	while ((got = read(kfd, rec, sizeof(rec) - 1)) > 0 || (got < 0 && errno == EPIPE)) {
		if (got <= 0)
			continue;
		rec[got] = 0;
		if (strstr(rec, needle))
			n++;
	}
	return n;
}

static int kmsg_open(void)
{
	int kfd = open("/dev/kmsg", O_RDONLY | O_NONBLOCK);

	if (kfd >= 0)
		lseek(kfd, 0, SEEK_END);
	return kfd;
}

static void test_many(size_t pages)
{
	int ok;
	char why[300] = "";
	uint64_t peak = 0;

	if (stall_mode) {
		/* Many stalls outstanding at once: the device keeps issuing look-ahead accesses while
		 * the first is held, the IOPF queue resolves them concurrently. */
		fill_untouched_peak(pages, 0, &ok, why, sizeof(why), &peak);
		emit("# many_faults_in_one_job: %s\n", why);
		result(ok && peak > 1, "many_faults_in_one_job", "%s", ok && peak > 1 ? "" : why);
		return;
	}
	fill_untouched(pages, IONEST_DMATEST_F_ATS, &ok, why, sizeof(why));
	emit("# many_faults_in_one_job: %s\n", why);
	result(ok, "many_faults_in_one_job", "%s", ok ? "" : why);
}

/*
 * Both devices (the second is DEVICE with its last digit + 1) fault on `pages` never-touched pages
 * at once; each sends page request groups as large as its PRI allocation (Linux grants 2048), so
 * the 2047 usable entries of the page request queue overflow. VT-d 4.1 §7.5.1: the IOMMU sets PRO
 * and answers dropped last-in-group requests with Success; Linux (prq.c) discards the partial
 * groups and clears PRO; the devices retry. Both jobs must still complete with the right data.
 */
static void test_overflow(size_t pages)
{
	char path2[128], why[300] = "";
	int kfd = kmsg_open(), fd2, overflows, r, r2 = -1, ok;
	struct ionest_dmatest_bind b2;
	uint64_t pat = 0x4f564552464c4f57ull, pat2 = pat ^ 0xffff;
	uint8_t *a = map(pages * PAGE, PROT_READ | PROT_WRITE), *b = map(pages * PAGE, PROT_READ | PROT_WRITE);
	struct ionest_dmatest_job j = job(IONEST_DMATEST_OP_FILL, NULL, a, pages * PAGE, pat);
	struct ionest_dmatest_job j2 = job(IONEST_DMATEST_OP_FILL, NULL, b, pages * PAGE, pat2);

	snprintf(path2, sizeof(path2), "%s", dev_path);
	path2[strlen(path2) - 1]++;
	j.flags = j2.flags = IONEST_DMATEST_F_ATS;
	j.timeout_ms = j2.timeout_ms = 600000;
	fd2 = open(path2, O_RDWR);
	if (fd2 < 0 || ioctl(fd2, IONEST_DMATEST_BIND, &b2) < 0 || ioctl(fd2, IONEST_DMATEST_START, &j2) < 0) {
		result(0, "prq_overflow_recovered", "%s: %s", path2, strerror(errno));
		goto out;
	}
	r = run(fd, &j);
	r2 = ioctl(fd2, IONEST_DMATEST_WAIT, &j2) < 0 ? -errno : 0;
	overflows = kmsg_count(kfd, "PRQ overflow detected");
	ok = job_ok(r, &j) && job_ok(r2, &j2) && check_pattern(a, pages * PAGE, pat) < 0 &&
	     check_pattern(b, pages * PAGE, pat2) < 0;
	snprintf(why, sizeof(why), "dev0 %s", describe(r, &j));
	emit("# prq_overflow: %s\n", why);
	emit("# prq_overflow: dev1 %s\n", describe(r2, &j2));
	emit("# prq_overflow: kernel 'PRQ overflow detected' lines: %d, %llu us\n", overflows,
	     (unsigned long long)j.duration_ns / 1000);
	result(ok && overflows > 0, "prq_overflow_recovered", "overflows=%d", overflows);
out:
	if (fd2 >= 0)
		close(fd2);
	if (kfd >= 0)
		close(kfd);
	munmap(a, pages * PAGE);
	munmap(b, pages * PAGE);
}

static void test_exit_with_dma_outstanding(void)
{
	pid_t child = fork();
	int st = 0;

	if (child == 0) {
		/* Own fd + own binding; a long job on never-touched pages, then exit without waiting. */
		int cfd = open(dev_path, O_RDWR);
		struct ionest_dmatest_bind b;
		size_t len = 8ul << 20;
		uint8_t *dst = map(len, PROT_READ | PROT_WRITE);
		struct ionest_dmatest_job j = job(IONEST_DMATEST_OP_FILL, NULL, dst, len, 7);

		if (cfd < 0 || ioctl(cfd, IONEST_DMATEST_BIND, &b) < 0 || ioctl(cfd, IONEST_DMATEST_START, &j) < 0)
			_exit(2);
		usleep(50000);
		_exit(0);
	}
	if (child < 0 || waitpid(child, &st, 0) != child || !WIFEXITED(st) || WEXITSTATUS(st) != 0) {
		result(0, "exit_with_dma_outstanding", "child failed to start its job (status %#x)", st);
		return;
	}
	/* The device must be idle and usable by us again. */
	size_t len = 4 * PAGE;
	uint8_t *src = map(len, PROT_READ | PROT_WRITE), *dst = map(len, PROT_READ | PROT_WRITE);

	memset(src, 0x3c, len);
	memset(dst, 0, len);
	struct ionest_dmatest_job j = job(IONEST_DMATEST_OP_COPY, src, dst, len, 0);
	int r = run(fd, &j);

	result(job_ok(r, &j) && memcmp(src, dst, len) == 0, "exit_with_dma_outstanding", "%s", describe(r, &j));
	munmap(src, len);
	munmap(dst, len);
}

int main(int argc, char **argv)
{
	size_t many = 512, overflow = 2304;
	struct ionest_dmatest_bind b;
	uint64_t present_ns = 0;

	if (argc > 1 && strcmp(argv[1], "-n") == 0) {
		indent = "    ";
		argv++;
		argc--;
	}
	if (argc > 1 && strcmp(argv[1], "-s") == 0) {
		stall_mode = 1;
		argv++;
		argc--;
	}
	if (argc > 1)
		dev_path = argv[1];
	if (argc > 2)
		many = strtoul(argv[2], NULL, 0);
	if (argc > 3)
		overflow = strtoul(argv[3], NULL, 0);
	emit("KTAP version 1\n");
	emit("1..%d\n", 11);
	fd = open(dev_path, O_RDWR);
	if (fd < 0 || ioctl(fd, IONEST_DMATEST_BIND, &b) < 0) {
		result(0, "bind", "%s: %s", dev_path, strerror(errno));
		emit("# totals: pass:0 fail:1 skip:0\n");
		return 1;
	}
	pasid = b.pasid;
	result(pasid != 0, "bind", "pasid=%u", pasid);
	test_present(&present_ns);
	test_untouched(present_ns);
	test_invalid();
	if (many)
		test_many(many);
	else
		skip("many_faults_in_one_job", "disabled");
	if (stall_mode)
		skip("prq_overflow_recovered", "stall model: no page request queue");
	else if (overflow)
		test_overflow(overflow);
	else
		skip("prq_overflow_recovered", "disabled");
	test_exit_with_dma_outstanding();
	emit("# totals: pass:%d fail:%d\n", n_test - n_fail, n_fail);
	return n_fail ? 1 : 0;
}
