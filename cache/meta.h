/*
 * A metadata snapshot of the backing tree: every name with its lstat() attributes and, for
 * symlinks, the target, taken by one walk (cache/tree.h). The FUSE layer answers lookup,
 * getattr, readdir and readlink from it, so none of them waits on the backing store.
 *
 * Nodes are numbered 0 (the root) up; the children of a directory are consecutive nodes,
 * sorted by name (strcmp), so a name is found by binary search. Directories deeper than the
 * walk's depth cap, and ones that cannot be read, appear empty (logged when built).
 *
 * A snapshot is immutable once built and reference-counted: readers keep one with
 * cache_meta_get() while a refresh installs the next (cache_tree_meta()); every function may
 * be called from any thread on a snapshot the caller holds.
 */
#ifndef MOWS_CACHE_META_H
#define MOWS_CACHE_META_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/stat.h>
#include <sys/statvfs.h>

struct cache_tree;
struct cache_meta;

/*
 * Walks the whole tree (at most @depth_max levels) and returns a new snapshot with one
 * reference, or NULL with errno set when the root cannot be read (the store is down).
 */
struct cache_meta *cache_meta_build(struct cache_tree *t, unsigned depth_max);

void cache_meta_get(struct cache_meta *m);
void cache_meta_put(struct cache_meta *m);

/* Number of nodes (the root included). */
size_t cache_meta_count(const struct cache_meta *m);

/* The node of @relpath ("" = the root), or -1 when there is none. */
int64_t cache_meta_find(const struct cache_meta *m, const char *relpath);

/* Node @i's attributes, name ("" for the root) and symlink target (NULL if not a link). */
const struct stat *cache_meta_stat(const struct cache_meta *m, uint64_t i);
const char *cache_meta_name(const struct cache_meta *m, uint64_t i);
const char *cache_meta_target(const struct cache_meta *m, uint64_t i);

/* The relpath of node @i ("" for the root) as a new string (the caller frees it), or NULL. */
char *cache_meta_relpath(const struct cache_meta *m, uint64_t i);

/* statvfs() of the backing root when the snapshot was taken (zeros if it failed). */
const struct statvfs *cache_meta_statvfs(const struct cache_meta *m);

/* Children of directory @i: nodes first .. first + n - 1 (n = 0 for anything else). */
void cache_meta_children(const struct cache_meta *m, uint64_t i, uint64_t *first,
			 uint64_t *n);

#endif
