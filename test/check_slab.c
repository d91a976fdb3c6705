/*
 * The slab: which memory each hugepages mode gets, slot geometry, and the errors.
 *
 * Hugepage tests read the 2 MiB pool from /sys/kernel/mm/hugepages (HugePages_* in
 * /proc/meminfo describe the default size only). The pool is shared with every other process
 * on the machine, so a test that finds it changed under it says so and passes rather than
 * guess. The one test that grows the pool (root only) restores it from an unchecked fixture,
 * which runs in the parent process and so runs even when the test fails or crashes.
 */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cache/slab.h"
#include "common/config.h"
#include "common/log.h"

#define MIB (1024ull * 1024)
#define HUGE (2 * MIB)
#define POOL "/sys/kernel/mm/hugepages/hugepages-2048kB/"
#define NR_HUGEPAGES "/proc/sys/vm/nr_hugepages"
#define MAX_PROBE (1024 * MIB) /* never ask for more than this to prove a point */

static long read_long(const char *path)
{
	FILE *fp = fopen(path, "r");
	long v = -1;

	if (!fp)
		return -1;
	if (fscanf(fp, "%ld", &v) != 1)
		v = -1;
	fclose(fp);
	return v;
}

static bool write_long(const char *path, long v)
{
	FILE *fp = fopen(path, "w");

	if (!fp)
		return false;
	bool ok = fprintf(fp, "%ld\n", v) > 0;
	return fclose(fp) == 0 && ok;
}

/* 2 MiB pages free for a new mapping (free minus reserved), or -1 without a pool. */
static long pool_available(void)
{
	long free_pages = read_long(POOL "free_hugepages");
	long resv = read_long(POOL "resv_hugepages");

	if (free_pages < 0 || resv < 0)
		return -1;
	return free_pages - resv;
}

static bool pool_overcommits(void)
{
	long over = read_long(POOL "nr_overcommit_hugepages");
	return over > 0;
}

/* Whether 2 MiB is the default hugepage size, which vm.nr_hugepages sizes. */
static bool default_is_2m(void)
{
	FILE *fp = fopen("/proc/meminfo", "r");
	char line[256];
	bool yes = false;

	if (!fp)
		return false;
	while (fgets(line, sizeof(line), fp))
		if (strncmp(line, "Hugepagesize:", 13) == 0)
			yes = strtol(line + 13, NULL, 10) == 2048;
	fclose(fp);
	return yes;
}

/* The VmFlags line of the mapping that holds @addr in /proc/self/smaps, or "". */
static void vm_flags(const void *addr, char *out, size_t outlen)
{
	FILE *fp = fopen("/proc/self/smaps", "r");
	char line[512];
	bool in = false;

	out[0] = 0;
	if (!fp)
		return;
	while (fgets(line, sizeof(line), fp)) {
		unsigned long lo, hi;
		if (sscanf(line, "%lx-%lx ", &lo, &hi) == 2 && strchr(line, '-') < strchr(line, ' ')) {
			in = (uintptr_t)addr >= lo && (uintptr_t)addr < hi;
			continue;
		}
		if (in && strncmp(line, "VmFlags:", 8) == 0) {
			snprintf(out, outlen, "%s", line + 8);
			break;
		}
	}
	fclose(fp);
}

static bool has_flag(const char *flags, const char *flag)
{
	char pad[600], want[8];

	snprintf(pad, sizeof(pad), " %s ", flags);
	for (char *p = pad; *p; p++)
		if (*p == '\n')
			*p = ' ';
	snprintf(want, sizeof(want), " %s ", flag);
	return strstr(pad, want) != NULL;
}

/* Geometry every slab must have, and every slot byte writable and kept. */
static void check_slab(const struct cache_slab *s, uint32_t nslots, size_t slot_size)
{
	long page = sysconf(_SC_PAGESIZE);

	ck_assert_ptr_nonnull(s->base);
	ck_assert_uint_eq(s->nslots, nslots);
	ck_assert_uint_eq(s->slot_size, slot_size);
	ck_assert_uint_ge(s->map_len, (size_t)nslots * slot_size);
	ck_assert_uint_eq(s->map_len % (size_t)page, 0);
	if (s->kind == SLAB_HUGETLB) {
		ck_assert_uint_eq(s->map_len % HUGE, 0);
		ck_assert_uint_eq((uintptr_t)s->base % HUGE, 0);
		ck_assert_int_ge(s->fd, 0);
	} else {
		ck_assert_int_eq(s->fd, -1);
	}
	for (uint32_t k = 0; k < nslots; k++) {
		unsigned char *p = cache_slab_slot(s, k);
		ck_assert_ptr_eq(p, s->base + (size_t)k * slot_size);
		ck_assert_uint_eq((uintptr_t)p % (uintptr_t)page, 0);
		memset(p, (int)(k * 7 + 1), slot_size);
	}
	for (uint32_t k = 0; k < nslots; k++) {
		const unsigned char *p = cache_slab_slot(s, k);
		for (size_t b = 0; b < slot_size; b += 4093)
			ck_assert_msg(p[b] == (unsigned char)(k * 7 + 1), "slot %u byte %zu", k, b);
		ck_assert_uint_eq(p[slot_size - 1], (unsigned char)(k * 7 + 1));
	}
}

