/*
 * cache/tree: the confined open, the walk and the key index, on real directories in a
 * scratch dir (no FUSE, no network), and the read-descriptor pool through a real cache.
 */
#include <check.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "cache/backing.h"
#include "cache/cache.h"
#include "cache/meta.h"
#include "cache/tree.h"
#include "common/config.h"
#include "common/hash.h"
#include "common/log.h"

static char root[256];

static uint64_t test_key(const char *relpath, uint64_t size, int64_t mtime_ns)
{
	uint64_t h = fnv1a64(FNV64_BASIS, relpath, strlen(relpath));
	return fmix64(h ^ size ^ (uint64_t)mtime_ns * 31);
}

static void put_file(const char *rel, size_t size)
{
	char p[4096];
	snprintf(p, sizeof(p), "%s/%s", root, rel);
	FILE *fp = fopen(p, "w");
	ck_assert_msg(fp != NULL, "%s: %s", p, strerror(errno));
	for (size_t i = 0; i < size; i++)
		fputc((int)(i * 7 + size) & 0xff, fp);
	fclose(fp);
}

static void put_dir(const char *rel)
{
	char p[4096];
	snprintf(p, sizeof(p), "%s/%s", root, rel);
	ck_assert_msg(mkdir(p, 0755) == 0, "mkdir %s: %s", p, strerror(errno));
}

static void setup(void)
{
	snprintf(root, sizeof(root), "/tmp/check_tree.XXXXXX");
	ck_assert_ptr_nonnull(mkdtemp(root));
}

static void teardown(void)
{
	char cmd[512];
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", root);
	ck_assert_int_eq(system(cmd), 0);
}

/* Directories, two files, a file at the top, a symlink and a FIFO: 8 entries below root. */
static void put_sample_tree(void)
{
	put_dir("a");
	put_dir("a/deep");
	put_file("a/z.bin", 5);
	put_file("a/m.bin", 7);
	put_file("top", 1);
	char p[512];
	snprintf(p, sizeof(p), "%s/a/link", root);
	ck_assert_int_eq(symlink("../top", p), 0);
	snprintf(p, sizeof(p), "%s/fifo", root);
	ck_assert_int_eq(mkfifo(p, 0644), 0);
}

static struct cache_tree *tree_make(struct cache *c, unsigned depth_max, unsigned max_open)
{
	char err[512];
	struct cache_tree_config cfg = {
		.path = root,
		.file_key = test_key,
		.depth_max = depth_max,
		.max_open = max_open,
		.rescan_min_ms = 1,
	};
	struct cache_tree *t = cache_tree_new(&cfg, c, err, sizeof(err));
	ck_assert_msg(t != NULL, "cache_tree_new: %s", err);
	return t;
}

static unsigned open_fds(void)
{
	unsigned n = 0;
	DIR *dp = opendir("/proc/self/fd");
	ck_assert_ptr_nonnull(dp);
	while (readdir(dp))
		n++;
	closedir(dp);
	return n - 3; /* ".", ".." and the one opendir holds */
}

struct seen {
	char names[64][256];
	unsigned n;
	unsigned fds_baseline, fds_max;
};

static int record(void *arg, const char *relpath, const struct stat *st)
{
	struct seen *s = arg;
	ck_assert_msg(S_ISREG(st->st_mode), "%s is not a regular file", relpath);
	ck_assert_uint_lt(s->n, 64);
	snprintf(s->names[s->n++], sizeof(s->names[0]), "%s", relpath);
	unsigned fds = open_fds();
	if (fds > s->fds_max)
		s->fds_max = fds;
	return 0;
}

static bool seen_has(const struct seen *s, const char *name)
{
	for (unsigned i = 0; i < s->n; i++)
		if (!strcmp(s->names[i], name))
			return true;
	return false;
}

