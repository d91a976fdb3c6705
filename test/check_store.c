/*
 * The cache store (cache/store.h): its tmpfs, files taking and giving back memory, and the
 * warm-restart index: a round trip, and refusal of a torn, altered, foreign or missing one.
 * Mounts a tmpfs, so it runs as root (as the other suites do here).
 */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cache/store.h"

static char dir[64];

static struct cache_store *store_make(bool warm)
{
	char err[512];
	struct cache_store *s = cache_store_new(dir, 64u << 20, warm, true, err, sizeof(err));
	ck_assert_msg(s != NULL, "cache_store_new: %s", err);
	return s;
}

static uint64_t file_bytes(const char *name)
{
	char path[128];
	struct stat st;
	snprintf(path, sizeof(path), "%s/%s", dir, name);
	ck_assert_int_eq(stat(path, &st), 0);
	return (uint64_t)st.st_blocks * 512;
}

START_TEST(test_alloc_and_punch)
{
	struct cache_store *s = store_make(false);
	struct cache_store_file f;
	ck_assert_int_eq(cache_store_file_create(s, 1, (4u << 20) + 10, &f), 0);
	ck_assert_uint_eq(file_bytes(f.name), 0); /* sparse until a chunk fills */
	ck_assert_int_eq(cache_store_alloc(&f, 2u << 20, (2u << 20) + 10), 0);
	memset(f.map + (2u << 20), 0xab, (2u << 20) + 10);
	ck_assert_uint_ge(file_bytes(f.name), 2u << 20);
	cache_store_punch(&f, 2u << 20, (2u << 20) + 10);
	ck_assert_uint_eq(file_bytes(f.name), 0);
	ck_assert_int_eq(f.map[(2u << 20) + 5], 0);
	int fd = cache_store_file_open(&f);
	ck_assert_int_ge(fd, 0);
	close(fd);
	cache_store_file_release(&f, false);
	cache_store_free(s, false);
}
END_TEST

static void entry_fill(struct cache_store_entry *e, const char *name, const char *rel)
{
	memset(e, 0, sizeof(*e));
	snprintf(e->name, sizeof(e->name), "%s", name);
	e->relpath = strdup(rel);
	e->key = 42, e->dev = 7, e->ino = 9, e->size = 3 * 65536 + 1, e->mtime_ns = 123;
	e->nchunks = 4;
	e->have = calloc(4, 1);
	e->crc = calloc(4, sizeof(*e->crc));
	e->have[1] = e->have[3] = 1;
	e->crc[1] = 0xdeadbeef;
	e->crc[3] = 0x12345678;
}

/* Writes an index of one entry and leaves the store kept. */
static void write_one(void)
{
	struct cache_store *s = store_make(false);
	struct cache_store_index idx = { .chunk_size = 65536, .n = 1 };
	idx.e = calloc(1, sizeof(*idx.e));
	entry_fill(&idx.e[0], "g1-v1", "dir/model 1.safetensors");
	ck_assert_int_eq(cache_store_index_write(s, &idx), 0);
	cache_store_index_release(&idx);
	cache_store_free(s, true);
}

static int load(uint64_t chunk_size, struct cache_store_index *idx)
{
	struct cache_store *s = store_make(true);
	int rc = cache_store_index_load(s, chunk_size, idx);
	cache_store_free(s, false);
	return rc;
}

/* What the forget hook (cache_store_set_forget()) was told, in order. */
struct forgot {
	unsigned n;
	const void *addr[4];
	size_t len[4];
	unsigned char first_byte[4]; /* the bytes were still there when it ran */
};

static void note_forget(void *ctx, const void *addr, size_t len)
{
	struct forgot *g = ctx;
	if (g->n < 4) {
		g->addr[g->n] = addr;
		g->len[g->n] = len;
		g->first_byte[g->n] = *(const unsigned char *)addr;
	}
	g->n++;
}