static void quiet(void)
{
	log_set_level(getenv("MOWS_TEST_LOG") ? LOG_DEBUG : LOG_ERR);
}

START_TEST(test_off_small_pages)
{
	struct cache_slab s;
	char err[256] = "", flags[512];

	ck_assert_int_eq(cache_slab_init(&s, 24 * 64 * 1024, 64 * 1024, HUGEPAGES_OFF, err,
					 sizeof(err)), 0);
	ck_assert_int_eq(s.kind, SLAB_SMALL);
	ck_assert_str_eq(cache_slab_kind_name(s.kind), "off");
	check_slab(&s, 24, 64 * 1024);
	vm_flags(s.base, flags, sizeof(flags));
	ck_assert_msg(!has_flag(flags, "ht") && !has_flag(flags, "hg"),
		      "hugepages = off got a mapping with VmFlags %s", flags);
	cache_slab_release(&s);
	ck_assert_ptr_null(s.base);
}
END_TEST

START_TEST(test_nslots_rounding)
{
	struct cache_slab s;
	char err[256] = "";

	/* 5.5 slots: rounded down to 5. */
	ck_assert_int_eq(cache_slab_init(&s, 5 * MIB + MIB / 2, MIB, HUGEPAGES_OFF, err,
					 sizeof(err)), 0);
	check_slab(&s, 5, MIB);
	cache_slab_release(&s);
	/* One byte short of 3 slots: 2. */
	ck_assert_int_eq(cache_slab_init(&s, 3 * 256 * 1024 - 1, 256 * 1024, HUGEPAGES_OFF, err,
					 sizeof(err)), 0);
	check_slab(&s, 2, 256 * 1024);
	cache_slab_release(&s);
	/* Exactly: no rounding. */
	ck_assert_int_eq(cache_slab_init(&s, 7 * 64 * 1024, 64 * 1024, HUGEPAGES_OFF, err,
					 sizeof(err)), 0);
	check_slab(&s, 7, 64 * 1024);
	cache_slab_release(&s);
	/* Less than one slot: an error that names both sizes. */
	err[0] = 0;
	ck_assert_int_eq(cache_slab_init(&s, 4 * MIB - 1, 4 * MIB, HUGEPAGES_OFF, err,
					 sizeof(err)), -EINVAL);
	ck_assert_msg(strstr(err, "4194303") && strstr(err, "4194304"), "message: %s", err);
	ck_assert_ptr_null(s.base);
	cache_slab_release(&s);
}
END_TEST

START_TEST(test_release_twice)
{
	struct cache_slab s;
	char err[256];

	ck_assert_int_eq(cache_slab_init(&s, 4 * MIB, MIB, HUGEPAGES_OFF, err, sizeof(err)), 0);
	cache_slab_release(&s);
	ck_assert_ptr_null(s.base);
	cache_slab_release(&s);
	ck_assert_ptr_null(s.base);
	ck_assert_int_eq(s.fd, -1);
}
END_TEST

/* "Safe on a zeroed slab": must not close descriptor 0, which a zeroed slab never opened. */
START_TEST(test_release_zeroed)
{
	struct cache_slab s;
	int fd = open("/dev/null", O_RDONLY);

	ck_assert_int_ge(fd, 0);
	if (fd != 0) {
		ck_assert_int_eq(dup2(fd, 0), 0);
		close(fd);
	}
	memset(&s, 0, sizeof(s));
	cache_slab_release(&s);
	ck_assert_msg(fcntl(0, F_GETFD) >= 0, "releasing a zeroed slab closed descriptor 0");
	cache_slab_release(&s);
}
END_TEST

