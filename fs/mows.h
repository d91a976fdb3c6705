/*
 * The mows-fuse daemon: shared context of fs/.
 *
 * Threads (lock order: ino_lock before the cache's lock, the tree's locks are leaves; none is held
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
 *   - the metadata thread (cache/tree.c, started at INIT): takes a new snapshot of the
 *     backing tree every metadata_ttl and when asked (mowsctl refresh, a fill that found its
 *     file changed); FUSE ops read the current snapshot and never call into the backing.
 * With supervise = on this process is the child of a supervisor process (supervisor.h) that
 * holds the FUSE device; node ids and fh values are chosen so that a later child can serve
 * the ones this process handed out. THREADS.md lists every thread and lock.
 */
#ifndef MOWS_FS_MOWS_H
#define MOWS_FS_MOWS_H

#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/stat.h>

#include "cache/cache.h"
#include "cache/manifest.h"
#include "cache/tree.h"
#include "common/config.h"

struct fuse_session;
struct control;
struct peers;
struct meta_share;
struct metrics;
struct notify;
struct mows_open_rec;
struct super_child;

/*
 * One FUSE inode. A regular file's identity includes its size and mtime, so a rewritten
 * backing file becomes a new FUSE inode with its own page cache: old mappings keep old bytes.
 * An inode holds no descriptor, and no op opens the backing: its identity comes from the
 * metadata snapshot, and fills open the file (one confined open, cache/tree.h) through the
 * tree's bounded pool, so descriptors never grow with the inodes the kernel remembers.
 */
struct mows_inode {
	uint64_t nodeid;           /* a function of the identity below (inode.c) */
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
	uint32_t opens_plain;      /* opens served through the daemon */
	uint32_t opens_pt;         /* opens in passthrough mode onto backing_id */
	int backing_id;            /* the kernel's id of file's cache file, while opens_pt */
	struct mows_open_rec *rec; /* its open counts in the supervised table, or NULL */
	uint32_t pins_owed;        /* inherited passthrough opens not yet pinned */
	uint32_t pins_foreign;     /* pins taken for them */
	struct mows_inode *hnext;
};

/* The lookup count of an inode a previous serving process handed out: never forgotten. */
#define MOWS_NLOOKUP_UNKNOWN (1ull << 62)

#define MOWS_INODE_BUCKETS 8192

struct mows {
	struct mows_config cfg;
	char mountpoint[PATH_MAX];
	char backing[PATH_MAX];
	char socket_path[PATH_MAX];
	struct cache_tree *tree;   /* the backing tree, opened before mounting */
	bool foreground;
	struct cache *cache;
	struct fuse_session *se;
	struct control *control;
	struct peers *peers;          /* NULL when listen is not set */
	struct meta_share *mshare;    /* metadata from peers (net/meta_share.h), or NULL */
	pthread_t prefetch_thread;
	bool prefetching;
	_Atomic bool prefetch_stopping;
	uint64_t prefetched;          /* bytes; the prefetch thread's own */

	pthread_mutex_t ino_lock;
	struct mows_inode root;
	struct mows_inode *inodes[MOWS_INODE_BUCKETS]; /* protected by ino_lock */

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

	/* FUSE passthrough (passthrough.c). */
	bool pt_wanted;                   /* detected possible at start: mows mounts itself */
	int fuse_fd;                      /* /dev/fuse when mows mounted it, else -1 */
	_Atomic uint64_t init_unique;     /* the INIT request, seen by the read hook */
	_Atomic bool pt_offered;          /* the kernel offered passthrough at INIT */
	_Atomic bool pt_negotiated;       /* our INIT reply asked for it */
	_Atomic bool pt_failed;           /* a backing open failed: no more tries */
	unsigned char init_in[64];        /* the kernel's INIT body, by the read hook */
	size_t init_len;
	_Atomic int init_replay;          /* supervised: the saved INIT (passthrough.c) */
	unsigned char init_reply[80];     /* libfuse's answer to it, set before init_replay */
	size_t init_reply_len;            /* is INIT_DONE; read-only afterwards */

	/* Open file and directory handles (ops.c): fh = epoch << 40 | slot. */
	pthread_mutex_t fh_lock;
	void **fh_slots;                  /* protected by fh_lock */
	uint32_t fh_cap, fh_next;         /* protected by fh_lock */
	uint32_t *fh_free, fh_nfree;      /* protected by fh_lock */
	uint32_t fh_epoch;                /* this process's, never 0 */

	/* Supervision (supervisor.c): NULL unless a supervisor started this process. */
	struct super_child *super;
	/* Passthrough opens, which the kernel then serves without us (status, /metrics). */
	_Atomic uint64_t pt_opens;        /* opens that went passthrough, since start */
	_Atomic uint64_t pt_bytes_opened; /* the file size of each of those, summed */
	_Atomic uint64_t pt_open_now;     /* passthrough opens not released yet */
};

