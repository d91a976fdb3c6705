#include "cache/cache.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cache/chunkmap.h"
#include "cache/slab.h"
#include "cache/store.h"
#include "common/crc.h"
#include "common/log.h"

#define MAX_SOURCES 4
_Static_assert(MAX_SOURCES <= CACHE_MAX_SOURCES, "cache_stats.bytes_read_from");
#define FILE_BUCKETS 4096
#define NIL (-1)

enum slot_state { SLOT_FREE, SLOT_FILLING, SLOT_READY, SLOT_FAILED };
enum prio { PRIO_HIGH, PRIO_LOW };

/* A doubly linked list of slots threaded through slot.prev/next. */
struct slot_list {
	int32_t head, tail;
	uint32_t n;
};

/*
 * A slot is on at most one list: free (FREE), a fill queue (FILLING, not yet picked up),
 * the LRU (READY and unpinned). Everything here is protected by cache->lock.
 */
struct slot {
	struct cache_file *file;  /* holds a reference unless FREE */
	uint64_t chunk;
	uint64_t gen;             /* file->gen when the fill started */
	uint32_t len;
	uint32_t crc;
	uint32_t pins;
	int err;
	uint8_t state;
	uint8_t src;              /* the source that filled it */
	uint32_t origin;          /* which node sent its bytes (remote sources) */
	bool local_only;          /* fill from non-remote sources only */
	bool serving;             /* an owner fill for a peer: remote sources only probe holders */
	bool has_expect;          /* the fill must give this CRC (sidecar or verified file) */
	uint32_t expect;
	bool started;             /* a thread runs its fill: fill_dl is set */
	bool overdue_told;        /* its waiters were failed at fill_dl, and that was logged */
	struct deadline fill_dl;  /* its fill's deadline, shared by every waiter */
	bool indexed;             /* findable in the hash; cleared when dropped */
	struct cache_relay relay; /* its source's progress, for relaying (atomics, no lock) */
	struct slot_list *on;     /* the list it is on, or NULL */
	int32_t prev, next;
	int32_t hnext;
};

struct chunk_from {
	uint32_t origin;
	uint8_t src;
};

/* A version's chunk CRCs and their provenance, kept from a fill that mismatched. */
struct crc_snapshot {
	uint32_t *crc;
	uint8_t *known;
	struct chunk_from *from;
};

struct cache_file {
	/* Constant for the version's lifetime. */
	char *relpath;
	int fd;
	dev_t dev;
	ino_t ino;
	uint64_t size;
	int64_t mtime_ns;
	uint64_t id, nchunks, key;
	bool has_crc;
	uint32_t expected;
	uint32_t *want;           /* per chunk from crc32.chunks, or NULL */
	/* Protected by cache->lock. */
	uint64_t cookie;
	uint32_t refs;
	bool current;             /* in the file table */
	bool strict_checked;
	enum cache_file_state state;
	uint64_t gen;             /* bumped when chunks are dropped for a re-read */
	uint32_t *crc;            /* per chunk, valid where crc_known */
	uint8_t *crc_known;
	uint64_t ncrc_known;
	uint32_t computed;
	uint64_t cached_chunks, cached_bytes;
	struct chunk_from *from;  /* per chunk: where crc[k] came from */
	uint8_t *claimed;         /* per chunk: a read has claimed its bytes (verify race) */
	uint64_t nclaimed;
	bool local_only;          /* refilling after a mismatch: local sources only */
	bool inval_due;           /* the kernel's copy must be dropped (settle()) */
	bool charge_due;          /* peers that sent chunks unlike the refill are charged */
	bool served_wrong;        /* a read may have had a chunk the refill proved wrong */
	bool served_wrong_told;   /* and that was logged */
	struct crc_snapshot prev; /* the mismatching fill's CRCs, while refilling */
	uint8_t *bad;             /* per chunk (with want): storage failed crc32.chunks */
	uint32_t *bad_got;        /* the CRC storage gave for a bad chunk */
	uint64_t nbad;
	struct cache_file *tnext;
	/* Store mode: the version's file, constant once created; occupant[k] is the one slot
	 * whose bytes are at chunk k's range (indexed or dropped but pinned), or NIL. */
	struct cache_store_file sf;
	int32_t *occupant;        /* protected by cache->lock */
	uint32_t pt_refs;         /* passthrough opens; while > 0 every chunk is pinned */
	int32_t *pt_slots;        /* the slots pinned for them, protected by cache->lock */
	bool keep_file;           /* listed in the warm-restart index: not unlinked */
	struct cache_store_entry *adopt_from; /* its kept file, until its chunks are adopted */
	uint64_t ahead_past;      /* most chunks readahead carried past the end, under lock */
	bool seq_started;         /* a sequential read began at chunk 0, under lock */
};

struct source {
	const struct cache_source_ops *ops;
	void *ctx;
	uint64_t bytes, fills, errors; /* protected by cache->lock */
};

struct cache {
	struct cache_slab slab;    /* slab mode only */
	struct cache_store *store; /* store mode (cache_store = files): chunks in files */
	uint32_t nslots;           /* chunks that may be held at once */
	bool warm;                 /* warm_restart: the store and an index outlive us */
	bool keeping;              /* cache_free() keeps the bytes: no holes punched */
	struct cache_store_index adopt; /* what the last daemon kept, until cache_adopt() */
	uint64_t adopted, adopted_bytes, dropped; /* chunks, protected by lock */
	uint64_t chunk_size;
	unsigned fill_threads, readahead_chunks, fill_timeout_ms;
	enum config_verify verify;
	struct source sources[MAX_SOURCES];
	unsigned nsources;
	struct cache_events events;
	struct cache_next_ops next; /* set before readers run */
	cache_fill_hook_fn fill_hook;  /* protected by lock; called without it */
	void *fill_hook_ctx;           /* protected by lock */
	unsigned fill_hook_calls;      /* hook calls running, protected by lock */

	pthread_mutex_t lock;
	pthread_cond_t fill_cond;  /* a slot left FILLING */
	pthread_cond_t slot_cond;  /* a slot may be free or evictable */
	pthread_cond_t work_cond;  /* a fill was queued, or stop */
	struct slot *slots;        /* protected by lock, as is everything below */
	int32_t *buckets;
	uint32_t nbuckets;
	struct slot_list free, lru, queue[2];
	uint32_t pristine;         /* slots [pristine, nslots) never held a chunk: on no list */
	struct cache_file *files[FILE_BUCKETS];
	uint64_t next_file_id;
	bool stop;
	bool aborting;             /* cache_abort_waits(): readers' waits fail at once */
	struct cache_stats st;
	struct hist fill_hist;     /* atomic, no lock */

	pthread_t *threads;
	unsigned nthreads;
	pthread_t populate;        /* faults the slab in just ahead of the slots in use */
	bool populating;
	pthread_cond_t populate_cond; /* pristine advanced, or stop */
	pthread_t indexer;         /* warm_restart: writes the index while chunks change */
	bool indexing;
	pthread_cond_t index_cond; /* stop */

	/* The crc32.chunks sidecar, protected by lock. */
	struct cache_chunkmap *chunkmap;
	bool chunkmap_present;
	struct stat chunkmap_st;
};

/* Where slot @i's bytes are: its chunk's range of its version's file, or its slab slot. */
static unsigned char *slot_data(const struct cache *c, uint32_t i)
{
	const struct slot *s = &c->slots[i];
	if (c->store)
		return s->file->sf.map + s->chunk * c->chunk_size;
	return cache_slab_slot(&c->slab, i);
}

/* ---- slot lists and index (lock held) ---- */

static void list_init(struct slot_list *l)
{
	l->head = l->tail = NIL;
	l->n = 0;
}

static void do_list_push(struct cache *c, struct slot_list *l, int32_t i)
{
	struct slot *s = &c->slots[i];
	s->on = l;
	s->next = NIL;
	s->prev = l->tail;
	if (l->tail != NIL)
		c->slots[l->tail].next = i;
	else
		l->head = i;
	l->tail = i;
	l->n++;
}

static void do_list_del(struct cache *c, int32_t i)
{
	struct slot *s = &c->slots[i];
	struct slot_list *l = s->on;
	if (!l)
		return;
	if (s->prev != NIL)
		c->slots[s->prev].next = s->next;
	else
		l->head = s->next;
	if (s->next != NIL)
		c->slots[s->next].prev = s->prev;
	else
		l->tail = s->prev;
	l->n--;
	s->on = NULL;
}

static int32_t do_list_pop(struct cache *c, struct slot_list *l)
{
	int32_t i = l->head;
	if (i != NIL)
		do_list_del(c, i);
	return i;
}

static uint32_t hash_key(uint64_t file_id, uint64_t chunk, uint32_t nbuckets)
{
	uint64_t h = file_id * 0x9e3779b97f4a7c15ull ^ (chunk + 0x632be59bd9b4e019ull);
	h ^= h >> 31;
	h *= 0xbf58476d1ce4e5b9ull;
	h ^= h >> 29;
	return (uint32_t)h & (nbuckets - 1);
}

static int32_t do_lookup(struct cache *c, struct cache_file *f, uint64_t chunk)
{
	int32_t i = c->buckets[hash_key(f->id, chunk, c->nbuckets)];
	for (; i != NIL; i = c->slots[i].hnext)
		if (c->slots[i].file == f && c->slots[i].chunk == chunk)
			return i;
	return NIL;
}

static void do_index_add(struct cache *c, int32_t i)
{
	struct slot *s = &c->slots[i];
	uint32_t b = hash_key(s->file->id, s->chunk, c->nbuckets);
	s->hnext = c->buckets[b];
	c->buckets[b] = i;
	s->indexed = true;
}

static void do_index_del(struct cache *c, int32_t i)
{
	struct slot *s = &c->slots[i];
	if (!s->indexed)
		return;
	int32_t *p = &c->buckets[hash_key(s->file->id, s->chunk, c->nbuckets)];
	while (*p != i)
		p = &c->slots[*p].hnext;
	*p = s->hnext;
	s->indexed = false;
}

/* ---- files (lock held) ---- */

static uint32_t path_bucket(const char *relpath)
{
	uint32_t h = 2166136261u;
	for (const unsigned char *p = (const unsigned char *)relpath; *p; p++)
		h = (h ^ *p) * 16777619u;
	return h % FILE_BUCKETS;
}

static void snapshot_free(struct crc_snapshot *p)
{
	free(p->crc);
	free(p->known);
	free(p->from);
	*p = (struct crc_snapshot){ 0 };
}

static void file_free(struct cache_file *f)
{
	cache_store_file_release(&f->sf, f->keep_file);
	free(f->occupant);
	free(f->pt_slots);
	if (f->fd >= 0)
		close(f->fd);
	free(f->relpath);
	free(f->crc);
	free(f->crc_known);
	free(f->from);
	free(f->claimed);
	free(f->want);
	free(f->bad);
	free(f->bad_got);
	snapshot_free(&f->prev);
	free(f);
}

static void do_file_put(struct cache_file *f)
{
	if (--f->refs == 0)
		file_free(f);
}

static void do_table_del(struct cache *c, struct cache_file *f)
{
	struct cache_file **p = &c->files[path_bucket(f->relpath)];
	while (*p && *p != f)
		p = &(*p)->tnext;
	if (*p)
		*p = f->tnext;
	f->current = false;
}

static struct cache_file *do_table_find(struct cache *c, const char *relpath)
{
	struct cache_file *f = c->files[path_bucket(relpath)];
	while (f && strcmp(f->relpath, relpath) != 0)
		f = f->tnext;
	return f;
}

/* ---- slot lifecycle (lock held) ---- */