START_TEST(test_walk_files_only)
{
	put_file("a.bin", 10);
	put_dir("d");
	put_dir("d/e");
	put_file("d/e/f.bin", 3);
	put_file("d/g.bin", 0);
	char p[512];
	snprintf(p, sizeof(p), "%s/d/fifo", root);
	ck_assert_int_eq(mkfifo(p, 0644), 0);
	snprintf(p, sizeof(p), "%s/link", root);
	ck_assert_int_eq(symlink("d", p), 0);
	int sk = socket(AF_UNIX, SOCK_STREAM, 0);
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	ck_assert_uint_lt(strlen(root), 100);
	memcpy(sa.sun_path, root, strlen(root));
	memcpy(sa.sun_path + strlen(root), "/sock", 6);
	ck_assert_int_eq(bind(sk, (struct sockaddr *)&sa, sizeof(sa)), 0);

	struct cache_tree *t = tree_make(NULL, 0, 0);
	struct seen s = { .fds_baseline = open_fds() };
	ck_assert_int_eq(cache_tree_walk(t, "", record, &s), 0);
	ck_assert_uint_eq(s.n, 3);
	ck_assert(seen_has(&s, "a.bin") && seen_has(&s, "d/e/f.bin") && seen_has(&s, "d/g.bin"));
	/* No directory of the walk is open while the callback runs. */
	ck_assert_uint_eq(s.fds_max, s.fds_baseline);

	/* A subtree, a single file, and things that are neither. */
	s.n = 0;
	ck_assert_int_eq(cache_tree_walk(t, "d", record, &s), 0);
	ck_assert_uint_eq(s.n, 2);
	s.n = 0;
	ck_assert_int_eq(cache_tree_walk(t, "d/e/f.bin", record, &s), 0);
	ck_assert_uint_eq(s.n, 1);
	ck_assert_str_eq(s.names[0], "d/e/f.bin");
	ck_assert_int_eq(cache_tree_walk(t, "d/fifo", record, &s), -EINVAL);
	ck_assert_int_eq(cache_tree_walk(t, "sock", record, &s), -EINVAL);
	ck_assert_int_eq(cache_tree_walk(t, "link", record, &s), -EINVAL);
	ck_assert_int_eq(cache_tree_walk(t, "nope", record, &s), -ENOENT);
	ck_assert_uint_eq(s.n, 1);
	cache_tree_free(t);
	close(sk);
}
END_TEST

/* A FIFO with no writer: opening it for reading would block forever. */
START_TEST(test_open_never_blocks)
{
	char p[512];
	snprintf(p, sizeof(p), "%s/fifo", root);
	ck_assert_int_eq(mkfifo(p, 0644), 0);
	put_file("f", 5);
	snprintf(p, sizeof(p), "%s/out", root);
	ck_assert_int_eq(symlink("/etc", p), 0);
	snprintf(p, sizeof(p), "%s/flink", root);
	ck_assert_int_eq(symlink("f", p), 0);

	struct cache_tree *t = tree_make(NULL, 0, 0);
	struct stat st;
	ck_assert_int_eq(cache_tree_open(t, "fifo", CACHE_TREE_READ, &st), -EINVAL);
	ck_assert(S_ISFIFO(st.st_mode));
	ck_assert_int_eq(cache_tree_open(t, "fifo", CACHE_TREE_DIR, &st), -ENOTDIR);
	int fd = cache_tree_open(t, "fifo", CACHE_TREE_PATH, &st);
	ck_assert_int_ge(fd, 0);
	close(fd);
	ck_assert_str_eq(cache_tree_kind(st.st_mode), "a FIFO");

	fd = cache_tree_open(t, "f", CACHE_TREE_READ, &st);
	ck_assert_int_ge(fd, 0);
	char buf[8];
	ck_assert_int_eq(read(fd, buf, sizeof(buf)), 5);
	close(fd);
	/* Confined: no way out of the root, and a final symlink is never followed. */
	ck_assert_int_eq(cache_tree_open(t, "../etc", CACHE_TREE_PATH, &st), -EXDEV);
	ck_assert_int_eq(cache_tree_open(t, "out/passwd", CACHE_TREE_READ, &st), -EXDEV);
	ck_assert_int_eq(cache_tree_open(t, "flink", CACHE_TREE_READ, &st), -EINVAL);
	ck_assert(S_ISLNK(st.st_mode));
	char target[64];
	ck_assert_int_eq(cache_tree_readlink(t, "flink", target, sizeof(target)), 1);
	ck_assert_str_eq(target, "f");
	cache_tree_free(t);
}
END_TEST

