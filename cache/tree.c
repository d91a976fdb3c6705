#include "cache/tree.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/vfs.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "cache/chunkmap.h"
#include "cache/fdpool.h"
#include "cache/manifest.h"
#include "cache/meta.h"
#include "common/deadline.h"
#include "common/hash.h"
#include "common/log.h"

#define KEYS_WAIT_MS 10000      /* a key miss waits this long at most for a walk underway */
#define FUSE_SUPER_MAGIC 0x65735546
#define META_STOP_WAIT_MS 500   /* unmount waits this long for the metadata thread */

struct key_slot {
	uint64_t key;
	char *relpath;          /* NULL: empty slot */
};

struct key_table {
	struct key_slot *v;
	size_t cap;             /* a power of two, or 0 */
	size_t n;
};

/* A snapshot's shared form (cache_tree_share), reference-counted, immutable. */
struct tree_share {
	_Atomic unsigned refs;
	uint64_t version;
	size_t len;
	uint8_t bytes[];
};

/* A sidecar's text as the lister last read it, with the size and mtime it had. */
struct share_text {
	char *text;
	size_t len;
	off_t size;
	struct timespec mtime;
};

#define ORDER_PREDS 8 /* predictions remembered: a window may run on through several files */

struct cache_tree {
	struct cache_tree_config cfg;   /* constant; strings below are copies */
	char *path;
	char *crc32_file;
	int root_fd;
	bool ino_unstable;              /* a FUSE backing: see cache_tree_identity() */
	struct cache *cache;

	/* The order readers follow (cache_tree_next_file's @by_links), learnt from which of the
	 * two predictions for a file a sequential reader started on. A leaf lock. */
	pthread_mutex_t order_lock;
	bool order_by_dir;              /* readers take the directory's order; order_lock */
	uint64_t pred[ORDER_PREDS][2];  /* recent [by link, by dir] hashes where they differ,
					 * a ring; protected by order_lock */
	unsigned npred;                 /* protected by order_lock */
	pthread_mutex_t keys_lock;
	struct key_table keys;          /* protected by keys_lock */
	uint64_t keys_scanned_ns;       /* protected by keys_lock */
	bool keys_walking;              /* a thread walks for keys; protected by keys_lock */
	uint64_t keys_gen;              /* the snapshot the table is from, 0 = a walk or none;
					 * protected by keys_lock */
	pthread_cond_t keys_cond;       /* the walk ended */

	pthread_mutex_t manifest_lock;
	struct cache_manifest *manifest; /* protected by manifest_lock */
	struct timespec manifest_mtime;  /* protected by manifest_lock */
	bool manifest_present;           /* protected by manifest_lock */

	pthread_mutex_t meta_lock;
	struct cache_meta *meta;        /* protected by meta_lock */
	uint64_t meta_gen;              /* snapshots installed; protected by meta_lock */
	uint64_t meta_asked, meta_served; /* refresh requests; protected by meta_lock */
	int meta_err;                   /* the last refresh's result; protected by meta_lock */
	bool meta_failing;              /* logged that refreshes fail; protected by meta_lock */
	bool meta_stop;                 /* protected by meta_lock */
	bool meta_running;              /* the thread exists; protected by meta_lock */
	uint64_t meta_kicked_ns;        /* last cache_tree_meta_kick(); protected by meta_lock */
	bool meta_kick_pending;         /* a kick not yet served; protected by meta_lock */
	unsigned meta_ttl_ms;
	pthread_cond_t meta_wake;       /* to the metadata thread */
	pthread_cond_t meta_done;       /* from it: a refresh ended */
	pthread_t meta_thread;

	struct cache_fdpool *pool;      /* read descriptors for fills */

	/* Shared snapshots (cache_tree_meta_set_source): set before threads, then read-only. */
	struct cache_tree_meta_source src;
	bool has_src;
	bool ino_by_path;               /* identity by relpath on any backing */
	bool src_off;                   /* our backing disagrees with the cluster's snapshot:
					 * list it ourselves from now on; metadata thread only */
	dev_t root_dev;
	struct tree_share *share;       /* the snapshot's shared form; protected by meta_lock */
	uint64_t meta_listed_ns;        /* mono_ns() of its listing; protected by meta_lock */
	struct share_text texts[2];     /* crc32.txt, crc32.chunks as last read; meta thread */
};

static struct cache_meta *meta_get_gen(struct cache_tree *t, uint64_t *gen, bool *running);

static int64_t mtime_ns_of(const struct stat *st)
{
	return (int64_t)st->st_mtim.tv_sec * 1000000000 + st->st_mtim.tv_nsec;
}

/* ---- descriptor exhaustion ---- */

void cache_tree_note_nofile(int err, const char *what)
{
	static _Atomic uint64_t last_ns;
	log_nofile(&last_ns, err, what);
}

/* ---- the confined open ---- */

static int open_beneath(int rootfd, const char *relpath, int flags)
{
	struct open_how how = {
		.flags = (uint64_t)(flags | O_NOFOLLOW | O_CLOEXEC),
		.resolve = RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS,
	};
	int fd = (int)syscall(SYS_openat2, rootfd, *relpath ? relpath : ".", &how, sizeof(how));
	return fd < 0 ? -errno : fd;
}

/* Opens for reading the very inode @pathfd (O_PATH, a regular file) refers to. */
static int reopen_read(int rootfd, int pathfd, const char *relpath, const struct stat *st)
{
	char proc[64];
	snprintf(proc, sizeof(proc), "/proc/self/fd/%d", pathfd);
	int fd = open(proc, O_RDONLY | O_CLOEXEC);
	if (fd >= 0 || errno != ENOENT)
		return fd < 0 ? -errno : fd;
	/* No /proc: open the name again without blocking and check it is the same inode. */
	struct stat again;
	fd = open_beneath(rootfd, relpath, O_RDONLY | O_NONBLOCK);
	if (fd < 0)
		return fd;
	if (fstat(fd, &again) < 0 || again.st_dev != st->st_dev || again.st_ino != st->st_ino ||
	    fcntl(fd, F_SETFL, 0) < 0) {
		close(fd);
		return -ESTALE;
	}
	return fd;
}

void cache_tree_identity(const struct cache_tree *t, const char *relpath, struct stat *st)
{
	if (t->ino_unstable || t->ino_by_path)
		st->st_ino = (ino_t)(fmix64(fnv1a64(FNV64_BASIS, relpath, strlen(relpath))) | 1);
	if (t->ino_by_path)
		st->st_dev = t->root_dev;
}

int cache_tree_open(struct cache_tree *t, const char *relpath, enum cache_tree_open_mode mode,
		    struct stat *st)
{
	struct stat tmp;
	if (!st)
		st = &tmp;
	int flags = mode == CACHE_TREE_DIR ? O_RDONLY | O_DIRECTORY | O_NONBLOCK : O_PATH;
	int fd = open_beneath(t->root_fd, relpath, flags);
	if (fd < 0) {
		cache_tree_note_nofile(fd, "a backing file");
		return fd;
	}
	if (fstat(fd, st) < 0) {
		int err = -errno;
		close(fd);
		return err;
	}
	if (mode != CACHE_TREE_READ) {
		cache_tree_identity(t, relpath, st);
		return fd;
	}
	if (!S_ISREG(st->st_mode)) {
		close(fd);
		return -EINVAL; /* never opened for reading: a FIFO would block right here */
	}
	int rfd = reopen_read(t->root_fd, fd, relpath, st);
	close(fd);
	cache_tree_note_nofile(rfd, "a backing file");
	cache_tree_identity(t, relpath, st);
	return rfd;
}

