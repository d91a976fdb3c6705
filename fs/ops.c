#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <fuse_lowlevel.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include "common/log.h"
#include "cache/meta.h"
#include "fs/mows.h"

/* A read never needs more: the kernel asks for at most 1 MiB, chunks are at least 64 KiB. */
#define MAX_SPANS 32

struct mows_fh {
	struct cache_file *file;
	struct mows_inode *in;       /* held by the kernel while the file is open */
	bool pt;                     /* opened in passthrough mode (passthrough.c) */
	_Atomic uint64_t next_off;   /* where a sequential reader reads next */
};

/* An open directory: its entries in the snapshot taken when it was opened. */
struct dir_handle {
	struct cache_meta *meta;     /* a reference */
	uint64_t first, n;           /* its children in the snapshot */
	ino_t ino;                   /* its own inode number, for "." */
};

static struct mows *ctx(fuse_req_t req)
{
	return fuse_req_userdata(req);
}

/* ---- handles: fh values a later serving process can tell from its own ---- */

#define FH_EPOCH_SHIFT 40
#define FH_PT_BIT (1ull << 39)   /* the open is in passthrough mode */
#define FH_SLOT_MASK 0xffffffffull

int mows_handles_init(struct mows *m)
{
	uint32_t e = 0;
	if (getrandom(&e, sizeof(e), 0) != sizeof(e))
		e = (uint32_t)getpid() * 2654435761u ^ (uint32_t)mono_ns();
	m->fh_epoch = (e & 0xffffff) ? (e & 0xffffff) : 1;
	return -pthread_mutex_init(&m->fh_lock, NULL);
}

void mows_handles_release(struct mows *m)
{
	free(m->fh_slots);
	free(m->fh_free);
}

/* Registers @p: its fh, or 0 when out of memory. */
static uint64_t fh_new(struct mows *m, void *p, bool pt)
{
	uint64_t fh = 0;
	pthread_mutex_lock(&m->fh_lock);
	uint32_t slot = m->fh_nfree ? m->fh_free[--m->fh_nfree] : m->fh_next;
	if (slot == m->fh_cap && m->fh_cap < UINT32_MAX / 2) {
		uint32_t cap = m->fh_cap ? 2 * m->fh_cap : 256;
		void **v = realloc(m->fh_slots, cap * sizeof(*v));
		uint32_t *fr = v ? realloc(m->fh_free, cap * sizeof(*fr)) : NULL;
		if (v)
			m->fh_slots = v;
		if (fr) {
			m->fh_free = fr;
			m->fh_cap = cap;
		}
	}
	if (slot < m->fh_cap) {
		if (slot == m->fh_next)
			m->fh_next++;
		m->fh_slots[slot] = p;
		fh = (uint64_t)m->fh_epoch << FH_EPOCH_SHIFT | (pt ? FH_PT_BIT : 0) | slot;
	}
	pthread_mutex_unlock(&m->fh_lock);
	return fh;
}

/* What @fh names in this process, or NULL: a previous serving process handed it out. */
static void *fh_get(struct mows *m, uint64_t fh)
{
	uint64_t slot = fh & FH_SLOT_MASK;
	void *p = NULL;
	if (fh >> FH_EPOCH_SHIFT != m->fh_epoch)
		return NULL;
	pthread_mutex_lock(&m->fh_lock);
	if (slot < m->fh_next)
		p = m->fh_slots[slot];
	pthread_mutex_unlock(&m->fh_lock);
	return p;
}

static void fh_drop(struct mows *m, uint64_t fh)
{
	uint64_t slot = fh & FH_SLOT_MASK;
	if (fh >> FH_EPOCH_SHIFT != m->fh_epoch)
		return;
	pthread_mutex_lock(&m->fh_lock);
	if (slot < m->fh_next && m->fh_slots[slot]) {
		m->fh_slots[slot] = NULL;
		m->fh_free[m->fh_nfree++] = (uint32_t)slot;
	}
	pthread_mutex_unlock(&m->fh_lock);
}

static double timeout_s(const struct mows *m)
{
	return m->cfg.attr_timeout_ms / 1000.0;
}