/* A chain of @levels directories "x/x/x...", built by descriptors (no path is too long). */
static void make_chain(unsigned levels, unsigned file_at)
{
	int fd = open(root, O_RDONLY | O_DIRECTORY);
	ck_assert_int_ge(fd, 0);
	for (unsigned i = 1; i <= levels; i++) {
		ck_assert_int_eq(mkdirat(fd, "x", 0755), 0);
		int next = openat(fd, "x", O_RDONLY | O_DIRECTORY);
		ck_assert_int_ge(next, 0);
		close(fd);
		fd = next;
		if (i == file_at || i == levels) {
			int f = openat(fd, "leaf", O_WRONLY | O_CREAT, 0644);
			ck_assert_int_ge(f, 0);
			close(f);
		}
	}
	close(fd);
}

static int count_files(void *arg, const char *relpath, const struct stat *st)
{
	(void)relpath, (void)st;
	(*(unsigned *)arg)++;
	return 0;
}

START_TEST(test_walk_depth_cap)
{
	make_chain(3000, 5); /* a file 5 levels down and one 3000 levels down */
	unsigned before = open_fds();
	struct cache_tree *t = tree_make(NULL, 0, 0);
	unsigned n = 0;
	ck_assert_int_eq(cache_tree_walk(t, "", count_files, &n), 0);
	ck_assert_uint_eq(n, 1); /* only the shallow one: the deep one is past the cap */
	cache_tree_free(t);

	t = tree_make(NULL, 10, 0);
	n = 0;
	ck_assert_int_eq(cache_tree_walk(t, "", count_files, &n), 0);
	ck_assert_uint_eq(n, 1);
	t = (cache_tree_free(t), tree_make(NULL, 4, 0));
	n = 0;
	ck_assert_int_eq(cache_tree_walk(t, "", count_files, &n), 0);
	ck_assert_uint_eq(n, 0);
	cache_tree_free(t);
	ck_assert_uint_eq(open_fds(), before);
}
END_TEST

START_TEST(test_key_index)
{
	enum { N = 600 };
	put_dir("m");
	char rel[64];
	for (unsigned i = 0; i < N; i++) {
		snprintf(rel, sizeof(rel), "m/shard-%04u.bin", i);
		put_file(rel, i % 17);
	}
	struct cache_tree *t = tree_make(NULL, 0, 0);
	for (unsigned i = 0; i < N; i++) {
		snprintf(rel, sizeof(rel), "m/shard-%04u.bin", i);
		char p[512];
		struct stat st;
		snprintf(p, sizeof(p), "%s/%s", root, rel);
		ck_assert_int_eq(stat(p, &st), 0);
		uint64_t key = test_key(rel, (uint64_t)st.st_size,
					(int64_t)st.st_mtim.tv_sec * 1000000000 + st.st_mtim.tv_nsec);
		char *found = cache_tree_key_path(t, key);
		ck_assert_msg(found && !strcmp(found, rel), "key of %s: found %s", rel,
			      found ? found : "nothing");
		free(found);
	}
	ck_assert_ptr_null(cache_tree_key_path(t, 12345));

	/* A file added later is found once the index walks again (rescan_min_ms = 1). */
	usleep(5000);
	put_file("late.bin", 9);
	struct stat st;
	char p[512];
	snprintf(p, sizeof(p), "%s/late.bin", root);
	ck_assert_int_eq(stat(p, &st), 0);
	char *found = cache_tree_key_path(
		t, test_key("late.bin", 9, (int64_t)st.st_mtim.tv_sec * 1000000000 +
						   st.st_mtim.tv_nsec));
	ck_assert_ptr_nonnull(found);
	ck_assert_str_eq(found, "late.bin");
	free(found);
	cache_tree_free(t);
}
END_TEST

