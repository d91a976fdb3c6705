#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <fuse_lowlevel.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/hash.h"
#include "common/log.h"
#include "cache/meta.h"
#include "fs/mows.h"

#define REFRESH_WAIT_MS 60000 /* mowsctl refresh waits this long for the walk */
#define REFRESH_SLICE_MS 200   /* and checks this often whether the mount has ended */

int64_t mows_mtime_ns(const struct stat *st)
{
	return (int64_t)st->st_mtim.tv_sec * 1000000000 + st->st_mtim.tv_nsec;
}

/*
 * The FUSE node id of an identity: a function of what the metadata snapshot says about the
 * object (device, inode number, type; size and mtime of a regular file), never a pointer, so
 * a serving process that replaces a dead one (fs/supervisor.c) gives every id the kernel
 * still holds the same meaning, and resolves one it never handed out by finding the object
 * in its own snapshot. 0 and FUSE_ROOT_ID are never produced.
 */
static uint64_t identity_nodeid(dev_t dev, ino_t ino, mode_t type, uint64_t size,
				int64_t mtime_ns)
{
	uint64_t h = fmix64((uint64_t)ino * 0x9e3779b97f4a7c15ull ^ (uint64_t)dev);
	h = fmix64(h ^ size * 0xbf58476d1ce4e5b9ull ^ (uint64_t)type);
	h = fmix64(h ^ (uint64_t)mtime_ns);
	return h <= FUSE_ROOT_ID ? h + 2 : h;
}

static unsigned inode_bucket(uint64_t nodeid)
{
	return (unsigned)(nodeid % MOWS_INODE_BUCKETS);
}

int mows_inodes_init(struct mows *m)
{
	struct stat st;
	if (fstat(cache_tree_root_fd(m->tree), &st) < 0)
		return -errno;
	cache_tree_identity(m->tree, "", &st);
	m->root.dev = st.st_dev;
	m->root.ino = st.st_ino;
	m->root.type = S_IFDIR;
	m->root.st = st;
	m->root.nlookup = 2;
	m->root.nodeid = FUSE_ROOT_ID;
	m->root.relpath = strdup("");
	pthread_mutex_init(&m->ino_lock, NULL);
	return m->root.relpath ? 0 : -ENOMEM;
}

static void inode_free(struct mows *m, struct mows_inode *in)
{
	cache_file_put(m->cache, in->file);
	free(in->relpath);
	free(in);
}

void mows_inodes_release(struct mows *m)
{
	for (unsigned b = 0; b < MOWS_INODE_BUCKETS; b++)
		while (m->inodes[b]) {
			struct mows_inode *in = m->inodes[b];
			m->inodes[b] = in->hnext;
			inode_free(m, in);
		}
	free(m->root.relpath);
	m->root.relpath = NULL;
}

int mows_meta_stat(struct mows *m, const char *relpath, struct stat *st)
{
	struct cache_meta *meta = cache_tree_meta(m->tree);
	if (!meta)
		return cache_tree_stat(m->tree, relpath, st);
	int64_t i = cache_meta_find(meta, relpath);
	if (i >= 0)
		*st = *cache_meta_stat(meta, (uint64_t)i);
	cache_meta_put(meta);
	return i >= 0 ? 0 : -ENOENT;
}

/*
 * Whether this mount has ended: its FUSE device is closed, or reports an error once the
 * kernel dropped the mount (libfuse resets its own "exited" flag when the loop ends).
 */
static bool mount_gone(struct mows *m)
{
	struct pollfd p = { .fd = fuse_session_fd(m->se), .events = POLLIN };
	if (p.fd < 0) /* fuse_session_unmount() closed it */
		return true;
	return poll(&p, 1, 0) > 0 && (p.revents & (POLLERR | POLLHUP | POLLNVAL));
}

