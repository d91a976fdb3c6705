/* The backing tree: walking it, opening files beneath it, and finding files by key. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "common/log.h"
#include "fs/mows.h"
#include "net/proto.h"

#define RESCAN_MIN_NS 1000000000ull /* a key miss walks the tree at most once a second */
#define KEYS_WAIT_MS 10000           /* a miss waits this long at most for a walk underway */

struct key_entry {
	uint64_t key;
	char *relpath;
};

static int open_how_beneath(int dirfd, const char *relpath, int flags)
{
	struct open_how how = {
		.flags = (uint64_t)(flags | O_NOFOLLOW | O_CLOEXEC),
		.resolve = RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS,
	};
	int fd = (int)syscall(SYS_openat2, dirfd, *relpath ? relpath : ".", &how, sizeof(how));
	return fd < 0 ? -errno : fd;
}

struct cache_file *mows_version_at(struct mows *m, const char *relpath)
{
	struct stat st;
	int fd = open_how_beneath(m->root_fd, relpath, O_RDONLY);
	int rc = fd < 0 ? fd : fstat(fd, &st) < 0 ? -errno : !S_ISREG(st.st_mode) ? -EINVAL : 0;
	if (rc) {
		if (fd >= 0)
			close(fd);
		errno = -rc;
		return NULL;
	}
	return mows_open_version(m, relpath, fd, 0, &st); /* consumes fd */
}

static int walk_dir(struct mows *m, const char *relpath, int dfd,
		    int (*fn)(void *arg, const char *relpath, const struct stat *st), void *arg)
{
	DIR *dp = fdopendir(dfd);
	if (!dp) {
		close(dfd);
		return -errno;
	}
	int rc = 0;
	struct dirent *de;
	while (rc == 0 && (de = readdir(dp))) {
		struct stat st;
		if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, "..") ||
		    fstatat(dirfd(dp), de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0)
			continue;
		char *child;
		if (asprintf(&child, "%s%s%s", relpath, *relpath ? "/" : "", de->d_name) < 0) {
			rc = -ENOMEM;
			break;
		}
		if (S_ISREG(st.st_mode)) {
			rc = fn(arg, child, &st);
		} else if (S_ISDIR(st.st_mode)) {
			int cfd = openat(dirfd(dp), de->d_name,
					 O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
			if (cfd >= 0)
				rc = walk_dir(m, child, cfd, fn, arg);
		}
		free(child);
	}
	closedir(dp);
	return rc;
}

int mows_walk(struct mows *m, const char *relpath,
	      int (*fn)(void *arg, const char *relpath, const struct stat *st), void *arg)
{
	int fd = open_how_beneath(m->root_fd, relpath, O_RDONLY);
	struct stat st;
	if (fd < 0)
		return fd;
	if (fstat(fd, &st) < 0) {
		int err = -errno;
		close(fd);
		return err;
	}
	if (S_ISDIR(st.st_mode))
		return walk_dir(m, relpath, fd, fn, arg);
	close(fd);
	return S_ISREG(st.st_mode) ? fn(arg, relpath, &st) : -EINVAL;
}

/* ---- keys ---- */

struct key_scan {
	struct key_entry *v;
	size_t n, cap;
};

static int add_key(void *arg, const char *relpath, const struct stat *st)
{
	struct key_scan *ks = arg;
	if (ks->n == ks->cap) {
		size_t cap = ks->cap ? 2 * ks->cap : 256;
		struct key_entry *v = realloc(ks->v, cap * sizeof(*v));
		if (!v)
			return -ENOMEM;
		ks->v = v;
		ks->cap = cap;
	}
	ks->v[ks->n].relpath = strdup(relpath);
	if (!ks->v[ks->n].relpath)
		return -ENOMEM;
	ks->v[ks->n++].key = proto_file_key(relpath, (uint64_t)st->st_size, mows_mtime_ns(st));
	return 0;
}

static void free_keys(struct key_entry *v, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(v[i].relpath);
	free(v);
}

void mows_keys_release(struct mows *m)
{
	free_keys(m->keys, m->nkeys);
	m->keys = NULL;
	m->nkeys = 0;
}

/* keys_lock held. */
static char *do_find_key(struct mows *m, uint64_t key)
{
	for (size_t i = 0; i < m->nkeys; i++)
		if (m->keys[i].key == key)
			return strdup(m->keys[i].relpath);
	return NULL;
}

/*
 * Returns a copy of the relpath with @key, walking the tree again if it is not known. A miss
 * while another thread walks waits for that walk (bounded), so that a burst of requests for a
 * new file does not answer "not here" and send readers to the storage a second time.
 */
static char *relpath_of(struct mows *m, uint64_t key)
{
	struct deadline dl = deadline_in_ms(KEYS_WAIT_MS);
	for (int pass = 0; pass < 2; pass++) {
		pthread_mutex_lock(&m->keys_lock);
		char *found = do_find_key(m, key);
		while (!found && m->keys_walking &&
		       deadline_cond_wait(&m->keys_cond, &m->keys_lock, &dl) == 0)
			found = do_find_key(m, key);
		bool rescan = !found && !m->keys_walking && pass == 0 &&
			      mono_ns() - m->keys_scanned_ns > RESCAN_MIN_NS;
		if (rescan)
			m->keys_walking = true;
		pthread_mutex_unlock(&m->keys_lock);
		if (found || !rescan)
			return found;
		struct key_scan ks = { 0 };
		int rc = mows_walk(m, "", add_key, &ks);
		pthread_mutex_lock(&m->keys_lock);
		struct key_entry *old = NULL;
		size_t nold = 0;
		if (rc == 0) {
			old = m->keys;
			nold = m->nkeys;
			m->keys = ks.v;
			m->nkeys = ks.n;
		}
		m->keys_walking = false;
		m->keys_scanned_ns = mono_ns();
		pthread_cond_broadcast(&m->keys_cond);
		pthread_mutex_unlock(&m->keys_lock);
		free_keys(rc ? ks.v : old, rc ? ks.n : nold);
		if (rc)
			return NULL;
	}
	return NULL;
}

struct cache_file *mows_open_key(void *ctx, uint64_t key, uint64_t size, int64_t mtime_ns)
{
	struct mows *m = ctx;
	char *relpath = relpath_of(m, key);
	if (!relpath)
		return NULL;
	struct cache_file *f = mows_version_at(m, relpath);
	free(relpath);
	if (f && (cache_file_size(f) != size || cache_file_mtime_ns(f) != mtime_ns)) {
		cache_file_put(m->cache, f); /* the file changed since the peer saw it */
		f = NULL;
	}
	return f;
}