int cache_tree_stat(struct cache_tree *t, const char *relpath, struct stat *st)
{
	int fd = cache_tree_open(t, relpath, CACHE_TREE_PATH, st);
	if (fd < 0)
		return fd;
	close(fd);
	return 0;
}

ssize_t cache_tree_readlink(struct cache_tree *t, const char *relpath, char *buf, size_t len)
{
	int fd = cache_tree_open(t, relpath, CACHE_TREE_PATH, NULL);
	if (fd < 0)
		return fd;
	ssize_t n = readlinkat(fd, "", buf, len - 1);
	int err = errno;
	close(fd);
	if (n < 0)
		return -err;
	buf[n] = '\0';
	return n;
}

const char *cache_tree_kind(mode_t mode)
{
	switch (mode & S_IFMT) {
	case S_IFREG: return "a regular file";
	case S_IFDIR: return "a directory";
	case S_IFLNK: return "a symbolic link";
	case S_IFIFO: return "a FIFO";
	case S_IFSOCK: return "a socket";
	case S_IFCHR: return "a character device";
	case S_IFBLK: return "a block device";
	default: return "of an unknown type";
	}
}

int cache_tree_root_fd(const struct cache_tree *t)
{
	return t->root_fd;
}

struct cache *cache_tree_cache(const struct cache_tree *t)
{
	return t->cache;
}

/* ---- the walk ---- */

struct walk_item {
	char *relpath;
	unsigned depth;         /* directories: levels below the walk's start */
	struct stat st;         /* files */
};

struct walk_list {
	struct walk_item *v;
	size_t n, cap;
};

struct walk {
	struct cache_tree *t;
	const char *top;
	cache_tree_fn fn;
	void *arg;
	struct walk_list dirs;  /* the stack of directories still to read */
	unsigned skipped_special, skipped_deep, skipped_unreadable;
};

static int list_push(struct walk_list *l, char *relpath, unsigned depth, const struct stat *st)
{
	if (l->n == l->cap) {
		size_t cap = l->cap ? 2 * l->cap : 16;
		struct walk_item *v = realloc(l->v, cap * sizeof(*v));
		if (!v)
			return -ENOMEM;
		l->v = v;
		l->cap = cap;
	}
	l->v[l->n] = (struct walk_item){ .relpath = relpath, .depth = depth };
	if (st)
		l->v[l->n].st = *st;
	l->n++;
	return 0;
}

static void list_release(struct walk_list *l, size_t from)
{
	for (size_t i = from; i < l->n; i++)
		free(l->v[i].relpath);
	l->n = from;
}

static char *join(const char *dir, const char *name)
{
	char *p;
	if (asprintf(&p, "%s%s%s", dir, *dir ? "/" : "", name) < 0)
		return NULL;
	return p;
}

/* Logs a skipped entry: the first of each kind at @level, the rest at debug. */
static void walk_skip(struct walk *w, unsigned *count, int level, const char *relpath,
		      const char *why)
{
	int n = (int)strlen(relpath);
	log_msg((*count)++ ? LOG_DEBUG : level, "walk of '%s': skipping '%.*s%s' (%s)",
		*w->top ? w->top : ".", n > 200 ? 200 : n, relpath, n > 200 ? "..." : "", why);
}

/* Sorts one entry of a directory at @depth into @files or the walk's stack. */
static int walk_entry(struct walk *w, int dfd, const char *dir, unsigned depth,
		      const char *name, struct walk_list *files)
{
	struct stat st;
	if (fstatat(dfd, name, &st, AT_SYMLINK_NOFOLLOW) < 0)
		return 0; /* gone since readdir */
	if (S_ISLNK(st.st_mode))
		return 0; /* links are never followed: nothing to say */
	char *child = join(dir, name);
	if (!child)
		return -ENOMEM;
	cache_tree_identity(w->t, child, &st);
	int rc = 0;
	char why[96];
	if (S_ISREG(st.st_mode)) {
		rc = list_push(files, child, 0, &st);
	} else if (S_ISDIR(st.st_mode) && depth + 1 > w->t->cfg.depth_max) {
		snprintf(why, sizeof(why), "a directory %u levels down; the walk stops at %u",
			 depth + 1, w->t->cfg.depth_max);
		walk_skip(w, &w->skipped_deep, LOG_WARNING, child, why);
		free(child);
	} else if (S_ISDIR(st.st_mode)) {
		rc = list_push(&w->dirs, child, depth + 1, NULL);
	} else {
		snprintf(why, sizeof(why), "%s, not a regular file", cache_tree_kind(st.st_mode));
		walk_skip(w, &w->skipped_special, LOG_INFO, child, why);
		free(child);
	}
	if (rc)
		free(child);
	return rc;
}

/* Reads directory @d into @files (its regular files) and the stack (its directories). */
static int walk_read_dir(struct walk *w, const struct walk_item *d, struct walk_list *files)
{
	int fd = open_beneath(w->t->root_fd, d->relpath, O_RDONLY | O_DIRECTORY | O_NONBLOCK);
	DIR *dp = fd < 0 ? NULL : fdopendir(fd);
	if (!dp) {
		int err = fd < 0 ? -fd : errno;
		if (fd >= 0)
			close(fd);
		cache_tree_note_nofile(-err, "a backing directory");
		char why[96];
		snprintf(why, sizeof(why), "cannot read the directory: %s", strerror(err));
		walk_skip(w, &w->skipped_unreadable, LOG_WARNING, d->relpath, why);
		return d->depth == 0 ? -err : 0;
	}
	size_t first_dir = w->dirs.n;
	int rc = 0;
	struct dirent *de;
	while (rc == 0 && (de = readdir(dp)))
		if (strcmp(de->d_name, ".") && strcmp(de->d_name, ".."))
			rc = walk_entry(w, dirfd(dp), d->relpath, d->depth, de->d_name, files);
	closedir(dp);
	/* Popped in the order readdir gave them. */
	for (size_t i = first_dir, j = w->dirs.n; rc == 0 && i + 1 < j; i++, j--) {
		struct walk_item tmp = w->dirs.v[i];
		w->dirs.v[i] = w->dirs.v[j - 1];
		w->dirs.v[j - 1] = tmp;
	}
	return rc;
}

/* Calls the walk's function for each of @files; no descriptor of the walk is open. */
static int walk_files(struct walk *w, struct walk_list *files)
{
	int rc = 0;
	for (size_t i = 0; rc == 0 && i < files->n; i++)
		rc = w->fn(w->arg, files->v[i].relpath, &files->v[i].st);
	list_release(files, 0);
	return rc;
}

static int walk_tree(struct walk *w)
{
	struct walk_list files = { 0 };
	int rc = 0;
	while (rc == 0 && w->dirs.n) {
		struct walk_item d = w->dirs.v[--w->dirs.n];
		rc = walk_read_dir(w, &d, &files);
		free(d.relpath);
		if (rc == 0)
			rc = walk_files(w, &files);
		else
			list_release(&files, 0);
	}
	list_release(&w->dirs, 0);
	free(w->dirs.v);
	free(files.v);
	if (w->skipped_special + w->skipped_deep + w->skipped_unreadable > 1)
		log_info("walk of '%s': skipped %u special files, %u directories past the depth "
			 "cap, %u unreadable directories", *w->top ? w->top : ".",
			 w->skipped_special, w->skipped_deep, w->skipped_unreadable);
	return rc;
}