/* ---- lookup and attributes ---- */

static void op_init(void *userdata, struct fuse_conn_info *conn)
{
	struct mows *m = userdata;
	if (cache_tree_meta_start(m->tree, m->cfg.metadata_ttl_ms))
		log_err("cannot start the metadata thread: the snapshot taken at mount stays");
	conn->max_readahead = m->cfg.readahead_kb * 1024u;
	conn->want &= ~(unsigned)FUSE_CAP_SPLICE_READ;
}

static void op_lookup(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	struct mows *m = ctx(req);
	struct mows_inode *dir = mows_inode_get(m, parent);
	struct mows_inode *in = dir ? mows_inode_lookup(m, dir, name) : NULL;
	if (!in) {
		int err = errno;
		if (err == ENOENT) { /* cache the miss in the kernel like any entry */
			struct fuse_entry_param neg = { .entry_timeout = timeout_s(m) };
			fuse_reply_entry(req, &neg);
			return;
		}
		fuse_reply_err(req, err);
		return;
	}
	struct fuse_entry_param e = {
		.ino = in->nodeid,
		.attr = in->st,
		.attr_timeout = timeout_s(m),
		.entry_timeout = timeout_s(m),
	};
	if (fuse_reply_entry(req, &e) == -ENOENT)
		mows_inode_forget(m, in, 1); /* the lookup was interrupted */
}

static void op_forget(fuse_req_t req, fuse_ino_t ino, uint64_t nlookup)
{
	struct mows_inode *in = mows_inode_find(ctx(req), ino);
	if (in)
		mows_inode_forget(ctx(req), in, nlookup);
	fuse_reply_none(req);
}

static void op_forget_multi(fuse_req_t req, size_t count, struct fuse_forget_data *forgets)
{
	for (size_t i = 0; i < count; i++) {
		struct mows_inode *in = mows_inode_find(ctx(req), forgets[i].ino);
		if (in)
			mows_inode_forget(ctx(req), in, forgets[i].nlookup);
	}
	fuse_reply_none(req);
}

/*
 * Current attributes of @in, from the snapshot (never the backing); -ESTALE when its path
 * names another object now.
 */
static int inode_stat(struct mows *m, struct mows_inode *in, struct stat *st)
{
	int rc = mows_meta_stat(m, in->relpath, st);
	if (rc == 0 && (st->st_dev != in->dev || st->st_ino != in->ino ||
			(S_ISREG(st->st_mode) && ((uint64_t)st->st_size != in->size ||
						  mows_mtime_ns(st) != in->mtime_ns))))
		rc = -ESTALE;
	return rc;
}

/*
 * A FIFO, socket or device in the backing is shown as an empty regular file with no
 * permissions whose open fails: through a FUSE mount the kernel would make it a new local
 * pipe or device node (a reader of a "FIFO" would wait forever for a writer that cannot
 * exist), and the backing's own special file is never opened.
 */
void mows_present_stat(struct stat *st)
{
	if (S_ISREG(st->st_mode) || S_ISDIR(st->st_mode) || S_ISLNK(st->st_mode))
		return;
	st->st_mode = S_IFREG;
	st->st_size = 0;
	st->st_blocks = 0;
	st->st_rdev = 0;
}

static void op_getattr(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	(void)fi;
	struct mows *m = ctx(req);
	struct mows_inode *in = mows_inode_get(m, ino);
	struct stat st;
	if (!in) {
		fuse_reply_err(req, ESTALE);
		return;
	}
	int rc = inode_stat(m, in, &st);
	/* A rewritten, replaced or removed file is a new inode or none: this one keeps
	 * describing the version it was, and the kernel asks again next time. */
	if (rc == -ESTALE || rc == -ENOENT) {
		fuse_reply_attr(req, &in->st, 0);
		return;
	}
	if (rc) {
		fuse_reply_err(req, -rc);
		return;
	}
	mows_present_stat(&st);
	fuse_reply_attr(req, &st, timeout_s(m));
}

