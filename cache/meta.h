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

/*
 * ---- The wire form of a snapshot (peers copy one node's listing, net/meta_share.h) ----
 *
 * Version 1, every integer big-endian:
 *
 *   header  u32 magic 0x4d574d53 ("MWMS") | u16 version (1) | u16 flags (0) | u32 nodes
 *           | 8 x u64 statvfs: bsize, frsize, blocks, bfree, bavail, files, ffree, namemax
 *   node    u32 parent | u32 mode | u32 uid | u32 gid | u32 nlink | u64 size | u64 blocks
 *           | u32 blksize | i64 atime_ns | i64 mtime_ns | i64 ctime_ns | u16 name_len
 *           | u16 target_len | name bytes | target bytes
 *
 * Nodes in the snapshot's order: node 0 is the root (parent 0, empty name, a directory);
 * every other node's parent is a directory listed before it; the children of a directory
 * are consecutive and strictly ascending by name (strcmp). A name is 1..255 bytes with no
 * '/' or NUL and is not "." or ".."; only a symlink has a target (1..4095 bytes, no NUL).
 * st_dev and st_ino are not sent: the receiver gives each node its own (see @fix below).
 * Decoding accepts exactly what encoding produces (decode then encode gives the same bytes)
 * and rejects anything else, trailing bytes included, without reading outside the input.
 */
#define CACHE_META_WIRE_MAX (256u << 20)   /* the largest encoded snapshot accepted */

/* Encodes @m into a new buffer *@out of *@len bytes (the caller frees it). 0 or -errno
 * (-EFBIG past CACHE_META_WIRE_MAX, -ENOMEM). */
int cache_meta_encode(const struct cache_meta *m, uint8_t **out, size_t *len);

/*
 * Decodes @len bytes of @buf into a new snapshot with one reference, or NULL with errno
 * EPROTO (malformed; a reason for the log in @err) or ENOMEM. @fix (may be NULL) is called
 * for every node with its relpath ("" for the root) to set st_dev and st_ino as this node's
 * own listing would have (cache_tree_identity); they are 0 otherwise.
 */
struct cache_meta *cache_meta_decode(const void *buf, size_t len,
				     void (*fix)(void *ctx, const char *relpath, struct stat *st),
				     void *ctx, char *err, size_t errlen);

#endif