int cache_tree_walk(struct cache_tree *t, const char *relpath, cache_tree_fn fn, void *arg)
{
	struct stat st;
	int rc = cache_tree_stat(t, relpath, &st);
	if (rc)
		return rc;
	if (S_ISREG(st.st_mode))
		return fn(arg, relpath, &st);
	if (!S_ISDIR(st.st_mode))
		return -EINVAL;
	struct walk w = { .t = t, .top = relpath, .fn = fn, .arg = arg };
	char *top = strdup(relpath);
	if (!top || list_push(&w.dirs, top, 0, NULL)) {
		free(top);
		return -ENOMEM;
	}
	return walk_tree(&w);
}

/* ---- the key index ---- */

static void keys_release(struct key_table *kt)
{
	for (size_t i = 0; i < kt->cap; i++)
		free(kt->v[i].relpath);
	free(kt->v);
	*kt = (struct key_table){ 0 };
}

static struct key_slot *keys_slot(const struct key_table *kt, uint64_t key)
{
	size_t mask = kt->cap - 1;
	for (size_t i = fmix64(key) & mask;; i = (i + 1) & mask)
		if (!kt->v[i].relpath || kt->v[i].key == key)
			return &kt->v[i];
}

static int keys_grow(struct key_table *kt)
{
	struct key_table big = { .cap = kt->cap ? 2 * kt->cap : 256, .n = kt->n };
	big.v = calloc(big.cap, sizeof(*big.v));
	if (!big.v)
		return -ENOMEM;
	for (size_t i = 0; i < kt->cap; i++)
		if (kt->v[i].relpath)
			*keys_slot(&big, kt->v[i].key) = kt->v[i];
	free(kt->v);
	*kt = big;
	return 0;
}

/* Adds @key -> a copy of @relpath; a key already present keeps its first file. */
static int keys_add(struct key_table *kt, uint64_t key, const char *relpath)
{
	if (2 * (kt->n + 1) > kt->cap && keys_grow(kt))
		return -ENOMEM;
	struct key_slot *s = keys_slot(kt, key);
	if (s->relpath)
		return 0;
	s->relpath = strdup(relpath);
	if (!s->relpath)
		return -ENOMEM;
	s->key = key;
	kt->n++;
	return 0;
}

static int add_key(void *arg, const char *relpath, const struct stat *st)
{
	struct cache_tree *t = ((void **)arg)[0];
	struct key_table *kt = ((void **)arg)[1];
	return keys_add(kt, t->cfg.file_key(relpath, (uint64_t)st->st_size, mtime_ns_of(st)),
			relpath);
}

/* keys_lock held. */
static char *do_find_key(struct cache_tree *t, uint64_t key)
{
	if (!t->keys.cap)
		return NULL;
	struct key_slot *s = keys_slot(&t->keys, key);
	return s->relpath ? strdup(s->relpath) : NULL;
}

/* Fills @kt with the regular files of snapshot @m. 0 or -ENOMEM. */
static int keys_from_meta(struct key_table *kt, struct cache_tree *t, struct cache_meta *m)
{
	int rc = 0;
	for (uint64_t i = 1; i < cache_meta_count(m) && rc == 0; i++) {
		const struct stat *st = cache_meta_stat(m, i);
		if (!S_ISREG(st->st_mode))
			continue;
		char *relpath = cache_meta_relpath(m, i);
		rc = relpath ? keys_add(kt, t->cfg.file_key(relpath, (uint64_t)st->st_size,
							      mtime_ns_of(st)), relpath)
			     : -ENOMEM;
		free(relpath);
	}
	return rc;
}

/* Rebuilds the table from the current snapshot when that is newer. Memory only. */
static void keys_sync(struct cache_tree *t)
{
	uint64_t gen;
	struct cache_meta *m = meta_get_gen(t, &gen, NULL);
	if (!m)
		return;
	pthread_mutex_lock(&t->keys_lock);
	bool stale = gen > t->keys_gen;
	pthread_mutex_unlock(&t->keys_lock);
	struct key_table fresh = { 0 };
	if (stale && keys_from_meta(&fresh, t, m) == 0) {
		pthread_mutex_lock(&t->keys_lock);
		if (gen > t->keys_gen) {
			struct key_table old = t->keys;
			t->keys = fresh;
			t->keys_gen = gen;
			fresh = old;
		}
		pthread_mutex_unlock(&t->keys_lock);
	}
	keys_release(&fresh);
	cache_meta_put(m);
}

/* Waits (at most @wait_ms) until there is a snapshot. */
static void meta_wait_first(struct cache_tree *t, unsigned wait_ms)
{
	struct deadline dl = deadline_in_ms(wait_ms);
	pthread_mutex_lock(&t->meta_lock);
	while (!t->meta && deadline_cond_wait(&t->meta_done, &t->meta_lock, &dl) == 0)
		;
	pthread_mutex_unlock(&t->meta_lock);
}

/*
 * Finds files new since the table was built, and installs the result. Called by the one
 * thread that set keys_walking. With the metadata thread running that thread lists the
 * tree (a serving thread waits for it, bounded, and never walks the backing itself);
 * without it (tools, tests) this thread walks.
 */
static void keys_rescan(struct cache_tree *t)
{
	bool thread;
	cache_meta_put(meta_get_gen(t, NULL, &thread));
	bool running = thread || t->has_src; /* never a walk of our own while peers list */
	struct key_table fresh = { 0 };
	int rc = 0;
	if (running) {
		if (thread)
			cache_tree_meta_refresh(t, KEYS_WAIT_MS);
		else
			meta_wait_first(t, KEYS_WAIT_MS); /* the mount's snapshot is on its way */
		keys_sync(t);
	} else {
		void *arg[2] = { t, &fresh };
		rc = cache_tree_walk(t, "", add_key, arg);
		if (rc)
			log_warn("walking the backing tree for file keys: %s", strerror(-rc));
	}
	pthread_mutex_lock(&t->keys_lock);
	if (!running && rc == 0) {
		struct key_table old = t->keys;
		t->keys = fresh;
		fresh = old;
	}
	t->keys_walking = false;
	t->keys_scanned_ns = mono_ns();
	pthread_cond_broadcast(&t->keys_cond);
	pthread_mutex_unlock(&t->keys_lock);
	keys_release(&fresh);
}

char *cache_tree_key_path(struct cache_tree *t, uint64_t key)
{
	struct deadline dl = deadline_in_ms(KEYS_WAIT_MS);
	for (int pass = 0; pass < 2; pass++) {
		keys_sync(t);
		pthread_mutex_lock(&t->keys_lock);
		char *found = do_find_key(t, key);
		while (!found && t->keys_walking &&
		       deadline_cond_wait(&t->keys_cond, &t->keys_lock, &dl) == 0)
			found = do_find_key(t, key);
		bool rescan = !found && !t->keys_walking && pass == 0 &&
			      (!t->keys_scanned_ns || mono_ns() - t->keys_scanned_ns >=
						      t->cfg.rescan_min_ms * 1000000ull);
		if (rescan)
			t->keys_walking = true;
		pthread_mutex_unlock(&t->keys_lock);
		if (found || !rescan)
			return found;
		keys_rescan(t);
	}
	return NULL;
}