static void op_readlink(fuse_req_t req, fuse_ino_t ino)
{
	struct mows *m = ctx(req);
	struct mows_inode *in = mows_inode_get(m, ino);
	if (!in) {
		fuse_reply_err(req, ESTALE);
		return;
	}
	struct cache_meta *meta = cache_tree_meta(m->tree);
	int64_t i = meta ? cache_meta_find(meta, in->relpath) : -1;
	const char *target = i >= 0 ? cache_meta_target(meta, (uint64_t)i) : NULL;
	if (target)
		fuse_reply_readlink(req, target);
	else
		fuse_reply_err(req, i >= 0 ? EINVAL : ENOENT);
	cache_meta_put(meta);
}

static void op_statfs(fuse_req_t req, fuse_ino_t ino)
{
	(void)ino;
	struct cache_meta *meta = cache_tree_meta(ctx(req)->tree);
	struct statvfs sv;
	if (meta) /* from the snapshot: df and find never wait on the store either */
		sv = *cache_meta_statvfs(meta);
	cache_meta_put(meta);
	if (!meta && fstatvfs(cache_tree_root_fd(ctx(req)->tree), &sv) < 0)
		fuse_reply_err(req, errno);
	else
		fuse_reply_statfs(req, &sv);
}

/* ---- files ---- */

/*
 * Returns @in's cache version (referenced): the one it already has while the snapshot still
 * shows that file, else a new one. From memory only: an open of a cached file touches
 * nothing below mows (the first fill opens the backing file). NULL with errno set (ESTALE:
 * the name now holds another file, and the kernel looks it up again).
 */
struct cache_file *mows_inode_version(struct mows *m, struct mows_inode *in)
{
	struct stat st;
	int rc = inode_stat(m, in, &st);
	if (rc) {
		errno = rc == -ENOENT ? ESTALE : -rc;
		return NULL;
	}
	pthread_mutex_lock(&m->ino_lock);
	struct cache_file *f = in->file;
	if (f)
		cache_file_get(m->cache, f);
	pthread_mutex_unlock(&m->ino_lock);
	if (f)
		return f;
	f = cache_tree_version(m->tree, in->relpath, in->nodeid, &in->st);
	if (!f)
		return NULL;
	pthread_mutex_lock(&m->ino_lock);
	if (!in->file) {
		in->file = f;
		cache_file_get(m->cache, f);
	}
	pthread_mutex_unlock(&m->ino_lock);
	return f;
}

/*
 * open_wait = complete: fill the whole file and wait for its check (bounded), so that the
 * open gets passthrough. Not when ordinary opens of the inode exist: it could not have it.
 */
static void wait_complete(struct mows *m, struct mows_inode *in, struct cache_file *f)
{
	pthread_mutex_lock(&m->ino_lock);
	bool plain = in->opens_plain > 0;
	pthread_mutex_unlock(&m->ino_lock);
	if (plain)
		return;
	struct deadline dl = deadline_in_ms(m->cfg.open_wait_timeout_ms);
	int rc = cache_file_wait_complete(m->cache, f, &dl);
	if (rc)
		log_info("open_wait: %s is served through the daemon: %s", in->relpath,
			 rc == -EAGAIN ? "it does not fit in max_memory" :
			 rc == -ETIMEDOUT ? "not complete within open_wait_timeout" : strerror(-rc));
}

static void op_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct mows *m = ctx(req);
	if ((fi->flags & O_ACCMODE) != O_RDONLY || (fi->flags & O_TRUNC)) {
		fuse_reply_err(req, EROFS);
		return;
	}
	struct mows_inode *in = mows_inode_get(m, ino);
	if (!in) {
		fuse_reply_err(req, ESTALE);
		return;
	}
	if (in->type != S_IFREG) { /* a special file (see mows_present_stat) */
		fuse_reply_err(req, EACCES);
		return;
	}
	struct mows_fh *h = calloc(1, sizeof(*h));
	if (!h) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	h->file = mows_inode_version(m, in);
	if (!h->file) {
		int err = errno;
		free(h);
		fuse_reply_err(req, err);
		return;
	}
	if (m->cfg.open_wait == OPEN_WAIT_COMPLETE && mows_pt_usable(m))
		wait_complete(m, in, h->file);
	h->in = in;
	int backing_id = mows_pt_open(m, in, h->file, &h->pt);
	fi->fh = fh_new(m, h, h->pt);
	fi->keep_cache = 1;
	int rc = !fi->fh ? fuse_reply_err(req, ENOMEM) :
		 h->pt ? mows_pt_reply_open(req, fi->fh, backing_id) : fuse_reply_open(req, fi);
	if (rc == -ENOENT || !fi->fh) {
		fh_drop(m, fi->fh);
		mows_pt_release(m, in, h->file, h->pt);
		cache_file_put(m->cache, h->file);
		free(h);
	}
}

