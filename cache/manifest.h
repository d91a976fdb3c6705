/*
 * crc32.txt: the expected zlib CRC-32 of whole files, by path relative to the backing root.
 *
 * Format: tokens separated by any whitespace (spaces, tabs, newlines), taken in pairs
 * "crc32 relpath", where crc32 is exactly 8 hex digits (either case) and relpath is relative
 * to the backing root. A relpath that is absolute, empty, contains a ".." or "." component or
 * an empty component ("a//b"), or a pair whose CRC is not 8 hex digits, is skipped with a
 * warning naming the manifest's line and the token; it is never followed. Lines starting
 * with '#' are comments. A later entry for the same path replaces an earlier one (warning).
 *
 * A manifest is immutable once parsed; lookups are thread-safe.
 */
#ifndef MOWS_CACHE_MANIFEST_H
#define MOWS_CACHE_MANIFEST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct cache_manifest;

/*
 * Parses @len bytes of @text. @name is used in warnings ("crc32.txt:3: ..."), logged through
 * common/log.h; *@nskipped (if not NULL) receives how many entries were skipped. Returns a
 * new manifest (possibly empty) or NULL with errno set (ENOMEM).
 */
struct cache_manifest *cache_manifest_parse(const char *text, size_t len, const char *name,
					    unsigned *nskipped);

/*
 * Reads and parses @path, which is resolved beneath the directory @dirfd (openat2 with
 * RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS: a manifest path leading outside the root fails).
 * Returns NULL with errno set: ENOENT when there is no manifest, EXDEV when it points outside.
 */
struct cache_manifest *cache_manifest_load(int dirfd, const char *path);

/*
 * Reads the regular file @path beneath @dirfd (as cache_manifest_load() resolves it, without
 * blocking on a FIFO) into a new NUL-terminated buffer *@text of *@len bytes, which the
 * caller frees. Returns 0 or -errno (-EINVAL: not a regular file, -EFBIG: over 1 GiB).
 */
int cache_manifest_read(int dirfd, const char *path, char **text, size_t *len);

void cache_manifest_free(struct cache_manifest *m);

/* Looks up @relpath (no leading "./" or "/"). Returns true and sets *@crc when listed. */
bool cache_manifest_lookup(const struct cache_manifest *m, const char *relpath, uint32_t *crc);

/* Number of valid entries. */
size_t cache_manifest_count(const struct cache_manifest *m);

/* Whether @relpath is acceptable in a manifest (see above). */
bool cache_manifest_path_ok(const char *relpath);

#endif