static void do_slot_free(struct cache *c, int32_t i)
{
	struct slot *s = &c->slots[i];
	do_index_del(c, i);
	do_list_del(c, i);
	if (s->state == SLOT_READY) {
		s->file->cached_chunks--;
		s->file->cached_bytes -= s->len;
	}
	if (c->store && s->file->occupant[s->chunk] == i) {
		s->file->occupant[s->chunk] = NIL;
		if (!c->keeping)
			cache_store_punch(&s->file->sf, s->chunk * c->chunk_size, s->len);
	}
	do_file_put(s->file);
	s->file = NULL;
	s->state = SLOT_FREE;
	do_list_push(c, &c->free, i);
	pthread_cond_broadcast(&c->slot_cond);
}

/* Makes a slot unfindable; it is freed now, or when its last pin or its fill ends. */
static void do_slot_drop(struct cache *c, int32_t i)
{
	struct slot *s = &c->slots[i];
	if (s->state == SLOT_FILLING) {
		do_index_del(c, i);
		return;
	}
	if (s->pins)
		do_index_del(c, i);
	else
		do_slot_free(c, i);
}

static void do_file_drop_chunks(struct cache *c, struct cache_file *f)
{
	for (uint32_t i = 0; i < c->nslots; i++)
		if (c->slots[i].state != SLOT_FREE && c->slots[i].file == f && c->slots[i].indexed)
			do_slot_drop(c, (int32_t)i);
}

static void do_unpin(struct cache *c, int32_t i)
{
	struct slot *s = &c->slots[i];
	if (--s->pins)
		return;
	if (s->state == SLOT_FILLING)
		return; /* its fill thread still writes into it; do_fill_done() frees it */
	if (!s->indexed || s->state == SLOT_FAILED) {
		do_slot_free(c, i);
		return;
	}
	if (s->state == SLOT_READY) {
		do_list_push(c, &c->lru, i);
		pthread_cond_broadcast(&c->slot_cond);
	}
}

/* Returns a free slot, evicting the least recently used chunk if need be, or -errno. */
static int32_t do_alloc_slot(struct cache *c, bool may_wait, const struct deadline *dl)
{
	for (;;) {
		if (c->free.n)
			return do_list_pop(c, &c->free);
		if (c->pristine < c->nslots) {
			pthread_cond_signal(&c->populate_cond);
			return (int32_t)c->pristine++;
		}
		if (c->lru.n) {
			c->st.evictions++;
			do_slot_free(c, c->lru.head);
			continue;
		}
		if (!may_wait)
			return -EAGAIN;
		if (c->aborting)
			return -EIO;
		if (deadline_cond_wait(&c->slot_cond, &c->lock, dl) == -ETIMEDOUT) {
			log_warn("cache: every slot is pinned or filling for fill_timeout; "
				 "raise max_memory");
			return -EIO;
		}
	}
}

static size_t chunk_len(const struct cache *c, const struct cache_file *f, uint64_t chunk)
{
	uint64_t off = chunk * c->chunk_size;
	uint64_t left = f->size - off;
	return left < c->chunk_size ? (size_t)left : (size_t)c->chunk_size;
}

/* Makes slot @i the FILLING slot of @chunk, on no queue yet. */
static void do_begin_fill(struct cache *c, int32_t i, struct cache_file *f, uint64_t chunk)
{
	struct slot *s = &c->slots[i];
	s->file = f;
	f->refs++;
	s->chunk = chunk;
	s->gen = f->gen;
	s->len = (uint32_t)chunk_len(c, f, chunk);
	s->pins = 0;
	s->err = 0;
	s->local_only = f->local_only;
	s->serving = false;
	s->started = s->overdue_told = false;
	atomic_store(&s->relay.announced, false);
	atomic_store(&s->relay.arrived, 0);
	s->relay.c = c;
	s->relay.file_key = f->key;
	s->relay.chunk = chunk;
	s->state = SLOT_FILLING;
	do_index_add(c, i);
	if (c->store)
		f->occupant[chunk] = i;
}

static void do_start_fill(struct cache *c, int32_t i, struct cache_file *f, uint64_t chunk,
			  enum prio prio)
{
	do_begin_fill(c, i, f, chunk);
	do_list_push(c, &c->queue[prio], i);
	pthread_cond_signal(&c->work_cond);
}

static bool deadline_before(const struct deadline *a, const struct deadline *b)
{
	return a->at.tv_sec < b->at.tv_sec ||
	       (a->at.tv_sec == b->at.tv_sec && a->at.tv_nsec < b->at.tv_nsec);
}

/*
 * How long a waiter for slot @s waits: until its own deadline @dl, or the deadline of the
 * fill once a thread runs it, whichever comes first. A fill stuck in a source so fails all
 * its waiters at once, at one deadline, and a request that comes after that deadline (a
 * kernel retrying the page, another reader) fails at once until the source returns; the
 * next request after that starts a new fill.
 */
static struct deadline do_wait_deadline(const struct slot *s, const struct deadline *dl)
{
	return s->started && deadline_before(&s->fill_dl, dl) ? s->fill_dl : *dl;
}

static void do_wait_failed(struct slot *s)
{
	if (!s->started) {
		log_warn("cache: chunk %" PRIu64 " of %s waited in the fill queue for "
			 "fill_timeout", s->chunk, s->file->relpath);
		return;
	}
	if (s->overdue_told)
		return;
	s->overdue_told = true;
	log_warn("cache: chunk %" PRIu64 " of %s not filled within fill_timeout; its readers get "
		 "EIO until the source returns", s->chunk, s->file->relpath);
}

/*
 * Store mode: the range of @chunk in @f's file has one occupant slot at a time. When the
 * index misses, an occupant may still be there, dropped from the index but pinned (or still
 * filling). A ready one of the current generation holds the right bytes: it is indexed
 * again. Anything else must be freed before a new fill may write the range: with @wait,
 * waits for that until @dl (-EIO after it), without, returns -EAGAIN. Returns the slot, NIL
 * when the chunk is neither indexed nor occupied, or -errno.
 */
static int32_t do_find(struct cache *c, struct cache_file *f, uint64_t chunk, bool wait,
		       const struct deadline *dl)
{
	for (;;) {
		int32_t i = do_lookup(c, f, chunk);
		if (i != NIL || !c->store)
			return i;
		int32_t o = f->occupant[chunk];
		if (o == NIL)
			return NIL;
		struct slot *s = &c->slots[o];
		if (s->state == SLOT_READY && s->gen == f->gen && f->state != CACHE_FILE_BAD) {
			do_index_add(c, o);
			if (!s->pins)
				do_list_push(c, &c->lru, o);
			return o;
		}
		if (!wait)
			return -EAGAIN;
		if (c->aborting)
			return -EIO;
		if (deadline_cond_wait(&c->slot_cond, &c->lock, dl) == -ETIMEDOUT &&
		    do_lookup(c, f, chunk) == NIL && f->occupant[chunk] == o) {
			log_warn("cache: chunk %" PRIu64 " of %s: its old bytes stayed pinned for "
				 "fill_timeout", chunk, f->relpath);
			return -EIO;
		}
	}
}

/*
 * Finds or starts the fill of @chunk. With @wait, pins the slot, waits until @dl for it to
 * be filled and returns its index (pinned) or -errno; without, returns 0 or -EAGAIN.
 */
static int32_t do_get_chunk(struct cache *c, struct cache_file *f, uint64_t chunk,
			    enum prio prio, bool wait, const struct deadline *dl, bool *hit)
{
	int32_t i = do_find(c, f, chunk, wait, dl);
	if (i < NIL)
		return i;
	if (i == NIL) {
		i = do_alloc_slot(c, wait, dl);
		if (i < 0)
			return wait ? i : -EAGAIN;
		/* do_alloc_slot() may have waited: another reader may have started it since. */
		int32_t other = do_find(c, f, chunk, wait, dl);
		if (other < NIL) {
			do_list_push(c, &c->free, i);
			return other;
		}
		if (other != NIL) {
			do_list_push(c, &c->free, i);
			i = other;
		} else {
			do_start_fill(c, i, f, chunk, prio);
		}
	}
	if (hit && c->slots[i].state == SLOT_READY) {
		*hit = true;
	}
	struct slot *s = &c->slots[i];
	if (!wait) {
		if (s->state == SLOT_READY && !s->pins) { /* refresh its LRU position */
			do_list_del(c, i);
			do_list_push(c, &c->lru, i);
		}
		return 0;
	}
	if (s->on == &c->queue[PRIO_LOW] && prio == PRIO_HIGH) {
		do_list_del(c, i);
		do_list_push(c, &c->queue[PRIO_HIGH], i);
	}
	if (s->state == SLOT_READY && !s->pins)
		do_list_del(c, i);
	s->pins++;
	while (s->state == SLOT_FILLING) {
		struct deadline w = do_wait_deadline(s, dl);
		if (c->aborting) {
			do_unpin(c, i);
			return -EIO;
		}
		if ((deadline_passed(&w) ||
		     deadline_cond_wait(&c->fill_cond, &c->lock, &w) == -ETIMEDOUT) &&
		    s->state == SLOT_FILLING) {
			do_wait_failed(s);
			do_unpin(c, i);
			return -EIO;
		}
	}
	if (s->state == SLOT_FAILED) {
		int err = s->err;
		do_unpin(c, i);
		return err;
	}
	return i;
}

/* ---- verification (lock held) ---- */

static uint32_t do_combined_crc(struct cache *c, struct cache_file *f)
{
	uint32_t crc = 0;
	for (uint64_t k = 0; k < f->nchunks; k++)
		crc = mows_crc32_combine(crc, f->crc[k], chunk_len(c, f, k));
	return crc;
}

static void do_reset_crcs(struct cache_file *f)
{
	memset(f->crc_known, 0, f->nchunks);
	f->ncrc_known = 0;
	f->gen++;
}

/* Keeps the CRCs and provenance of a fill that mismatched, to compare with the refill. */
static void do_snapshot(struct cache_file *f)
{
	size_t n = f->nchunks ? f->nchunks : 1;
	snapshot_free(&f->prev);
	f->prev.crc = malloc(n * sizeof(*f->prev.crc));
	f->prev.known = malloc(n);
	f->prev.from = malloc(n * sizeof(*f->prev.from));
	if (!f->prev.crc || !f->prev.known || !f->prev.from) {
		snapshot_free(&f->prev); /* no charges then; the refill still happens */
		return;
	}
	memcpy(f->prev.crc, f->crc, n * sizeof(*f->crc));
	memcpy(f->prev.known, f->crc_known, n);
	memcpy(f->prev.from, f->from, n * sizeof(*f->from));
}

/*
 * Checks a version whose chunk CRCs are all known. Returns true when settle() has work:
 * invalidating the kernel's copy after a mismatch, or charging peers after a refill matched.
 */
static bool do_file_check(struct cache *c, struct cache_file *f)
{
	f->computed = do_combined_crc(c, f);
	if (f->computed == f->expected) {
		f->state = CACHE_FILE_VERIFIED;
		f->local_only = false;
		log_debug("verified %s (crc32 %08x)", f->relpath, f->computed);
		f->charge_due = f->prev.crc != NULL;
		for (uint64_t k = 0; f->charge_due && k < f->nchunks && !f->served_wrong; k++)
			f->served_wrong = f->claimed[k] && f->prev.known[k] &&
					  f->prev.crc[k] != f->crc[k];
		return f->charge_due;
	}
	c->st.crc_mismatches++;
	if (f->state == CACHE_FILE_OK) {
		log_file_msg(LOG_WARNING, f->relpath,
			     "crc32 mismatch: %s: manifest %08x, computed %08x; reading it again "
			     "from this node's storage", f->relpath, f->expected, f->computed);
		f->state = CACHE_FILE_RETRYING;
		f->local_only = true;
		do_snapshot(f);
	} else {
		log_file_msg(LOG_ERR, f->relpath, "crc32 mismatch: %s: manifest %08x, computed "
			     "%08x (read again from this node's storage); its reads fail with EIO "
			     "until the backing file changes", f->relpath, f->expected, f->computed);
		f->state = CACHE_FILE_BAD;
		snapshot_free(&f->prev);
	}
	do_file_drop_chunks(c, f);
	do_reset_crcs(f);
	f->inval_due = true;
	return true;
}