static void op_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
		    struct fuse_file_info *fi)
{
	struct mows *m = ctx(req);
	uint64_t t0 = mono_ns();
	struct mows_fh *h = fh_get(m, fi->fh), foreign = { 0 };
	if (!h) { /* opened through a previous serving process: read its inode's version */
		h = &foreign;
		h->in = mows_inode_get(m, ino);
		h->file = h->in ? mows_inode_version(m, h->in) : NULL;
		if (!h->file) {
			fuse_reply_err(req, h->in ? errno : ESTALE);
			return;
		}
		atomic_store(&h->next_off, (uint64_t)off);
	}
	struct cache_span spans[MAX_SPANS];
	struct iovec iov[MAX_SPANS];
	unsigned n = 0;
	uint64_t expect = atomic_load(&h->next_off);
	bool seq = (uint64_t)off == expect ||
		   (uint64_t)off / m->cfg.chunk_size == expect / m->cfg.chunk_size;
	ssize_t got = cache_read(m->cache, h->file, (uint64_t)off, size, seq, spans, MAX_SPANS,
				 &n);
	if (got < 0) {
		fuse_reply_err(req, (int)-got);
		if (h == &foreign)
			cache_file_put(m->cache, h->file);
		return;
	}
	atomic_store(&h->next_off, (uint64_t)off + (uint64_t)got);
	for (unsigned k = 0; k < n; k++) {
		iov[k].iov_base = (void *)spans[k].data;
		iov[k].iov_len = spans[k].len;
	}
	/* writev() straight from the slab: no copy in the daemon. */
	fuse_reply_iov(req, iov, (int)n);
	cache_read_done(m->cache, spans, n);
	if (h == &foreign)
		cache_file_put(m->cache, h->file);
	hist_add(&m->read_latency, mono_ns() - t0);
}

static void op_release(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct mows *m = ctx(req);
	struct mows_fh *h = fh_get(m, fi->fh);
	if (!h) { /* opened through a previous serving process */
		struct mows_inode *in = mows_inode_get(m, ino);
		if (in)
			mows_pt_release_foreign(m, in, fi->fh & FH_PT_BIT);
		fuse_reply_err(req, 0);
		return;
	}
	fh_drop(m, fi->fh);
	mows_pt_release(m, h->in, h->file, h->pt);
	cache_file_put(m->cache, h->file);
	free(h);
	fuse_reply_err(req, 0);
}

/* ---- directories ---- */

static void dir_handle_free(struct dir_handle *d)
{
	cache_meta_put(d->meta);
	free(d);
}

/* The entries of directory @ino in the current snapshot. NULL with *@err set. */
static struct dir_handle *dir_handle_new(struct mows *m, uint64_t ino, int *err)
{
	struct mows_inode *in = mows_inode_get(m, ino);
	struct dir_handle *d = in ? calloc(1, sizeof(*d)) : NULL;
	if (!d) {
		*err = in ? ENOMEM : ESTALE;
		return NULL;
	}
	d->meta = cache_tree_meta(m->tree);
	int64_t i = d->meta ? cache_meta_find(d->meta, in->relpath) : -1;
	if (i < 0 || !S_ISDIR(cache_meta_stat(d->meta, (uint64_t)i)->st_mode)) {
		dir_handle_free(d);
		*err = i < 0 ? ENOENT : ENOTDIR;
		return NULL;
	}
	cache_meta_children(d->meta, (uint64_t)i, &d->first, &d->n);
	d->ino = cache_meta_stat(d->meta, (uint64_t)i)->st_ino;
	return d;
}

