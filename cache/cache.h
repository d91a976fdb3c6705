/*
 * The chunk cache: slab slots indexed by (file version, chunk number), filled by a pool of
 * threads from fill sources, verified with CRC32, evicted least-recently-used.
 *
 * Files. Each version of a backing file is a struct cache_file: its identity (device, inode,
 * size, mtime) never changes. When the backing file changes, the caller opens a new version
 * under the same relpath; the old one becomes stale: its unpinned chunks are dropped at once
 * and it lives on only while handles or pinned chunks still refer to it, so old and new bytes
 * never meet in one version.
 *
 * Reads. cache_read() pins the chunks covering a range and returns pointers into the slab;
 * the caller replies straight from them and unpins with cache_read_done(). A pinned chunk is
 * never evicted or reused. Concurrent misses on one chunk wait for one fill (single flight);
 * every wait has a deadline (fill_timeout), after which the reader gets -EIO. Waiters share
 * their fill's deadline: a fill stuck in a source fails them all once, at fill_timeout after
 * it started, and later requests for that chunk fail at once until the source returns.
 *
 * Verification (verify = chunk|file|strict): each fill computes the chunk's CRC32 and records
 * it per version; a refill that disagrees fails. Once every chunk of a version has a CRC, the
 * chunk CRCs are combined and compared with the manifest's (file|strict). On mismatch the
 * chunks are dropped, the kernel's copy invalidated (events.invalidate) and the file is read
 * again once; a second mismatch makes every read of that version fail with -EIO and logs
 * "crc32 mismatch: RELPATH: manifest X, computed Y". strict fills and checks a whole file
 * before its first read returns. file never lets a read return bytes of the last chunk of a
 * version that no read had claimed before the whole-file check is done: a read whose chunks,
 * with those every earlier read claimed, cover the whole file, waits for the check (and gets
 * -EIO if the file is bad), so no reader reaches EOF of a mismatching file without an error
 * (not needed, so not done, for a version crc32.chunks lists: its chunks were each checked).
 * file also makes a read wait for the check when it is due within the fills in flight
 * (every chunk not yet checked is being filled, e.g. by readahead), and serves nothing of
 * a version being refilled after a mismatch (RETRYING) before the refill is checked. A
 * chunk read before the rest of its file was even asked for can still reach a reader
 * unchecked: only strict or crc32.chunks rule that out.
 *
 * Per-chunk CRCs (crc32.chunks, cache/chunkmap.h; see cache_chunkmap_refresh()): when the
 * sidecar lists a version (same size), every chunk is checked against it right after its
 * source wrote it, before it is cached, served or sent. A peer's bad chunk is charged to the
 * peer (ops->charge) and the next source tried; a bad chunk from storage is read again once,
 * then the fill fails with -EIO (the chunk is recorded for cache_file_bad_chunks()).
 *
 * Provenance. Every chunk records the source and origin (which peer) of its bytes. After a
 * whole-file mismatch the version is refilled from local sources only and no longer served
 * to peers; when the refill matches, every peer whose chunk differed from it is charged
 * (not a relay that only passed it on: origin 0).
 * A version turns bad (-EIO) only when its refill from this node's own storage mismatches.
 * When the refill matches but a read may already have had a chunk it proved wrong, every
 * read past offset 0 fails with -EIO until a read at offset 0 starts a new pass, so that no
 * reader gets to EOF with wrong bytes unwarned (the kernel retries a failed readahead).
 *
 * Threads and locks: one mutex (cache->lock) protects the index, the slots' metadata, the
 * queues, the file table and every cache_file's mutable fields. It is never held across a
 * fill, a callback or a reply. Fill threads are owned by the cache; all public functions may
 * be called from any thread once cache_start() returned, except cache_free().
 */
#ifndef MOWS_CACHE_CACHE_H
#define MOWS_CACHE_CACHE_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "common/config.h"
#include "common/deadline.h"
#include "common/hist.h"

struct cache;
struct cache_file;

/*
 * Relaying a chunk while it arrives (the swarm): a remote source that receives the chunk's
 * bytes in order reports the CRC its sender announced and how many bytes have landed, so
 * that a node asked for the chunk can send them on at once (cache_relay_pin()). The bytes
 * below `arrived` of one attempt never change again; a new attempt (another source, or the
 * same again) bumps `attempt`. Written by the source's thread, read by relayers: atomics.
 */