struct cache_file *cache_tree_open_key(void *ctx, uint64_t key, uint64_t size,
				       int64_t mtime_ns)
{
	struct cache_tree *t = ctx;
	char *relpath = cache_tree_key_path(t, key);
	if (!relpath)
		return NULL;
	struct cache_file *f = cache_tree_version(t, relpath, 0, NULL);
	free(relpath);
	if (f && (cache_file_size(f) != size || cache_file_mtime_ns(f) != mtime_ns)) {
		cache_file_put(t->cache, f); /* the file changed since the peer saw it */
		f = NULL;
	}
	return f;
}

/* ---- the manifest ---- */

int cache_tree_manifest_refresh(struct cache_tree *t)
{
	if (!t->crc32_file)
		return 0;
	struct stat st;
	bool present = cache_tree_stat(t, t->crc32_file, &st) == 0;
	pthread_mutex_lock(&t->manifest_lock);
	bool same = present == t->manifest_present &&
		    (!present || (st.st_mtim.tv_sec == t->manifest_mtime.tv_sec &&
				  st.st_mtim.tv_nsec == t->manifest_mtime.tv_nsec));
	pthread_mutex_unlock(&t->manifest_lock);
	if (same)
		return 0;
	struct cache_manifest *fresh = NULL;
	if (present) {
		fresh = cache_manifest_load(t->root_fd, t->crc32_file);
		if (!fresh)
			log_warn("%s: cannot read the manifest: %s; files are not checked against it",
				 t->crc32_file, strerror(errno));
		else
			log_info("%s: %zu entries", t->crc32_file, cache_manifest_count(fresh));
	}
	pthread_mutex_lock(&t->manifest_lock);
	struct cache_manifest *old = t->manifest;
	t->manifest = fresh;
	t->manifest_present = present;
	if (present)
		t->manifest_mtime = st.st_mtim;
	pthread_mutex_unlock(&t->manifest_lock);
	cache_manifest_free(old);
	return 0;
}

int cache_tree_fd_get(struct cache_tree *t, struct cache_file *f)
{
	int fd = cache_fdpool_find(t->pool, f);
	if (fd >= 0)
		return fd;
	struct stat st;
	fd = cache_tree_open(t, cache_file_relpath(f), CACHE_TREE_READ, &st);
	if (fd < 0)
		return fd;
	if (!cache_file_same(f, st.st_dev, st.st_ino, (uint64_t)st.st_size, mtime_ns_of(&st))) {
		close(fd);
		return -ESTALE; /* another file at that path now */
	}
	if (t->cfg.random_access)
		posix_fadvise(fd, 0, 0, POSIX_FADV_RANDOM);
	return cache_fdpool_add(t->pool, f, fd, &st, 1);
}

void cache_tree_fd_put(struct cache_tree *t, int fd)
{
	cache_fdpool_put(t->pool, fd);
}

void cache_tree_pool_stats(struct cache_tree *t, unsigned *open, unsigned *max)
{
	cache_fdpool_stats(t->pool, open, max);
}

/* ---- versions ---- */

static bool same_identity(const struct stat *a, const struct stat *b)
{
	return a->st_dev == b->st_dev && a->st_ino == b->st_ino && a->st_size == b->st_size &&
	       mtime_ns_of(a) == mtime_ns_of(b);
}

/*
 * The attributes of the regular file @relpath from the snapshot, when the metadata thread
 * keeps one: 1 (found), or -errno (-EINVAL: not a regular file). 0: no snapshot to ask.
 */
static int snapshot_stat(struct cache_tree *t, const char *relpath, struct stat *st)
{
	bool running;
	struct cache_meta *m = meta_get_gen(t, NULL, &running);
	int rc = 0;
	if (m && running) {
		int64_t i = cache_meta_find(m, relpath);
		if (i >= 0)
			*st = *cache_meta_stat(m, (uint64_t)i);
		rc = i < 0 ? -ENOENT : S_ISREG(st->st_mode) ? 1 : -EINVAL;
	}
	cache_meta_put(m);
	return rc;
}

/*
 * Opens @relpath for reading to learn its identity (no snapshot: tools and tests), with the
 * manifest and crc32.chunks checked for changes first, as the metadata thread does.
 */
static int version_open(struct cache_tree *t, const char *relpath, struct stat *st)
{
	cache_chunkmap_refresh(t->cache, t->root_fd, t->crc32_file);
	if (t->cfg.verify)
		cache_tree_manifest_refresh(t);
	return cache_tree_open(t, relpath, CACHE_TREE_READ, st);
}

struct cache_file *cache_tree_version(struct cache_tree *t, const char *relpath,
				      uint64_t cookie, const struct stat *expect)
{
	struct stat st;
	/* From memory when there is a snapshot: the first fill opens the file (cache/fdpool.h),
	 * on a fill thread, so an open never waits on the store. */
	int fd = -1, rc = snapshot_stat(t, relpath, &st);
	if (rc == 0)
		rc = fd = version_open(t, relpath, &st);
	if (rc >= 0 && expect && !same_identity(expect, &st))
		rc = -ESTALE;
	if (rc < 0) {
		if (fd >= 0)
			close(fd);
		errno = -rc;
		return NULL;
	}
	struct cache_file_info info = {
		.relpath = relpath,
		.fd = -1, /* the tree's pool holds the descriptor, not the version */
		.dev = st.st_dev,
		.ino = st.st_ino,
		.size = (uint64_t)st.st_size,
		.mtime_ns = mtime_ns_of(&st),
		.cookie = cookie,
		.key = t->cfg.file_key(relpath, (uint64_t)st.st_size, mtime_ns_of(&st)),
	};
	if (t->cfg.verify) {
		pthread_mutex_lock(&t->manifest_lock);
		if (t->manifest)
			info.has_crc = cache_manifest_lookup(t->manifest, relpath, &info.crc);
		pthread_mutex_unlock(&t->manifest_lock);
	}
	/* With peers a node reads only the chunks it owns, scattered through the file: kernel
	 * readahead past them would fetch bytes nobody asked for over the storage link. Alone,
	 * fills are sequential and readahead overlaps the next one (20% faster locally). */
	if (fd >= 0 && t->cfg.random_access)
		posix_fadvise(fd, 0, 0, POSIX_FADV_RANDOM);
	bool replaced;
	struct cache_file *f = cache_file_open(t->cache, &info, &replaced);
	int err = errno;
	if (f && fd >= 0)
		cache_fdpool_add(t->pool, f, fd, &st, 0); /* the first fill finds it open */
	else if (fd >= 0)
		close(fd);
	errno = err;
	return f;
}

void cache_tree_fd_release(struct cache_tree *t, struct cache_file *f)
{
	cache_fdpool_drop(t->pool, f);
}

/* ---- the metadata snapshot ---- */

static void share_put(struct tree_share *sh)
{
	if (sh && atomic_fetch_sub(&sh->refs, 1) == 1)
		free(sh);
}