/* Records a filled chunk's CRC. Returns 0, or -EIO when it contradicts an earlier fill. */
static int do_record_crc(struct cache_file *f, struct slot *s)
{
	if (s->gen != f->gen)
		return 0;
	if (f->crc_known[s->chunk]) {
		if (f->crc[s->chunk] == s->crc)
			return 0;
		log_err("chunk %" PRIu64 " of %s read back different bytes (crc32 %08x, "
			"before %08x)", s->chunk, f->relpath, s->crc, f->crc[s->chunk]);
		return -EIO;
	}
	f->crc[s->chunk] = s->crc;
	f->crc_known[s->chunk] = 1;
	f->from[s->chunk] = (struct chunk_from){ .origin = s->origin, .src = s->src };
	f->ncrc_known++;
	return 0;
}

/* A chunk from storage failed its expected CRC twice: log it (once per chunk), record it. */
static void do_chunk_bad(struct cache *c, struct cache_file *f, struct slot *s)
{
	uint64_t off = s->chunk * c->chunk_size;
	if (!f->bad) {
		log_err("chunk %" PRIu64 " of %s read back different bytes (crc32 %08x, before "
			"%08x)", s->chunk, f->relpath, s->crc, s->expect);
		return;
	}
	if (f->bad[s->chunk])
		return;
	f->bad[s->chunk] = 1;
	f->bad_got[s->chunk] = s->crc;
	f->nbad++;
	log_err("chunk %" PRIu64 " of %s (bytes %" PRIu64 "-%" PRIu64 ") fails crc32.chunks: "
		"expected %08x, storage gave %08x twice; its reads fail with EIO", s->chunk,
		f->relpath, off, off + s->len - 1, s->expect, s->crc);
}

/* A chunk that fills right again is no longer bad (a storage fault that went away). */
static void do_chunk_good(struct cache_file *f, uint64_t k)
{
	if (f->bad && f->bad[k]) {
		f->bad[k] = 0;
		f->nbad--;
	}
}

/* What the fill of slot @s must give: the sidecar's CRC, or that of a verified version. */
static void do_set_expect(struct cache_file *f, struct slot *s)
{
	s->has_expect = false;
	if (f->want) {
		s->has_expect = true;
		s->expect = f->want[s->chunk];
	} else if (f->state == CACHE_FILE_VERIFIED && f->crc_known[s->chunk]) {
		s->has_expect = true;
		s->expect = f->crc[s->chunk];
	}
}

struct charge {
	const struct cache_source_ops *ops;
	void *ctx;
	uint32_t origin, sent, good;
	uint64_t chunk;
};

/* Collects the peers' chunks of the mismatching fill that differ from the verified refill. */
static size_t do_collect_charges(struct cache *c, struct cache_file *f, struct charge **out)
{
	size_t n = 0;
	*out = NULL;
	for (uint64_t k = 0; k < f->nchunks; k++)
		n += f->prev.known[k] && c->sources[f->prev.from[k].src].ops->remote &&
		     f->crc_known[k] && f->prev.crc[k] != f->crc[k];
	if (n && !(*out = calloc(n, sizeof(**out))))
		n = 0;
	for (uint64_t k = 0, i = 0; k < f->nchunks && i < n; k++) {
		struct source *so = &c->sources[f->prev.from[k].src];
		if (!(f->prev.known[k] && so->ops->remote && f->crc_known[k] &&
		      f->prev.crc[k] != f->crc[k]))
			continue;
		(*out)[i++] = (struct charge){ .ops = so->ops, .ctx = so->ctx, .chunk = k,
					       .origin = f->prev.from[k].origin,
					       .sent = f->prev.crc[k], .good = f->crc[k] };
	}
	snapshot_free(&f->prev);
	f->charge_due = false;
	return n;
}

/*
 * Does what a check left to do outside the lock: drops the kernel's copy of a mismatching
 * version, charges the peers whose chunks differed from a refill that matched. Drops the
 * reference the caller took for it.
 */
static void settle_and_put(struct cache *c, struct cache_file *f)
{
	struct charge *ch = NULL;
	size_t n = 0;
	pthread_mutex_lock(&c->lock);
	bool inval = f->inval_due;
	f->inval_due = false;
	if (f->charge_due)
		n = do_collect_charges(c, f, &ch);
	uint64_t cookie = f->cookie;
	pthread_mutex_unlock(&c->lock);
	if (inval && c->events.invalidate)
		c->events.invalidate(c->events.ctx, cookie);
	for (size_t i = 0; i < n; i++) {
		log_warn("chunk %" PRIu64 " of %s came from a peer with crc32 %08x; this node's "
			 "storage gives %08x, and the file now matches the manifest: %s",
			 ch[i].chunk, f->relpath, ch[i].sent, ch[i].good,
			 ch[i].origin ? "charging the peer" : "a relay passed it on, nobody to charge");
		if (ch[i].origin && ch[i].ops->charge)
			ch[i].ops->charge(ch[i].ctx, ch[i].origin, f, ch[i].chunk, ch[i].sent,
					  ch[i].good);
	}
	free(ch);
	cache_file_put(c, f);
}

/* ---- fill threads ---- */

/* One fetch from source @k, checked against the slot's expected CRC (-EBADMSG if not). */
static int fetch_checked(struct cache *c, struct slot *s, unsigned k, void *dst,
			 const struct deadline *dl)
{
	struct cache_fetch out = { .probe_only = s->serving, .relay = &s->relay,
				   .expect_known = s->has_expect, .expect = s->expect };
	/* Whatever a relayer sent of an earlier attempt is void: it sees the attempt change. */
	atomic_store(&s->relay.announced, false);
	atomic_fetch_add(&s->relay.attempt, 1);
	int rc = c->sources[k].ops->fetch(c->sources[k].ctx, s->file, s->chunk, dst, s->len, dl,
					  &out);
	if (rc)
		return rc;
	/* Always computed: peers need it even when verify = off. */
	s->crc = out.crc_known ? out.crc : mows_crc32(0, dst, s->len);
	s->origin = out.origin;
	return s->has_expect && s->crc != s->expect ? -EBADMSG : 0;
}

/*
 * Fills slot @s from the first source that can; sets its CRC and provenance. A peer's chunk
 * unlike the expected CRC is charged to it and the next source tried; storage's is read once
 * more, then the fill fails with -EBADMSG. Runs without the lock.
 */
static int fetch_from_sources(struct cache *c, struct slot *s, void *dst, unsigned *used)
{
	struct deadline dl = s->fill_dl;
	int rc = -EIO;
	for (unsigned k = 0; k < c->nsources; k++) {
		const struct cache_source_ops *ops = c->sources[k].ops;
		if (s->local_only && ops->remote)
			continue;
		rc = fetch_checked(c, s, k, dst, &dl);
		*used = k;
		s->src = (uint8_t)k;
		if (rc == -EBADMSG && ops->remote) {
			log_warn("chunk %" PRIu64 " of %s from a peer has crc32 %08x, expected %08x; "
				 "trying the next source", s->chunk, cache_file_relpath(s->file),
				 s->crc, s->expect);
			if (ops->charge)
				ops->charge(c->sources[k].ctx, s->origin, s->file, s->chunk, s->crc,
					    s->expect);
			rc = -EIO;
			continue;
		}
		if (rc == -EBADMSG)
			rc = fetch_checked(c, s, k, dst, &dl);
		if (rc == 0 || rc == -EBADMSG)
			break;
	}
	return rc;
}

/* Publishes a finished fill. Returns the file to invalidate in the kernel, if any. */
static struct cache_file *do_fill_done(struct cache *c, int32_t i, int rc, unsigned src)
{
	struct slot *s = &c->slots[i];
	struct cache_file *f = s->file, *inval = NULL;
	struct source *so = &c->sources[src];

	c->st.fills++;
	if (rc == -EBADMSG)
		do_chunk_bad(c, f, s);
	if (rc == 0)
		do_chunk_good(f, s->chunk);
	if (rc == 0 && c->verify != VERIFY_OFF)
		rc = do_record_crc(f, s);
	if (rc == -ESTALE && f->state != CACHE_FILE_STALE) {
		log_warn("%s changed in the backing directory while open; reads of the old "
			 "version that miss the cache get EIO, new opens see the new file", f->relpath);
		f->state = CACHE_FILE_STALE;
	}
	if (rc) {
		c->st.fill_errors++;
		so->errors++;
		s->state = SLOT_FAILED;
		s->err = rc == -ENOMEM ? rc : -EIO;
		do_index_del(c, i);
		if (!s->pins)
			do_slot_free(c, i);
		pthread_cond_broadcast(&c->fill_cond);
		return NULL;
	}
	so->bytes += s->len;
	so->fills++;
	s->state = SLOT_READY;
	f->cached_chunks++;
	f->cached_bytes += s->len;
	if (!s->indexed && !s->pins)
		do_slot_free(c, i);
	else if (!s->pins)
		do_list_push(c, &c->lru, i);
	pthread_cond_broadcast(&c->fill_cond);
	if (c->verify >= VERIFY_FILE && f->has_crc && f->ncrc_known == f->nchunks &&
	    (f->state == CACHE_FILE_OK || f->state == CACHE_FILE_RETRYING) &&
	    do_file_check(c, f)) {
		f->refs++;
		inval = f;
	}
	return inval;
}

/* Takes the memory for a fill before a source writes it: ENOSPC here, never a SIGBUS. */
static int store_alloc(struct cache *c, struct slot *s)
{
	int rc = cache_store_alloc(&s->file->sf, s->chunk * c->chunk_size, s->len);
	if (rc)
		log_warn("cache: cannot take %u bytes in the cache store %s for %s: %s", s->len,
			 cache_store_dir(c->store), s->file->relpath, strerror(-rc));
	return rc;
}

/* Every chunk of @f is cached: the sources may let go of what they hold for it. No lock. */
static void tell_complete(struct cache *c, struct cache_file *f)
{
	for (unsigned k = 0; k < c->nsources; k++)
		if (c->sources[k].ops->complete)
			c->sources[k].ops->complete(c->sources[k].ctx, f);
}

/*
 * Runs the fill of slot @i (FILLING, taken off its queue) on the calling thread: sets what
 * the bytes must check against, reads them from the sources without the lock, publishes
 * the result and settles what the check left to do. @begun (may be NULL) is told once the
 * fill began, before any byte is read. Called and returns with the lock held.
 */
static void do_run_fill(struct cache *c, int32_t i, const struct cache_begun *begun)
{
	struct slot *s = &c->slots[i];
	void *dst = slot_data(c, (uint32_t)i);
	if (c->verify != VERIFY_OFF)
		do_set_expect(s->file, s);
	else
		s->has_expect = false;
	s->fill_dl = deadline_in_ms(c->fill_timeout_ms);
	s->started = true;
	pthread_mutex_unlock(&c->lock);
	if (begun)
		begun->fn(begun->ctx);

	unsigned src = 0;
	uint64_t t0 = mono_ns();
	int rc = c->store ? store_alloc(c, s) : 0;
	if (rc == 0)
		rc = fetch_from_sources(c, s, dst, &src);
	hist_add(&c->fill_hist, mono_ns() - t0);

	pthread_mutex_lock(&c->lock);
	struct cache_file *f = s->file;
	uint64_t chunk = s->chunk;
	f->refs++; /* the slot's reference may go with it in do_fill_done() */
	struct cache_file *inval = do_fill_done(c, i, rc, src);
	bool complete = rc == 0 && f->cached_chunks == f->nchunks;
	cache_fill_hook_fn hook = c->fill_hook;
	void *hook_ctx = c->fill_hook_ctx;
	c->fill_hook_calls += hook != NULL;
	pthread_mutex_unlock(&c->lock);
	if (hook)
		hook(hook_ctx, f->key, chunk);
	if (inval)
		settle_and_put(c, inval);
	if (complete)
		tell_complete(c, f);
	cache_file_put(c, f);
	pthread_mutex_lock(&c->lock);
	if (hook && --c->fill_hook_calls == 0)
		pthread_cond_broadcast(&c->fill_cond);
}