struct cache_relay {
	_Atomic uint32_t attempt;     /* bumped by cache_relay_announce() */
	_Atomic uint32_t crc;         /* the CRC the sender announced for this attempt */
	_Atomic uint32_t arrived;     /* bytes of this attempt written so far */
	_Atomic bool announced;       /* crc is set and bytes are on their way */
	_Atomic uint32_t watchers;    /* relayers parked until more bytes land (net/serve.c):
				       * while nonzero, progress calls the fill hook */
	/* Set by the cache before the fetch, for the fill hook: */
	struct cache *c;
	uint64_t file_key, chunk;
};

/* By the source: a new attempt's bytes are coming, with this CRC (calls the fill hook, so
 * that requests parked on the chunk can start relaying). Any thread, no lock held. */
void cache_relay_announce(struct cache_relay *r, uint32_t crc);
/* By the source: @bytes of the attempt have landed, in order. Calls the fill hook when a
 * relayer watches (parked until more bytes land). Any thread, no lock held. */
void cache_relay_progress(struct cache_relay *r, uint32_t bytes);

/*
 * A fill source: something that can produce the bytes of a chunk. The backing directory is
 * one (cache/backing.h); peers register as others. Sources are tried in registration order
 * until one returns 0.
 */
struct cache_fetch {
	/* In: the fill serves a peer's request (we own the chunk): a remote source may ask
	 * nodes that hold the chunk, never ask one to fill it, so serving never waits on
	 * fetching (net/peer.h). */
	bool probe_only;
	/* In: where a source reports its progress (cache_relay_announce/_progress) when it
	 * receives the bytes in order; never NULL. */
	struct cache_relay *relay;
	/* In: the CRC the bytes must have (crc32.chunks, or a verified version), when
	 * expect_known. A local source that announces it and reports its progress lets peers
	 * that asked for the chunk have its bytes while storage still sends them; the cache
	 * checks them against it before the last byte goes out (cache_relay_done()). */
	bool expect_known;
	uint32_t expect;
	/* Out: */
	uint32_t crc;         /* CRC-32 of the bytes written, when crc_known */
	bool crc_known;       /* the source checked the bytes against this CRC itself */
	uint32_t origin;      /* a remote source: which node to charge if they prove wrong (its
				 own id), or 0: a relay that passed on what its source sent */
};

struct cache_source_ops {
	const char *name;
	bool remote;          /* skipped by fills that must stay local (cache_serve_chunk) */
	/*
	 * Writes bytes [chunk * chunk_size, + @len) of @f into @dst. Returns 0 or -errno.
	 * Called on a fill thread, without locks; should give up by @dl where it can.
	 * -ESTALE means the file is no longer the version @f describes.
	 */
	int (*fetch)(void *ctx, struct cache_file *f, uint64_t chunk, void *dst, size_t len,
		     const struct deadline *dl, struct cache_fetch *out);
	/*
	 * May be NULL. The bytes that @origin (from out->origin of an earlier fetch) sent for
	 * @chunk of @f were wrong: their CRC is @sent, the right one @good (from crc32.chunks,
	 * or from this node's own storage once the whole file matched the manifest). Called
	 * without locks, on a fill thread or a thread checking a file.
	 */
	void (*charge)(void *ctx, uint32_t origin, struct cache_file *f, uint64_t chunk,
		       uint32_t sent, uint32_t good);
	/*
	 * May be NULL. Every chunk of @f is cached now: the source may let go of what it holds
	 * for that file (the backing closes its descriptor, so a FUSE store such as s3fs can
	 * drop its temporary copy). Called without locks, on the thread whose fill completed
	 * the file; a later fill (after an eviction) may need the file again.
	 */
	void (*complete)(void *ctx, struct cache_file *f);
};

/* Calls up to the layer that owns the cache, made without any cache lock held. */
struct cache_events {
	/* The kernel's cached pages for the file with this cookie are wrong: drop them. */
	void (*invalidate)(void *ctx, uint64_t cookie);
	void *ctx;
};