/* Versions keep no descriptor; fills share a bounded pool, even over many files. */
START_TEST(test_pool_bounded)
{
	enum { N = 40, CH = 65536 };
	struct mows_config cfg;
	char err[512];
	config_defaults(&cfg);
	cfg.chunk_size = CH;
	cfg.max_memory = 64 * CH;
	cfg.hugepages = HUGEPAGES_OFF;
	cfg.fill_threads = 2;
	cfg.verify = VERIFY_OFF;
	struct cache *c = cache_new(&cfg, err, sizeof(err));
	ck_assert_msg(c != NULL, "cache_new: %s", err);
	struct cache_tree *t = tree_make(c, 0, 4);
	ck_assert_int_eq(cache_add_source(c, &cache_backing_source, t), 0);
	ck_assert_int_eq(cache_start(c), 0);
	char rel[64];
	struct cache_file *files[N];
	unsigned before = open_fds();
	for (unsigned i = 0; i < N; i++) {
		snprintf(rel, sizeof(rel), "f%02u", i);
		put_file(rel, 1000 + i);
		files[i] = cache_tree_version(t, rel, 0, NULL);
		ck_assert_ptr_nonnull(files[i]);
	}
	for (unsigned i = 0; i < N; i++) {
		struct cache_span sp[4];
		unsigned n = 0;
		ck_assert_int_eq(cache_read(c, files[i], 0, 4096, false, sp, 4, &n), 1000 + i);
		ck_assert_uint_eq(((const unsigned char *)sp[0].data)[1], (7 + 1000 + i) & 0xff);
		cache_read_done(c, sp, n);
	}
	unsigned open_now, max;
	cache_tree_pool_stats(t, &open_now, &max);
	ck_assert_uint_eq(max, 4);
	ck_assert_uint_le(open_now, 4);
	ck_assert_uint_le(open_fds(), before + 4);
	/* files[0] left the pool long ago; its path now holds another file: ESTALE. */
	put_file("f00", 999);
	ck_assert_int_eq(cache_tree_fd_get(t, files[0]), -ESTALE);
	for (unsigned i = 0; i < N; i++)
		cache_file_put(c, files[i]);
	cache_free(c);
	cache_tree_free(t);
}
END_TEST

START_TEST(test_meta_snapshot)
{
	put_dir("b");
	put_sample_tree();
	struct cache_tree *t = tree_make(NULL, 0, 0);
	struct cache_meta *m = cache_meta_build(t, 8);
	ck_assert_ptr_nonnull(m);
	ck_assert_uint_eq(cache_meta_count(m), 9);
	ck_assert_int_eq(cache_meta_find(m, ""), 0);
	int64_t i = cache_meta_find(m, "a/m.bin");
	ck_assert_int_ge(i, 0);
	ck_assert_int_eq(cache_meta_stat(m, (uint64_t)i)->st_size, 7);
	i = cache_meta_find(m, "a/link");
	ck_assert_int_ge(i, 0);
	ck_assert_str_eq(cache_meta_target(m, (uint64_t)i), "../top");
	ck_assert(S_ISFIFO(cache_meta_stat(m, (uint64_t)cache_meta_find(m, "fifo"))->st_mode));
	ck_assert_int_eq(cache_meta_find(m, "a/nope"), -1);
	ck_assert_int_eq(cache_meta_find(m, "top/x"), -1);
	ck_assert_int_eq(cache_meta_find(m, "a/m"), -1);
	ck_assert_int_eq(cache_meta_find(m, "a/m.bin.x"), -1);
	/* Children come sorted by name. */
	uint64_t first, n;
	cache_meta_children(m, (uint64_t)cache_meta_find(m, "a"), &first, &n);
	ck_assert_uint_eq(n, 4);
	const char *want[] = { "deep", "link", "m.bin", "z.bin" };
	for (unsigned k = 0; k < 4; k++)
		ck_assert_str_eq(cache_meta_name(m, first + k), want[k]);
	cache_meta_children(m, (uint64_t)cache_meta_find(m, "top"), &first, &n);
	ck_assert_uint_eq(n, 0);
	/* Immutable: a file added later is not in it, but in the next one. */
	put_file("late", 3);
	ck_assert_int_eq(cache_meta_find(m, "late"), -1);
	struct cache_meta *m2 = cache_meta_build(t, 8);
	ck_assert_int_ge(cache_meta_find(m2, "late"), 0);
	cache_meta_put(m2);
	cache_meta_put(m);

	/* Depth: the root's children are level 1; "a/deep" is level 2. */
	m = cache_meta_build(t, 1);
	ck_assert_int_ge(cache_meta_find(m, "a"), 0);
	ck_assert_int_eq(cache_meta_find(m, "a/m.bin"), -1);
	cache_meta_put(m);
	cache_tree_free(t);
}
END_TEST

