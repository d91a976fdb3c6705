/*
 * The backing tree: the one owner of everything mows does beneath the backing directory.
 *
 *   - the root descriptor (O_PATH, opened before a mount can hide the directory);
 *   - one confined open: every path is resolved beneath the root (openat2 RESOLVE_BENEATH,
 *     no magic links, the last component never followed) and first opened O_PATH, so a FIFO,
 *     socket or device is recognised by fstat() and refused before anything could block on
 *     it; a regular file is then re-opened for reading through that very inode;
 *   - one directory walk, iterative: an explicit stack of relpaths, one directory descriptor
 *     open at a time, depth capped at CACHE_TREE_MAX_DEPTH (what it skips is logged);
 *   - the file-key index (key -> relpath) for peers, a hash table built from the metadata
 *     snapshot (or, without the metadata thread, by a walk);
 *   - the manifest (crc32_file) and the opening of cache versions (cache_file) with it;
 *   - a bounded pool of read descriptors for fills (cache/fdpool.h; used by the backing fill
 *     source, cache/backing.h), so that descriptors never grow with the number of files;
 *   - the metadata snapshot (cache/meta.h) and the thread that takes it again.
 *
 * No layer above needs to reach into the backing directory itself: fs/ (FUSE ops, mowsctl)
 * and net/ (through struct peer_host_ops) call this module.
 *
 * Threads: every function may be called from any thread unless it says otherwise. Locks:
 * tree->keys_lock, tree->manifest_lock, tree->meta_lock, tree->order_lock and the
 * descriptor pool's lock
 * (cache/fdpool.h) are leaves below the cache's lock, in no order with each other: none is
 * held while another is taken, nor across I/O, nor across a call into the cache.
 */
#ifndef MOWS_CACHE_TREE_H
#define MOWS_CACHE_TREE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/stat.h>

#include "cache/cache.h"
#include "cache/meta.h"

struct cache_tree;

/* A walk goes no deeper than this many directories below where it starts. */
#define CACHE_TREE_MAX_DEPTH 256

struct cache_tree_config {
	const char *path;          /* the backing directory (absolute) */
	const char *crc32_file;    /* manifest relpath; NULL or "" for none */
	bool verify;               /* look expected CRCs up in the manifest */
	bool random_access;        /* POSIX_FADV_RANDOM on backing files (nodes with peers) */
	/* Identity every node derives alike (proto_file_key in net/proto.h). */
	uint64_t (*file_key)(const char *relpath, uint64_t size, int64_t mtime_ns);
	unsigned max_open;         /* pooled read descriptors; 0 = RLIMIT_NOFILE / 8, 4..256 */
	unsigned rescan_min_ms;    /* a key miss walks again at most this often; 0 = 1000 */
	unsigned depth_max;        /* 0 = CACHE_TREE_MAX_DEPTH */
};

/*
 * Opens @cfg->path and loads the manifest. @c (which must outlive the tree) receives the
 * versions. Returns NULL with a message naming the path and the fix in @err.
 */
struct cache_tree *cache_tree_new(const struct cache_tree_config *cfg, struct cache *c,
				  char *err, size_t errlen);

/*
 * Closes every descriptor and frees the tree. Call after every user has stopped. A metadata
 * thread stuck in a stalled store is waited for 0.5 s, then left with the tree (not freed).
 */
void cache_tree_free(struct cache_tree *t);

/* The root's O_PATH descriptor (owned by the tree). */
int cache_tree_root_fd(const struct cache_tree *t);

/* The cache the tree opens versions in. */
struct cache *cache_tree_cache(const struct cache_tree *t);

enum cache_tree_open_mode {
	CACHE_TREE_PATH,   /* O_PATH of anything (a symlink itself, not its target) */
	CACHE_TREE_READ,   /* O_RDONLY of a regular file; anything else: -EINVAL */
	CACHE_TREE_DIR,    /* O_RDONLY | O_DIRECTORY of a directory; else -ENOTDIR */
};