int mows_refresh(struct mows *m, FILE *out)
{
	uint64_t t0 = mono_ns();
	struct deadline dl = deadline_in_ms(REFRESH_WAIT_MS);
	int64_t ticket = cache_tree_meta_ask(m->tree);
	int rc;
	/* In slices: an unmount must not wait for a listing stuck in a stalled store. */
	while ((rc = cache_tree_meta_wait(m->tree, ticket, REFRESH_SLICE_MS)) == -ETIMEDOUT &&
	       !deadline_passed(&dl) && !mount_gone(m))
		;
	if (rc) {
		fprintf(out, "! refresh of %s: %s%s\n", m->backing, strerror(-rc),
			rc == -ETIMEDOUT ? " (still running; the old snapshot serves until it ends)"
					 : " (the old snapshot stays)");
		return 1;
	}
	struct cache_meta *meta = cache_tree_meta(m->tree);
	fprintf(out, ". refreshed %s: %zu entries in %.1f ms\n", m->backing,
		meta ? cache_meta_count(meta) : 0, (double)(mono_ns() - t0) / 1e6);
	cache_meta_put(meta);
	return 0;
}

/* The inode with @nodeid in the table, or NULL. ino_lock held. */
static struct mows_inode *do_inode_find(struct mows *m, uint64_t nodeid)
{
	for (struct mows_inode *in = m->inodes[inode_bucket(nodeid)]; in; in = in->hnext)
		if (in->nodeid == nodeid)
			return in;
	return NULL;
}

struct mows_inode *mows_inode_find(struct mows *m, uint64_t nodeid)
{
	if (nodeid == FUSE_ROOT_ID)
		return &m->root;
	pthread_mutex_lock(&m->ino_lock);
	struct mows_inode *in = do_inode_find(m, nodeid);
	pthread_mutex_unlock(&m->ino_lock);
	return in;
}

static char *join_relpath(const char *dir, const char *name)
{
	char *p;
	if (asprintf(&p, "%s%s%s", dir, *dir ? "/" : "", name) < 0)
		return NULL;
	return p;
}

static bool same_identity(const struct mows_inode *a, const struct mows_inode *b)
{
	return a->dev == b->dev && a->ino == b->ino && a->size == b->size &&
	       a->mtime_ns == b->mtime_ns && a->type == b->type;
}

/*
 * Finds the inode for this identity, or adds @fresh. Returns the one to use, or NULL when
 * another identity has the same node id (a 64-bit hash collision: refused, never confused).
 * ino_lock held.
 */
static struct mows_inode *do_inode_insert(struct mows *m, struct mows_inode *fresh)
{
	struct mows_inode *in = do_inode_find(m, fresh->nodeid);
	if (in)
		return same_identity(in, fresh) ? in : NULL;
	unsigned b = inode_bucket(fresh->nodeid);
	fresh->hnext = m->inodes[b];
	m->inodes[b] = fresh;
	mows_opens_adopt(m, fresh);
	return fresh;
}

/* Fills @fresh's identity and attributes from the snapshot's @st. */
static void inode_set_identity(struct mows_inode *fresh, const struct stat *st)
{
	fresh->st = *st;
	fresh->dev = st->st_dev;
	fresh->ino = st->st_ino;
	fresh->type = st->st_mode & S_IFMT;
	if (S_ISREG(st->st_mode)) {
		fresh->size = (uint64_t)st->st_size;
		fresh->mtime_ns = mows_mtime_ns(st);
	}
	fresh->nodeid = identity_nodeid(fresh->dev, fresh->ino, fresh->type, fresh->size,
					fresh->mtime_ns);
	fresh->backing_id = -1;
	mows_present_stat(&fresh->st);
}

/*
 * Adds @fresh (or finds its twin) with @n more lookups. Returns the inode to use, or NULL
 * (errno EIO) on a node id collision; @fresh is consumed either way.
 */
