/*
 * A bounded pool of read descriptors of backing files, named by the identity of the file
 * each reads (relpath, device, inode, size, mtime): fills of any number of files share at
 * most @max open descriptors, the least recently used idle one closed to make room.
 * All functions are thread-safe (one mutex, a leaf: held across no call out of this file
 * except close() of an evicted descriptor, which happens after it is released).
 */
#ifndef MOWS_CACHE_FDPOOL_H
#define MOWS_CACHE_FDPOOL_H

#include <sys/stat.h>

#include "cache/cache.h"

struct cache_fdpool;

/* A pool of at most @max descriptors, or NULL (ENOMEM). */
struct cache_fdpool *cache_fdpool_new(unsigned max);

/* Closes every pooled descriptor. Call once no descriptor is in use. */
void cache_fdpool_free(struct cache_fdpool *p);

/* A pooled descriptor of @f's file, taking a use (cache_fdpool_put()), or -1. */
int cache_fdpool_find(struct cache_fdpool *p, const struct cache_file *f);

/*
 * Offers @fd (an O_RDONLY descriptor of @f's file, whose identity is @st as the tree gives it,
 * cache_tree_identity()) with @users uses (0 or 1). Returns the
 * descriptor to use: @fd, or the one already pooled for that file (then @fd is closed).
 * When every entry is in use, @fd stays outside the pool: with one use it is returned and
 * cache_fdpool_put() closes it; with none it is closed and -1 returned.
 */
int cache_fdpool_add(struct cache_fdpool *p, const struct cache_file *f, int fd,
		     const struct stat *st, unsigned users);

/* Gives back a use of @fd; closes it if it is not pooled, or dropped and now unused. */
void cache_fdpool_put(struct cache_fdpool *p, int fd);

/*
 * Closes the pooled descriptor of @f's file now, or when its last user puts it back (a
 * completed file needs it no more). The close happens on the calling thread: call it where
 * a close that waits on a stalled FUSE store may block (a fill thread), never on a FUSE
 * worker.
 */
void cache_fdpool_drop(struct cache_fdpool *p, const struct cache_file *f);

/* Descriptors pooled now, and the pool's size. */
void cache_fdpool_stats(struct cache_fdpool *p, unsigned *open, unsigned *max);

#endif