/*
 * The one confined open: @relpath ("" = the root) beneath the root, never blocking on a
 * non-regular file. Fills *@st (may be NULL) from fstat of what was opened. Returns a new
 * descriptor (the caller closes it) or -errno. Descriptor exhaustion is logged (see
 * cache_tree_note_nofile).
 */
int cache_tree_open(struct cache_tree *t, const char *relpath, enum cache_tree_open_mode mode,
		    struct stat *st);

/*
 * Makes @st (of @relpath) carry the inode number mows identifies the file by. Over a FUSE
 * backing (s3fs, ossfs: high-level libfuse without use_ino) st_ino is a node number that
 * changes whenever the kernel forgets the inode, so it is replaced by a hash of the relpath
 * (a replaced file still differs in size or mtime); elsewhere @st is left alone. Every stat
 * this module hands out (opens, walks, the snapshot) has been through it.
 */
void cache_tree_identity(const struct cache_tree *t, const char *relpath, struct stat *st);

/* lstat() of @relpath beneath the root (a confined open and fstat). 0 or -errno. */
int cache_tree_stat(struct cache_tree *t, const char *relpath, struct stat *st);

/* readlink() of the symlink @relpath beneath the root into @buf (NUL-terminated). */
ssize_t cache_tree_readlink(struct cache_tree *t, const char *relpath, char *buf, size_t len);

/* "a FIFO", "a socket", "a character device", ... for messages about what was skipped. */
const char *cache_tree_kind(mode_t mode);

/*
 * Logs once a minute at most that a descriptor could not be opened because of @err
 * (-EMFILE or -ENFILE, as open() calls here return them; anything else, a descriptor
 * included, is ignored), naming the limit and how to raise it. @what
 * says what was being opened. Safe from any thread; usable by every part of the daemon.
 */
void cache_tree_note_nofile(int err, const char *what);

typedef int (*cache_tree_fn)(void *arg, const char *relpath, const struct stat *st);

/*
 * Calls @fn for every regular file beneath @relpath ("" = the root), never following a
 * link, or for @relpath itself when it is a regular file. Directories deeper than depth_max,
 * paths too long to open and entries that are neither files nor directories are skipped
 * (logged: what, and why). Holds at most one directory descriptor open at any time, and none
 * while @fn runs. Stops at and returns the first nonzero value of @fn; -EINVAL when @relpath
 * is neither a regular file nor a directory; -errno when it cannot be opened.
 */
int cache_tree_walk(struct cache_tree *t, const char *relpath, cache_tree_fn fn, void *arg);

/*
 * Returns a referenced cache version of the regular file @relpath (NULL with errno set:
 * EINVAL when it is not a regular file, ENOENT when there is none). With @expect, the file
 * must still have its device, inode, size and mtime, else ESTALE. @cookie goes to cache
 * events (0: none). While the metadata thread runs, the identity comes from the snapshot and
 * nothing below touches the backing (the first fill opens the file and checks it is that
 * version); without it (tools, tests) the file is opened here, and the manifest and
 * crc32.chunks are checked for changes first.
 */
struct cache_file *cache_tree_version(struct cache_tree *t, const char *relpath,
				      uint64_t cookie, const struct stat *expect);

/* Reloads the manifest when its mtime changed. 0 or -errno. */
int cache_tree_manifest_refresh(struct cache_tree *t);

/*
 * The relpath of the regular file whose key is @key, as a new string (the caller frees it),
 * or NULL. The index follows the metadata snapshot. A miss asks for a new snapshot (or,
 * without the metadata thread, walks the tree) at most once per rescan_min_ms; a miss while
 * that is underway waits for it (10 s at most), so a burst of requests for a new file does
 * not answer "not here" before the listing that would find it has ended.
 */
char *cache_tree_key_path(struct cache_tree *t, uint64_t key);