static struct mows_inode *inode_insert(struct mows *m, struct mows_inode *fresh, uint64_t n)
{
	pthread_mutex_lock(&m->ino_lock);
	struct mows_inode *in = do_inode_insert(m, fresh);
	if (in && n == MOWS_NLOOKUP_UNKNOWN) /* never forgotten; two resolutions add nothing */
		in->nlookup = in->nlookup > n ? in->nlookup : n;
	else if (in)
		in->nlookup += n;
	pthread_mutex_unlock(&m->ino_lock);
	if (in == fresh) {
		if (in->pins_owed)
			mows_pt_adopt_pins(m, in);
		return in;
	}
	if (in)
		in->st = fresh->st; /* newest attributes of the same identity */
	else
		log_err("node id %016llx: two objects share it (%s); the second gives EIO",
			(unsigned long long)fresh->nodeid, fresh->relpath);
	inode_free(m, fresh);
	if (!in)
		errno = EIO;
	return in;
}

/*
 * A node id this process did not hand out: a previous serving process did. Finds the object
 * whose identity gives that id in the current snapshot (one pass over it; this happens once
 * per id after a restart). Its lookup count is unknown, so it is never forgotten.
 */
static struct mows_inode *inode_resolve(struct mows *m, uint64_t nodeid)
{
	struct cache_meta *meta = cache_tree_meta(m->tree);
	struct mows_inode *fresh = NULL;
	size_t count = meta ? cache_meta_count(meta) : 0;
	for (uint64_t i = 0; i < count && !fresh; i++) {
		const struct stat *st = cache_meta_stat(meta, i);
		uint64_t sz = S_ISREG(st->st_mode) ? (uint64_t)st->st_size : 0;
		int64_t mt = S_ISREG(st->st_mode) ? mows_mtime_ns(st) : 0;
		if (identity_nodeid(st->st_dev, st->st_ino, st->st_mode & S_IFMT, sz, mt) != nodeid)
			continue;
		fresh = calloc(1, sizeof(*fresh));
		if (fresh && !(fresh->relpath = cache_meta_relpath(meta, i))) {
			free(fresh);
			fresh = NULL;
			break;
		}
		if (fresh)
			inode_set_identity(fresh, st);
	}
	cache_meta_put(meta);
	if (!fresh)
		return NULL;
	log_debug("node id %016llx: %s, handed out by a previous serving process",
		  (unsigned long long)nodeid, fresh->relpath);
	return inode_insert(m, fresh, MOWS_NLOOKUP_UNKNOWN);
}

struct mows_inode *mows_inode_get(struct mows *m, uint64_t nodeid)
{
	struct mows_inode *in = mows_inode_find(m, nodeid);
	if (!in)
		in = inode_resolve(m, nodeid);
	if (!in)
		errno = ESTALE;
	return in;
}

struct mows_inode *mows_inode_lookup(struct mows *m, struct mows_inode *parent,
				     const char *name)
{
	/* One component at a time, never following a link: nothing outside the root opens. */
	if (strchr(name, '/') || strcmp(name, ".") == 0 || strcmp(name, "..") == 0) {
		errno = ENOENT;
		return NULL;
	}
	struct mows_inode *fresh = calloc(1, sizeof(*fresh));
	if (!fresh)
		return NULL;
	fresh->relpath = join_relpath(parent->relpath, name);
	if (!fresh->relpath) {
		errno = ENOMEM;
		goto out_free;
	}
	struct stat st;
	int rc = mows_meta_stat(m, fresh->relpath, &st);
	if (rc) {
		errno = -rc;
		goto out_free;
	}
	inode_set_identity(fresh, &st);
	return inode_insert(m, fresh, 1);

out_free:;
	int err = errno;
	free(fresh->relpath);
	free(fresh);
	errno = err;
	return NULL;
}

void mows_inode_forget(struct mows *m, struct mows_inode *in, uint64_t n)
{
	if (in == &m->root)
		return;
	pthread_mutex_lock(&m->ino_lock);
	in->nlookup -= n < in->nlookup ? n : in->nlookup;
	bool gone = in->nlookup == 0;
	if (gone) {
		struct mows_inode **p = &m->inodes[inode_bucket(in->nodeid)];
		while (*p && *p != in)
			p = &(*p)->hnext;
		if (*p)
			*p = in->hnext;
	}
	pthread_mutex_unlock(&m->ino_lock);
	if (gone)
		inode_free(m, in);
}