/* Tells the fill hook that @r moved (announced, or more bytes landed); @wake also wakes
 * cache_relay_wait(). No lock held. */
static void relay_notify(struct cache_relay *r, bool wake)
{
	struct cache *c = r->c;
	pthread_mutex_lock(&c->lock);
	if (wake)
		pthread_cond_broadcast(&c->fill_cond); /* cache_relay_wait() */
	cache_fill_hook_fn hook = c->fill_hook;
	void *hook_ctx = c->fill_hook_ctx;
	c->fill_hook_calls += hook != NULL;
	pthread_mutex_unlock(&c->lock);
	if (!hook)
		return;
	hook(hook_ctx, r->file_key, r->chunk);
	pthread_mutex_lock(&c->lock);
	if (--c->fill_hook_calls == 0)
		pthread_cond_broadcast(&c->fill_cond);
	pthread_mutex_unlock(&c->lock);
}

void cache_relay_announce(struct cache_relay *r, uint32_t crc)
{
	atomic_store(&r->announced, false);
	atomic_fetch_add(&r->attempt, 1);
	atomic_store(&r->arrived, 0);
	atomic_store(&r->crc, crc);
	atomic_store(&r->announced, true);
	relay_notify(r, true);
}

void cache_relay_progress(struct cache_relay *r, uint32_t bytes)
{
	/* Sequentially consistent: a relayer that parks raises watchers, then looks at arrived
	 * again; we store arrived, then look at watchers: one of the two sees the other. */
	atomic_store(&r->arrived, bytes);
	if (atomic_load(&r->watchers))
		relay_notify(r, false);
}

/* Lock held. Pins slot @i for relaying: its span and progress. */
static void do_relay_pin(struct cache *c, int32_t i, struct cache_span *span,
			 struct cache_relay **relay)
{
	struct slot *s = &c->slots[i];
	s->pins++;
	span->data = slot_data(c, (uint32_t)i);
	span->len = s->len;
	span->slot = (uint32_t)i;
	*relay = &s->relay;
}

/* Lock held. Whether slot @i is a fill of @f's current version that may be relayed. */
static bool do_relayable(const struct cache *c, const struct cache_file *f, int32_t i)
{
	return i >= 0 && c->slots[i].state == SLOT_FILLING && c->slots[i].gen == f->gen &&
	       f->state != CACHE_FILE_BAD && f->state != CACHE_FILE_STALE && !f->local_only;
}

int cache_relay_pin(struct cache *c, struct cache_file *f, uint64_t chunk,
		    struct cache_span *span, struct cache_relay **relay)
{
	pthread_mutex_lock(&c->lock);
	int32_t i = chunk < f->nchunks ? do_lookup(c, f, chunk) : NIL;
	int rc = -ENOENT;
	if (do_relayable(c, f, i))
		rc = atomic_load(&c->slots[i].relay.announced) ? 0 : -EAGAIN;
	if (rc == 0)
		do_relay_pin(c, i, span, relay);
	pthread_mutex_unlock(&c->lock);
	return rc;
}

int cache_relay_wait(struct cache *c, struct cache_file *f, uint64_t chunk,
		     const struct deadline *dl, struct cache_span *span, struct cache_relay **relay)
{
	int rc = -ENOENT;
	pthread_mutex_lock(&c->lock);
	for (;;) {
		int32_t i = chunk < f->nchunks ? do_lookup(c, f, chunk) : NIL;
		if (!do_relayable(c, f, i) || !c->slots[i].started || c->aborting)
			break;
		if (atomic_load(&c->slots[i].relay.announced)) {
			do_relay_pin(c, i, span, relay);
			rc = 0;
			break;
		}
		if (deadline_cond_wait(&c->fill_cond, &c->lock, dl) == -ETIMEDOUT) {
			rc = -ETIMEDOUT;
			break;
		}
	}
	pthread_mutex_unlock(&c->lock);
	return rc;
}

int cache_relay_done(struct cache *c, const struct cache_span *span, uint32_t *crc)
{
	pthread_mutex_lock(&c->lock);
	const struct slot *s = &c->slots[span->slot];
	int rc = s->state == SLOT_FILLING ? 0 : s->state == SLOT_READY ? 1 : -EIO;
	if (rc == 1)
		*crc = s->crc;
	pthread_mutex_unlock(&c->lock);
	return rc;
}

void cache_set_fill_hook(struct cache *c, cache_fill_hook_fn fn, void *ctx)
{
	pthread_mutex_lock(&c->lock);
	c->fill_hook = fn;
	c->fill_hook_ctx = ctx;
	while (!fn && c->fill_hook_calls)
		pthread_cond_wait(&c->fill_cond, &c->lock);
	pthread_mutex_unlock(&c->lock);
}

bool cache_chunk_filling(struct cache *c, struct cache_file *f, uint64_t chunk)
{
	pthread_mutex_lock(&c->lock);
	int32_t i = chunk < f->nchunks ? do_lookup(c, f, chunk) : NIL;
	bool filling = i >= 0 && c->slots[i].state == SLOT_FILLING;
	pthread_mutex_unlock(&c->lock);
	return filling;
}

static void *fill_main(void *arg)
{
	struct cache *c = arg;
	pthread_mutex_lock(&c->lock);
	while (!c->stop) {
		int32_t i = do_list_pop(c, &c->queue[PRIO_HIGH]);
		if (i == NIL)
			i = do_list_pop(c, &c->queue[PRIO_LOW]);
		if (i == NIL) {
			struct deadline dl = deadline_in_ms(1000);
			deadline_cond_wait(&c->work_cond, &c->lock, &dl);
			continue;
		}
		do_run_fill(c, i, NULL);
	}
	pthread_mutex_unlock(&c->lock);
	return NULL;
}

static int do_write_index(struct cache *c);
static void *index_main(void *arg);

/* ---- construction ---- */

/*
 * Warm restart: reads what a previous daemon kept. A torn or foreign index means a cold
 * start: the store is mounted afresh, so none of its files is ever served.
 */
static void load_kept(struct cache *c, const struct mows_config *cfg, char *err, size_t errlen)
{
	int rc = cache_store_index_load(c->store, cfg->chunk_size, &c->adopt);
	if (rc == 0) {
		log_info("warm restart: the index lists %zu kept files", c->adopt.n);
		return;
	}
	if (rc == -ENOENT)
		return; /* a fresh store */
	log_warn("warm restart: the index in %s is torn or of another version or chunk size "
		 "(%s); starting cold", cfg->cache_dir, strerror(-rc));
	cache_store_free(c->store, false);
	c->store = cache_store_new(cfg->cache_dir, c->nslots * cfg->chunk_size, false,
				   cfg->hugepages != HUGEPAGES_OFF, err, errlen);
}

/*
 * Files on the store's tmpfs (cache_store = files, or auto with a cache_dir), else the slab.
 * auto falls back to the slab, with a log line, when the tmpfs cannot be mounted.
 */
static int cache_storage_init(struct cache *c, const struct mows_config *cfg, char *err,
			      size_t errlen)
{
	c->nslots = (uint32_t)(cfg->max_memory / cfg->chunk_size);
	if (cfg->cache_store != STORE_SLAB && cfg->cache_dir[0] && c->nslots) {
		c->warm = cfg->warm_restart;
		c->store = cache_store_new(cfg->cache_dir, c->nslots * cfg->chunk_size, c->warm,
					   cfg->hugepages != HUGEPAGES_OFF, err, errlen);
		if (c->store && c->warm)
			load_kept(c, cfg, err, errlen);
		if (c->store) {
			log_info("cache: %u chunks of %llu KiB in files on a %s tmpfs at %s "
				 "(memory taken as chunks fill)", c->nslots,
				 (unsigned long long)(cfg->chunk_size >> 10),
				 cfg->hugepages == HUGEPAGES_OFF ? "small-page" : "huge-page",
				 cfg->cache_dir);
			return 0;
		}
		if (cfg->cache_store == STORE_FILES)
			return -errno;
		log_warn("cache: %s; using the slab", err);
	}
	int rc = cache_slab_init(&c->slab, cfg->max_memory, cfg->chunk_size, cfg->hugepages,
				 err, errlen);
	c->nslots = c->slab.nslots;
	return rc;
}

struct cache *cache_new(const struct mows_config *cfg, char *err, size_t errlen)
{
	struct cache *c = calloc(1, sizeof(*c));
	if (!c) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	int rc = cache_storage_init(c, cfg, err, errlen);
	if (rc)
		goto out_free;
	c->chunk_size = cfg->chunk_size;
	c->fill_threads = cfg->fill_threads;
	c->readahead_chunks = cfg->readahead_chunks;
	c->fill_timeout_ms = cfg->fill_timeout_ms;
	c->verify = cfg->verify;
	c->nbuckets = 1;
	while (c->nbuckets < 2 * c->nslots)
		c->nbuckets <<= 1;
	c->slots = calloc(c->nslots, sizeof(*c->slots));
	c->buckets = malloc(c->nbuckets * sizeof(*c->buckets));
	if (!c->slots || !c->buckets) {
		rc = -ENOMEM;
		snprintf(err, errlen, "out of memory for %u cache slots", c->nslots);
		goto out_release;
	}
	for (uint32_t b = 0; b < c->nbuckets; b++)
		c->buckets[b] = NIL;
	list_init(&c->free);
	list_init(&c->lru);
	list_init(&c->queue[0]);
	list_init(&c->queue[1]);
	pthread_mutex_init(&c->lock, NULL);
	if ((rc = deadline_cond_init(&c->fill_cond)) || (rc = deadline_cond_init(&c->slot_cond)) ||
	    (rc = deadline_cond_init(&c->work_cond)) || (rc = deadline_cond_init(&c->populate_cond)) ||
	    (rc = deadline_cond_init(&c->index_cond))) {
		snprintf(err, errlen, "cannot create condition variables: %s", strerror(-rc));
		goto out_release;
	}
	c->st.max_memory = (uint64_t)c->nslots * c->chunk_size;
	c->st.chunk_size = c->chunk_size;
	c->st.slots = c->nslots;
	c->st.slab_kind = c->store ? "files" : cache_slab_kind_name(c->slab.kind);
	return c;

out_release:
	free(c->slots);
	free(c->buckets);
	cache_slab_release(&c->slab);
	cache_store_free(c->store, false);
out_free:
	free(c);
	errno = -rc;
	return NULL;
}

int cache_add_source(struct cache *c, const struct cache_source_ops *ops, void *ctx)
{
	if (c->nsources == MAX_SOURCES)
		return -ENOSPC;
	c->sources[c->nsources].ops = ops;
	c->sources[c->nsources].ctx = ctx;
	c->nsources++;
	return 0;
}

void cache_set_events(struct cache *c, const struct cache_events *ev)
{
	c->events = *ev;
}

void cache_set_next(struct cache *c, const struct cache_next_ops *ops)
{
	c->next = ops ? *ops : (struct cache_next_ops){ 0 };
}

/*
 * Slab memory is zeroed by the kernel on first touch, which in a cold start would land on the
 * fill path (half the daemon's CPU in an 8-node burst). Fault it in ahead of the slots in
 * use, a piece at a time, but only POPULATE_LEAD ahead: the daemon takes memory as chunks
 * fill, not all of max_memory at start. MADV_POPULATE_WRITE leaves pages a fill already
 * wrote as they are; kernels without it fault pages in as fills touch them.
 */
#define POPULATE_STEP (64u << 20)
#define POPULATE_LEAD (256u << 20)