/*
 * Peer host op (struct peer_host_ops.open_key, ctx = the tree): a referenced version of the
 * backing file with this key, size and mtime, found by key (never by a path a peer names),
 * or NULL.
 */
struct cache_file *cache_tree_open_key(void *ctx, uint64_t key, uint64_t size,
				       int64_t mtime_ns);

/*
 * A read descriptor of version @f from the pool (re-opened by relpath when the pool had
 * dropped it, checked to be the same file). Returns the descriptor or -errno (-ESTALE when
 * the file at that path is no longer this version); put it back with cache_tree_fd_put().
 */
int cache_tree_fd_get(struct cache_tree *t, struct cache_file *f);
void cache_tree_fd_put(struct cache_tree *t, int fd);

/*
 * Every chunk of @f is cached: closes its pooled descriptor (now, or when its last fill puts
 * it back), so a FUSE backing drops its temporary copy. May block in close() on a stalled
 * store: fill threads only.
 */
void cache_tree_fd_release(struct cache_tree *t, struct cache_file *f);

/*
 * The metadata snapshot (cache/meta.h). cache_tree_meta_load() takes one now (at mount,
 * before the FUSE session): 0 or -errno when the root cannot be listed. After that
 * cache_tree_meta_start() runs the metadata thread, which takes a new one every @ttl_ms and
 * when asked; a refresh that fails keeps the snapshot (logged once until one succeeds).
 */
int cache_tree_meta_load(struct cache_tree *t);
int cache_tree_meta_start(struct cache_tree *t, unsigned ttl_ms);

/* The current snapshot with a reference (drop it with cache_meta_put()), or NULL if none. */
struct cache_meta *cache_tree_meta(struct cache_tree *t);

/*
 * Asks the metadata thread for a new snapshot and waits up to @wait_ms for it. Returns 0,
 * -ETIMEDOUT, -ESRCH when the thread does not run, or the failed walk's -errno.
 */
int cache_tree_meta_refresh(struct cache_tree *t, int64_t wait_ms);

/*
 * The same in two steps, for a caller that waits in slices (and stops waiting when it must):
 * _ask() returns a ticket (or -ESRCH when the thread does not run), _wait() waits up to
 * @wait_ms for the refresh that serves it and returns as cache_tree_meta_refresh() does.
 */
int64_t cache_tree_meta_ask(struct cache_tree *t);
int cache_tree_meta_wait(struct cache_tree *t, int64_t ticket, int64_t wait_ms);

/*
 * Asks the metadata thread for a new snapshot without waiting (a fill found its file
 * changed). At most once per rescan_min_ms, and not while a refresh is pending.
 */
void cache_tree_meta_kick(struct cache_tree *t);

/*
 * The order a reader reads files in, for readahead that runs on past a file's end
 * (struct cache_next_ops; cache_tree_new() registers it with the cache, answered from the
 * snapshot, so every reader of the cache must stop before the tree is freed).
 *
 * The file a reader of the regular file @relpath is likely to read next, by the snapshot
 * @m: the next entry by name, in the directory it was named in, that is a non-empty
 * regular file or a symlink (one hop, resolved by name beneath the root) to one. "Named
 * in", with @by_links: when a symlink points at @relpath (a Hugging Face snapshot's
 * model-00001-of-00004.safetensors -> ../../blobs/<sha256>) its directory and name count,
 * since that is the order a loader opens shards in; else (and without @by_links, the order
 * of `find | sort`) @relpath's own. The cache's hook asks for both and follows the one the
 * last reader took (a reader that started on the other prediction switches it). Small
 * files are not skipped: a
 * reader that goes through a directory in name order reads them too, and one costs the
 * window one chunk. Returns a new string (the caller frees it), or NULL when there is
 * none (the last file, not a regular file, out of memory). Pure: reads @m only.
 */
char *cache_tree_next_file(const struct cache_meta *m, const char *relpath, bool by_links);

/* Numbers for tests and status: descriptors pooled now, and the pool's size. */
void cache_tree_pool_stats(struct cache_tree *t, unsigned *open, unsigned *max);

