#include "cache/store.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <time.h>
#include <linux/magic.h>
#include <unistd.h>

#include "common/config.h"
#include "common/crc.h"
#include "common/log.h"

#define HUGE_2M (2u << 20)

struct cache_store {
	char dir[CONFIG_PATH_MAX];
	int dirfd;
	uint64_t gen;         /* this daemon's file names: g<gen>-v<id> */
	void (*forget)(void *ctx, const void *addr, size_t len); /* protected by cache->lock */
	void *forget_ctx;
};

#define INDEX_NAME "index"
#define INDEX_MAGIC 0x78646e6973776f6dull /* "mowsindx" */
#define INDEX_VERSION 1

/*
 * Room for rounding: with chunks smaller than 2 MiB a huge page can hold parts of several
 * chunks, so the mount gets some slack over max_memory (the cache's slots are what bound
 * the chunk bytes).
 */
static uint64_t mount_size(uint64_t limit)
{
	return limit + limit / 16 + (64u << 20);
}

/* Whether @dir is a tmpfs mount with an index in it: a store a daemon kept for us. */
static bool kept_store(const char *dir)
{
	struct statfs sf;
	char path[CONFIG_PATH_MAX + 16];
	snprintf(path, sizeof(path), "%s/" INDEX_NAME, dir);
	return statfs(dir, &sf) == 0 && sf.f_type == TMPFS_MAGIC && access(path, R_OK) == 0;
}