/*
 * Where a sequential reader goes after a file (the layer that knows the backing tree plugs
 * in: cache/tree.c registers cache_tree_next_file()). When a sequential read's readahead
 * window reaches past a file's last chunk, the rest of the window (never more) goes to the
 * first chunks of the file this names, then of the one after it (a few files at most), so
 * a reader that reads file after file (shards of a model, in name order) finds the next
 * one's first chunks on their way when it opens it, instead of an empty pipe.
 */
struct cache_next_ops {
	/*
	 * The version a reader of @f is likely to read next, referenced (the cache puts it),
	 * or NULL (none, or unknown). Called on a reader's thread with no cache lock held; must
	 * answer from memory (no wait on the backing store).
	 */
	struct cache_file *(*next)(void *ctx, struct cache_file *f);
	/* May be NULL. A sequential reader began reading @f at its start (so an order that
	 * predicted @f was the reader's). Same threads and rules as next. */
	void (*started)(void *ctx, struct cache_file *f);
	void *ctx;
};

/* What the caller knows of a backing file when it opens a version. */
struct cache_file_info {
	const char *relpath;  /* relative to the backing root; copied */
	int fd;               /* open O_RDONLY; the cache takes ownership in every case */
	dev_t dev;
	ino_t ino;
	uint64_t size;
	int64_t mtime_ns;
	bool has_crc;         /* the manifest lists this file */
	uint32_t crc;
	uint64_t cookie;      /* handed back in events.invalidate */
	uint64_t key;         /* identity every node derives alike (net/proto.h) */
};

/* A pinned piece of a read: @len bytes at @data, valid until cache_read_done(). */
struct cache_span {
	const void *data;
	size_t len;
	uint32_t slot;
};

enum cache_file_state {
	CACHE_FILE_OK,        /* nothing wrong known */
	CACHE_FILE_VERIFIED,  /* whole-file CRC matched the manifest */
	CACHE_FILE_RETRYING,  /* mismatched once; being read again */
	CACHE_FILE_BAD,       /* mismatched twice: reads fail */
	CACHE_FILE_STALE,     /* a newer version replaced this one */
};

struct cache_file_status {
	const char *relpath;
	uint64_t size;
	uint64_t cached_bytes;
	enum cache_file_state state;
	bool has_crc;
	uint32_t expected_crc;
	uint64_t chunks_total;
	uint64_t chunks_cached;
	bool has_chunk_crcs;  /* crc32.chunks lists this version */
	uint64_t chunks_bad;  /* chunks whose storage bytes failed crc32.chunks */
};

/* At most this many fill sources (cache_source_stats() numbers them). */
#define CACHE_MAX_SOURCES 4

struct cache_stats {
	uint64_t max_memory;      /* slab bytes */
	uint64_t used_memory;     /* bytes in slots that hold or are filling a chunk */
	uint64_t chunk_size;
	uint32_t slots;
	uint32_t slots_ready;
	uint64_t hits, misses;    /* chunk lookups by readers */
	uint64_t fills, fill_errors, evictions;
	uint64_t bytes_read;      /* bytes handed to readers */
	const char *slab_kind;
	/* For metrics: where the bytes read came from, CRC failures, fill times. */
	uint64_t bytes_read_hit;  /* of bytes_read: chunks that were ready when asked for */
	uint64_t bytes_read_from[CACHE_MAX_SOURCES]; /* of bytes_read: waited for source k */
	uint64_t crc_mismatches;  /* whole-file CRC checks that failed */
	uint64_t readahead_next;  /* chunk fills readahead started in a reader's next file */
	struct hist_copy fill_latency; /* time each fill spent in the sources */
};

/*
 * Creates a cache from @cfg (max_memory, chunk_size, hugepages, fill_threads, fill_timeout,
 * readahead_chunks, verify). Returns NULL with errno set and a message in @err.
 */
struct cache *cache_new(const struct mows_config *cfg, char *err, size_t errlen);

/* Registers a fill source and the event sink; call before cache_start(). */
int cache_add_source(struct cache *c, const struct cache_source_ops *ops, void *ctx);
void cache_set_events(struct cache *c, const struct cache_events *ev);

/* Registers where readahead goes past a file's end (NULL: nowhere, the default). Call before
 * any reader runs. */
void cache_set_next(struct cache *c, const struct cache_next_ops *ops);