static void *populate_main(void *arg)
{
	struct cache *c = arg;
	size_t done = 0;
	pthread_mutex_lock(&c->lock);
	while (!c->stop && done < c->slab.map_len) {
		size_t want = (size_t)c->pristine * c->slab.slot_size + POPULATE_LEAD;
		if (done >= want) {
			pthread_cond_wait(&c->populate_cond, &c->lock);
			continue;
		}
		pthread_mutex_unlock(&c->lock);
		size_t len = c->slab.map_len - done < POPULATE_STEP ? c->slab.map_len - done
								    : POPULATE_STEP;
		int rc = madvise(c->slab.base + done, len, MADV_POPULATE_WRITE);
		done += len;
		pthread_mutex_lock(&c->lock);
		if (rc < 0)
			break;
	}
	pthread_mutex_unlock(&c->lock);
	return NULL;
}

int cache_start(struct cache *c)
{
	/* Store mode takes each chunk's memory as its fill starts (store_alloc()). */
	c->populating = !c->store && pthread_create(&c->populate, NULL, populate_main, c) == 0;
	c->indexing = c->store && c->warm &&
		      pthread_create(&c->indexer, NULL, index_main, c) == 0;
	c->threads = calloc(c->fill_threads, sizeof(*c->threads));
	if (!c->threads)
		return -ENOMEM;
	for (; c->nthreads < c->fill_threads; c->nthreads++) {
		int rc = pthread_create(&c->threads[c->nthreads], NULL, fill_main, c);
		if (rc)
			return -rc;
	}
	return 0;
}

static bool stop_threads(struct cache *c)
{
	bool all = true;
	pthread_mutex_lock(&c->lock);
	c->stop = true;
	pthread_cond_broadcast(&c->work_cond);
	pthread_cond_broadcast(&c->populate_cond);
	pthread_cond_broadcast(&c->index_cond);
	pthread_mutex_unlock(&c->lock);
	if (c->populating)
		pthread_join(c->populate, NULL); /* at most one 64 MiB step */
	if (c->indexing)
		pthread_join(c->indexer, NULL); /* at most one index write */
	struct deadline dl = deadline_in_ms(3000);
	for (unsigned t = 0; t < c->nthreads; t++) {
		struct timespec until;
		clock_gettime(CLOCK_REALTIME, &until);
		until.tv_sec += deadline_left_ms(&dl) / 1000 + 1;
		if (pthread_timedjoin_np(c->threads[t], NULL, &until)) {
			log_warn("cache: a fill thread is stuck in its source; leaving it");
			all = false;
		}
	}
	return all;
}

void cache_abort_waits(struct cache *c)
{
	pthread_mutex_lock(&c->lock);
	c->aborting = true;
	pthread_cond_broadcast(&c->fill_cond);
	pthread_cond_broadcast(&c->slot_cond);
	pthread_mutex_unlock(&c->lock);
}

void cache_free(struct cache *c)
{
	if (!c)
		return;
	if (!stop_threads(c)) {
		/* A stuck thread still uses the slab or the store's mappings: process exit
		 * reclaims them. A store no restart will adopt leaves the tree now, or its
		 * bytes would stay mounted after we are gone. */
		if (c->store && !c->warm)
			cache_store_detach(c->store);
		return;
	}
	if (c->store && c->warm) {
		int rc = do_write_index(c);
		if (rc)
			log_warn("cache: cannot write the warm-restart index: %s; the next daemon "
				 "starts cold", strerror(-rc));
		c->keeping = rc == 0;
	}
	for (uint32_t i = 0; i < c->nslots; i++)
		if (c->slots[i].state != SLOT_FREE)
			do_slot_free(c, (int32_t)i);
	for (unsigned b = 0; b < FILE_BUCKETS; b++)
		while (c->files[b]) {
			struct cache_file *f = c->files[b];
			do_table_del(c, f);
			do_file_put(f);
		}
	free(c->threads);
	free(c->slots);
	free(c->buckets);
	cache_chunkmap_free(c->chunkmap);
	cache_slab_release(&c->slab);
	cache_store_index_release(&c->adopt);
	cache_store_free(c->store, c->keeping);
	pthread_mutex_destroy(&c->lock);
	free(c);
}

/* ---- files ---- */

/* Copies @f's per-chunk CRCs from the sidecar, when it lists this version. -ENOMEM or 0. */
static int do_want_chunks(struct cache *c, struct cache_file *f, uint64_t size)
{
	const uint32_t *crcs;
	uint64_t listed, n;
	if (!c->chunkmap || c->verify == VERIFY_OFF ||
	    !cache_chunkmap_lookup(c->chunkmap, f->relpath, &listed, &crcs, &n))
		return 0;
	if (listed != size) {
		log_warn("crc32.chunks lists %s with %" PRIu64 " bytes, but it has %" PRIu64
			 "; its chunks are not checked one by one", f->relpath, listed, size);
		return 0;
	}
	f->want = malloc((n ? n : 1) * sizeof(*f->want));
	f->bad = calloc(n ? n : 1, 1);
	f->bad_got = calloc(n ? n : 1, sizeof(*f->bad_got));
	if (!f->want || !f->bad || !f->bad_got)
		return -ENOMEM;
	memcpy(f->want, crcs, n * sizeof(*crcs));
	return 0;
}

/* Out of descriptors creating a cache file: said once a minute (common/log.h). */
static void note_nofile(int err, const char *relpath)
{
	static _Atomic uint64_t last_ns;
	char what[PATH_MAX + 32];
	snprintf(what, sizeof(what), "the cache file of %s", relpath);
	log_nofile(&last_ns, err, what);
}

/* The warm-restart index entry for the version @info describes, if one is unclaimed. */
static struct cache_store_entry *do_kept_entry(struct cache *c,
					       const struct cache_file_info *info)
{
	for (size_t i = 0; i < c->adopt.n; i++) {
		struct cache_store_entry *e = &c->adopt.e[i];
		if (!e->claimed && e->key == info->key && e->dev == (uint64_t)info->dev &&
		    e->ino == (uint64_t)info->ino && e->size == info->size &&
		    e->mtime_ns == info->mtime_ns && !strcmp(e->relpath, info->relpath))
			return e;
	}
	return NULL;
}

static struct cache_file *file_new(struct cache *c, const struct cache_file_info *info)
{
	struct cache_file *f = calloc(1, sizeof(*f));
	if (!f)
		return NULL;
	f->nchunks = (info->size + c->chunk_size - 1) / c->chunk_size;
	f->relpath = strdup(info->relpath);
	size_t n = f->nchunks ? f->nchunks : 1;
	f->crc = calloc(n, sizeof(*f->crc));
	f->crc_known = calloc(n, 1);
	f->from = calloc(n, sizeof(*f->from));
	f->claimed = calloc(n, 1);
	if (c->store)
		f->occupant = malloc(n * sizeof(*f->occupant));
	int rc = -ENOMEM;
	if (!f->relpath || !f->crc || !f->crc_known || !f->from || !f->claimed ||
	    (c->store && !f->occupant) || do_want_chunks(c, f, info->size) < 0)
		goto out_free;
	for (uint64_t k = 0; c->store && k < n; k++)
		f->occupant[k] = NIL;
	struct cache_store_entry *kept = c->store ? do_kept_entry(c, info) : NULL;
	if (kept && cache_store_file_adopt(c->store, kept->name, info->size, &f->sf) == 0) {
		kept->claimed = true;
		f->adopt_from = kept;
	} else if (c->store && (rc = cache_store_file_create(c->store, c->next_file_id + 1,
							    info->size, &f->sf)) < 0) {
		if (rc == -EMFILE || rc == -ENFILE)
			note_nofile(rc, info->relpath);
		else
			log_warn("cache: cannot create the cache file of %s in %s: %s",
				 info->relpath, cache_store_dir(c->store), strerror(-rc));
		goto out_free;
	}
	f->fd = info->fd;
	f->dev = info->dev;
	f->ino = info->ino;
	f->size = info->size;
	f->mtime_ns = info->mtime_ns;
	f->has_crc = info->has_crc;
	f->expected = info->crc;
	f->cookie = info->cookie;
	f->key = info->key;
	f->state = CACHE_FILE_OK;
	if (f->nchunks == 0 && f->has_crc)
		f->state = f->expected == 0 ? CACHE_FILE_VERIFIED : CACHE_FILE_BAD;
	if (f->state == CACHE_FILE_BAD)
		log_err("crc32 mismatch: %s: manifest %08x, computed 00000000 (empty file)",
			f->relpath, f->expected);
	return f;
out_free:
	f->fd = -1;
	file_free(f);
	errno = -rc;
	return NULL;
}

/*
 * Warm restart: takes the chunks of @f's kept file whose bytes still give the CRC the index
 * (and crc32.chunks, when it lists the file) names; punches out the others. Runs at start-up
 * (cache_adopt()), before anything reads, so the CRCs are computed under the lock.
 */
static void do_adopt_chunks(struct cache *c, struct cache_file *f)
{
	struct cache_store_entry *e = f->adopt_from;
	f->adopt_from = NULL;
	for (uint64_t k = 0; k < f->nchunks && k < e->nchunks; k++) {
		if (!e->have[k])
			continue;
		size_t len = chunk_len(c, f, k);
		uint32_t crc = mows_crc32(0, f->sf.map + k * c->chunk_size, len);
		bool ok = crc == e->crc[k] && (!f->want || f->want[k] == crc);
		int32_t i = ok ? do_alloc_slot(c, false, NULL) : -EAGAIN;
		if (i < 0) {
			cache_store_punch(&f->sf, k * c->chunk_size, len);
			c->dropped++;
			continue;
		}
		do_begin_fill(c, i, f, k);
		struct slot *s = &c->slots[i];
		s->crc = crc;
		s->src = 0;
		s->origin = 0;
		s->state = SLOT_READY;
		f->cached_chunks++;
		f->cached_bytes += len;
		if (c->verify != VERIFY_OFF) {
			f->crc[k] = crc;
			f->crc_known[k] = 1;
			f->from[k] = (struct chunk_from){ 0 };
			f->ncrc_known++;
		}
		do_list_push(c, &c->lru, i);
		c->adopted++;
		c->adopted_bytes += len;
	}
	if (c->verify >= VERIFY_FILE && f->has_crc && f->ncrc_known == f->nchunks &&
	    f->state == CACHE_FILE_OK)
		do_file_check(c, f); /* no kernel pages yet: nothing to invalidate */
}

int cache_adopt(struct cache *c, void (*open_version)(void *ctx, const char *relpath),
		void *ctx)
{
	if (!c->store || !c->warm)
		return 0;
	for (size_t i = 0; i < c->adopt.n; i++)
		open_version(ctx, c->adopt.e[i].relpath);
	pthread_mutex_lock(&c->lock);
	size_t files = 0;
	for (size_t i = 0; i < c->adopt.n; i++)
		files += c->adopt.e[i].claimed;
	/* Files nobody claimed, and any a killed daemon made after its last index. */
	cache_store_sweep(c->store, &c->adopt);
	log_info("warm restart: adopted %" PRIu64 " chunks (%" PRIu64 " MiB) of %zu of %zu kept "
		 "files; dropped %" PRIu64 " chunks and %zu files (changed, or their CRC did not "
		 "check)", c->adopted, c->adopted_bytes >> 20, files, c->adopt.n, c->dropped,
		 c->adopt.n - files);
	cache_store_index_release(&c->adopt);
	int n = (int)c->adopted;
	pthread_mutex_unlock(&c->lock);
	return n;
}

/*
 * Lists every current version's cached chunks in @idx (released by the caller), marking the
 * versions' files to be kept when @keep (at exit).
 */