/* auto: hugetlb when the pool has room for the whole slab, else THP. */
static void auto_case(uint64_t size)
{
	struct cache_slab s;
	char err[256] = "", flags[512];
	long before = pool_available();
	long need = (long)((size + HUGE - 1) / HUGE);

	ck_assert_int_eq(cache_slab_init(&s, size, 64 * 1024, HUGEPAGES_AUTO, err, sizeof(err)),
			 0);
	long after = pool_available();
	check_slab(&s, (uint32_t)(size / (64 * 1024)), 64 * 1024);
	vm_flags(s.base, flags, sizeof(flags));
	enum cache_slab_kind want = before >= need ? SLAB_HUGETLB : SLAB_THP;
	if (pool_overcommits() && s.kind == SLAB_HUGETLB)
		want = SLAB_HUGETLB;
	if (s.kind != want && before != (s.kind == SLAB_HUGETLB ? after + need : after)) {
		fprintf(stderr, "slab auto: the hugepage pool changed during the test (%ld -> %ld "
			"pages free); not judging\n", before, after);
	} else {
		ck_assert_msg(s.kind == want, "%llu MiB with %ld hugepages free: got %s",
			      (unsigned long long)(size / MIB), before,
			      cache_slab_kind_name(s.kind));
	}
	if (s.kind == SLAB_HUGETLB) {
		ck_assert_msg(has_flag(flags, "ht"), "hugetlb slab VmFlags: %s", flags);
		ck_assert_str_eq(cache_slab_kind_name(s.kind), "hugetlb");
	} else {
		ck_assert_int_eq(s.kind, SLAB_THP);
		ck_assert_msg(has_flag(flags, "hg") && !has_flag(flags, "nh"),
			      "thp slab not advised MADV_HUGEPAGE: VmFlags %s", flags);
		ck_assert_str_eq(cache_slab_kind_name(s.kind), "thp");
	}
	cache_slab_release(&s);
	cache_slab_release(&s);
}

START_TEST(test_auto_fits_pool)
{
	long avail = pool_available();

	if (avail < 0) {
		fprintf(stderr, "slab auto: no 2 MiB hugepage pool; expecting thp\n");
		auto_case(4 * MIB);
		return;
	}
	/* A slab the pool can hold, when it can hold any. */
	auto_case(avail >= 2 ? 4 * MIB : 2 * MIB);
}
END_TEST

START_TEST(test_auto_exceeds_pool)
{
	long avail = pool_available();
	uint64_t size = ((uint64_t)(avail < 0 ? 0 : avail) + 16) * HUGE;

	if (size > MAX_PROBE || pool_overcommits()) {
		fprintf(stderr, "slab auto: pool too large (%ld free) or overcommitting; skipped\n",
			avail);
		return;
	}
	auto_case(size);
}
END_TEST

START_TEST(test_on_without_room)
{
	struct cache_slab s;
	char err[512] = "";
	long avail = pool_available();
	uint64_t size = ((uint64_t)(avail < 0 ? 0 : avail) + 16) * HUGE;

	if (size > MAX_PROBE || pool_overcommits()) {
		fprintf(stderr, "slab on: pool too large (%ld free) or overcommitting; skipped\n",
			avail);
		return;
	}
	int rc = cache_slab_init(&s, size, 64 * 1024, HUGEPAGES_ON, err, sizeof(err));
	if (rc == 0 && pool_available() >= 0) {
		cache_slab_release(&s);
		ck_abort_msg("hugepages = on got %llu MiB with only %ld pages free",
			     (unsigned long long)(size / MIB), avail);
	}
	ck_assert_int_lt(rc, 0);
	ck_assert_msg(strstr(err, "vm.nr_hugepages") != NULL, "message: %s", err);
	ck_assert_msg(strstr(err, "hugepages"), "message: %s", err);
	ck_assert_ptr_null(s.base);
	cache_slab_release(&s);
}
END_TEST

/*
 * The fix the error names must be one that works: a vm.nr_hugepages value that leaves room
 * for this slab next to the pages others hold, not merely the slab's own page count (which
 * could shrink a shared pool).
 */
START_TEST(test_on_without_room_advice)
{
	struct cache_slab s;
	char err[512] = "";
	long avail = pool_available();
	long total = read_long(POOL "nr_hugepages");
	uint64_t size = ((uint64_t)(avail < 0 ? 0 : avail) + 16) * HUGE;

	if (size > MAX_PROBE || pool_overcommits() || total < 0) {
		fprintf(stderr, "slab on: no usable pool to reason about; skipped\n");
		return;
	}
	ck_assert_int_lt(cache_slab_init(&s, size, 64 * 1024, HUGEPAGES_ON, err, sizeof(err)), 0);
	const char *p = strstr(err, "vm.nr_hugepages=");
	ck_assert_msg(p != NULL, "message: %s", err);
	long suggested = strtol(p + strlen("vm.nr_hugepages="), NULL, 10);
	long need = (long)(size / HUGE);
	ck_assert_msg(suggested >= total - avail + need,
		      "suggests vm.nr_hugepages=%ld, but %ld of %ld pages are taken and the slab "
		      "needs %ld: at least %ld would work (message: %s)",
		      suggested, total - avail, total, need, total - avail + need, err);
}
END_TEST