/* Starts the fill threads. Returns 0 or -errno. */
int cache_start(struct cache *c);

/*
 * The mount is going away (SIGTERM): every reader waiting for a chunk, a slot or an old
 * version's bytes gets -EIO now, and so does every later wait; fills already running go on.
 * Without it a stop would wait for those readers' fill_timeout. Async-signal-unsafe (takes
 * the lock): call it from a thread.
 */
void cache_abort_waits(struct cache *c);

/*
 * Stops the fill threads (waiting a bounded time for fills stuck in a source) and frees
 * everything. Call once, after every other caller has stopped.
 */
void cache_free(struct cache *c);

/*
 * Returns a referenced version for @info: the current version of info->relpath when its
 * identity matches, else a new version that replaces it (*@replaced set true then, when
 * there was an older one). NULL with errno set on allocation failure.
 */
struct cache_file *cache_file_open(struct cache *c, const struct cache_file_info *info,
				   bool *replaced);

/* Takes another reference. */
void cache_file_get(struct cache *c, struct cache_file *f);

/* Drops a reference from cache_file_open(), cache_file_get() or cache_file_find(). */
void cache_file_put(struct cache *c, struct cache_file *f);

/* Returns a reference to the current version with this key, or NULL (errno ENOENT). */
struct cache_file *cache_file_by_key(struct cache *c, uint64_t key);

/* Returns a reference to the current version of @relpath, or NULL (errno ENOENT). */
struct cache_file *cache_file_find(struct cache *c, const char *relpath);

/* The slab: every chunk lives in [*base, *base + *len). For registering it with a NIC.
 * NULL and 0 when chunks live in files (register each chunk's span, and cache_set_forget()). */
void cache_slab_region(struct cache *c, void **base, size_t *len);

/*
 * Files mode, for a NIC that registers chunks' spans (net/rdma.c): @fn(@ctx, addr, len) is
 * called before the bytes at [addr, + len) are punched out (a chunk evicted or dropped) or
 * unmapped (a version freed), so that a memory region over them goes first. Never for a
 * chunk that is pinned or filling. Called with cache->lock held: @fn must not call into the
 * cache. NULL @fn unsets it; do that before @ctx goes. No-op in slab mode. Any thread.
 */
void cache_set_forget(struct cache *c, void (*fn)(void *ctx, const void *addr, size_t len),
		      void *ctx);

/* Whether chunks live in files (cache_store = files): passthrough is possible. */
bool cache_has_store(const struct cache *c);

/* The chunk size in bytes. */
uint64_t cache_chunk_size(const struct cache *c);

/* Identity and backing descriptor of a version (constant for its lifetime). */
uint64_t cache_file_size(const struct cache_file *f);
int cache_file_fd(const struct cache_file *f);
bool cache_file_same(const struct cache_file *f, dev_t dev, ino_t ino, uint64_t size,
		     int64_t mtime_ns);
const char *cache_file_relpath(const struct cache_file *f);
uint64_t cache_file_key(const struct cache_file *f);
int64_t cache_file_mtime_ns(const struct cache_file *f);

/*
 * Pins the chunks covering [@off, @off + @len) of @f (clamped to the file's size), filling
 * missing ones, and stores up to @max spans in @spans. @sequential asks for the next
 * readahead_chunks chunks to be filled in the background (past the file's end, in the next
 * file, see struct cache_next_ops). Returns the number of bytes
 * covered (0 at or past EOF) with *@nspans set, or -errno (-EIO on fill failure, deadline
 * or a bad file). On success the caller must call cache_read_done().
 */
ssize_t cache_read(struct cache *c, struct cache_file *f, uint64_t off, size_t len,
		   bool sequential, struct cache_span *spans, unsigned max, unsigned *nspans);

/*
 * For a peer: pins chunk @chunk of @f and stores it in @span with its CRC in *@crc. When the
 * chunk is not cached, fills it on the calling thread if @fill (remote sources only probe
 * nodes that hold it, with cache_fetch.probe_only; then local sources), else returns
 * -ENOENT. Returns 0 (the caller unpins with cache_read_done(c, span, 1)) or -errno.
 */
int cache_serve_chunk(struct cache *c, struct cache_file *f, uint64_t chunk, bool fill,
		      const struct deadline *dl, struct cache_span *span, uint32_t *crc);