struct cache_store *cache_store_new(const char *dir, uint64_t limit, bool warm, bool huge,
				    char *err, size_t errlen)
{
	struct cache_store *s = calloc(1, sizeof(*s));
	char opts[128];
	if (!s) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	snprintf(s->dir, sizeof(s->dir), "%s", dir);
	char *slash = strrchr(s->dir, '/');
	if (slash && slash != s->dir) { /* the run directory, e.g. /run/mows */
		*slash = '\0';
		mkdir(s->dir, 0755);
		*slash = '/';
	}
	if (mkdir(dir, 0700) < 0 && errno != EEXIST)
		goto out_err;
	s->gen = (uint64_t)time(NULL) ^ ((uint64_t)getpid() << 32);
	if (warm && kept_store(dir)) {
		s->dirfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		if (s->dirfd >= 0) {
			log_info("cache: found the cache store a previous daemon kept at %s", dir);
			return s;
		}
	}
	/* A crashed daemon's store: its bytes are not trusted again (a cold start). */
	if (umount2(dir, MNT_DETACH) == 0)
		log_info("cache: detached a stale cache store at %s", dir);
	snprintf(opts, sizeof(opts), "size=%" PRIu64 ",mode=0700,huge=%s", mount_size(limit),
		 huge ? "within_size" : "never");
	if (mount("mows-cache", dir, "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, opts) < 0)
		goto out_err;
	s->dirfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (s->dirfd < 0) {
		int e = errno;
		umount2(dir, MNT_DETACH);
		errno = e;
		goto out_err;
	}
	return s;
out_err:;
	int e = errno;
	snprintf(err, errlen, "cache_dir %s: cannot mount the cache tmpfs there: %s; run as root "
		 "(CAP_SYS_ADMIN), choose another cache_dir, or set cache_store = slab", dir,
		 strerror(e));
	free(s);
	errno = e;
	return NULL;
}

void cache_store_detach(struct cache_store *s)
{
	if (s && umount2(s->dir, MNT_DETACH) == 0)
		rmdir(s->dir);
}

void cache_store_free(struct cache_store *s, bool keep)
{
	if (!s)
		return;
	close(s->dirfd);
	if (keep) {
		log_info("cache: the cache store at %s stays for the next daemon (warm_restart)",
			 s->dir);
		free(s);
		return;
	}
	if (umount2(s->dir, MNT_DETACH) < 0)
		log_warn("cache: cannot detach the cache store %s: %s", s->dir, strerror(errno));
	else
		rmdir(s->dir);
	free(s);
}

const char *cache_store_dir(const struct cache_store *s)
{
	return s->dir;
}

int cache_store_file_create(struct cache_store *s, uint64_t id, uint64_t size,
			    struct cache_store_file *out)
{
	memset(out, 0, sizeof(*out));
	out->store = s;
	snprintf(out->name, sizeof(out->name), "g%" PRIx64 "-v%" PRIu64, s->gen, id);
	int fd = openat(s->dirfd, out->name, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0)
		return -errno;
	if (ftruncate(fd, (off_t)size) < 0)
		goto out_close;
	if (size) {
		/* Whole 2 MiB pages of address space; tmpfs aligns the mapping for huge pages. */
		out->map_len = (size + HUGE_2M - 1) / HUGE_2M * HUGE_2M;
		void *p = mmap(NULL, out->map_len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
		if (p == MAP_FAILED)
			goto out_close;
		out->map = p;
	}
	close(fd);
	out->exists = true;
	return 0;
out_close:;
	int rc = -errno;
	close(fd);
	unlinkat(s->dirfd, out->name, 0);
	return rc;
}

void cache_store_set_forget(struct cache_store *s,
			    void (*fn)(void *ctx, const void *addr, size_t len), void *ctx)
{
	s->forget = fn;
	s->forget_ctx = ctx;
}

static void forget(const struct cache_store_file *f, uint64_t off, uint64_t len)
{
	if (f->store->forget && len)
		f->store->forget(f->store->forget_ctx, f->map + off, len);
}

void cache_store_file_release(struct cache_store_file *f, bool keep)
{
	if (!f->exists)
		return;
	if (f->map) {
		forget(f, 0, f->map_len);
		munmap(f->map, f->map_len);
	}
	if (!keep)
		unlinkat(f->store->dirfd, f->name, 0);
	f->exists = false;
	f->map = NULL;
}

int cache_store_file_open(const struct cache_store_file *f)
{
	int fd = openat(f->store->dirfd, f->name, O_RDONLY | O_CLOEXEC);
	return fd < 0 ? -errno : fd;
}

static uint64_t page_up(uint64_t v)
{
	return (v + 4095) & ~(uint64_t)4095;
}

int cache_store_alloc(struct cache_store_file *f, uint64_t off, uint64_t len)
{
	if (madvise(f->map + off, page_up(len), MADV_POPULATE_WRITE) == 0 || errno == EINVAL)
		return 0;
	return errno == EFAULT || errno == ENOMEM ? -ENOSPC : -errno;
}

void cache_store_punch(struct cache_store_file *f, uint64_t off, uint64_t len)
{
	forget(f, off, len);
	/* page_up: a file's last page, past its end, too */
	if (madvise(f->map + off, page_up(len), MADV_REMOVE) < 0)
		log_warn("cache: cannot give back bytes %" PRIu64 "-%" PRIu64 " of %s: %s", off,
			 off + len - 1, f->name, strerror(errno));
}

int cache_store_file_adopt(struct cache_store *s, const char *name, uint64_t size,
			   struct cache_store_file *out)
{
	struct stat st;
	memset(out, 0, sizeof(*out));
	out->store = s;
	snprintf(out->name, sizeof(out->name), "%s", name);
	int fd = openat(s->dirfd, name, O_RDWR | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0)
		return -errno;
	int rc = 0;
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || (uint64_t)st.st_size != size) {
		rc = -EBADMSG;
		goto out_close;
	}
	if (size) {
		out->map_len = (size + HUGE_2M - 1) / HUGE_2M * HUGE_2M;
		void *p = mmap(NULL, out->map_len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
		if (p == MAP_FAILED) {
			rc = -errno;
			goto out_close;
		}
		out->map = p;
	}
	out->exists = true;
out_close:
	close(fd);
	return rc;
}

static bool claimed(const struct cache_store_index *idx, const char *name)
{
	for (size_t i = 0; i < idx->n; i++)
		if (idx->e[i].claimed && !strcmp(idx->e[i].name, name))
			return true;
	return false;
}

void cache_store_sweep(struct cache_store *s, const struct cache_store_index *idx)
{
	char own[32];
	int fd = dup(s->dirfd);
	DIR *d = fd >= 0 ? fdopendir(fd) : NULL;
	struct dirent *e;
	if (!d) {
		if (fd >= 0)
			close(fd);
		log_warn("cache: cannot list the cache store %s: %s", s->dir, strerror(errno));
		return;
	}
	snprintf(own, sizeof(own), "g%" PRIx64 "-", s->gen);
	while ((e = readdir(d))) {
		if (e->d_name[0] == '.' || !strncmp(e->d_name, own, strlen(own)) ||
		    !strcmp(e->d_name, INDEX_NAME) || claimed(idx, e->d_name))
			continue;
		unlinkat(s->dirfd, e->d_name, 0);
	}
	closedir(d);
}

/* ---- the index: header, then per entry a record, the relpath, and per chunk have+crc ---- */

struct index_header {
	uint64_t magic;
	uint32_t version, crc;     /* crc: of everything after the header */
	uint64_t chunk_size, n, len;
};

struct index_record {
	char name[32];
	uint64_t key, dev, ino, size, nchunks;
	int64_t mtime_ns;
	uint32_t relpath_len, pad;
};

struct buf {
	unsigned char *p;
	size_t len, cap;
};

static int buf_add(struct buf *b, const void *src, size_t len)
{
	if (b->len + len > b->cap) {
		size_t cap = b->cap ? b->cap : 4096;
		while (cap < b->len + len)
			cap *= 2;
		unsigned char *p = realloc(b->p, cap);
		if (!p)
			return -ENOMEM;
		b->p = p;
		b->cap = cap;
	}
	memcpy(b->p + b->len, src, len);
	b->len += len;
	return 0;
}

static int write_all(int fd, const void *p, size_t len)
{
	const unsigned char *c = p;
	while (len) {
		ssize_t n = write(fd, c, len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		c += n;
		len -= (size_t)n;
	}
	return 0;
}

int cache_store_index_write(struct cache_store *s, const struct cache_store_index *idx)
{
	struct buf b = { 0 };
	int rc = 0;
	for (size_t i = 0; i < idx->n && rc == 0; i++) {
		const struct cache_store_entry *e = &idx->e[i];
		struct index_record r = { .key = e->key, .dev = e->dev, .ino = e->ino,
					  .size = e->size, .nchunks = e->nchunks,
					  .mtime_ns = e->mtime_ns,
					  .relpath_len = (uint32_t)strlen(e->relpath) };
		memcpy(r.name, e->name, sizeof(r.name));
		rc = buf_add(&b, &r, sizeof(r));
		if (!rc)
			rc = buf_add(&b, e->relpath, r.relpath_len);
		if (!rc)
			rc = buf_add(&b, e->have, e->nchunks);
		if (!rc)
			rc = buf_add(&b, e->crc, e->nchunks * sizeof(*e->crc));
	}
	struct index_header h = { .magic = INDEX_MAGIC, .version = INDEX_VERSION,
				  .crc = mows_crc32(0, b.p, b.len), .chunk_size = idx->chunk_size,
				  .n = idx->n, .len = b.len };
	int fd = rc ? -1 : openat(s->dirfd, INDEX_NAME ".tmp",
				  O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (!rc && fd < 0)
		rc = -errno;
	if (!rc && !(rc = write_all(fd, &h, sizeof(h))))
		rc = write_all(fd, b.p, b.len);
	if (fd >= 0)
		close(fd);
	if (!rc && renameat(s->dirfd, INDEX_NAME ".tmp", s->dirfd, INDEX_NAME) < 0)
		rc = -errno;
	free(b.p);
	return rc;
}

void cache_store_index_release(struct cache_store_index *idx)
{
	for (size_t i = 0; i < idx->n; i++) {
		free(idx->e[i].relpath);
		free(idx->e[i].crc);
		free(idx->e[i].have);
	}
	free(idx->e);
	memset(idx, 0, sizeof(*idx));
}

/* Takes @len bytes at *@pos of @p (@end); false when they are not there. */
static bool take(const unsigned char *p, size_t end, size_t *pos, void *dst, size_t len)
{
	if (len > end - *pos)
		return false;
	memcpy(dst, p + *pos, len);
	*pos += len;
	return true;
}

static int parse_entries(const unsigned char *p, size_t len, uint64_t chunk_size,
			 struct cache_store_index *out)
{
	size_t pos = 0;
	for (size_t i = 0; i < out->n; i++) {
		struct cache_store_entry *e = &out->e[i];
		struct index_record r;
		if (!take(p, len, &pos, &r, sizeof(r)) || r.relpath_len > 4096 ||
		    r.nchunks != (r.size + chunk_size - 1) / chunk_size || r.nchunks > len ||
		    memchr(r.name, '\0', sizeof(r.name)) == NULL || strchr(r.name, '/'))
			return -EBADMSG;
		memcpy(e->name, r.name, sizeof(e->name));
		e->key = r.key, e->dev = r.dev, e->ino = r.ino, e->size = r.size;
		e->mtime_ns = r.mtime_ns, e->nchunks = r.nchunks;
		e->relpath = calloc(1, r.relpath_len + 1);
		e->have = malloc(r.nchunks ? r.nchunks : 1);
		e->crc = malloc((r.nchunks ? r.nchunks : 1) * sizeof(*e->crc));
		if (!e->relpath || !e->have || !e->crc)
			return -ENOMEM;
		if (!take(p, len, &pos, e->relpath, r.relpath_len) ||
		    !take(p, len, &pos, e->have, r.nchunks) ||
		    !take(p, len, &pos, e->crc, r.nchunks * sizeof(*e->crc)))
			return -EBADMSG;
	}
	return pos == len ? 0 : -EBADMSG;
}

int cache_store_index_load(struct cache_store *s, uint64_t chunk_size,
			   struct cache_store_index *out)
{
	struct index_header h;
	struct stat st;
	memset(out, 0, sizeof(*out));
	int fd = openat(s->dirfd, INDEX_NAME, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0)
		return -errno;
	unlinkat(s->dirfd, INDEX_NAME, 0);
	unsigned char *p = NULL;
	int rc = -EBADMSG;
	if (fstat(fd, &st) < 0 || (size_t)st.st_size < sizeof(h) ||
	    pread(fd, &h, sizeof(h), 0) != (ssize_t)sizeof(h) || h.magic != INDEX_MAGIC ||
	    h.version != INDEX_VERSION || h.chunk_size != chunk_size ||
	    h.len != (uint64_t)st.st_size - sizeof(h) || h.n > h.len)
		goto out_close;
	p = malloc(h.len ? h.len : 1);
	if (!p) {
		rc = -ENOMEM;
		goto out_close;
	}
	if (pread(fd, p, h.len, sizeof(h)) != (ssize_t)h.len || mows_crc32(0, p, h.len) != h.crc)
		goto out_close;
	out->chunk_size = chunk_size;
	out->n = h.n;
	out->e = calloc(h.n ? h.n : 1, sizeof(*out->e));
	rc = out->e ? parse_entries(p, h.len, chunk_size, out) : -ENOMEM;
	if (rc)
		cache_store_index_release(out);
out_close:
	free(p);
	close(fd);
	return rc;
}