static int do_build_index(struct cache *c, struct cache_store_index *out, bool keep)
{
	struct cache_store_index idx = { .chunk_size = c->chunk_size };
	size_t cap = 0;
	int rc = 0;
	for (unsigned b = 0; b < FILE_BUCKETS && rc == 0; b++)
		for (struct cache_file *f = c->files[b]; f && rc == 0; f = f->tnext) {
			if (f->state == CACHE_FILE_BAD || f->state == CACHE_FILE_STALE ||
			    f->local_only || !f->cached_chunks || !f->sf.exists)
				continue;
			if (idx.n == cap) {
				cap = cap ? 2 * cap : 64;
				void *p = realloc(idx.e, cap * sizeof(*idx.e));
				if (!p) {
					rc = -ENOMEM;
					break;
				}
				idx.e = p;
			}
			struct cache_store_entry *e = &idx.e[idx.n];
			memset(e, 0, sizeof(*e));
			idx.n++;
			snprintf(e->name, sizeof(e->name), "%s", f->sf.name);
			e->relpath = strdup(f->relpath);
			e->key = f->key, e->dev = f->dev, e->ino = f->ino, e->size = f->size;
			e->mtime_ns = f->mtime_ns, e->nchunks = f->nchunks;
			e->have = calloc(f->nchunks ? f->nchunks : 1, 1);
			e->crc = calloc(f->nchunks ? f->nchunks : 1, sizeof(*e->crc));
			if (!e->relpath || !e->have || !e->crc) {
				rc = -ENOMEM;
				break;
			}
			for (uint64_t k = 0; k < f->nchunks; k++) {
				int32_t i = f->occupant[k];
				if (i == NIL || c->slots[i].state != SLOT_READY || !c->slots[i].indexed)
					continue;
				e->have[k] = 1;
				e->crc[k] = c->slots[i].crc;
			}
			f->keep_file = keep;
		}
	*out = idx;
	return rc;
}

/* At a clean exit with warm_restart: the index, and the listed files kept. */
static int do_write_index(struct cache *c)
{
	struct cache_store_index idx;
	int rc = do_build_index(c, &idx, true);
	if (rc == 0)
		rc = cache_store_index_write(c->store, &idx);
	cache_store_index_release(&idx);
	return rc;
}

/*
 * With warm_restart, the index is also written every INDEX_EVERY_MS while chunks change, so
 * a daemon that is killed leaves one a new daemon can use: whatever changed since is caught
 * by the CRC check of each adopted chunk, and files it does not list are removed at start.
 */
#define INDEX_EVERY_MS 2000

static void *index_main(void *arg)
{
	struct cache *c = arg;
	uint64_t seen = UINT64_MAX;
	pthread_mutex_lock(&c->lock);
	while (!c->stop) {
		struct deadline dl = deadline_in_ms(INDEX_EVERY_MS);
		deadline_cond_wait(&c->index_cond, &c->lock, &dl);
		uint64_t now = c->st.fills + c->st.evictions + c->adopted;
		if (c->stop || now == seen)
			continue;
		struct cache_store_index idx;
		int rc = do_build_index(c, &idx, false);
		pthread_mutex_unlock(&c->lock);
		if (rc == 0)
			rc = cache_store_index_write(c->store, &idx);
		cache_store_index_release(&idx);
		pthread_mutex_lock(&c->lock);
		if (rc == 0)
			seen = now;
	}
	pthread_mutex_unlock(&c->lock);
	return NULL;
}

struct cache_file *cache_file_open(struct cache *c, const struct cache_file_info *info,
				   bool *replaced)
{
	*replaced = false;
	pthread_mutex_lock(&c->lock);
	struct cache_file *cur = do_table_find(c, info->relpath);
	if (cur && cache_file_same(cur, info->dev, info->ino, info->size, info->mtime_ns)) {
		cur->refs++;
		if (info->cookie && !cur->cookie) /* opened by mowsctl before the kernel */
			cur->cookie = info->cookie;
		pthread_mutex_unlock(&c->lock);
		close(info->fd);
		return cur;
	}
	struct cache_file *f = file_new(c, info);
	if (!f) {
		pthread_mutex_unlock(&c->lock);
		close(info->fd);
		return NULL;
	}
	f->id = ++c->next_file_id;
	f->refs = 2; /* the table's and the caller's */
	f->current = true;
	if (cur) {
		log_info("%s changed in the backing directory; dropping its cached chunks",
			 cur->relpath);
		do_table_del(c, cur);
		if (cur->state != CACHE_FILE_BAD)
			cur->state = CACHE_FILE_STALE;
		do_file_drop_chunks(c, cur);
		do_file_put(cur);
		*replaced = true;
	}
	uint32_t b = path_bucket(f->relpath);
	f->tnext = c->files[b];
	c->files[b] = f;
	if (f->adopt_from)
		do_adopt_chunks(c, f);
	pthread_mutex_unlock(&c->lock);
	return f;
}

void cache_file_get(struct cache *c, struct cache_file *f)
{
	pthread_mutex_lock(&c->lock);
	f->refs++;
	pthread_mutex_unlock(&c->lock);
}

void cache_file_put(struct cache *c, struct cache_file *f)
{
	if (!f)
		return;
	pthread_mutex_lock(&c->lock);
	do_file_put(f);
	pthread_mutex_unlock(&c->lock);
}

struct cache_file *cache_file_find(struct cache *c, const char *relpath)
{
	pthread_mutex_lock(&c->lock);
	struct cache_file *f = do_table_find(c, relpath);
	if (f)
		f->refs++;
	pthread_mutex_unlock(&c->lock);
	if (!f)
		errno = ENOENT;
	return f;
}

uint64_t cache_file_key(const struct cache_file *f)
{
	return f->key;
}

int64_t cache_file_mtime_ns(const struct cache_file *f)
{
	return f->mtime_ns;
}

struct cache_file *cache_file_by_key(struct cache *c, uint64_t key)
{
	struct cache_file *found = NULL;
	pthread_mutex_lock(&c->lock);
	for (unsigned b = 0; b < FILE_BUCKETS && !found; b++)
		for (struct cache_file *f = c->files[b]; f; f = f->tnext)
			if (f->key == key) {
				found = f;
				f->refs++;
				break;
			}
	pthread_mutex_unlock(&c->lock);
	if (!found)
		errno = ENOENT;
	return found;
}

void cache_slab_region(struct cache *c, void **base, size_t *len)
{
	*base = c->store ? NULL : c->slab.base;
	*len = c->store ? 0 : c->slab.map_len;
}

void cache_set_forget(struct cache *c, void (*fn)(void *ctx, const void *addr, size_t len),
		      void *ctx)
{
	if (!c->store)
		return;
	pthread_mutex_lock(&c->lock);
	cache_store_set_forget(c->store, fn, ctx);
	pthread_mutex_unlock(&c->lock);
}

bool cache_has_store(const struct cache *c)
{
	return c->store != NULL;
}

uint64_t cache_chunk_size(const struct cache *c)
{
	return c->chunk_size;
}

uint64_t cache_file_size(const struct cache_file *f)
{
	return f->size;
}

int cache_file_fd(const struct cache_file *f)
{
	return f->fd;
}

const char *cache_file_relpath(const struct cache_file *f)
{
	return f->relpath;
}

bool cache_file_same(const struct cache_file *f, dev_t dev, ino_t ino, uint64_t size,
		     int64_t mtime_ns)
{
	return f->dev == dev && f->ino == ino && f->size == size && f->mtime_ns == mtime_ns;
}

/* ---- reads ---- */

static void do_readahead(struct cache *c, struct cache_file *f, uint64_t after)
{
	for (uint64_t k = after + 1; k <= after + c->readahead_chunks && k < f->nchunks; k++)
		if (do_lookup(c, f, k) == NIL && do_get_chunk(c, f, k, PRIO_LOW, false, NULL,
							      NULL) < 0)
			break;
}

/*
 * How many chunks of a sequential read's window, which ends readahead_chunks past @last,
 * lie past the end of @f and were not handed on before: 0, or the window's new overhang
 * (recorded, so each chunk is carried once per version and the lookup is not repeated).
 */
static uint64_t do_carry_due(struct cache *c, struct cache_file *f, uint64_t last)
{
	if (!c->next.next || f->nchunks == 0 || f->state == CACHE_FILE_BAD)
		return 0;
	uint64_t reach = last + c->readahead_chunks;
	if (reach < f->nchunks)
		return 0;
	uint64_t over = reach - (f->nchunks - 1);
	if (over > c->readahead_chunks)
		over = c->readahead_chunks;
	if (over <= f->ahead_past)
		return 0;
	f->ahead_past = over;
	return over;
}

/* The first @n chunks of @f that are neither cached nor on their way start filling. Returns
 * how many of its chunks the window covers (at most @n). */
static uint64_t do_ahead_head(struct cache *c, struct cache_file *f, uint64_t n)
{
	uint64_t take = n < f->nchunks ? n : f->nchunks;
	if (f->state == CACHE_FILE_BAD || f->state == CACHE_FILE_STALE)
		return take;
	for (uint64_t k = 0; k < take; k++) {
		if (do_lookup(c, f, k) != NIL)
			continue;
		if (do_get_chunk(c, f, k, PRIO_LOW, false, NULL, NULL) < 0)
			break;
		c->st.readahead_next++;
	}
	return take;
}

/* Files a window may run on into past the one being read (small files take a chunk each). */
#define CARRY_FILES 4

/*
 * Carries @n chunks of readahead past the end of @f into the files a reader reads after it
 * (cache_next_ops), as many as the window holds. Called with no lock; never waits on a fill.
 */
static void carry_ahead(struct cache *c, struct cache_file *f, uint64_t n)
{
	struct cache_file *cur = f;
	for (unsigned hop = 0; hop < CARRY_FILES && n > 0; hop++) {
		struct cache_file *nx = c->next.next(c->next.ctx, cur);
		if (cur != f)
			cache_file_put(c, cur);
		cur = nx;
		if (nx == f) { /* a loop in the order */
			cache_file_put(c, nx);
			return;
		}
		if (!nx)
			return;
		pthread_mutex_lock(&c->lock);
		n -= do_ahead_head(c, nx, n);
		pthread_mutex_unlock(&c->lock);
	}
	if (cur != f)
		cache_file_put(c, cur);
}

/*
 * A sequential read of chunks @first..@last: starts their fills (first in line) and the
 * readahead after them before the read waits for anything, so that the chunks after a
 * missed one are on their way while it arrives (over peers, the first chunk of a file
 * takes a round trip or more before its bytes flow; fetching it alone cost each file of a
 * six-node join about that much). Never waits.
 */
static void do_start_ahead(struct cache *c, struct cache_file *f, uint64_t first, uint64_t last)
{
	/* Cached ones move to the young end of the LRU: the readahead's slots never evict them. */
	for (uint64_t k = first; k <= last; k++)
		if (do_get_chunk(c, f, k, PRIO_HIGH, false, NULL, NULL) < 0)
			return;
	do_readahead(c, f, last);
}

/*
 * Claims chunks @first..@last for a read. Returns true when the read must wait for the
 * whole-file check (verify = file): together with every earlier claim they cover the file,
 * so this read could hand out the last bytes a reader needs to reach EOF.
 */
static bool do_claim(struct cache *c, struct cache_file *f, uint64_t first, uint64_t last)
{
	for (uint64_t k = first; k <= last; k++)
		if (!f->claimed[k]) {
			f->claimed[k] = 1;
			f->nclaimed++;
		}
	/* With crc32.chunks every chunk was checked on its own before any read got it. */
	return c->verify == VERIFY_FILE && f->has_crc && !f->want &&
	       f->nclaimed == f->nchunks && f->state != CACHE_FILE_VERIFIED;
}

/*
 * Whether the whole-file check of @f is at most the fills in flight away (verify = file):
 * every chunk whose CRC is still unknown is being filled. A read then waits for the check
 * before it hands out any bytes, since it costs no more than those fills: so a reader
 * whose kernel asks for the file a window at a time (mmap's read-around) while our own
 * readahead already fills the rest is not handed a chunk the check is about to prove wrong.
 * Only a file whose rest is not yet asked for is served unchecked (issue 8: file never
 * lets a reader reach EOF unwarned; strict never serves an unchecked byte).
 */