START_TEST(test_meta_holder)
{
	put_file("x", 1);
	struct cache_tree *t = tree_make(NULL, 0, 0);
	ck_assert_ptr_null(cache_tree_meta(t));
	ck_assert_int_eq(cache_tree_meta_refresh(t, 100), -ESRCH);
	ck_assert_int_eq(cache_tree_meta_load(t), 0);
	struct cache_meta *m = cache_tree_meta(t);
	ck_assert_ptr_nonnull(m);
	ck_assert_int_ge(cache_meta_find(m, "x"), 0);
	ck_assert_int_eq(cache_tree_meta_start(t, 3600000), 0);
	put_file("y", 1);
	ck_assert_int_eq(cache_meta_find(m, "y"), -1);
	ck_assert_int_eq(cache_tree_meta_refresh(t, 5000), 0);
	struct cache_meta *m2 = cache_tree_meta(t);
	ck_assert_ptr_ne(m, m2);
	ck_assert_int_ge(cache_meta_find(m2, "y"), 0);
	ck_assert_int_ge(cache_meta_find(m, "x"), 0); /* the old one stays valid while held */
	cache_meta_put(m);
	cache_meta_put(m2);
	cache_tree_free(t);
}
END_TEST

static uint64_t key_of(const char *rel)
{
	char p[512];
	struct stat st;
	snprintf(p, sizeof(p), "%s/%s", root, rel);
	ck_assert_int_eq(stat(p, &st), 0);
	return test_key(rel, (uint64_t)st.st_size,
			(int64_t)st.st_mtim.tv_sec * 1000000000 + st.st_mtim.tv_nsec);
}

/* With the metadata thread, the key index follows the snapshot, and a miss refreshes it. */
START_TEST(test_key_index_from_snapshot)
{
	put_dir("m");
	put_dir("m/n");
	put_file("m/n/a.bin", 10);
	put_file("top.bin", 3);
	struct cache_tree *t = tree_make(NULL, 0, 0);
	ck_assert_int_eq(cache_tree_meta_load(t), 0);
	struct cache_meta *m = cache_tree_meta(t);
	char *rel = cache_meta_relpath(m, (uint64_t)cache_meta_find(m, "m/n/a.bin"));
	ck_assert_str_eq(rel, "m/n/a.bin");
	free(rel);
	rel = cache_meta_relpath(m, 0);
	ck_assert_str_eq(rel, "");
	free(rel);
	cache_meta_put(m);
	ck_assert_int_eq(cache_tree_meta_start(t, 3600000), 0);
	char *found = cache_tree_key_path(t, key_of("m/n/a.bin"));
	ck_assert_ptr_nonnull(found);
	ck_assert_str_eq(found, "m/n/a.bin");
	free(found);
	usleep(5000);
	put_file("m/new.bin", 4);
	found = cache_tree_key_path(t, key_of("m/new.bin"));
	ck_assert_ptr_nonnull(found);
	ck_assert_str_eq(found, "m/new.bin");
	free(found);
	/* The miss took a new snapshot: the FUSE view sees the file too. */
	m = cache_tree_meta(t);
	ck_assert_int_ge(cache_meta_find(m, "m/new.bin"), 0);
	cache_meta_put(m);
	ck_assert_ptr_null(cache_tree_key_path(t, 42));
	cache_tree_free(t);
}
END_TEST

/* The peer host op: found by key; a file swapped for a FIFO after it was indexed. */
START_TEST(test_open_key)
{
	struct mows_config cfg;
	char err[512];
	config_defaults(&cfg);
	cfg.chunk_size = 65536;
	cfg.max_memory = 16 * 65536;
	cfg.hugepages = HUGEPAGES_OFF;
	cfg.verify = VERIFY_OFF;
	struct cache *c = cache_new(&cfg, err, sizeof(err));
	ck_assert_msg(c != NULL, "cache_new: %s", err);
	struct cache_tree *t = tree_make(c, 0, 0);
	put_file("w.bin", 100);
	put_file("swapped.bin", 200);
	char p[512];
	struct stat st, st2;
	snprintf(p, sizeof(p), "%s/w.bin", root);
	ck_assert_int_eq(stat(p, &st), 0);
	snprintf(p, sizeof(p), "%s/swapped.bin", root);
	ck_assert_int_eq(stat(p, &st2), 0);
	int64_t mt = (int64_t)st.st_mtim.tv_sec * 1000000000 + st.st_mtim.tv_nsec;
	int64_t mt2 = (int64_t)st2.st_mtim.tv_sec * 1000000000 + st2.st_mtim.tv_nsec;
	struct cache_file *f = cache_tree_open_key(t, test_key("w.bin", 100, mt), 100, mt);
	ck_assert_ptr_nonnull(f);
	ck_assert_str_eq(cache_file_relpath(f), "w.bin");
	cache_file_put(c, f);
	/* Known key, other size: the file changed since the peer saw it. */
	ck_assert_ptr_null(cache_tree_open_key(t, test_key("w.bin", 100, mt), 101, mt));
	ck_assert_int_eq(unlink(p), 0);
	ck_assert_int_eq(mkfifo(p, 0644), 0);
	ck_assert_ptr_null(cache_tree_open_key(t, test_key("swapped.bin", 200, mt2), 200, mt2));
	cache_free(c);
	cache_tree_free(t);
}
END_TEST