/* RDMA regions over chunks are dropped before their bytes are punched out or unmapped. */
START_TEST(test_forget_before_punch_and_unmap)
{
	struct cache_store *s = store_make(false);
	struct cache_store_file f;
	struct forgot g = { 0 };
	ck_assert_int_eq(cache_store_file_create(s, 1, (4u << 20) + 10, &f), 0);
	cache_store_set_forget(s, note_forget, &g);
	ck_assert_int_eq(cache_store_alloc(&f, 2u << 20, (2u << 20) + 10), 0);
	memset(f.map + (2u << 20), 0xab, (2u << 20) + 10);
	cache_store_punch(&f, 2u << 20, (2u << 20) + 10);
	ck_assert_uint_eq(g.n, 1);
	ck_assert_ptr_eq(g.addr[0], f.map + (2u << 20));
	ck_assert_uint_eq(g.len[0], (2u << 20) + 10);
	ck_assert_uint_eq(g.first_byte[0], 0xab);
	unsigned char *map = f.map;
	size_t map_len = f.map_len;
	cache_store_file_release(&f, false);
	ck_assert_uint_eq(g.n, 2);
	ck_assert_ptr_eq(g.addr[1], map);
	ck_assert_uint_eq(g.len[1], map_len);
	cache_store_set_forget(s, NULL, NULL);
	ck_assert_int_eq(cache_store_file_create(s, 2, 4096, &f), 0);
	cache_store_punch(&f, 0, 4096);
	cache_store_file_release(&f, false);
	ck_assert_uint_eq(g.n, 2); /* unset: not called */
	cache_store_free(s, false);
}
END_TEST

START_TEST(test_index_round_trip)
{
	struct cache_store_index idx;
	write_one();
	ck_assert_int_eq(load(65536, &idx), 0);
	ck_assert_uint_eq(idx.n, 1);
	ck_assert_str_eq(idx.e[0].name, "g1-v1");
	ck_assert_str_eq(idx.e[0].relpath, "dir/model 1.safetensors");
	ck_assert_uint_eq(idx.e[0].size, 3 * 65536 + 1);
	ck_assert_int_eq(idx.e[0].have[1] + idx.e[0].have[3], 2);
	ck_assert_int_eq(idx.e[0].have[0] + idx.e[0].have[2], 0);
	ck_assert_uint_eq(idx.e[0].crc[3], 0x12345678);
	cache_store_index_release(&idx);
}
END_TEST

/* Damages the kept index with @how and expects a refusal. */
static void refused(void (*how)(const char *path))
{
	char path[128];
	struct cache_store_index idx;
	write_one();
	snprintf(path, sizeof(path), "%s/index", dir);
	how(path);
	ck_assert_int_eq(load(65536, &idx), -EBADMSG);
	ck_assert_uint_eq(idx.n, 0);
}

static void tear(const char *path) { ck_assert_int_eq(truncate(path, 60), 0); }

static void flip(const char *path)
{
	int fd = open(path, O_RDWR);
	unsigned char b;
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(pread(fd, &b, 1, 70), 1);
	b ^= 1;
	ck_assert_int_eq(pwrite(fd, &b, 1, 70), 1);
	close(fd);
}

static void version(const char *path)
{
	int fd = open(path, O_RDWR);
	unsigned char v = 99;
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(pwrite(fd, &v, 1, 8), 1); /* the format version after the magic */
	close(fd);
}

START_TEST(test_index_torn) { refused(tear); }
END_TEST
START_TEST(test_index_altered) { refused(flip); }
END_TEST
START_TEST(test_index_other_version) { refused(version); }
END_TEST

START_TEST(test_index_other_chunk_size)
{
	struct cache_store_index idx;
	write_one();
	ck_assert_int_eq(load(1u << 20, &idx), -EBADMSG);
}
END_TEST

START_TEST(test_index_missing_and_cold)
{
	struct cache_store_index idx;
	write_one();
	/* Without warm, a kept store is detached and mounted afresh: no index. */
	struct cache_store *s = store_make(false);
	ck_assert_int_eq(cache_store_index_load(s, 65536, &idx), -ENOENT);
	cache_store_free(s, false);
}
END_TEST

static Suite *store_suite(void)
{
	Suite *s = suite_create("store");
	TCase *tc = tcase_create("store");
	tcase_add_test(tc, test_alloc_and_punch);
	tcase_add_test(tc, test_forget_before_punch_and_unmap);
	tcase_add_test(tc, test_index_round_trip);
	tcase_add_test(tc, test_index_torn);
	tcase_add_test(tc, test_index_altered);
	tcase_add_test(tc, test_index_other_version);
	tcase_add_test(tc, test_index_other_chunk_size);
	tcase_add_test(tc, test_index_missing_and_cold);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	snprintf(dir, sizeof(dir), "/tmp/mows-check-store-idx.%d", (int)getpid());
	SRunner *sr = srunner_create(store_suite());
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	umount2(dir, MNT_DETACH);
	rmdir(dir);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