static bool do_check_soon(struct cache *c, struct cache_file *f)
{
	uint64_t unknown = f->nchunks - f->ncrc_known;
	if (c->verify != VERIFY_FILE || !f->has_crc || f->want || unknown == 0 ||
	    unknown > 2ull * c->fill_threads + c->readahead_chunks + 1 || f->state != CACHE_FILE_OK)
		return false;
	for (const uint8_t *p = memchr(f->crc_known, 0, f->nchunks); p;
	     p = memchr(p + 1, 0, f->nchunks - (uint64_t)(p + 1 - f->crc_known))) {
		int32_t i = do_lookup(c, f, (uint64_t)(p - f->crc_known));
		if (i == NIL || c->slots[i].state != SLOT_FILLING || c->slots[i].gen != f->gen)
			return false;
	}
	return true;
}

/* Waits for a check that do_check_soon() saw coming: -EIO when the file is bad, else 0. */
static int wait_check(struct cache *c, struct cache_file *f)
{
	uint32_t crc;
	int rc = cache_file_verify(c, f, &crc);
	/* A fill that failed fails the reads of its own chunk, not of this one. */
	return rc == -EBADMSG ? -EIO : 0;
}

/*
 * After a refill that matched: a read may have handed out a chunk that the refill proved
 * wrong (a peer's, or a storage read that did not repeat). Its reader must not reach EOF unwarned, and the kernel retries a failed
 * readahead with a read of its own: so every read past offset 0 fails until a read at offset
 * 0 starts a new pass over the file (which then gets the right bytes).
 */
static bool took_wrong(struct cache *c, struct cache_file *f, uint64_t off)
{
	pthread_mutex_lock(&c->lock);
	bool wrong = f->served_wrong && off > 0;
	bool tell = wrong && !f->served_wrong_told;
	if (f->served_wrong && off == 0)
		f->served_wrong = f->served_wrong_told = false;
	if (tell)
		f->served_wrong_told = true;
	pthread_mutex_unlock(&c->lock);
	if (tell)
		log_err("%s: a read got a chunk (from a peer, or a storage read that changed) "
			"before the file check proved it wrong; reads past its start fail with EIO "
			"until one starts over at offset 0 (the file is right now)", f->relpath);
	return wrong;
}

static int strict_check(struct cache *c, struct cache_file *f)
{
	uint32_t crc;
	int rc = cache_file_verify(c, f, &crc);
	if (rc == -ENODATA) {
		log_warn("verify = strict: %s has no manifest entry; serving it unchecked",
			 f->relpath);
		rc = 0;
	}
	if (rc == 0) {
		pthread_mutex_lock(&c->lock);
		f->strict_checked = true;
		pthread_mutex_unlock(&c->lock);
	}
	return rc == -EBADMSG ? -EIO : rc;
}

ssize_t cache_read(struct cache *c, struct cache_file *f, uint64_t off, size_t len,
		   bool sequential, struct cache_span *spans, unsigned max, unsigned *nspans)
{
	*nspans = 0;
	if (off >= f->size || len == 0)
		return 0;
	uint64_t end = len > f->size - off ? f->size : off + len;
	uint64_t first = off / c->chunk_size, last = (end - 1) / c->chunk_size;
	if (last - first + 1 > max)
		return -EINVAL;
	pthread_mutex_lock(&c->lock);
	bool bad = f->state == CACHE_FILE_BAD;
	bool check = c->verify == VERIFY_STRICT && !f->strict_checked;
	bool gate = !bad && !check && do_claim(c, f, first, last);
	/* A version that mismatched once serves nothing of its refill before it is checked. */
	gate = gate || (!bad && !check && f->state == CACHE_FILE_RETRYING);
	bool soon = !bad && !check && !gate && do_check_soon(c, f);
	bool wrong_pending = f->served_wrong;
	pthread_mutex_unlock(&c->lock);
	if (bad)
		return -EIO;
	if (check || gate || soon) {
		int rc = soon ? wait_check(c, f) : strict_check(c, f);
		if (rc)
			return rc;
	}
	if ((gate || soon || wrong_pending) && took_wrong(c, f, off))
		return -EIO;
	struct deadline dl = deadline_in_ms(c->fill_timeout_ms);
	unsigned n = 0;
	ssize_t rc = 0;

	pthread_mutex_lock(&c->lock);
	uint64_t carry = 0;
	bool started = false;
	if (sequential && f->state != CACHE_FILE_BAD) {
		do_start_ahead(c, f, first, last);
		carry = do_carry_due(c, f, last);
		started = first == 0 && !f->seq_started && c->next.started;
		f->seq_started = f->seq_started || first == 0;
	}
	if (carry || started) { /* before this read waits: the next file's round trips overlap it */
		pthread_mutex_unlock(&c->lock);
		if (started)
			c->next.started(c->next.ctx, f);
		if (carry)
			carry_ahead(c, f, carry);
		pthread_mutex_lock(&c->lock);
	}
	for (uint64_t k = first; k <= last; k++) {
		bool hit = false;
		int32_t i = f->state == CACHE_FILE_BAD ? -EIO :
			    do_get_chunk(c, f, k, PRIO_HIGH, true, &dl, &hit);
		if (i < 0) {
			rc = i;
			break;
		}
		hit ? c->st.hits++ : c->st.misses++;
		uint64_t cstart = k * c->chunk_size;
		uint64_t from = off > cstart ? off - cstart : 0;
		uint64_t to = end - cstart < c->slots[i].len ? end - cstart : c->slots[i].len;
		spans[n].data = slot_data(c, (uint32_t)i) + from;
		spans[n].len = (size_t)(to - from);
		spans[n].slot = (uint32_t)i;
		if (hit)
			c->st.bytes_read_hit += spans[n].len;
		else
			c->st.bytes_read_from[c->slots[i].src] += spans[n].len;
		n++;
	}
	if (rc == 0 && f->state == CACHE_FILE_BAD)
		rc = -EIO;
	if (rc) {
		for (unsigned k = 0; k < n; k++)
			do_unpin(c, (int32_t)spans[k].slot);
		pthread_mutex_unlock(&c->lock);
		return rc;
	}
	if (sequential)
		do_readahead(c, f, last);
	c->st.bytes_read += end - off;
	pthread_mutex_unlock(&c->lock);
	*nspans = n;
	return (ssize_t)(end - off);
}

/*
 * Fills slot @i (FILLING, on no queue) on the calling thread, not on a fill thread: a peer's
 * request that we fill, as owner, must never queue behind fills that wait on other peers
 * (net/peer.h, "serving never waits on fetching"). Remote sources may only ask nodes that
 * hold the chunk (cache_fetch.probe_only), which never wait on a fill; then storage.
 * Returns @i pinned, or -errno. Drops the lock while it reads.
 */
static int32_t do_fill_here(struct cache *c, int32_t i, const struct cache_begun *begun)
{
	struct slot *s = &c->slots[i];
	s->serving = true;
	s->pins++;
	do_run_fill(c, i, begun);
	if (s->state == SLOT_READY)
		return i;
	int err = s->state == SLOT_FAILED && s->err ? s->err : -EIO;
	do_unpin(c, i);
	return err;
}

/* Whether slot @i waits in a fill queue, no fill thread having taken it yet. */
static bool do_queued(struct cache *c, int32_t i)
{
	return c->slots[i].state == SLOT_FILLING &&
	       (c->slots[i].on == &c->queue[PRIO_HIGH] || c->slots[i].on == &c->queue[PRIO_LOW]);
}

static int serve_chunk(struct cache *c, struct cache_file *f, uint64_t chunk, bool fill,
		       const struct deadline *dl, struct cache_span *span, uint32_t *crc,
		       const struct cache_begun *begun)
{
	if (chunk >= f->nchunks)
		return -EINVAL;
	pthread_mutex_lock(&c->lock);
	int32_t i = do_find(c, f, chunk, true, dl);
	int rc = i < NIL ? i : 0;
	/* Never send a chunk of a version that failed its check, even while it is refilled. */
	if (f->state == CACHE_FILE_BAD || f->state == CACHE_FILE_STALE || f->local_only)
		rc = -EIO;
	else if (i == NIL && !fill)
		rc = -ENOENT;
	else if (i != NIL && !fill && c->slots[i].state != SLOT_READY)
		rc = -ENOENT;
	bool here = false;
	if (rc == 0 && i == NIL) {
		i = do_alloc_slot(c, true, dl);
		int32_t other = i >= 0 ? do_find(c, f, chunk, true, dl) : NIL;
		if (i >= 0 && other != NIL) { /* started while we waited, or busy */
			do_list_push(c, &c->free, i);
			i = other;
			if (other < NIL)
				rc = other;
		} else if (i >= 0) {
			do_begin_fill(c, i, f, chunk);
			here = true;
		}
	} else if (rc == 0 && fill && do_queued(c, i)) {
		do_list_del(c, i); /* ours to read now, not after the queue ahead of it */
		here = true;
	}
	if (rc == 0 && here)
		i = do_fill_here(c, i, begun);
	else if (rc == 0 && i >= 0)
		i = do_get_chunk(c, f, chunk, PRIO_HIGH, true, dl, NULL);
	if (rc == 0 && i < 0)
		rc = i;
	if (rc == 0) {
		span->data = slot_data(c, (uint32_t)i);
		span->len = c->slots[i].len;
		span->slot = (uint32_t)i;
		*crc = c->slots[i].crc;
	}
	pthread_mutex_unlock(&c->lock);
	return rc;
}

int cache_serve_chunk(struct cache *c, struct cache_file *f, uint64_t chunk, bool fill,
		      const struct deadline *dl, struct cache_span *span, uint32_t *crc)
{
	return serve_chunk(c, f, chunk, fill, dl, span, crc, NULL);
}

int cache_serve_fill(struct cache *c, struct cache_file *f, uint64_t chunk,
		     const struct deadline *dl, struct cache_span *span, uint32_t *crc,
		     const struct cache_begun *begun)
{
	return serve_chunk(c, f, chunk, true, dl, span, crc, begun);
}

void cache_read_done(struct cache *c, const struct cache_span *spans, unsigned n)
{
	pthread_mutex_lock(&c->lock);
	for (unsigned k = 0; k < n; k++)
		do_unpin(c, (int32_t)spans[k].slot);
	pthread_mutex_unlock(&c->lock);
}

/* ---- whole-file operations ---- */

/* Whether chunk @k still needs a fill: not cached (prefetch) or no CRC yet (verify). */
static bool do_needs_fill(struct cache *c, struct cache_file *f, uint64_t k, bool for_crc)
{
	if (for_crc)
		return !f->crc_known[k];
	int32_t i = do_lookup(c, f, k);
	return i == NIL || c->slots[i].state != SLOT_READY;
}

static int fill_all(struct cache *c, struct cache_file *f, bool for_crc,
		    bool (*progress)(void *arg, uint64_t done, uint64_t total), void *arg)
{
	uint64_t window = 2ull * c->fill_threads, next = 0, done = 0;
	int rc = 0;
	pthread_mutex_lock(&c->lock);
	for (uint64_t k = 0; k < f->nchunks && rc == 0; k++) {
		for (; next < f->nchunks && next < k + window; next++)
			if (do_needs_fill(c, f, next, for_crc) &&
			    do_get_chunk(c, f, next, PRIO_LOW, false, NULL, NULL) < 0)
				break;
		if (do_needs_fill(c, f, k, for_crc)) {
			struct deadline dl = deadline_in_ms(c->fill_timeout_ms);
			int32_t i = do_get_chunk(c, f, k, PRIO_LOW, true, &dl, NULL);
			if (i < 0 && for_crc && f->bad && f->bad[k])
				continue; /* a known bad chunk: check the others, report them all */
			if (i < 0) {
				rc = i;
				break;
			}
			do_unpin(c, i);
		}
		if (f->state == CACHE_FILE_BAD)
			rc = -EIO;
		done += chunk_len(c, f, k);
		if (progress && rc == 0) {
			pthread_mutex_unlock(&c->lock);
			if (!progress(arg, done, f->size))
				rc = -ECANCELED;
			pthread_mutex_lock(&c->lock);
		}
	}
	pthread_mutex_unlock(&c->lock);
	return rc;
}