/* A new shared form holding a copy of @len bytes of @bytes (NULL: out of memory). */
static struct tree_share *share_new(const void *bytes, size_t len, uint64_t version)
{
	struct tree_share *sh = malloc(sizeof(*sh) + len);
	if (!sh)
		return NULL;
	atomic_init(&sh->refs, 1);
	sh->version = version;
	sh->len = len;
	memcpy(sh->bytes, bytes, len);
	return sh;
}

static uint64_t share_version(const void *bytes, size_t len)
{
	return fmix64(fnv1a64(FNV64_BASIS, bytes, len)) | 1; /* 0 means none */
}

/*
 * Installs @fresh (or records why there is none) for a refresh that served request @n;
 * @sh (taken over, may be NULL) is its shared form, listed @age_ms ago.
 */
static void meta_install(struct cache_tree *t, struct cache_meta *fresh, int err, uint64_t n,
			 uint64_t ns, struct tree_share *sh, uint64_t age_ms)
{
	pthread_mutex_lock(&t->meta_lock);
	struct cache_meta *old = NULL;
	struct tree_share *old_sh = NULL;
	if (fresh) {
		old = t->meta;
		t->meta = fresh;
		t->meta_gen++;
		old_sh = t->share;
		t->share = sh;
		sh = NULL;
		t->meta_listed_ns = mono_ns() - age_ms * 1000000ull;
		if (t->meta_failing)
			log_info("metadata: the backing tree can be listed again");
		t->meta_failing = false;
		log_debug("metadata: %zu entries in %.1f ms", cache_meta_count(fresh),
			  (double)ns / 1e6);
	} else if (!t->meta_failing && err) {
		t->meta_failing = true;
		log_warn("metadata: cannot list the backing tree '%s': %s; keeping the snapshot "
			 "taken before", t->path, strerror(-err));
	}
	t->meta_err = err;
	if (n > t->meta_served)
		t->meta_served = n;
	pthread_cond_broadcast(&t->meta_done);
	pthread_mutex_unlock(&t->meta_lock);
	cache_meta_put(old);
	share_put(old_sh);
	share_put(sh);
}

/* The text of sidecar @relpath as snapshot @m lists it: re-read only when it changed. */
static int share_text_read(struct cache_tree *t, struct cache_meta *m, const char *relpath,
			   struct share_text *st)
{
	int64_t i = relpath ? cache_meta_find(m, relpath) : -1;
	const struct stat *s = i >= 0 ? cache_meta_stat(m, (uint64_t)i) : NULL;
	if (!s || !S_ISREG(s->st_mode)) {
		free(st->text);
		*st = (struct share_text){ 0 };
		return 0;
	}
	if (st->text && st->size == s->st_size && st->mtime.tv_sec == s->st_mtim.tv_sec &&
	    st->mtime.tv_nsec == s->st_mtim.tv_nsec)
		return 0;
	char *text;
	size_t len;
	int rc = cache_manifest_read(t->root_fd, relpath, &text, &len);
	if (rc)
		return rc;
	free(st->text);
	*st = (struct share_text){ .text = text, .len = len, .size = s->st_size,
				   .mtime = s->st_mtim };
	return 0;
}

static void put32(uint8_t *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (uint8_t)(v >> (24 - 8 * i));
}

static uint32_t get32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

#define SHARE_MAGIC 0x4d575348u
#define SHARE_HDR_LEN 24

/* The shared form of @m and the sidecars (read here when they changed), or NULL. */
static struct tree_share *share_build(struct cache_tree *t, struct cache_meta *m)
{
	char *chunks = t->crc32_file ? cache_chunkmap_name(t->crc32_file) : NULL;
	uint8_t *tree = NULL;
	size_t tlen = 0, nlen = t->crc32_file ? strlen(t->crc32_file) : 0;
	struct tree_share *sh = NULL;
	int rc = share_text_read(t, m, t->crc32_file, &t->texts[0]);
	if (rc == 0)
		rc = share_text_read(t, m, chunks, &t->texts[1]);
	if (rc == 0)
		rc = cache_meta_encode(m, &tree, &tlen);
	uint64_t total = SHARE_HDR_LEN + nlen + tlen + t->texts[0].len + t->texts[1].len;
	bool fits = total <= CACHE_TREE_SHARE_MAX && nlen < 65536;
	uint8_t *b = rc == 0 && fits ? malloc(total) : NULL;
	if (b) {
		put32(b, SHARE_MAGIC);
		put32(b + 4, 1u << 16 | (t->texts[0].text ? 1 : 0) | (t->texts[1].text ? 2 : 0));
		put32(b + 8, (uint32_t)nlen << 16);
		put32(b + 12, (uint32_t)tlen);
		put32(b + 16, (uint32_t)t->texts[0].len);
		put32(b + 20, (uint32_t)t->texts[1].len);
		uint8_t *p = b + SHARE_HDR_LEN;
		memcpy(p, t->crc32_file ? t->crc32_file : "", nlen);
		memcpy(p += nlen, tree, tlen);
		memcpy(p += tlen, t->texts[0].text ? t->texts[0].text : "", t->texts[0].len);
		memcpy(p += t->texts[0].len, t->texts[1].text ? t->texts[1].text : "",
		       t->texts[1].len);
		sh = share_new(b, total, share_version(b, total));
	}
	if (!sh)
		log_warn("metadata: cannot share the snapshot with peers: %s",
			 strerror(rc ? -rc : total > CACHE_TREE_SHARE_MAX ? EFBIG : ENOMEM));
	free(b);
	free(tree);
	free(chunks);
	return sh;
}

static int meta_take(struct cache_tree *t, uint64_t n)
{
	uint64_t t0 = mono_ns();
	struct cache_meta *fresh = cache_meta_build(t, t->cfg.depth_max);
	int err = fresh ? 0 : -errno;
	if (fresh) { /* versions opened from memory use what these hold */
		if (t->cache)
			cache_chunkmap_refresh(t->cache, t->root_fd, t->crc32_file);
		if (t->cfg.verify)
			cache_tree_manifest_refresh(t);
	}
	struct tree_share *sh = fresh && t->has_src ? share_build(t, fresh) : NULL;
	meta_install(t, fresh, err, n, mono_ns() - t0, sh, 0);
	return err;
}

int cache_tree_meta_load(struct cache_tree *t)
{
	return meta_take(t, 0);
}

/* Whether the snapshot in use is older than the ttl (or there is none). */
static bool meta_due(struct cache_tree *t)
{
	uint64_t age = cache_tree_meta_age_ms(t);
	return age == UINT64_MAX || age >= t->meta_ttl_ms;
}

/*
 * One refresh for request @n: from the source when it has the cluster's snapshot. @kicked:
 * a fill found its file changed; if the cluster's snapshot, listed again for it, is still
 * the one we had, this node's backing disagrees with the lister's (another store, copies
 * with other mtimes): it lists its own from now on, which is always right.
 */
static void meta_refresh_once(struct cache_tree *t, uint64_t n, bool forced, bool kicked)
{
	if (!t->has_src || t->src_off) {
		meta_take(t, n);
		return;
	}
	uint64_t was = cache_tree_meta_version(t);
	int rc = t->src.fetch(t->src.ctx, forced);
	if (rc == 1 && kicked && was && cache_tree_meta_version(t) == was) {
		log_warn("metadata: a file in this node's backing differs from the cluster's "
			 "snapshot, and listing again did not change that; this node lists its own "
			 "backing from now on (do all nodes mount the same store?)");
		t->src_off = true;
		rc = 0;
	}
	if (rc != 1 && (forced || meta_due(t))) {
		meta_take(t, n);
		return;
	}
	meta_install(t, NULL, 0, n, 0, NULL, 0); /* current: nothing to list */
}