/*
 * With the metadata thread running, a version comes from the snapshot (the backing is not
 * opened: a file removed since the listing still gets one, and its fill fails); a file whose
 * chunks are all cached has its pooled descriptor closed.
 */
START_TEST(test_versions_from_memory)
{
	enum { CH = 65536 };
	struct mows_config cfg;
	char err[512];
	config_defaults(&cfg);
	cfg.chunk_size = CH;
	cfg.max_memory = 16 * CH;
	cfg.hugepages = HUGEPAGES_OFF;
	cfg.fill_threads = 2;
	cfg.fill_timeout_ms = 2000;
	cfg.verify = VERIFY_OFF;
	struct cache *c = cache_new(&cfg, err, sizeof(err));
	ck_assert_msg(c != NULL, "cache_new: %s", err);
	struct cache_tree *t = tree_make(c, 0, 4);
	ck_assert_int_eq(cache_add_source(c, &cache_backing_source, t), 0);
	ck_assert_int_eq(cache_start(c), 0);
	put_file("whole.bin", 3 * CH + 5);
	put_file("gone.bin", 100);
	ck_assert_int_eq(cache_tree_meta_load(t), 0);
	ck_assert_int_eq(cache_tree_meta_start(t, 3600000), 0);
	char p[512];
	snprintf(p, sizeof(p), "%s/gone.bin", root);
	ck_assert_int_eq(unlink(p), 0);
	struct cache_file *g = cache_tree_version(t, "gone.bin", 0, NULL);
	ck_assert_ptr_nonnull(g); /* from memory: the backing was not asked */
	struct cache_span sp[8];
	unsigned n = 0;
	ck_assert_int_eq(cache_read(c, g, 0, 100, false, sp, 8, &n), -EIO);
	cache_file_put(c, g);
	ck_assert_ptr_null(cache_tree_version(t, "never-listed", 0, NULL));
	ck_assert_int_eq(errno, ENOENT);

	struct cache_file *f = cache_tree_version(t, "whole.bin", 0, NULL);
	ck_assert_ptr_nonnull(f);
	unsigned open_now, max;
	cache_tree_pool_stats(t, &open_now, &max);
	ck_assert_uint_eq(open_now, 0); /* no descriptor until a fill */
	ck_assert_int_eq(cache_read(c, f, 0, CH, false, sp, 8, &n), CH);
	cache_read_done(c, sp, n);
	ck_assert_int_eq(cache_read(c, f, CH, 3 * CH, false, sp, 8, &n), 2 * CH + 5);
	ck_assert_uint_eq(((const unsigned char *)sp[n - 1].data)[sp[n - 1].len - 1],
			  (unsigned char)((3 * CH + 4) * 7 + 3 * CH + 5));
	cache_read_done(c, sp, n);
	/* Every chunk cached: the descriptor is gone (closed by the completing fill thread). */
	for (int i = 0; i < 100; i++) {
		cache_tree_pool_stats(t, &open_now, &max);
		if (!open_now)
			break;
		usleep(10000);
	}
	ck_assert_uint_eq(open_now, 0);
	cache_file_put(c, f);
	cache_free(c);
	cache_tree_free(t);
}
END_TEST

