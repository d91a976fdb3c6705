#include "cache/store.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/config.h"
#include "common/log.h"

#define HUGE_2M (2u << 20)

struct cache_store {
	char dir[CONFIG_PATH_MAX];
	int dirfd;
};

/*
 * Room for rounding: with chunks smaller than 2 MiB a huge page can hold parts of several
 * chunks, so the mount gets some slack over max_memory (the cache's slots are what bound
 * the chunk bytes).
 */
static uint64_t mount_size(uint64_t limit)
{
	return limit + limit / 16 + (64u << 20);
}

struct cache_store *cache_store_new(const char *dir, uint64_t limit, char *err, size_t errlen)
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
	/* A crashed daemon's store: its bytes are not trusted again (a cold start). */
	if (umount2(dir, MNT_DETACH) == 0)
		log_info("cache: detached a stale cache store at %s", dir);
	snprintf(opts, sizeof(opts), "size=%" PRIu64 ",mode=0700,huge=within_size",
		 mount_size(limit));
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

void cache_store_free(struct cache_store *s)
{
	if (!s)
		return;
	close(s->dirfd);
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
	snprintf(out->name, sizeof(out->name), "v%" PRIu64, id);
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

void cache_store_file_release(struct cache_store_file *f)
{
	if (!f->exists)
		return;
	if (f->map)
		munmap(f->map, f->map_len);
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
	/* page_up: a file's last page, past its end, too */
	if (madvise(f->map + off, page_up(len), MADV_REMOVE) < 0)
		log_warn("cache: cannot give back bytes %" PRIu64 "-%" PRIu64 " of %s: %s", off,
			 off + len - 1, f->name, strerror(errno));
}
