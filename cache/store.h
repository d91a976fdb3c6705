/*
 * The cache store: where chunk bytes live when they are kept in files (cache_store = files).
 *
 * mows mounts a private tmpfs of its own (huge=within_size, mode 0700) at a directory of
 * its run directory, e.g. /run/mows/<escaped mountpoint>.cache, and keeps one sparse file
 * per version of a backing file in it: chunk n at offset n x chunk_size, the file's size
 * that of the backing file. Each file is mapped once, shared, for the daemon's own reads and
 * writes; the same file can back a FUSE passthrough open, so readers and the daemon share
 * one copy of the bytes, in 2 MiB pages. Memory is taken per chunk as it fills
 * (cache_store_alloc()) and given back when a chunk is evicted (cache_store_punch()).
 *
 * Why a tmpfs mount and not a memfd per version: shmem transparent huge pages for memfds
 * follow the machine-wide shmem_enabled setting (Debian: never), while a tmpfs mount chooses
 * its own with huge=; the mount also bounds the total (size=) so a fault past it is an
 * ENOSPC from fallocate, never a SIGBUS in a fill, and it gives the files names a later
 * daemon could find again. The files are unlinked when their version is freed; the mount
 * is detached (MNT_DETACH) at exit, and a stale one left by a crashed daemon is detached at
 * start, so nothing outlives the daemon but what open passthrough files still reference.
 *
 * Not thread-safe by itself: cache/cache.c calls these under its lock or on a version it
 * holds a reference to.
 */
#ifndef MOWS_CACHE_STORE_H
#define MOWS_CACHE_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct cache_store;

/*
 * One version's file, mapped once. No descriptor is kept (a daemon may hold versions of more
 * files than its descriptor limit): the mapping keeps the file, memory is taken and given
 * back through the mapping, and cache_store_file_open() opens it by name when a descriptor
 * is needed (passthrough).
 */
struct cache_store_file {
	bool exists;          /* created and not yet released */
	unsigned char *map;   /* MAP_SHARED of the whole file, NULL for an empty one */
	size_t map_len;
	char name[32];
	struct cache_store *store;
};

/*
 * Mounts the store's tmpfs at @dir (created mode 0700 if missing), holding at most @limit
 * bytes, in transparent huge pages unless !@huge (hugepages = off). Needs CAP_SYS_ADMIN.
 * With @warm, a store a previous daemon left at @dir (a tmpfs
 * with an index, see below) is kept as it is; otherwise one found there is detached first.
 * Returns NULL with errno set and a message naming @dir and the fix in @err.
 */
struct cache_store *cache_store_new(const char *dir, uint64_t limit, bool warm, bool huge,
				    char *err, size_t errlen);

/*
 * Detaches the tmpfs and removes @dir, or with @keep leaves both (and every file not
 * released) for the next daemon. Safe on NULL.
 */
void cache_store_free(struct cache_store *s, bool keep);

/*
 * Detaches the tmpfs from the file system tree and removes @dir, leaving @s and its mappings
 * usable: for a daemon that exits with a thread still writing into the store (stuck in a
 * backing read), so its memory goes with the process instead of staying mounted.
 */
void cache_store_detach(struct cache_store *s);

/*
 * Warm restart: the index a daemon writes at a clean exit, naming each kept file with the
 * identity of its version and the CRC of each chunk it holds. Binary, little-endian,
 * versioned; the whole is covered by a CRC-32 in its header, so a torn or foreign index is
 * refused (-EBADMSG) and the daemon starts cold, never serves bytes it cannot vouch for: a
 * chunk is adopted only when its bytes still give the CRC the index names.
 */
struct cache_store_entry {
	char name[32];        /* the file in the store */
	char *relpath;
	uint64_t key, dev, ino, size;
	int64_t mtime_ns;
	uint64_t nchunks;
	uint32_t *crc;        /* per chunk, valid where have[k] */
	uint8_t *have;
	bool claimed;         /* adopted by a version of this daemon */
};

struct cache_store_index {
	uint64_t chunk_size;
	size_t n;
	struct cache_store_entry *e;
};

/* Writes @idx (to a temporary name, then renamed). 0 or -errno. */
int cache_store_index_write(struct cache_store *s, const struct cache_store_index *idx);

/*
 * Reads the index and removes it (it describes the files as the last daemon left them; this
 * daemon writes its own at exit). -ENOENT when there is none, -EBADMSG when it is torn, of
 * another format version or of another chunk size than @chunk_size.
 */
int cache_store_index_load(struct cache_store *s, uint64_t chunk_size,
			   struct cache_store_index *out);
void cache_store_index_release(struct cache_store_index *idx);

/* Maps the kept file @name of @size bytes as cache_store_file_create() would. 0, -errno. */
int cache_store_file_adopt(struct cache_store *s, const char *name, uint64_t size,
			   struct cache_store_file *out);

/* Removes every file of the store but this daemon's own and those @idx marks claimed. */
void cache_store_sweep(struct cache_store *s, const struct cache_store_index *idx);

/* The mount's directory. */
const char *cache_store_dir(const struct cache_store *s);

/*
 * Creates, sizes (@size bytes, sparse) and maps the file of version @id. Returns 0 or
 * -errno. Release with cache_store_file_release().
 */
int cache_store_file_create(struct cache_store *s, uint64_t id, uint64_t size,
			    struct cache_store_file *out);

/*
 * A say before bytes go, for whoever registered file memory with a NIC (net/rdma.c, through
 * cache_set_forget()): @fn(@ctx, addr, len) runs before cache_store_punch() gives a range
 * back and before cache_store_file_release() unmaps a file, so that no memory region keeps
 * pages the file no longer holds. NULL @fn: none. Set and called under cache->lock.
 */
void cache_store_set_forget(struct cache_store *s,
			    void (*fn)(void *ctx, const void *addr, size_t len), void *ctx);

/* Unmaps and unlinks (unless @keep: left for a warm restart). Safe on a zeroed file. */
void cache_store_file_release(struct cache_store_file *f, bool keep);

/* A new read-only descriptor of the file (the caller closes it), or -errno. */
int cache_store_file_open(const struct cache_store_file *f);

/*
 * Allocates [off, off + len) (and maps it in) so writes to it cannot fault for want of
 * space: 0 or -ENOSPC. Kernels before 5.14 fault pages in as the fill writes them.
 */
int cache_store_alloc(struct cache_store_file *f, uint64_t off, uint64_t len);

/* Gives [off, off + len) back (reads as zeros afterwards). */
void cache_store_punch(struct cache_store_file *f, uint64_t off, uint64_t len);

#endif
