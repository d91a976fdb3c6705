#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <fuse_lowlevel.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/log.h"
#include "cache/meta.h"
#include "fs/mows.h"

#define REFRESH_WAIT_MS 60000 /* mowsctl refresh waits this long for the walk */
#define REFRESH_SLICE_MS 200   /* and checks this often whether the mount has ended */

int64_t mows_mtime_ns(const struct stat *st)
{
	return (int64_t)st->st_mtim.tv_sec * 1000000000 + st->st_mtim.tv_nsec;
}

static unsigned inode_bucket(dev_t dev, ino_t ino, uint64_t size, int64_t mtime_ns)
{
	uint64_t h = (uint64_t)ino * 0x9e3779b97f4a7c15ull ^ (uint64_t)dev ^ size ^
		     (uint64_t)mtime_ns * 0xbf58476d1ce4e5b9ull;
	return (unsigned)(h ^ (h >> 29)) % MOWS_INODE_BUCKETS;
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

struct mows_inode *mows_inode_get(struct mows *m, uint64_t nodeid)
{
	return nodeid == FUSE_ROOT_ID ? &m->root : (struct mows_inode *)(uintptr_t)nodeid;
}

static char *join_relpath(const char *dir, const char *name)
{
	char *p;
	if (asprintf(&p, "%s%s%s", dir, *dir ? "/" : "", name) < 0)
		return NULL;
	return p;
}

/* Finds the inode for this identity, or adds @fresh. Returns the one to use. ino_lock held. */
static struct mows_inode *do_inode_insert(struct mows *m, struct mows_inode *fresh)
{
	unsigned b = inode_bucket(fresh->dev, fresh->ino, fresh->size, fresh->mtime_ns);
	for (struct mows_inode *in = m->inodes[b]; in; in = in->hnext)
		if (in->dev == fresh->dev && in->ino == fresh->ino && in->size == fresh->size &&
		    in->mtime_ns == fresh->mtime_ns && in->type == fresh->type)
			return in;
	fresh->hnext = m->inodes[b];
	m->inodes[b] = fresh;
	return fresh;
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
	int rc = mows_meta_stat(m, fresh->relpath, &fresh->st);
	if (rc) {
		errno = -rc;
		goto out_free;
	}
	fresh->dev = fresh->st.st_dev;
	fresh->ino = fresh->st.st_ino;
	fresh->type = fresh->st.st_mode & S_IFMT;
	if (S_ISREG(fresh->st.st_mode)) {
		fresh->size = (uint64_t)fresh->st.st_size;
		fresh->mtime_ns = mows_mtime_ns(&fresh->st);
	}
	mows_present_stat(&fresh->st);
	pthread_mutex_lock(&m->ino_lock);
	struct mows_inode *in = do_inode_insert(m, fresh);
	in->nlookup++;
	pthread_mutex_unlock(&m->ino_lock);
	if (in != fresh) {
		in->st = fresh->st; /* newest attributes of the same identity */
		inode_free(m, fresh);
	}
	return in;

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
		struct mows_inode **p =
			&m->inodes[inode_bucket(in->dev, in->ino, in->size, in->mtime_ns)];
		while (*p && *p != in)
			p = &(*p)->hnext;
		if (*p)
			*p = in->hnext;
	}
	pthread_mutex_unlock(&m->ino_lock);
	if (gone)
		inode_free(m, in);
}
