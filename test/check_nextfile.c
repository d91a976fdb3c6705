/*
 * The order a reader reads files in (cache_tree_next_file, cache/tree.h): which file's first
 * chunks readahead goes to when a sequential reader's window runs past a file's end. Real
 * directories in /tmp, a real snapshot (cache_tree_meta_load); no cache, no FUSE.
 */
#include <check.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cache/meta.h"
#include "cache/tree.h"
#include "common/hash.h"
#include "common/log.h"

static char root[256];

static uint64_t test_key(const char *relpath, uint64_t size, int64_t mtime_ns)
{
	return fnv1a64(FNV64_BASIS, relpath, strlen(relpath)) ^ size ^ (uint64_t)mtime_ns;
}

static void put_file(const char *rel, size_t size)
{
	char p[512];
	snprintf(p, sizeof(p), "%s/%s", root, rel);
	FILE *fp = fopen(p, "w");
	ck_assert_msg(fp != NULL, "%s: %s", p, strerror(errno));
	for (size_t i = 0; i < size; i++)
		fputc('x', fp);
	fclose(fp);
}

static void put_dir(const char *rel)
{
	char p[512];
	snprintf(p, sizeof(p), "%s/%s", root, rel);
	ck_assert_msg(mkdir(p, 0755) == 0, "mkdir %s: %s", p, strerror(errno));
}

static void put_link(const char *rel, const char *target)
{
	char p[512];
	snprintf(p, sizeof(p), "%s/%s", root, rel);
	ck_assert_msg(symlink(target, p) == 0, "symlink %s: %s", p, strerror(errno));
}

static void setup(void)
{
	log_set_level(getenv("MOWS_TEST_LOG") ? LOG_DEBUG : LOG_CRIT);
	snprintf(root, sizeof(root), "/tmp/check_nextfile.XXXXXX");
	ck_assert_ptr_nonnull(mkdtemp(root));
}

static void teardown(void)
{
	char cmd[512];
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", root);
	ck_assert_int_eq(system(cmd), 0);
}

/* A snapshot of the tree under root, as the daemon takes it at mount. */
static struct cache_meta *snapshot(struct cache_tree **t)
{
	char err[512];
	struct cache_tree_config cfg = { .path = root, .file_key = test_key, .rescan_min_ms = 1 };
	*t = cache_tree_new(&cfg, NULL, err, sizeof(err));
	ck_assert_msg(*t != NULL, "cache_tree_new: %s", err);
	ck_assert_int_eq(cache_tree_meta_load(*t), 0);
	struct cache_meta *m = cache_tree_meta(*t);
	ck_assert_ptr_nonnull(m);
	return m;
}

static void next_is_by(const struct cache_meta *m, const char *rel, bool by_links,
		       const char *want);

/* Asserts that the file after @rel is @want (NULL: none). */
static void next_is(const struct cache_meta *m, const char *rel, const char *want)
{
	next_is_by(m, rel, true, want);
}

static void next_is_by(const struct cache_meta *m, const char *rel, bool by_links,
		       const char *want)
{
	char *got = cache_tree_next_file(m, rel, by_links);
	if (!want)
		ck_assert_msg(got == NULL, "after %s: expected none, got %s", rel, got);
	else
		ck_assert_msg(got && !strcmp(got, want), "after %s: expected %s, got %s", rel,
			      want, got ? got : "none");
	free(got);
}

/* Plain files: the next by name in the same directory, small ones included, empty files,
 * directories and links that lead nowhere skipped, nothing after the last. */
START_TEST(test_next_by_name)
{
	put_dir("d");
	put_file("d/model-00001-of-00003.safetensors", 300);
	put_file("d/model-00002-of-00003.safetensors", 200);
	put_file("d/model-00003-of-00003.safetensors", 100);
	put_file("d/model.safetensors.index.json", 10);
	put_file("d/p.empty", 0);
	put_dir("d/q.dir");
	put_file("d/q.dir/inner", 10);
	put_link("d/r.gone", "nothing-here");
	put_link("d/s.out", "../../../etc/passwd");
	put_link("d/t.abs", "/etc/passwd");
	put_file("d/z.last", 5);
	put_file("top", 5);
	struct cache_tree *t;
	struct cache_meta *m = snapshot(&t);
	next_is(m, "d/model-00001-of-00003.safetensors", "d/model-00002-of-00003.safetensors");
	next_is(m, "d/model-00002-of-00003.safetensors", "d/model-00003-of-00003.safetensors");
	next_is(m, "d/model-00003-of-00003.safetensors", "d/model.safetensors.index.json");
	next_is(m, "d/model.safetensors.index.json", "d/z.last");
	next_is(m, "d/z.last", NULL);          /* the last file in its directory */
	next_is(m, "d/q.dir/inner", NULL);     /* alone: never climbs out of its directory */
	next_is(m, "d", NULL);                 /* not a regular file */
	next_is(m, "d/nope", NULL);
	next_is(m, "d/r.gone", NULL);
	cache_meta_put(m);
	cache_tree_free(t);
}
END_TEST

/* A Hugging Face cache: blobs named by hash, read through a snapshot's symlinks in name
 * order. The next file is the blob the next symlink names, not the next hash. */
START_TEST(test_next_through_links)
{
	put_dir("hub");
	put_dir("hub/blobs");
	put_dir("hub/snapshots");
	put_dir("hub/snapshots/r1");
	put_file("hub/blobs/0aaa", 10);  /* config.json */
	put_file("hub/blobs/5bbb", 300); /* shard 2 */
	put_file("hub/blobs/9ccc", 300); /* shard 1 */
	put_file("hub/blobs/2ddd", 50);  /* the index */
	put_link("hub/snapshots/r1/config.json", "../../blobs/0aaa");
	put_link("hub/snapshots/r1/model-00001-of-00002.safetensors", "../../blobs/9ccc");
	put_link("hub/snapshots/r1/model-00002-of-00002.safetensors", "./../../blobs/5bbb");
	put_link("hub/snapshots/r1/model.safetensors.index.json", "../../blobs/2ddd");
	struct cache_tree *t;
	struct cache_meta *m = snapshot(&t);
	next_is(m, "hub/blobs/0aaa", "hub/blobs/9ccc");
	next_is(m, "hub/blobs/9ccc", "hub/blobs/5bbb"); /* by hash nothing follows 9ccc */
	next_is(m, "hub/blobs/5bbb", "hub/blobs/2ddd");
	next_is(m, "hub/blobs/2ddd", NULL);
	/* The order of `find | sort` (the blobs by name): the directory's own. */
	next_is_by(m, "hub/blobs/0aaa", false, "hub/blobs/2ddd");
	next_is_by(m, "hub/blobs/2ddd", false, "hub/blobs/5bbb");
	next_is_by(m, "hub/blobs/9ccc", false, NULL);
	cache_meta_put(m);
	cache_tree_free(t);
}
END_TEST

static Suite *nextfile_suite(void)
{
	Suite *s = suite_create("nextfile");
	TCase *tc = tcase_create("order");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, test_next_by_name);
	tcase_add_test(tc, test_next_through_links);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(nextfile_suite());
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