/* The wire form: encode, decode, encode again gives the same bytes; damage is refused. */
START_TEST(test_meta_wire)
{
	put_sample_tree();
	struct cache_tree *t = tree_make(NULL, 0, 0);
	struct cache_meta *m = cache_meta_build(t, 8);
	ck_assert_ptr_nonnull(m);
	uint8_t *buf, *again;
	size_t len, len2;
	ck_assert_int_eq(cache_meta_encode(m, &buf, &len), 0);
	char err[128];
	struct cache_meta *d = cache_meta_decode(buf, len, NULL, NULL, err, sizeof(err));
	ck_assert_msg(d != NULL, "decode: %s", err);
	ck_assert_uint_eq(cache_meta_count(d), cache_meta_count(m));
	int64_t i = cache_meta_find(d, "a/m.bin");
	ck_assert_int_ge(i, 0);
	ck_assert_int_eq(cache_meta_stat(d, (uint64_t)i)->st_size, 7);
	int64_t j = cache_meta_find(m, "a/m.bin");
	ck_assert_int_eq(cache_meta_stat(d, (uint64_t)i)->st_mtim.tv_nsec,
			 cache_meta_stat(m, (uint64_t)j)->st_mtim.tv_nsec);
	ck_assert_str_eq(cache_meta_target(d, (uint64_t)cache_meta_find(d, "a/link")), "../top");
	ck_assert_int_eq(cache_meta_encode(d, &again, &len2), 0);
	ck_assert_uint_eq(len2, len);
	ck_assert(memcmp(buf, again, len) == 0);
	free(again);
	cache_meta_put(d);
	/* Every truncation, a trailing byte, a bad magic, a '/' in a name: refused. */
	for (size_t k = 0; k < len; k++) {
		ck_assert_ptr_null(cache_meta_decode(buf, k, NULL, NULL, err, sizeof(err)));
		ck_assert_int_eq(errno, EPROTO);
	}
	uint8_t *more = malloc(len + 1);
	memcpy(more, buf, len);
	more[len] = 0;
	ck_assert_ptr_null(cache_meta_decode(more, len + 1, NULL, NULL, err, sizeof(err)));
	more[0] ^= 1;
	ck_assert_ptr_null(cache_meta_decode(more, len, NULL, NULL, err, sizeof(err)));
	more[0] ^= 1;
	uint8_t *name = memmem(more, len, "m.bin", 5);
	ck_assert_ptr_nonnull(name);
	name[1] = '/';
	ck_assert_ptr_null(cache_meta_decode(more, len, NULL, NULL, err, sizeof(err)));
	ck_assert_str_eq(err, "a bad name");
	name[1] = 'a'; /* "ma.bin" after "link" and before "z.bin": still sorted */
	d = cache_meta_decode(more, len, NULL, NULL, err, sizeof(err));
	ck_assert_ptr_nonnull(d);
	cache_meta_put(d);
	name[0] = 'a'; /* "aa.bin" after "link": out of order */
	ck_assert_ptr_null(cache_meta_decode(more, len, NULL, NULL, err, sizeof(err)));
	free(more);
	free(buf);
	cache_meta_put(m);
	cache_tree_free(t);
}
END_TEST

static int stub_fetch(void *ctx, bool forced)
{
	(void)ctx;
	(void)forced;
	return 0;
}

/* A snapshot shared by one tree and installed in another: same tree, same version, the
 * manifest with it, identities of the importing tree; a bad or foreign one is refused. */