/*
 * cache_serve_chunk() with fill, for an owner that passes the chunk on while it arrives:
 * when this call fills the chunk on the calling thread, it calls @begun->fn(@begun->ctx)
 * once the fill began, before any byte is read (no cache lock held; from then on
 * cache_relay_pin() finds the fill, -EAGAIN until its source announces the bytes). Not
 * called when the chunk was cached already or filled by another thread. Same returns.
 */
struct cache_begun {
	void (*fn)(void *ctx);
	void *ctx;
};
int cache_serve_fill(struct cache *c, struct cache_file *f, uint64_t chunk,
		     const struct deadline *dl, struct cache_span *span, uint32_t *crc,
		     const struct cache_begun *begun);

/*
 * Called after every fill of a chunk ends, whether it succeeded or failed, with the
 * version's key (cache_file_key) and the chunk: a holder that parked a peer's request for
 * the chunk (the swarm, net/serve.c) looks again then. Runs on the thread that filled, with
 * no cache lock held; it must not block. cache_set_fill_hook() sets it (NULL: none); clearing
 * it waits for calls still running, so the hook's context may be freed afterwards.
 */
typedef void (*cache_fill_hook_fn)(void *ctx, uint64_t file_key, uint64_t chunk);
void cache_set_fill_hook(struct cache *c, cache_fill_hook_fn fn, void *ctx);

/* Whether a fill of chunk @chunk of @f is queued or running now. Never waits. Any thread. */
bool cache_chunk_filling(struct cache *c, struct cache_file *f, uint64_t chunk);

/*
 * For relaying (the swarm): pins chunk @chunk of @f while its fill runs and its source has
 * announced the bytes (cache_relay_announce), and gives its slot in @span (span->len is the
 * chunk's length; only bytes below relay->arrived are there yet) and its progress in
 * *@relay. Returns 0 (unpin with cache_read_done()), -EAGAIN when a fill runs but nothing
 * is announced yet, -ENOENT when no fill runs (cached already, or not at all). Never waits.
 */
int cache_relay_pin(struct cache *c, struct cache_file *f, uint64_t chunk,
		    struct cache_span *span, struct cache_relay **relay);

/*
 * For an owner asked to fill a chunk whose fill already runs here (the swarm): waits (by
 * @dl) until that fill's source announces the bytes, then pins it as cache_relay_pin() does
 * and returns 0. Returns -ENOENT at once, or as soon as the fill ends, when no fill of the
 * chunk runs on a thread (none, only queued, cached already, failed): the caller serves or
 * fills it as before. -ETIMEDOUT at @dl. A fill whose source never announces (storage) is
 * waited for to its end, as cache_serve_chunk() would. Any thread but a fill thread.
 */
int cache_relay_wait(struct cache *c, struct cache_file *f, uint64_t chunk,
		     const struct deadline *dl, struct cache_span *span, struct cache_relay **relay);

/*
 * The fill of a span from cache_relay_pin(): 0 while it runs, 1 when it ended well (*@crc
 * is the chunk's checked CRC), -EIO when it failed.
 */
int cache_relay_done(struct cache *c, const struct cache_span *span, uint32_t *crc);

/* Unpins spans from cache_read() or cache_serve_chunk(). */
void cache_read_done(struct cache *c, const struct cache_span *spans, unsigned n);

/*
 * Fills every chunk of @f at low priority, keeping fill_threads chunks in flight, and calls
 * @progress (may be NULL) after each chunk with the bytes done. Stops early when @progress
 * returns false (-ECANCELED). Returns 0 or -errno.
 */
int cache_file_prefetch(struct cache *c, struct cache_file *f,
			bool (*progress)(void *arg, uint64_t done, uint64_t total), void *arg);

/*
 * Reads the whole file (from cache where it is) and checks it against the manifest.
 * Returns 0 when it matches, -ENODATA when the manifest has no entry (*@computed still
 * set), -EBADMSG on mismatch, or another -errno when it cannot be read.
 */
int cache_file_verify(struct cache *c, struct cache_file *f, uint32_t *computed);

/* Drops every unpinned chunk of @f and invalidates the kernel's copy. */
void cache_file_evict(struct cache *c, struct cache_file *f);