static void op_opendir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct mows *m = ctx(req);
	int err;
	struct dir_handle *d = dir_handle_new(m, ino, &err);
	if (!d) {
		fuse_reply_err(req, err);
		return;
	}
	fi->fh = fh_new(m, d, false);
	fi->cache_readdir = 1;
	if (!fi->fh || fuse_reply_open(req, fi) == -ENOENT) {
		if (!fi->fh)
			fuse_reply_err(req, ENOMEM);
		fh_drop(m, fi->fh);
		dir_handle_free(d);
	}
}

/*
 * Fills @buf with entries of @d from offset @off: "." and ".." (offsets 1 and 2), then the
 * children (offset k + 3 for child k). Returns the bytes used.
 */
static size_t fill_dir(fuse_req_t req, struct dir_handle *d, char *buf, size_t size, off_t off)
{
	size_t used = 0;
	for (uint64_t k = off < 0 ? 0 : (uint64_t)off; k < d->n + 2; k++) {
		struct stat st = { .st_ino = d->ino, .st_mode = S_IFDIR };
		const char *name = k == 0 ? "." : "..";
		if (k >= 2) {
			st = *cache_meta_stat(d->meta, d->first + k - 2);
			mows_present_stat(&st);
			name = cache_meta_name(d->meta, d->first + k - 2);
		}
		size_t len = fuse_add_direntry(req, buf + used, size - used, name, &st,
					       (off_t)(k + 1));
		if (len > size - used)
			break;
		used += len;
	}
	return used;
}

static void op_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
		       struct fuse_file_info *fi)
{
	struct mows *m = ctx(req);
	struct dir_handle *d = fh_get(m, fi->fh), *foreign = NULL;
	int err = ENOMEM;
	if (!d) /* opened through a previous serving process: list it again */
		d = foreign = dir_handle_new(m, ino, &err);
	char *buf = d ? malloc(size) : NULL;
	if (!buf)
		fuse_reply_err(req, err);
	else
		fuse_reply_buf(req, buf, fill_dir(req, d, buf, size, off));
	free(buf);
	if (foreign)
		dir_handle_free(foreign);
}

static void op_releasedir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	(void)ino;
	struct dir_handle *d = fh_get(ctx(req), fi->fh);
	fh_drop(ctx(req), fi->fh);
	if (d)
		dir_handle_free(d);
	fuse_reply_err(req, 0);
}

/* ---- everything that would write: a read-only mirror says EROFS ---- */

static void op_setattr(fuse_req_t req, fuse_ino_t ino, struct stat *attr, int to_set,
		       struct fuse_file_info *fi)
{
	(void)ino, (void)attr, (void)to_set, (void)fi;
	fuse_reply_err(req, EROFS);
}

static void op_mknod(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode,
		     dev_t rdev)
{
	(void)parent, (void)name, (void)mode, (void)rdev;
	fuse_reply_err(req, EROFS);
}

static void op_mkdir(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode)
{
	(void)parent, (void)name, (void)mode;
	fuse_reply_err(req, EROFS);
}

static void op_unlink(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	(void)parent, (void)name;
	fuse_reply_err(req, EROFS);
}

static void op_symlink(fuse_req_t req, const char *link, fuse_ino_t parent, const char *name)
{
	(void)link, (void)parent, (void)name;
	fuse_reply_err(req, EROFS);
}

static void op_rename(fuse_req_t req, fuse_ino_t parent, const char *name, fuse_ino_t newparent,
		      const char *newname, unsigned int flags)
{
	(void)parent, (void)name, (void)newparent, (void)newname, (void)flags;
	fuse_reply_err(req, EROFS);
}

static void op_link(fuse_req_t req, fuse_ino_t ino, fuse_ino_t newparent, const char *newname)
{
	(void)ino, (void)newparent, (void)newname;
	fuse_reply_err(req, EROFS);
}