static void *meta_main(void *arg)
{
	struct cache_tree *t = arg;
	unsigned wait_ms = t->has_src && t->meta_ttl_ms > CACHE_TREE_POLL_MS ? CACHE_TREE_POLL_MS
									 : t->meta_ttl_ms;
	pthread_mutex_lock(&t->meta_lock);
	while (!t->meta_stop) {
		struct deadline dl = deadline_in_ms(wait_ms);
		while (!t->meta_stop && t->meta_asked == t->meta_served &&
		       deadline_cond_wait(&t->meta_wake, &t->meta_lock, &dl) == 0)
			;
		if (t->meta_stop)
			break;
		uint64_t n = t->meta_asked;
		bool forced = n != t->meta_served, kicked = t->meta_kick_pending;
		t->meta_kick_pending = false;
		pthread_mutex_unlock(&t->meta_lock);
		meta_refresh_once(t, n, forced, kicked);
		pthread_mutex_lock(&t->meta_lock);
	}
	pthread_mutex_unlock(&t->meta_lock);
	return NULL;
}

void cache_tree_meta_set_source(struct cache_tree *t, const struct cache_tree_meta_source *src)
{
	t->src = *src;
	t->has_src = true;
	t->ino_by_path = true;
}

int cache_tree_share_get(struct cache_tree *t, struct cache_tree_share *out)
{
	pthread_mutex_lock(&t->meta_lock);
	struct tree_share *sh = t->share;
	if (sh) {
		atomic_fetch_add(&sh->refs, 1);
		*out = (struct cache_tree_share){ .bytes = sh->bytes, .len = sh->len,
						  .version = sh->version, .ref = sh };
		out->age_ms = (mono_ns() - t->meta_listed_ns) / 1000000;
	}
	pthread_mutex_unlock(&t->meta_lock);
	return sh ? 0 : -EAGAIN;
}

void cache_tree_share_put(struct cache_tree_share *s)
{
	share_put(s->ref);
	s->ref = NULL;
}

uint64_t cache_tree_meta_version(struct cache_tree *t)
{
	pthread_mutex_lock(&t->meta_lock);
	uint64_t v = t->share ? t->share->version : 0;
	pthread_mutex_unlock(&t->meta_lock);
	return v;
}

uint64_t cache_tree_meta_age_ms(struct cache_tree *t)
{
	pthread_mutex_lock(&t->meta_lock);
	uint64_t age = t->meta ? (mono_ns() - t->meta_listed_ns) / 1000000 : UINT64_MAX;
	pthread_mutex_unlock(&t->meta_lock);
	return age;
}

void cache_tree_meta_heard(struct cache_tree *t, uint64_t version, uint64_t age_ms)
{
	pthread_mutex_lock(&t->meta_lock);
	if (t->share && t->share->version == version)
		t->meta_listed_ns = mono_ns() - age_ms * 1000000ull;
	pthread_mutex_unlock(&t->meta_lock);
}

/* cache_meta_decode's @fix: the identity our own listing gives each node. */
static void import_fix(void *ctx, const char *relpath, struct stat *st)
{
	struct cache_tree *t = ctx;
	st->st_dev = t->root_dev;
	cache_tree_identity(t, relpath, st);
}

/* Installs a peer's crc32.txt text (@text NULL: none) as listed in @m. */
static void import_manifest(struct cache_tree *t, struct cache_meta *m, const char *text,
			    size_t len)
{
	if (!t->cfg.verify || !t->crc32_file)
		return;
	struct cache_manifest *fresh = text ? cache_manifest_parse(text, len, t->crc32_file,
								   NULL) : NULL;
	int64_t i = cache_meta_find(m, t->crc32_file);
	pthread_mutex_lock(&t->manifest_lock);
	struct cache_manifest *old = t->manifest;
	t->manifest = fresh;
	t->manifest_present = text != NULL;
	if (i >= 0) /* so that a local refresh finds it unchanged */
		t->manifest_mtime = cache_meta_stat(m, (uint64_t)i)->st_mtim;
	pthread_mutex_unlock(&t->manifest_lock);
	cache_manifest_free(old);
}

int cache_tree_meta_import(struct cache_tree *t, const void *bytes, size_t len,
			   uint64_t version, uint64_t age_ms)
{
	const uint8_t *b = bytes;
	char why[128] = "a bad header";
	if (len < SHARE_HDR_LEN || len > CACHE_TREE_SHARE_MAX || get32(b) != SHARE_MAGIC ||
	    get32(b + 4) >> 16 != 1 || (get32(b + 4) & 0xfffc) || (get32(b + 8) & 0xffff))
		goto out_bad;
	uint32_t flags = get32(b + 4) & 3, nlen = get32(b + 8) >> 16, tlen = get32(b + 12);
	uint32_t mlen = get32(b + 16), clen = get32(b + 20);
	if ((uint64_t)SHARE_HDR_LEN + nlen + tlen + mlen + clen != len ||
	    (!(flags & 1) && mlen) || (!(flags & 2) && clen))
		goto out_bad;
	const char *name = (const char *)b + SHARE_HDR_LEN;
	const char *mine = t->crc32_file ? t->crc32_file : "";
	if (nlen != strlen(mine) || memcmp(name, mine, nlen)) {
		log_warn("metadata: a peer's snapshot comes with crc32_file '%.*s', ours is '%s'; "
			 "listing the backing here (set the same crc32_file on every node)",
			 (int)(nlen > 200 ? 200 : nlen), name, mine);
		return -EINVAL;
	}
	const uint8_t *tree = b + SHARE_HDR_LEN + nlen;
	struct cache_meta *m = cache_meta_decode(tree, tlen, import_fix, t, why, sizeof(why));
	if (!m)
		goto out_bad;
	struct tree_share *sh = share_new(bytes, len, version);
	if (!sh) {
		cache_meta_put(m);
		return -ENOMEM;
	}
	char *chunks = t->crc32_file ? cache_chunkmap_name(t->crc32_file) : NULL;
	const char *mtext = (const char *)tree + tlen, *ctext = mtext + mlen;
	if (t->cache && chunks)
		cache_chunkmap_set_text(t->cache, chunks, flags & 2 ? ctext : NULL, clen);
	free(chunks);
	import_manifest(t, m, flags & 1 ? mtext : NULL, mlen);
	meta_install(t, m, 0, 0, 0, sh, age_ms);
	return 0;

out_bad:
	log_warn("metadata: a peer's snapshot is malformed (%s); listing the backing here", why);
	return -EPROTO;
}

int cache_tree_meta_start(struct cache_tree *t, unsigned ttl_ms)
{
	pthread_mutex_lock(&t->meta_lock);
	int rc = 0;
	if (!t->meta_running) {
		t->meta_ttl_ms = ttl_ms ? ttl_ms : 300000;
		rc = pthread_create(&t->meta_thread, NULL, meta_main, t);
		t->meta_running = rc == 0;
	}
	pthread_mutex_unlock(&t->meta_lock);
	return -rc;
}