START_TEST(test_meta_share_import)
{
	put_dir("sub");
	put_file("sub/w.bin", 11);
	put_file("x.bin", 3);
	char p[512];
	snprintf(p, sizeof(p), "%s/crc32.txt", root);
	FILE *fp = fopen(p, "w");
	ck_assert_ptr_nonnull(fp);
	fprintf(fp, "0123abcd x.bin\n");
	fclose(fp);
	char err[512];
	struct cache_tree_config cfg = { .path = root, .file_key = test_key,
					 .crc32_file = "crc32.txt", .verify = true,
					 .rescan_min_ms = 1 };
	struct cache_tree *a = cache_tree_new(&cfg, NULL, err, sizeof(err));
	ck_assert_msg(a != NULL, "%s", err);
	struct cache_tree_meta_source src = { .fetch = stub_fetch };
	cache_tree_meta_set_source(a, &src);
	ck_assert_int_eq(cache_tree_meta_load(a), 0);
	struct cache_tree_share sh;
	ck_assert_int_eq(cache_tree_share_get(a, &sh), 0);
	ck_assert_uint_ne(sh.version, 0);
	ck_assert_uint_eq(cache_tree_meta_version(a), sh.version);

	char other[] = "/tmp/check_tree_b.XXXXXX";
	ck_assert_ptr_nonnull(mkdtemp(other));
	cfg.path = other;
	struct cache_tree *b = cache_tree_new(&cfg, NULL, err, sizeof(err));
	ck_assert_msg(b != NULL, "%s", err);
	cache_tree_meta_set_source(b, &src);
	ck_assert_int_eq(cache_tree_share_get(b, &(struct cache_tree_share){ 0 }), -EAGAIN);
	ck_assert_int_eq(cache_tree_meta_import(b, sh.bytes, sh.len, sh.version, 1234), 0);
	ck_assert_uint_eq(cache_tree_meta_version(b), sh.version);
	ck_assert_uint_ge(cache_tree_meta_age_ms(b), 1234);
	struct cache_meta *m = cache_tree_meta(b);
	ck_assert_ptr_nonnull(m);
	int64_t i = cache_meta_find(m, "sub/w.bin");
	ck_assert_int_ge(i, 0);
	const struct stat *st = cache_meta_stat(m, (uint64_t)i);
	ck_assert_int_eq(st->st_size, 11);
	struct stat here;
	ck_assert_int_eq(stat(other, &here), 0);
	ck_assert_uint_eq(st->st_dev, here.st_dev); /* the importer's own identity */
	struct stat want = { 0 };
	cache_tree_identity(b, "sub/w.bin", &want);
	ck_assert_uint_eq(st->st_ino, want.st_ino);
	cache_meta_put(m);
	/* The importer shares the very bytes it took. */
	struct cache_tree_share sb;
	ck_assert_int_eq(cache_tree_share_get(b, &sb), 0);
	ck_assert_uint_eq(sb.len, sh.len);
	ck_assert(memcmp(sb.bytes, sh.bytes, sh.len) == 0);
	cache_tree_share_put(&sb);
	/* Damaged: refused, the snapshot in use stays. */
	uint8_t *bad = malloc(sh.len);
	memcpy(bad, sh.bytes, sh.len);
	bad[sh.len / 2] ^= 0xff;
	bad[0] ^= 1;
	ck_assert_int_eq(cache_tree_meta_import(b, bad, sh.len, 7, 0), -EPROTO);
	ck_assert_int_eq(cache_tree_meta_import(b, sh.bytes, sh.len - 1, 7, 0), -EPROTO);
	ck_assert_uint_eq(cache_tree_meta_version(b), sh.version);
	free(bad);
	cache_tree_free(b);
	/* Another crc32_file: refused. */
	cfg.crc32_file = "other.txt";
	b = cache_tree_new(&cfg, NULL, err, sizeof(err));
	ck_assert_ptr_nonnull(b);
	cache_tree_meta_set_source(b, &src);
	ck_assert_int_eq(cache_tree_meta_import(b, sh.bytes, sh.len, sh.version, 0), -EINVAL);
	cache_tree_free(b);
	cache_tree_share_put(&sh);
	cache_tree_free(a);
	rmdir(other);
}
END_TEST

static Suite *tree_suite(void)
{
	Suite *s = suite_create("tree");
	TCase *tc = tcase_create("core");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 30);
	tcase_add_test(tc, test_walk_files_only);
	tcase_add_test(tc, test_open_never_blocks);
	tcase_add_test(tc, test_walk_depth_cap);
	tcase_add_test(tc, test_key_index);
	tcase_add_test(tc, test_pool_bounded);
	tcase_add_test(tc, test_meta_snapshot);
	tcase_add_test(tc, test_meta_holder);
	tcase_add_test(tc, test_open_key);
	tcase_add_test(tc, test_key_index_from_snapshot);
	tcase_add_test(tc, test_versions_from_memory);
	tcase_add_test(tc, test_meta_wire);
	tcase_add_test(tc, test_meta_share_import);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	log_set_level(LOG_ERR);
	SRunner *sr = srunner_create(tree_suite());
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
