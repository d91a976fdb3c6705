#include "cache/fdpool.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* A pooled read descriptor, named by the identity of the file it reads. */
struct pool_fd {
	int fd;                 /* -1: unused */
	char *relpath;
	dev_t dev;
	ino_t ino;
	uint64_t size;
	int64_t mtime_ns;
	unsigned users;
	bool drop;              /* close when the last user puts it back */
	uint64_t used;          /* pool tick of the last get */
};

struct cache_fdpool {
	pthread_mutex_t lock;
	struct pool_fd *v;      /* max entries; protected by lock */
	unsigned max;
	uint64_t tick;          /* protected by lock */
};

static int64_t mtime_ns_of(const struct stat *st)
{
	return (int64_t)st->st_mtim.tv_sec * 1000000000 + st->st_mtim.tv_nsec;
}

struct cache_fdpool *cache_fdpool_new(unsigned max)
{
	struct cache_fdpool *p = calloc(1, sizeof(*p));
	if (!p)
		return NULL;
	p->max = max;
	p->v = calloc(max ? max : 1, sizeof(*p->v));
	if (!p->v) {
		free(p);
		return NULL;
	}
	for (unsigned i = 0; i < max; i++)
		p->v[i].fd = -1;
	pthread_mutex_init(&p->lock, NULL);
	return p;
}

void cache_fdpool_free(struct cache_fdpool *p)
{
	if (!p)
		return;
	for (unsigned i = 0; i < p->max; i++) {
		if (p->v[i].fd >= 0)
			close(p->v[i].fd);
		free(p->v[i].relpath);
	}
	pthread_mutex_destroy(&p->lock);
	free(p->v);
	free(p);
}

static bool pool_match(const struct pool_fd *e, const struct cache_file *f)
{
	return e->fd >= 0 && cache_file_same(f, e->dev, e->ino, e->size, e->mtime_ns) &&
	       strcmp(e->relpath, cache_file_relpath(f)) == 0;
}

/* p->lock held. Returns a pooled descriptor of @f, taking a use, or -1. */
static int do_find(struct cache_fdpool *p, const struct cache_file *f)
{
	for (unsigned i = 0; i < p->max; i++)
		if (pool_match(&p->v[i], f)) {
			p->v[i].users++;
			p->v[i].drop = false; /* a fill after the drop was asked for needs it */
			p->v[i].used = ++p->tick;
			return p->v[i].fd;
		}
	return -1;
}

int cache_fdpool_add(struct cache_fdpool *p, const struct cache_file *f, int fd,
		     const struct stat *st, unsigned users)
{
	char *relpath = strdup(cache_file_relpath(f));
	bool ok = relpath;
	int victim = -1, have = -1;
	pthread_mutex_lock(&p->lock);
	struct pool_fd *e = NULL;
	for (unsigned i = 0; i < p->max && have < 0; i++)
		if (pool_match(&p->v[i], f)) {
			p->v[i].users += users;
			p->v[i].used = ++p->tick;
			have = p->v[i].fd;
		}
	for (unsigned i = 0; have < 0 && ok && i < p->max; i++) {
		struct pool_fd *c = &p->v[i];
		if (c->fd < 0) {
			e = c;
			break;
		}
		if (!c->users && (!e || c->used < e->used))
			e = c;
	}
	if (e) {
		victim = e->fd;
		free(e->relpath);
		*e = (struct pool_fd){ .fd = fd, .relpath = relpath, .dev = st->st_dev,
				       .ino = st->st_ino, .size = (uint64_t)st->st_size,
				       .mtime_ns = mtime_ns_of(st), .users = users,
				       .used = ++p->tick };
		relpath = NULL;
	}
	pthread_mutex_unlock(&p->lock);
	free(relpath);
	if (victim >= 0)
		close(victim);
	if (have >= 0 || (!e && !users)) {
		close(fd);
		return have;
	}
	return fd;
}

int cache_fdpool_find(struct cache_fdpool *p, const struct cache_file *f)
{
	pthread_mutex_lock(&p->lock);
	int fd = do_find(p, f);
	pthread_mutex_unlock(&p->lock);
	return fd;
}

/* p->lock held. Empties entry @e and returns its descriptor for the caller to close. */
static int do_take(struct pool_fd *e)
{
	int fd = e->fd;
	free(e->relpath);
	*e = (struct pool_fd){ .fd = -1 };
	return fd;
}

void cache_fdpool_put(struct cache_fdpool *p, int fd)
{
	bool pooled = false, last = false;
	pthread_mutex_lock(&p->lock);
	for (unsigned i = 0; i < p->max && !pooled; i++)
		if (p->v[i].fd == fd) {
			pooled = true;
			last = --p->v[i].users == 0 && p->v[i].drop;
			if (last)
				do_take(&p->v[i]);
		}
	pthread_mutex_unlock(&p->lock);
	if (!pooled || last)
		close(fd);
}

void cache_fdpool_drop(struct cache_fdpool *p, const struct cache_file *f)
{
	int fd = -1;
	pthread_mutex_lock(&p->lock);
	for (unsigned i = 0; i < p->max; i++)
		if (pool_match(&p->v[i], f)) {
			if (p->v[i].users)
				p->v[i].drop = true;
			else
				fd = do_take(&p->v[i]);
			break;
		}
	pthread_mutex_unlock(&p->lock);
	if (fd >= 0)
		close(fd);
}

void cache_fdpool_stats(struct cache_fdpool *p, unsigned *open, unsigned *max)
{
	unsigned n = 0;
	pthread_mutex_lock(&p->lock);
	for (unsigned i = 0; i < p->max; i++)
		n += p->v[i].fd >= 0;
	pthread_mutex_unlock(&p->lock);
	*open = n;
	*max = p->max;
}