/* The current snapshot (a reference, or NULL), its generation and whether the thread runs. */
static struct cache_meta *meta_get_gen(struct cache_tree *t, uint64_t *gen, bool *running)
{
	pthread_mutex_lock(&t->meta_lock);
	struct cache_meta *m = t->meta;
	if (m)
		cache_meta_get(m);
	if (gen)
		*gen = t->meta_gen;
	if (running)
		*running = t->meta_running;
	pthread_mutex_unlock(&t->meta_lock);
	return m;
}

struct cache_meta *cache_tree_meta(struct cache_tree *t)
{
	pthread_mutex_lock(&t->meta_lock);
	struct cache_meta *m = t->meta;
	if (m)
		cache_meta_get(m);
	pthread_mutex_unlock(&t->meta_lock);
	return m;
}

int64_t cache_tree_meta_ask(struct cache_tree *t)
{
	pthread_mutex_lock(&t->meta_lock);
	int64_t want = -ESRCH;
	if (t->meta_running) {
		want = (int64_t)++t->meta_asked;
		pthread_cond_signal(&t->meta_wake);
	}
	pthread_mutex_unlock(&t->meta_lock);
	return want;
}

int cache_tree_meta_wait(struct cache_tree *t, int64_t ticket, int64_t wait_ms)
{
	if (ticket < 0)
		return (int)ticket;
	struct deadline dl = deadline_in_ms(wait_ms);
	pthread_mutex_lock(&t->meta_lock);
	while (t->meta_served < (uint64_t)ticket &&
	       deadline_cond_wait(&t->meta_done, &t->meta_lock, &dl) == 0)
		;
	int rc = t->meta_served >= (uint64_t)ticket ? t->meta_err : -ETIMEDOUT;
	pthread_mutex_unlock(&t->meta_lock);
	return rc;
}

int cache_tree_meta_refresh(struct cache_tree *t, int64_t wait_ms)
{
	return cache_tree_meta_wait(t, cache_tree_meta_ask(t), wait_ms);
}

void cache_tree_meta_kick(struct cache_tree *t)
{
	pthread_mutex_lock(&t->meta_lock);
	uint64_t now = mono_ns();
	if (t->meta_running && t->meta_asked == t->meta_served &&
	    (!t->meta_kicked_ns || now - t->meta_kicked_ns >= t->cfg.rescan_min_ms * 1000000ull)) {
		t->meta_kicked_ns = now;
		t->meta_kick_pending = true;
		t->meta_asked++;
		pthread_cond_signal(&t->meta_wake);
	}
	pthread_mutex_unlock(&t->meta_lock);
}

/*
 * Stops the metadata thread. A thread stuck listing a stalled store is left behind after
 * META_STOP_WAIT_MS (unmount must not wait on the store): returns false, and the tree it
 * uses must then never be freed.
 */
static bool meta_stop(struct cache_tree *t)
{
	pthread_mutex_lock(&t->meta_lock);
	bool running = t->meta_running;
	t->meta_stop = true;
	pthread_cond_signal(&t->meta_wake);
	pthread_mutex_unlock(&t->meta_lock);
	if (running) {
		struct timespec until;
		clock_gettime(CLOCK_REALTIME, &until);
		until.tv_nsec += META_STOP_WAIT_MS * 1000000l;
		until.tv_sec += until.tv_nsec / 1000000000l;
		until.tv_nsec %= 1000000000l;
		if (pthread_timedjoin_np(t->meta_thread, NULL, &until)) {
			log_warn("metadata: the thread listing '%s' is stuck in the store; leaving it",
				 t->path);
			return false;
		}
	}
	cache_meta_put(t->meta);
	t->meta = NULL;
	return true;
}

/* ---- life ---- */

static unsigned default_max_open(void)
{
	struct rlimit rl;
	if (getrlimit(RLIMIT_NOFILE, &rl) < 0 || rl.rlim_cur == RLIM_INFINITY)
		return 256;
	rlim_t n = rl.rlim_cur / 8;
	return n < 4 ? 4 : n > 256 ? 256 : (unsigned)n;
}

/* ---- the order a reader reads files in (readahead past a file's end) ---- */

/*
 * @target, a symlink's in directory @dir ("" = the root), as a relpath beneath the root in
 * @out, by name alone. False when it is absolute, climbs above the root, or does not fit.
 */
static bool link_resolve(const char *dir, const char *target, char *out, size_t len)
{
	size_t n = strlen(dir);
	if (target[0] == '/' || n >= len)
		return false;
	memcpy(out, dir, n + 1);
	for (const char *p = target; *p;) {
		const char *slash = strchr(p, '/');
		size_t cl = slash ? (size_t)(slash - p) : strlen(p);
		if (cl == 2 && p[0] == '.' && p[1] == '.') {
			if (n == 0)
				return false;
			while (n > 0 && out[n - 1] != '/')
				n--;
			n -= n > 0; /* the '/' before the last component */
			out[n] = '\0';
		} else if (cl > 0 && !(cl == 1 && p[0] == '.')) {
			if (n + (n > 0) + cl + 1 > len)
				return false;
			if (n > 0)
				out[n++] = '/';
			memcpy(out + n, p, cl);
			n += cl;
			out[n] = '\0';
		}
		p += cl + (slash != NULL);
	}
	return n > 0;
}

/* The regular file that node @i (in directory @dir) stands for: itself, or a symlink's
 * target (one hop); -1 for anything else. */
static int64_t meta_regular(const struct cache_meta *m, const char *dir, uint64_t i)
{
	const struct stat *st = cache_meta_stat(m, i);
	if (S_ISREG(st->st_mode))
		return (int64_t)i;
	const char *target = cache_meta_target(m, i);
	char path[4096];
	if (!S_ISLNK(st->st_mode) || !target || !link_resolve(dir, target, path, sizeof(path)))
		return -1;
	int64_t j = cache_meta_find(m, path);
	return j > 0 && S_ISREG(cache_meta_stat(m, (uint64_t)j)->st_mode) ? j : -1;
}

/* Cuts @relpath (a new string) to its directory ("" for the root). */
static void cut_to_dir(char *relpath)
{
	char *slash = strrchr(relpath, '/');
	*(slash ? slash : relpath) = '\0';
}

/* The node a reader named file @i (@relpath) by: the first symlink that points at it (a
 * Hugging Face snapshot names blobs so), else @i itself. */
static int64_t meta_entry(const struct cache_meta *m, const char *relpath, int64_t i)
{
	const char *base = strrchr(relpath, '/');
	base = base ? base + 1 : relpath;
	for (uint64_t j = 1; j < cache_meta_count(m); j++) {
		const char *target = cache_meta_target(m, j);
		if (!target || !S_ISLNK(cache_meta_stat(m, j)->st_mode))
			continue;
		const char *tb = strrchr(target, '/');
		if (strcmp(tb ? tb + 1 : target, base))
			continue;
		char *dir = cache_meta_relpath(m, j);
		if (!dir)
			return i;
		cut_to_dir(dir);
		bool hit = meta_regular(m, dir, j) == i;
		free(dir);
		if (hit)
			return (int64_t)j;
	}
	return i;
}