int cache_file_prefetch(struct cache *c, struct cache_file *f,
			bool (*progress)(void *arg, uint64_t done, uint64_t total), void *arg)
{
	return fill_all(c, f, false, progress, arg);
}

/* ---- passthrough ---- */

/* Whether @f is complete and as verified as the settings ask: a passthrough reader gets its
 * file's bytes with no check of ours in between. */
static bool do_pt_ready(struct cache *c, struct cache_file *f)
{
	if (f->state == CACHE_FILE_BAD || f->state == CACHE_FILE_STALE ||
	    f->state == CACHE_FILE_RETRYING || f->local_only || f->nbad ||
	    f->cached_chunks != f->nchunks)
		return false;
	if (c->verify >= VERIFY_FILE && f->has_crc && f->state != CACHE_FILE_VERIFIED)
		return false;
	return c->verify != VERIFY_STRICT || f->has_crc || f->strict_checked;
}

int cache_file_passthrough_get(struct cache *c, struct cache_file *f)
{
	if (!c->store)
		return -EOPNOTSUPP;
	pthread_mutex_lock(&c->lock);
	int rc = 0;
	if (f->pt_refs)
		goto out_ok; /* its chunks are pinned: the bytes cannot have changed */
	rc = -EAGAIN;
	if (!do_pt_ready(c, f))
		goto out_unlock;
	rc = -ENOMEM;
	if (!f->pt_slots && f->nchunks &&
	    !(f->pt_slots = malloc(f->nchunks * sizeof(*f->pt_slots))))
		goto out_unlock;
	for (uint64_t k = 0; k < f->nchunks; k++) {
		int32_t i = do_lookup(c, f, k);
		if (i == NIL || c->slots[i].state != SLOT_READY) {
			rc = -EAGAIN;
			goto out_unlock;
		}
		f->pt_slots[k] = i;
	}
	for (uint64_t k = 0; k < f->nchunks; k++) {
		struct slot *s = &c->slots[f->pt_slots[k]];
		if (!s->pins)
			do_list_del(c, f->pt_slots[k]);
		s->pins++;
	}
out_ok:
	f->pt_refs++;
	rc = 0;
out_unlock:
	pthread_mutex_unlock(&c->lock);
	if (rc)
		return rc;
	int fd = cache_store_file_open(&f->sf);
	if (fd < 0)
		cache_file_passthrough_put(c, f);
	return fd;
}

void cache_file_passthrough_put(struct cache *c, struct cache_file *f)
{
	pthread_mutex_lock(&c->lock);
	if (f->pt_refs && --f->pt_refs == 0)
		for (uint64_t k = 0; k < f->nchunks; k++)
			do_unpin(c, f->pt_slots[k]);
	pthread_mutex_unlock(&c->lock);
}

struct wait_arg {
	const struct deadline *dl;
};

static bool before_deadline(void *arg, uint64_t done, uint64_t total)
{
	(void)done;
	(void)total;
	return !deadline_passed(((struct wait_arg *)arg)->dl);
}

int cache_file_wait_complete(struct cache *c, struct cache_file *f, const struct deadline *dl)
{
	struct wait_arg wa = { .dl = dl };
	int rc = fill_all(c, f, false, before_deadline, &wa);
	if (rc == -ECANCELED)
		return -ETIMEDOUT;
	if (rc == 0 && c->verify == VERIFY_STRICT && f->has_crc)
		rc = strict_check(c, f);
	if (rc)
		return rc;
	pthread_mutex_lock(&c->lock);
	bool ready = f->pt_refs || do_pt_ready(c, f);
	pthread_mutex_unlock(&c->lock);
	return ready ? 0 : -EAGAIN;
}

int cache_file_verify(struct cache *c, struct cache_file *f, uint32_t *computed)
{
	if (c->verify == VERIFY_OFF)
		return -ENOTSUP;
	for (int pass = 0; pass < 3; pass++) {
		int rc = fill_all(c, f, true, NULL, NULL);
		if (rc && rc != -EIO)
			return rc;
		pthread_mutex_lock(&c->lock);
		enum cache_file_state st = f->state;
		bool all = f->ncrc_known == f->nchunks;
		if (f->nbad) {
			*computed = f->computed;
			pthread_mutex_unlock(&c->lock);
			return -EBADMSG;
		}
		if (all)
			*computed = do_combined_crc(c, f);
		else if (st == CACHE_FILE_BAD)
			*computed = f->computed;
		struct cache_file *inval = NULL;
		if (all && f->has_crc && st != CACHE_FILE_VERIFIED && st != CACHE_FILE_BAD &&
		    do_file_check(c, f)) {
			f->refs++;
			inval = f;
		}
		st = f->state;
		pthread_mutex_unlock(&c->lock);
		if (inval)
			settle_and_put(c, inval);
		if (st == CACHE_FILE_BAD)
			return -EBADMSG;
		if (st == CACHE_FILE_VERIFIED)
			return 0;
		if (all && !f->has_crc)
			return -ENODATA;
		if (rc)
			return rc;
	}
	return -EIO;
}

void cache_file_evict(struct cache *c, struct cache_file *f)
{
	pthread_mutex_lock(&c->lock);
	do_file_drop_chunks(c, f);
	f->refs++;
	f->inval_due = true;
	pthread_mutex_unlock(&c->lock);
	settle_and_put(c, f);
}

int cache_chunkmap_refresh(struct cache *c, int dirfd, const char *manifest)
{
	char err[512] = "";
	struct stat st;
	if (c->verify == VERIFY_OFF)
		return 0;
	char *name = cache_chunkmap_name(manifest);
	if (!name)
		return -ENOMEM;
	bool present = fstatat(dirfd, name, &st, AT_SYMLINK_NOFOLLOW) == 0;
	pthread_mutex_lock(&c->lock);
	const struct stat *was = &c->chunkmap_st;
	bool same = present == c->chunkmap_present &&
		    (!present || (st.st_ino == was->st_ino && st.st_size == was->st_size &&
				  st.st_mtim.tv_sec == was->st_mtim.tv_sec &&
				  st.st_mtim.tv_nsec == was->st_mtim.tv_nsec));
	pthread_mutex_unlock(&c->lock);
	if (same) {
		free(name);
		return 0;
	}
	struct cache_chunkmap *fresh = NULL;
	if (present) {
		fresh = cache_chunkmap_load(dirfd, name, c->chunk_size, err, sizeof(err));
		if (!fresh)
			log_warn("%s; per-chunk checks are off (whole files are still checked "
				 "against %s)", err, manifest);
		else
			log_info("%s: %zu files in chunks of %" PRIu64 " bytes%s", name,
				 cache_chunkmap_count(fresh), cache_chunkmap_file_chunk_size(fresh),
				 cache_chunkmap_file_chunk_size(fresh) != c->chunk_size ?
				 ", combined into chunk_size chunks" : "");
	} else if (c->chunkmap_present) {
		log_info("%s is gone; files opened from now on are not checked chunk by chunk",
			 name);
	}
	pthread_mutex_lock(&c->lock);
	struct cache_chunkmap *old = c->chunkmap;
	c->chunkmap = fresh;
	c->chunkmap_present = present;
	if (present)
		c->chunkmap_st = st;
	pthread_mutex_unlock(&c->lock);
	cache_chunkmap_free(old);
	free(name);
	return 0;
}

int cache_chunkmap_set_text(struct cache *c, const char *name, const char *text, size_t len)
{
	char err[512] = "";
	if (c->verify == VERIFY_OFF)
		return 0;
	struct cache_chunkmap *fresh = NULL;
	if (text) {
		fresh = cache_chunkmap_parse(text, len, name, c->chunk_size, NULL, err, sizeof(err));
		if (!fresh) {
			log_warn("%s (from a peer); the sidecar in use stays", err);
			return -errno;
		}
	}
	pthread_mutex_lock(&c->lock);
	struct cache_chunkmap *old = c->chunkmap;
	c->chunkmap = fresh;
	c->chunkmap_present = text != NULL;
	memset(&c->chunkmap_st, 0, sizeof(c->chunkmap_st)); /* a local refresh reads it again */
	pthread_mutex_unlock(&c->lock);
	cache_chunkmap_free(old);
	return 0;
}

size_t cache_file_bad_chunks(struct cache *c, struct cache_file *f,
			     struct cache_bad_chunk *out, size_t max)
{
	size_t n = 0;
	pthread_mutex_lock(&c->lock);
	for (uint64_t k = 0; f->bad && k < f->nchunks && n < f->nbad; k++) {
		if (!f->bad[k])
			continue;
		if (n < max)
			out[n] = (struct cache_bad_chunk){ .chunk = k, .offset = k * c->chunk_size,
							   .len = chunk_len(c, f, k),
							   .expected = f->want[k],
							   .got = f->bad_got[k] };
		n++;
	}
	pthread_mutex_unlock(&c->lock);
	return n;
}

/* ---- status ---- */

void cache_get_stats(struct cache *c, struct cache_stats *st)
{
	pthread_mutex_lock(&c->lock);
	*st = c->st;
	st->used_memory = (uint64_t)(c->pristine - c->free.n) * c->chunk_size;
	st->slots_ready = c->lru.n;
	for (uint32_t i = 0; i < c->nslots; i++)
		if (c->slots[i].state == SLOT_READY && c->slots[i].pins)
			st->slots_ready++;
	pthread_mutex_unlock(&c->lock);
	hist_read(&c->fill_hist, &st->fill_latency);
}

void cache_file_get_status(struct cache *c, struct cache_file *f, struct cache_file_status *st)
{
	pthread_mutex_lock(&c->lock);
	st->relpath = f->relpath;
	st->size = f->size;
	st->cached_bytes = f->cached_bytes;
	st->state = f->state;
	st->has_crc = f->has_crc;
	st->expected_crc = f->expected;
	st->chunks_total = f->nchunks;
	st->chunks_cached = f->cached_chunks;
	st->has_chunk_crcs = f->want != NULL;
	st->chunks_bad = f->nbad;
	pthread_mutex_unlock(&c->lock);
}

void cache_foreach_file(struct cache *c, void (*fn)(void *arg, struct cache_file *f), void *arg)
{
	size_t n = 0, cap = 64;
	struct cache_file **all = malloc(cap * sizeof(*all));
	if (!all)
		return;
	pthread_mutex_lock(&c->lock);
	for (unsigned b = 0; b < FILE_BUCKETS; b++)
		for (struct cache_file *f = c->files[b]; f; f = f->tnext) {
			if (n == cap) {
				struct cache_file **more = realloc(all, 2 * cap * sizeof(*all));
				if (!more)
					goto out_unlock;
				all = more;
				cap *= 2;
			}
			f->refs++;
			all[n++] = f;
		}
out_unlock:
	pthread_mutex_unlock(&c->lock);
	for (size_t k = 0; k < n; k++) {
		fn(arg, all[k]);
		cache_file_put(c, all[k]);
	}
	free(all);
}

const char *cache_file_state_name(enum cache_file_state s)
{
	switch (s) {
	case CACHE_FILE_OK: return "ok";
	case CACHE_FILE_VERIFIED: return "verified";
	case CACHE_FILE_RETRYING: return "retrying";
	case CACHE_FILE_BAD: return "mismatch";
	default: return "stale";
	}
}

unsigned cache_source_stats(struct cache *c, unsigned k, const char **name, uint64_t *bytes)
{
	pthread_mutex_lock(&c->lock);
	unsigned n = c->nsources;
	if (k < n) {
		*name = c->sources[k].ops->name;
		*bytes = c->sources[k].bytes;
	}
	pthread_mutex_unlock(&c->lock);
	return n;
}