static void op_write(fuse_req_t req, fuse_ino_t ino, const char *buf, size_t size, off_t off,
		     struct fuse_file_info *fi)
{
	(void)ino, (void)buf, (void)size, (void)off, (void)fi;
	fuse_reply_err(req, EROFS);
}

static void op_create(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode,
		      struct fuse_file_info *fi)
{
	(void)parent, (void)name, (void)mode, (void)fi;
	fuse_reply_err(req, EROFS);
}

static void op_setxattr(fuse_req_t req, fuse_ino_t ino, const char *name, const char *value,
			size_t size, int flags)
{
	(void)ino, (void)name, (void)value, (void)size, (void)flags;
	fuse_reply_err(req, EROFS);
}

static void op_removexattr(fuse_req_t req, fuse_ino_t ino, const char *name)
{
	(void)ino, (void)name;
	fuse_reply_err(req, EROFS);
}

const struct fuse_lowlevel_ops mows_ops = {
	.init = op_init,
	.lookup = op_lookup,
	.forget = op_forget,
	.forget_multi = op_forget_multi,
	.getattr = op_getattr,
	.readlink = op_readlink,
	.statfs = op_statfs,
	.open = op_open,
	.read = op_read,
	.release = op_release,
	.opendir = op_opendir,
	.readdir = op_readdir,
	.releasedir = op_releasedir,
	.setattr = op_setattr,
	.mknod = op_mknod,
	.mkdir = op_mkdir,
	.unlink = op_unlink,
	.rmdir = op_unlink,
	.symlink = op_symlink,
	.rename = op_rename,
	.link = op_link,
	.write = op_write,
	.create = op_create,
	.setxattr = op_setxattr,
	.removexattr = op_removexattr,
};

/* ---- kernel cache invalidation, off the request path ---- */

void mows_invalidate(void *arg, uint64_t cookie)
{
	struct mows *m = arg;
	if (!cookie)
		return;
	pthread_mutex_lock(&m->inval_lock);
	if (m->inval_n == m->inval_cap) {
		unsigned cap = m->inval_cap ? 2 * m->inval_cap : 64;
		uint64_t *q = realloc(m->inval_queue, cap * sizeof(*q));
		if (!q) {
			pthread_mutex_unlock(&m->inval_lock);
			log_err("out of memory queueing a kernel cache invalidation");
			return;
		}
		m->inval_queue = q;
		m->inval_cap = cap;
	}
	m->inval_queue[m->inval_n++] = cookie;
	pthread_cond_signal(&m->inval_cond);
	pthread_mutex_unlock(&m->inval_lock);
}

static void *inval_main(void *arg)
{
	struct mows *m = arg;
	pthread_mutex_lock(&m->inval_lock);
	while (!m->inval_stop) {
		if (!m->inval_n) {
			struct deadline dl = deadline_in_ms(1000);
			deadline_cond_wait(&m->inval_cond, &m->inval_lock, &dl);
			continue;
		}
		uint64_t nodeid = m->inval_queue[--m->inval_n];
		pthread_mutex_unlock(&m->inval_lock);
		int rc = fuse_lowlevel_notify_inval_inode(m->se, nodeid, 0, 0);
		if (rc && rc != -ENOENT)
			log_warn("kernel cache invalidation failed: %s", strerror(-rc));
		pthread_mutex_lock(&m->inval_lock);
	}
	pthread_mutex_unlock(&m->inval_lock);
	return NULL;
}

int mows_inval_start(struct mows *m)
{
	pthread_mutex_init(&m->inval_lock, NULL);
	int rc = deadline_cond_init(&m->inval_cond);
	if (rc)
		return rc;
	return -pthread_create(&m->inval_thread, NULL, inval_main, m);
}

void mows_inval_stop(struct mows *m)
{
	pthread_mutex_lock(&m->inval_lock);
	m->inval_stop = true;
	pthread_cond_signal(&m->inval_cond);
	pthread_mutex_unlock(&m->inval_lock);
	pthread_join(m->inval_thread, NULL);
	free(m->inval_queue);
}
