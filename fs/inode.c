#include <errno.h>
#include <fcntl.h>
#include <fuse_lowlevel.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/log.h"
#include "fs/mows.h"
#include "net/proto.h"

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
	if (fstatat(m->root_fd, "", &st, AT_EMPTY_PATH) < 0)
		return -errno;
	m->root.fd = m->root_fd;
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
	close(in->fd);
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
	fresh->fd = openat(parent->fd, name, O_PATH | O_NOFOLLOW | O_CLOEXEC);
	if (fresh->fd < 0)
		goto out_free;
	if (fstatat(fresh->fd, "", &fresh->st, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW) < 0)
		goto out_close;
	fresh->dev = fresh->st.st_dev;
	fresh->ino = fresh->st.st_ino;
	fresh->type = fresh->st.st_mode & S_IFMT;
	if (S_ISREG(fresh->st.st_mode)) {
		fresh->size = (uint64_t)fresh->st.st_size;
		fresh->mtime_ns = mows_mtime_ns(&fresh->st);
	}
	fresh->relpath = join_relpath(parent->relpath, name);
	if (!fresh->relpath) {
		errno = ENOMEM;
		goto out_close;
	}
	pthread_mutex_lock(&m->ino_lock);
	struct mows_inode *in = do_inode_insert(m, fresh);
	in->nlookup++;
	pthread_mutex_unlock(&m->ino_lock);
	if (in != fresh) {
		in->st = fresh->st; /* newest attributes of the same identity */
		inode_free(m, fresh);
	}
	return in;

out_close:;
	int err = errno;
	close(fresh->fd);
	errno = err;
out_free:
	err = errno;
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

/* ---- manifest ---- */

int mows_manifest_refresh(struct mows *m)
{
	struct stat st;
	bool present = fstatat(m->root_fd, m->cfg.crc32_file, &st, AT_SYMLINK_NOFOLLOW) == 0;
	pthread_mutex_lock(&m->manifest_lock);
	bool same = present == m->manifest_present &&
		    (!present || (st.st_mtim.tv_sec == m->manifest_mtime.tv_sec &&
				  st.st_mtim.tv_nsec == m->manifest_mtime.tv_nsec));
	pthread_mutex_unlock(&m->manifest_lock);
	if (same)
		return 0;
	struct cache_manifest *fresh = NULL;
	if (present) {
		fresh = cache_manifest_load(m->root_fd, m->cfg.crc32_file);
		if (!fresh)
			log_warn("%s: cannot read the manifest: %s; files are not checked against it",
				 m->cfg.crc32_file, strerror(errno));
		else
			log_info("%s: %zu entries", m->cfg.crc32_file, cache_manifest_count(fresh));
	}
	pthread_mutex_lock(&m->manifest_lock);
	struct cache_manifest *old = m->manifest;
	m->manifest = fresh;
	m->manifest_present = present;
	if (present)
		m->manifest_mtime = st.st_mtim;
	pthread_mutex_unlock(&m->manifest_lock);
	cache_manifest_free(old);
	return 0;
}

struct cache_file *mows_open_version(struct mows *m, const char *relpath, int fd,
				     uint64_t cookie, const struct stat *st)
{
	struct cache_file_info info = {
		.relpath = relpath,
		.fd = fd,
		.dev = st->st_dev,
		.ino = st->st_ino,
		.size = (uint64_t)st->st_size,
		.mtime_ns = mows_mtime_ns(st),
		.cookie = cookie,
		.key = proto_file_key(relpath, (uint64_t)st->st_size, mows_mtime_ns(st)),
	};
	cache_chunkmap_refresh(m->cache, m->root_fd, m->cfg.crc32_file); /* crc32.chunks */
	if (m->cfg.verify >= VERIFY_FILE) {
		mows_manifest_refresh(m);
		pthread_mutex_lock(&m->manifest_lock);
		if (m->manifest)
			info.has_crc = cache_manifest_lookup(m->manifest, relpath, &info.crc);
		pthread_mutex_unlock(&m->manifest_lock);
	}
	/* With peers a node reads only the chunks it owns, scattered through the file: kernel
	 * readahead past them would fetch bytes nobody asked for over the storage link. Alone,
	 * fills are sequential and readahead overlaps the next one (20% faster locally). */
	if (m->peers)
		posix_fadvise(fd, 0, 0, POSIX_FADV_RANDOM);
	bool replaced;
	return cache_file_open(m->cache, &info, &replaced);
}