/*
 * ---- Snapshots shared between peers (net/meta_share.h plugs in here) ----
 *
 * With a source set, one node of a cluster lists the backing per refresh and the others
 * copy its snapshot: the metadata thread asks the source first (every CACHE_TREE_POLL_MS
 * and on every refresh request), and lists the backing itself only when the source says
 * so (this node is the lister, or the lister cannot be reached and the snapshot is due).
 *
 * Identity with a source: every node names a file's version by (relpath, size, mtime), as
 * over a FUSE backing: st_ino is a hash of the relpath and st_dev the root's, on every
 * stat this module hands out, so a copied snapshot and a local open agree. A fill still
 * opens and fstats the file and refuses a version whose size or mtime changed (a new
 * version, and a refresh of the cluster's snapshot), and chunks are still checked against
 * the CRCs.
 *
 * The shared form of a snapshot, version 1 (big-endian):
 *   u32 magic 0x4d575348 ("MWSH") | u16 version (1) | u16 flags (bit 0: a manifest, bit 1:
 *   a crc32.chunks) | u16 manifest name length | u16 0 | u32 tree length | u32 manifest
 *   length | u32 chunks length | manifest name | tree (cache/meta.h wire form) | crc32.txt
 *   text | crc32.chunks text
 * A text is present exactly when its flag is; the lengths add up to the whole. The manifest
 * name must equal this node's crc32_file, else the copy is refused.
 */
#define CACHE_TREE_SHARE_MAX (256u << 20)
#define CACHE_TREE_POLL_MS 2000

struct cache_tree_meta_source {
	/*
	 * Called on the metadata thread (and by net/meta_share.h's first load) before a
	 * listing. @forced: a refresh was asked for (mowsctl refresh, a changed file, a key
	 * miss). Returns 1 when the snapshot in use is current with the cluster's (it may have
	 * called cache_tree_meta_import() or cache_tree_meta_heard()), 0 when this node must
	 * list the backing itself if the snapshot is due (@forced, or older than metadata_ttl).
	 */
	int (*fetch)(void *ctx, bool forced);
	void *ctx;
};

/* Sets the source; call once, before cache_tree_meta_load() and before any thread runs. */
void cache_tree_meta_set_source(struct cache_tree *t, const struct cache_tree_meta_source *src);

/* The snapshot in its shared form, referenced (cache_tree_share_put() drops it). */
struct cache_tree_share {
	const uint8_t *bytes;
	size_t len;
	uint64_t version;   /* a hash of the bytes: equal on nodes with the same snapshot */
	uint64_t age_ms;    /* how long ago the backing was listed for it */
	void *ref;
};

/* 0, or -EAGAIN when there is no shared form yet (no source, or no snapshot). Any thread,
 * memory only. */
int cache_tree_share_get(struct cache_tree *t, struct cache_tree_share *out);
void cache_tree_share_put(struct cache_tree_share *s);

/* The version of the snapshot in use (0: none). Any thread. */
uint64_t cache_tree_meta_version(struct cache_tree *t);

/*
 * Installs a peer's snapshot from its shared form (@len bytes, copied), listed @age_ms ago,
 * with its manifest and crc32.chunks. Returns 0, or -EPROTO (malformed: logged), -EINVAL
 * (another crc32_file), -ENOMEM; the snapshot in use then stays. Metadata thread, or before
 * it starts.
 */
int cache_tree_meta_import(struct cache_tree *t, const void *bytes, size_t len,
			   uint64_t version, uint64_t age_ms);

/* The peer's snapshot is still @version, listed @age_ms ago: records its age. */
void cache_tree_meta_heard(struct cache_tree *t, uint64_t version, uint64_t age_ms);

/* How long ago the snapshot in use was listed (UINT64_MAX: none). Any thread. */
uint64_t cache_tree_meta_age_ms(struct cache_tree *t);

#endif