/*
 * Loads or reloads the per-chunk sidecar of the manifest @manifest (its name from
 * cache_chunkmap_name(), resolved beneath @dirfd) when it appeared, changed or went away.
 * Versions opened afterwards are checked against it. A sidecar whose chunk size does not
 * divide chunk_size is logged once and not used (whole files are still checked). Cheap when
 * nothing changed (one fstatat); call before opening versions. Returns 0 or -ENOMEM.
 */
int cache_chunkmap_refresh(struct cache *c, int dirfd, const char *manifest);

/*
 * Installs the sidecar from its text as a peer read it (@text NULL: there is none), for a
 * node that copies another's metadata snapshot (net/meta_share.h). @name is for messages.
 * A later cache_chunkmap_refresh() reads the file again. Returns 0, or -errno when the text
 * is refused (the sidecar in use stays).
 */
int cache_chunkmap_set_text(struct cache *c, const char *name, const char *text, size_t len);

/* A chunk whose storage bytes failed crc32.chunks (read twice). */
struct cache_bad_chunk {
	uint64_t chunk, offset, len;
	uint32_t expected, got;
};

/*
 * Copies up to @max of @f's bad chunks (lowest first) to @out. Returns how many there are;
 * 0 when none is known (always 0 without a sidecar entry for @f).
 */
size_t cache_file_bad_chunks(struct cache *c, struct cache_file *f,
			     struct cache_bad_chunk *out, size_t max);

/*
 * FUSE passthrough (store mode only). When every chunk of @f is cached and the version is as
 * verified as `verify` asks (a manifest entry matched; strict: checked), or when passthrough
 * opens of @f exist already, pins every chunk of @f (none is evicted or refilled until the
 * matching put) and returns the descriptor of its cache file: chunk n at n x chunk_size,
 * the file's size that of the version: a new read-only descriptor the caller closes (the
 * bytes stay until the last put, whether or not it is open). Returns -EAGAIN when @f is not complete or not verified (serve it the
 * ordinary way), -EOPNOTSUPP in slab mode, -ENOMEM. Any thread.
 */
int cache_file_passthrough_get(struct cache *c, struct cache_file *f);

/* Drops one cache_file_passthrough_get(); the last one unpins the chunks. */
void cache_file_passthrough_put(struct cache *c, struct cache_file *f);

/*
 * Fills every chunk of @f and waits for its check, until @dl. Returns 0 when
 * cache_file_passthrough_get() would succeed now, -ETIMEDOUT past @dl, -EAGAIN when it is
 * complete but cannot stay so (larger than max_memory, or evicted meanwhile), -EIO for a bad
 * file, or another -errno of the fills. Blocks: not on a thread that must stay responsive.
 */
int cache_file_wait_complete(struct cache *c, struct cache_file *f, const struct deadline *dl);

/*
 * Warm restart (warm_restart = on, cache in files): calls @open_version for the relpath of
 * every file the previous daemon kept; the caller opens that path's version with
 * cache_file_open() (and puts it). A version whose identity (key, device, inode, size,
 * mtime) matches a kept file takes that file, and every chunk whose bytes still give the
 * CRC the index names (and crc32.chunks, when it lists the file) is cached again without a
 * read; other chunks and unclaimed files are dropped. Call once at start-up, after the fill
 * sources are set and before anything reads. Returns the chunks adopted. Logs one line.
 */
int cache_adopt(struct cache *c, void (*open_version)(void *ctx, const char *relpath),
		void *ctx);

void cache_get_stats(struct cache *c, struct cache_stats *st);
void cache_file_get_status(struct cache *c, struct cache_file *f, struct cache_file_status *st);

/* Calls @fn for the current version of every file, under no lock (with a reference). */
void cache_foreach_file(struct cache *c, void (*fn)(void *arg, struct cache_file *f),
			void *arg);

const char *cache_file_state_name(enum cache_file_state s);

/*
 * Source @k's name and the bytes it has filled. Returns the number of sources (so k = 0,
 * 1, ... until k reaches it); *@name and *@bytes are set only when @k is below it.
 */
unsigned cache_source_stats(struct cache *c, unsigned k, const char **name, uint64_t *bytes);

#endif