START_TEST(test_on_with_room)
{
	struct cache_slab s;
	char err[512] = "", flags[512];
	long avail = pool_available();

	if (avail < 2) {
		fprintf(stderr, "slab on: %ld hugepages free; skipped\n", avail);
		return;
	}
	int rc = cache_slab_init(&s, 4 * MIB, MIB, HUGEPAGES_ON, err, sizeof(err));
	if (rc != 0 && pool_available() < 2) {
		fprintf(stderr, "slab on: the pool emptied during the test; not judging\n");
		return;
	}
	ck_assert_msg(rc == 0, "hugepages = on with %ld pages free: %s", avail, err);
	ck_assert_int_eq(s.kind, SLAB_HUGETLB);
	check_slab(&s, 4, MIB);
	vm_flags(s.base, flags, sizeof(flags));
	ck_assert_msg(has_flag(flags, "ht"), "VmFlags: %s", flags);
	cache_slab_release(&s);
	ck_assert_ptr_null(s.base);
	ck_assert_int_eq(s.fd, -1);
	cache_slab_release(&s);
}
END_TEST

/* ---- growing the pool (root): saved and restored by the parent process ---- */

static long saved_nr = -1;

static void pool_save(void)
{
	saved_nr = -1;
	if (geteuid() == 0 && default_is_2m() && access(NR_HUGEPAGES, W_OK) == 0)
		saved_nr = read_long(NR_HUGEPAGES);
}

static void pool_restore(void)
{
	if (saved_nr < 0)
		return;
	long now = read_long(NR_HUGEPAGES);
	if (now != saved_nr && !write_long(NR_HUGEPAGES, saved_nr))
		fprintf(stderr, "check_slab: could not restore vm.nr_hugepages to %ld (now %ld)\n",
			saved_nr, now);
}

START_TEST(test_on_after_growing_pool)
{
	struct cache_slab s;
	char err[512] = "", flags[512];

	if (saved_nr < 0) {
		fprintf(stderr, "slab pool: not root, or vm.nr_hugepages not writable; skipped\n");
		return;
	}
	long before = pool_available();
	if (before < 0 || (uint64_t)(before + 8) * HUGE > MAX_PROBE) {
		fprintf(stderr, "slab pool: %ld pages free already; skipped\n", before);
		return;
	}
	if (!write_long(NR_HUGEPAGES, saved_nr + 8) || read_long(NR_HUGEPAGES) < saved_nr + 8 ||
	    pool_available() < before + 8) {
		fprintf(stderr, "slab pool: the kernel could not grow the pool by 8 pages "
			"(%ld available); skipped\n", pool_available());
		return;
	}
	/* Exactly what is free now: more than before, so it needs the new pages. */
	long pages = before + 8;
	uint64_t size = (uint64_t)pages * HUGE;
	int rc = cache_slab_init(&s, size, 64 * 1024, HUGEPAGES_ON, err, sizeof(err));
	if (rc != 0 && pool_available() < pages) {
		fprintf(stderr, "slab pool: another process took the new pages; not judging\n");
		return;
	}
	ck_assert_msg(rc == 0, "hugepages = on after growing the pool to %ld free pages: %s",
		      pages, err);
	ck_assert_int_eq(s.kind, SLAB_HUGETLB);
	check_slab(&s, (uint32_t)(size / (64 * 1024)), 64 * 1024);
	vm_flags(s.base, flags, sizeof(flags));
	ck_assert_msg(has_flag(flags, "ht"), "VmFlags: %s", flags);
	cache_slab_release(&s);
	cache_slab_release(&s);
}
END_TEST

static Suite *slab_suite(void)
{
	Suite *s = suite_create("slab");
	struct { const char *name; const TTest *t; } tests[] = {
		{ "off_small_pages", test_off_small_pages },
		{ "nslots_rounding", test_nslots_rounding },
		{ "release_twice", test_release_twice },
		{ "release_zeroed", test_release_zeroed },
		{ "auto_fits_pool", test_auto_fits_pool },
		{ "auto_exceeds_pool", test_auto_exceeds_pool },
		{ "on_without_room", test_on_without_room },
		{ "on_without_room_advice", test_on_without_room_advice },
		{ "on_with_room", test_on_with_room },
	};

	for (size_t k = 0; k < sizeof(tests) / sizeof(tests[0]); k++) {
		TCase *tc = tcase_create(tests[k].name);
		tcase_add_checked_fixture(tc, quiet, NULL);
		tcase_set_timeout(tc, 60);
		tcase_add_test(tc, tests[k].t);
		suite_add_tcase(s, tc);
	}
	TCase *tc = tcase_create("on_after_growing_pool");
	tcase_add_unchecked_fixture(tc, pool_save, pool_restore);
	tcase_add_checked_fixture(tc, quiet, NULL);
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, test_on_after_growing_pool);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(slab_suite());

	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
