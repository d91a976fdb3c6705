/*
 * crc32.chunks: the per-chunk sidecar of crc32.txt. For every listed file, the zlib CRC-32 of
 * each chunk_size piece of it (the last one may be shorter), so that a bad chunk is caught
 * when it is read, before it is cached, served or sent, and named.
 *
 * Format, version 1 (text, one record a line, fields separated by spaces or tabs):
 *
 *   mows-crc32-chunks 1 CHUNK_SIZE        the header: the first line that is not a comment
 *   SIZE RELPATH CRC CRC ...              one line per file
 *
 * CHUNK_SIZE is a power of two from 4096 to 1 GiB, in bytes. SIZE is the file's size in
 * bytes (decimal); RELPATH is as in crc32.txt (cache/manifest.h: relative, no '.', '..' or
 * empty components, no whitespace); then exactly ceil(SIZE / CHUNK_SIZE) CRCs of 8 hex
 * digits (none for an empty file). Lines starting with '#' are comments; blank lines and a
 * trailing '\r' are ignored. A bad header rejects the whole file (the error names the line
 * and what was expected); a bad file line is skipped with a warning naming its line, and a
 * later line for the same path replaces an earlier one (warning).
 *
 * A map is immutable once parsed; lookups are thread-safe.
 */
#ifndef MOWS_CACHE_CHUNKMAP_H
#define MOWS_CACHE_CHUNKMAP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#define CHUNKMAP_MAGIC "mows-crc32-chunks"
#define CHUNKMAP_VERSION 1
#define CHUNKMAP_MIN_CHUNK 4096ull
#define CHUNKMAP_MAX_CHUNK (1ull << 30)

struct cache_chunkmap;

/*
 * Parses @len bytes of @text; @name is used in messages ("crc32.chunks:3: ..."), warnings go
 * to common/log.h. With @target nonzero, the CRCs are regrouped into chunks of @target bytes
 * (which must be a multiple of the file's CHUNK_SIZE). Returns a new map, or NULL with errno
 * set and the reason in @err: EINVAL (bad header), EXDEV (@target is not a multiple of
 * CHUNK_SIZE), ENOMEM.
 */
struct cache_chunkmap *cache_chunkmap_parse(const char *text, size_t len, const char *name,
					    uint64_t target, unsigned *nskipped, char *err,
					    size_t errlen);

/* Reads @path beneath @dirfd as cache_manifest_read() does, then parses it as above. */
struct cache_chunkmap *cache_chunkmap_load(int dirfd, const char *path, uint64_t target,
					   char *err, size_t errlen);

void cache_chunkmap_free(struct cache_chunkmap *m);

/* The chunk size of the CRCs handed out by lookups (@target when it was given). */
uint64_t cache_chunkmap_chunk_size(const struct cache_chunkmap *m);

/* The CHUNK_SIZE written in the file. */
uint64_t cache_chunkmap_file_chunk_size(const struct cache_chunkmap *m);

/*
 * Looks up @relpath. Returns true and sets *@size, *@crcs (valid while @m lives) and *@n
 * (= ceil(size / chunk size)) when listed.
 */
bool cache_chunkmap_lookup(const struct cache_chunkmap *m, const char *relpath,
			   uint64_t *size, const uint32_t **crcs, uint64_t *n);

/* Number of valid entries. */
size_t cache_chunkmap_count(const struct cache_chunkmap *m);

/*
 * The sidecar's name for the manifest @manifest: a trailing ".txt" becomes ".chunks", any
 * other name gets ".chunks" appended ("crc32.txt" -> "crc32.chunks"). Returns a new string
 * or NULL (ENOMEM).
 */
char *cache_chunkmap_name(const char *manifest);

/* Writers, for mows-crc32: the header line, and one file's line. Return 0 or -EIO. */
int cache_chunkmap_write_header(FILE *out, uint64_t chunk_size);
int cache_chunkmap_write_entry(FILE *out, const char *relpath, uint64_t size,
			       const uint32_t *crcs, uint64_t n);

#endif