char *cache_tree_next_file(const struct cache_meta *m, const char *relpath, bool by_links)
{
	int64_t i = cache_meta_find(m, relpath);
	if (i <= 0 || !S_ISREG(cache_meta_stat(m, (uint64_t)i)->st_mode))
		return NULL;
	int64_t e = by_links ? meta_entry(m, relpath, i) : i;
	char *dir = cache_meta_relpath(m, (uint64_t)e);
	if (!dir)
		return NULL;
	cut_to_dir(dir);
	int64_t d = cache_meta_find(m, dir);
	uint64_t first = 0, n = 0;
	if (d >= 0)
		cache_meta_children(m, (uint64_t)d, &first, &n);
	char *next = NULL;
	for (uint64_t k = (uint64_t)e + 1; k < first + n && !next; k++) {
		int64_t r = meta_regular(m, dir, k);
		if (r >= 0 && r != i && cache_meta_stat(m, (uint64_t)r)->st_size > 0)
			next = cache_meta_relpath(m, (uint64_t)r);
	}
	free(dir);
	return next;
}

static uint64_t path_hash(const char *relpath)
{
	return relpath ? fnv1a64(FNV64_BASIS, relpath, strlen(relpath)) | 1 : 0;
}

/* mows' own files (the manifest and its crc32.chunks) are no reader's next file. */
static bool is_sidecar(const struct cache_tree *t, const char *relpath)
{
	if (!t->crc32_file)
		return false;
	if (!strcmp(relpath, t->crc32_file))
		return true;
	char *chunks = cache_chunkmap_name(t->crc32_file);
	bool hit = chunks && !strcmp(relpath, chunks);
	free(chunks);
	return hit;
}

/* cache_tree_next_file() past the sidecars. */
static char *next_file(const struct cache_tree *t, const struct cache_meta *m,
		       const char *relpath, bool by_links)
{
	char *rel = cache_tree_next_file(m, relpath, by_links);
	for (int k = 0; k < 2 && rel && is_sidecar(t, rel); k++) {
		char *after = cache_tree_next_file(m, rel, by_links);
		free(rel);
		rel = after;
	}
	return rel && is_sidecar(t, rel) ? (free(rel), NULL) : rel;
}

/*
 * struct cache_next_ops.next: the next file by the snapshot, from memory. Where the two
 * orders differ (a file named by a symlink: a loader goes through the snapshot's links, a
 * `find | sort` through the blobs), both are remembered and the one readers took last wins.
 */
static struct cache_file *tree_next_version(void *ctx, struct cache_file *f)
{
	struct cache_tree *t = ctx;
	struct cache_meta *m = cache_tree_meta(t);
	if (!m)
		return NULL;
	char *by_link = next_file(t, m, cache_file_relpath(f), true);
	char *by_dir = next_file(t, m, cache_file_relpath(f), false);
	cache_meta_put(m);
	pthread_mutex_lock(&t->order_lock);
	if (by_link && by_dir && strcmp(by_link, by_dir)) {
		uint64_t *p = t->pred[t->npred++ % ORDER_PREDS];
		p[0] = path_hash(by_link);
		p[1] = path_hash(by_dir);
	}
	const char *rel = t->order_by_dir && by_dir ? by_dir : by_link;
	pthread_mutex_unlock(&t->order_lock);
	struct cache_file *nx = rel ? cache_tree_version(t, rel, 0, NULL) : NULL;
	free(by_link);
	free(by_dir);
	return nx;
}

/* struct cache_next_ops.started: which prediction the reader's next file matched. */
static void tree_next_started(void *ctx, struct cache_file *f)
{
	struct cache_tree *t = ctx;
	uint64_t h = path_hash(cache_file_relpath(f));
	pthread_mutex_lock(&t->order_lock);
	for (unsigned k = 0; k < ORDER_PREDS && k < t->npred; k++) {
		const uint64_t *p = t->pred[(t->npred - 1 - k) % ORDER_PREDS]; /* newest first */
		if (h == p[0] || h == p[1]) {
			t->order_by_dir = h == p[1];
			break;
		}
	}
	pthread_mutex_unlock(&t->order_lock);
}

struct cache_tree *cache_tree_new(const struct cache_tree_config *cfg, struct cache *c,
				  char *err, size_t errlen)
{
	struct cache_tree *t = calloc(1, sizeof(*t));
	if (!t) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	t->cfg = *cfg;
	t->cache = c;
	t->root_fd = -1;
	if (!t->cfg.max_open)
		t->cfg.max_open = default_max_open();
	if (!t->cfg.rescan_min_ms)
		t->cfg.rescan_min_ms = 1000;
	if (!t->cfg.depth_max)
		t->cfg.depth_max = CACHE_TREE_MAX_DEPTH;
	t->path = strdup(cfg->path);
	t->crc32_file = cfg->crc32_file && *cfg->crc32_file ? strdup(cfg->crc32_file) : NULL;
	t->pool = cache_fdpool_new(t->cfg.max_open);
	if (!t->path || !t->pool || (cfg->crc32_file && *cfg->crc32_file && !t->crc32_file)) {
		snprintf(err, errlen, "out of memory");
		goto out_free;
	}
	t->cfg.path = t->path;
	t->cfg.crc32_file = t->crc32_file;
	t->root_fd = open(t->path, O_PATH | O_DIRECTORY | O_CLOEXEC);
	if (t->root_fd < 0) {
		snprintf(err, errlen, "backing '%s': %s; set backing to the model directory",
			 t->path, strerror(errno));
		goto out_free;
	}
	struct stat rst;
	t->root_dev = fstat(t->root_fd, &rst) == 0 ? rst.st_dev : 0;
	struct statfs sfs;
	t->ino_unstable = fstatfs(t->root_fd, &sfs) == 0 && sfs.f_type == FUSE_SUPER_MAGIC;
	pthread_mutex_init(&t->keys_lock, NULL);
	pthread_mutex_init(&t->manifest_lock, NULL);
	pthread_mutex_init(&t->meta_lock, NULL);
	pthread_mutex_init(&t->order_lock, NULL);
	deadline_cond_init(&t->keys_cond);
	deadline_cond_init(&t->meta_wake);
	deadline_cond_init(&t->meta_done);
	/* No manifest read here: the first snapshot brings it (a listing reads it, a peer's
	 * copy carries it), and without one a version's open reads it (version_open). */
	if (c) /* tools that only walk have no cache */
		cache_set_next(c, &(struct cache_next_ops){ .next = tree_next_version,
							   .started = tree_next_started, .ctx = t });
	return t;

out_free:
	cache_fdpool_free(t->pool);
	free(t->crc32_file);
	free(t->path);
	free(t);
	return NULL;
}

void cache_tree_free(struct cache_tree *t)
{
	if (!t || !meta_stop(t))
		return; /* a stuck metadata thread still uses the tree: process exit reclaims it */
	keys_release(&t->keys);
	cache_manifest_free(t->manifest);
	share_put(t->share);
	free(t->texts[0].text);
	free(t->texts[1].text);
	close(t->root_fd);
	pthread_mutex_destroy(&t->keys_lock);
	pthread_mutex_destroy(&t->manifest_lock);
	pthread_cond_destroy(&t->keys_cond);
	pthread_mutex_destroy(&t->meta_lock);
	pthread_mutex_destroy(&t->order_lock);
	pthread_cond_destroy(&t->meta_wake);
	pthread_cond_destroy(&t->meta_done);
	cache_fdpool_free(t->pool);
	free(t->crc32_file);
	free(t->path);
	free(t);
}