/* ops.c */
extern const struct fuse_lowlevel_ops mows_ops;
/* The handle table (fh values tell this process's handles from a previous one's). */
int mows_handles_init(struct mows *m);
void mows_handles_release(struct mows *m);
/* The cache version of @in (referenced), as an open takes it. NULL with errno set. */
struct cache_file *mows_inode_version(struct mows *m, struct mows_inode *in);
int mows_inval_start(struct mows *m);
/* Shows a FIFO, socket or device as an empty regular file without permissions. */
void mows_present_stat(struct stat *st);
void mows_inval_stop(struct mows *m);
/* Cache event: queue an invalidation of the kernel's pages of FUSE inode @cookie. */
void mows_invalidate(void *ctx, uint64_t cookie);

/* passthrough.c */
struct fuse_req;
/*
 * At start, after the cache exists: whether passthrough can work here (passthrough key,
 * the cache in files, kernel >= 6.9, CAP_SYS_ADMIN). Logs one line. -EINVAL with a message
 * in @err when passthrough = on cannot be had.
 */
int mows_pt_detect(struct mows *m, char *err, size_t errlen);
/* Opens /dev/fuse, mounts it on the mountpoint and gives it to m->se. 0 or -1 (logged). */
int mows_pt_mount(struct mows *m, const char *fsname);
/* Unmounts what mows_pt_mount() mounted (nothing otherwise). */
void mows_pt_unmount(struct mows *m);
/* Whether opens may go passthrough now (negotiated at INIT, no refusal since). */
bool mows_pt_usable(struct mows *m);
/*
 * Chooses the mode of an open of @in (version @f): returns the backing id with *@pt true,
 * or -1 for an ordinary open. Every open must be undone with mows_pt_release().
 */
int mows_pt_open(struct mows *m, struct mows_inode *in, struct cache_file *f, bool *pt);
void mows_pt_release(struct mows *m, struct mows_inode *in, struct cache_file *f, bool pt);
/* Replies to an open with FOPEN_PASSTHROUGH onto @backing_id. As fuse_reply_open(). */
int mows_pt_reply_open(struct fuse_req *req, uint64_t fh, int backing_id);
/* Release of an open a previous serving process made (@pt: in passthrough mode). */
void mows_pt_release_foreign(struct mows *m, struct mows_inode *in, bool pt);
/*
 * Supervised: a new inode takes the open counts a previous serving process left for its
 * node id (ino_lock held); mows_pt_adopt_pins() then pins its cache file for them.
 */
void mows_opens_adopt(struct mows *m, struct mows_inode *in);
void mows_pt_adopt_pins(struct mows *m, struct mows_inode *in);
/* Supervised, at start: takes up every inode with opens in the shared table. */
void mows_opens_adopt_all(struct mows *m);

/* inode.c */
int mows_inodes_init(struct mows *m);
void mows_inodes_release(struct mows *m);
/* Looks up @name in @parent, taking a lookup reference. Returns the inode or NULL, errno set. */
struct mows_inode *mows_inode_lookup(struct mows *m, struct mows_inode *parent,
				     const char *name);
/*
 * The inode of @nodeid: one this process knows, else one a previous serving process handed
 * out, found again in the snapshot by its identity. NULL with errno ESTALE when no object
 * has that identity now (the file changed or went while no process served).
 */
struct mows_inode *mows_inode_get(struct mows *m, uint64_t nodeid);
/* Only the inodes this process knows (for forget): NULL when unknown. */
struct mows_inode *mows_inode_find(struct mows *m, uint64_t nodeid);
void mows_inode_forget(struct mows *m, struct mows_inode *in, uint64_t n);
int64_t mows_mtime_ns(const struct stat *st);
/* lstat of @relpath from the metadata snapshot (never the backing). 0 or -ENOENT. */
int mows_meta_stat(struct mows *m, const char *relpath, struct stat *st);
/* mowsctl refresh: takes a new snapshot now and reports to @out. Returns the exit status. */
int mows_refresh(struct mows *m, FILE *out);

/* The backing tree's walk and versions, for control.c and the prefetch thread. */
static inline int mows_walk(struct mows *m, const char *relpath, cache_tree_fn fn, void *arg)
{
	return cache_tree_walk(m->tree, relpath, fn, arg);
}

static inline struct cache_file *mows_version_at(struct mows *m, const char *relpath)
{
	return cache_tree_version(m->tree, relpath, 0, NULL);
}

/* control.c */
/* Binds the control socket (mode 0600). Returns NULL with a message in @err. */
struct control *control_new(struct mows *m, const char *path, char *err, size_t errlen);
int control_start(struct control *ctl);
void control_free(struct control *ctl);

#endif
