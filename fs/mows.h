/*
 * The mows-fuse daemon: shared context of fs/.
 *
 * Threads (lock order: ino_lock before manifest_lock before the cache's lock; none is held
 * across a FUSE reply, a cache fill wait or a socket write):
 *   - FUSE loop threads (libfuse, fuse_session_loop_mt): run the ops in ops.c.
 *   - cache fill threads (cache/): fill chunks; call mows_invalidate() through cache events.
 *   - the invalidation thread (ops.c): sends kernel cache invalidations queued by
 *     mows_invalidate(), so that no notification is sent from inside a request.
 *   - the control thread and one thread per mowsctl client (control.c).
 *   - the readahead thread (main.c): sets the mount's readahead once INIT is done, then ends.
 *   - the metrics thread (libmicrohttpd's, metrics.c): formats /metrics from snapshots; takes
 *     the cache's lock (and the peers' lock) only inside cache_get_stats()/peers_report().
 *   - the notify thread (notify.c, only under systemd): probes the mount with statfs() and
 *     sends READY=1, WATCHDOG=1 and STATUS=; holds no lock of ours across the probe.
 */
#ifndef MOWS_FS_MOWS_H
#define MOWS_FS_MOWS_H

#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/stat.h>

#include "cache/cache.h"
#include "cache/manifest.h"
#include "common/config.h"

struct fuse_session;
struct control;
struct peers;
struct metrics;
struct notify;

/*
 * One FUSE inode. A regular file's identity includes its size and mtime, so a rewritten
 * backing file becomes a new FUSE inode with its own page cache: old mappings keep old bytes.
 */
struct mows_inode {
	int fd;                    /* O_PATH descriptor in the backing tree */
	dev_t dev;
	ino_t ino;
	uint64_t size;             /* regular files only, else 0 */
	int64_t mtime_ns;          /* regular files only, else 0 */
	mode_t type;               /* S_IFMT bits */
	char *relpath;             /* "" for the root */
	struct stat st;            /* attributes when first looked up */
	/* Protected by mows->ino_lock. */
	uint64_t nlookup;
	struct cache_file *file;   /* this inode's version, from its first open */
	struct mows_inode *hnext;
};

#define MOWS_INODE_BUCKETS 8192

struct mows {
	struct mows_config cfg;
	char mountpoint[PATH_MAX];
	char backing[PATH_MAX];
	char socket_path[PATH_MAX];
	int root_fd;               /* O_PATH of the backing root, opened before mounting */
	bool foreground;
	struct cache *cache;
	struct fuse_session *se;
	struct control *control;
	struct peers *peers;          /* NULL when listen is not set */
	pthread_t prefetch_thread;
	bool prefetching;
	_Atomic bool prefetch_stopping;
	uint64_t prefetched;          /* bytes; the prefetch thread's own */

	pthread_mutex_t keys_lock;
	struct key_entry *keys;       /* file key -> relpath, protected by keys_lock */
	size_t nkeys;                 /* protected by keys_lock */
	uint64_t keys_scanned_ns;     /* protected by keys_lock */
	bool keys_walking;            /* a thread walks the tree; protected by keys_lock */
	pthread_cond_t keys_cond;     /* the walk ended */

	pthread_mutex_t ino_lock;
	struct mows_inode root;
	struct mows_inode *inodes[MOWS_INODE_BUCKETS]; /* protected by ino_lock */

	pthread_mutex_t manifest_lock;
	struct cache_manifest *manifest;  /* protected by manifest_lock */
	struct timespec manifest_mtime;   /* protected by manifest_lock */
	bool manifest_present;            /* protected by manifest_lock */

	/* Kernel invalidations waiting for the invalidation thread. */
	pthread_mutex_t inval_lock;
	pthread_cond_t inval_cond;
	uint64_t *inval_queue;            /* protected by inval_lock */
	unsigned inval_n, inval_cap;      /* protected by inval_lock */
	bool inval_stop;                  /* protected by inval_lock */
	pthread_t inval_thread;

	struct hist read_latency;         /* FUSE reads, request to reply; atomic */
	struct metrics *metrics;          /* NULL when metrics_listen is not set */
	struct notify *notify;            /* NULL when not started by systemd */
};

/* ops.c */
extern const struct fuse_lowlevel_ops mows_ops;
int mows_inval_start(struct mows *m);
void mows_inval_stop(struct mows *m);
/* Cache event: queue an invalidation of the kernel's pages of FUSE inode @cookie. */
void mows_invalidate(void *ctx, uint64_t cookie);

/* inode.c */
int mows_inodes_init(struct mows *m);
void mows_inodes_release(struct mows *m);
/* Looks up @name in @parent, taking a lookup reference. Returns the inode or NULL, errno set. */
struct mows_inode *mows_inode_lookup(struct mows *m, struct mows_inode *parent,
				     const char *name);
struct mows_inode *mows_inode_get(struct mows *m, uint64_t nodeid);
void mows_inode_forget(struct mows *m, struct mows_inode *in, uint64_t n);
/*
 * Returns a referenced cache version for @relpath opened from @fd (O_RDONLY, consumed):
 * identity from fstat, expected CRC from the manifest. NULL with errno set.
 */
struct cache_file *mows_open_version(struct mows *m, const char *relpath, int fd,
				     uint64_t cookie, const struct stat *st);
/* Loads or reloads crc32_file when it changed. Returns 0 or -errno for a fatal problem. */
int mows_manifest_refresh(struct mows *m);
int64_t mows_mtime_ns(const struct stat *st);

/*
 * Peer host op: a referenced version of the backing file with this key, size and mtime,
 * found by walking the backing tree (never by a path a peer names). NULL if none.
 */
struct cache_file *mows_open_key(void *ctx, uint64_t key, uint64_t size, int64_t mtime_ns);
void mows_keys_release(struct mows *m);

/*
 * Calls @fn for every regular file beneath @relpath ("" = the root), not following links.
 * Stops and returns the first nonzero value @fn returns; -errno if @relpath cannot be read.
 */
int mows_walk(struct mows *m, const char *relpath,
	      int (*fn)(void *arg, const char *relpath, const struct stat *st), void *arg);
/*
 * Opens the regular file @relpath beneath the backing root (never following a link out of
 * it) and returns a referenced cache version of it, or NULL with errno set.
 */
struct cache_file *mows_version_at(struct mows *m, const char *relpath);

/* control.c */
/* Binds the control socket (mode 0600). Returns NULL with a message in @err. */
struct control *control_new(struct mows *m, const char *path, char *err, size_t errlen);
int control_start(struct control *ctl);
void control_free(struct control *ctl);

#endif
