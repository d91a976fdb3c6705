#include "net/owners.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "common/hash.h"
#include "common/log.h"

/* One built map: immutable, freed with its last reference. */
struct omap {
	struct place_map *map;
	uint64_t *hashes;         /* the members it was built for, ascending */
	unsigned n;
	uint64_t set_sum;         /* set_sum() of hashes: owners_built_for() in O(n) */
	uint64_t files_gen;
	unsigned refs;            /* protected by owners->lock */
};

struct owners {
	uint64_t chunk_size;
	unsigned replicas;
	pthread_mutex_t build_lock; /* one owners_update() at a time; taken before lock */
	pthread_mutex_t lock;
	struct omap *cur;         /* protected by lock; NULL before the first map */
	uint64_t failed_gen;      /* protected by build_lock: the last failed build's files_gen */
	unsigned failed_n;        /* and member count, so it is not retried every round */
};

/* An order-independent digest of a member set. */
static uint64_t set_sum(const uint64_t *hashes, unsigned n)
{
	uint64_t sum = 0;
	for (unsigned i = 0; i < n; i++)
		sum += fmix64(hashes[i] ^ 0x9e3779b97f4a7c15ULL);
	return sum;
}

struct ranked {
	uint64_t hash;
	unsigned idx;
};

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

static int cmp_ranked(const void *a, const void *b)
{
	return cmp_u64(&((const struct ranked *)a)->hash, &((const struct ranked *)b)->hash);
}

static void omap_put(struct owners *o, struct omap *m)
{
	if (!m)
		return;
	pthread_mutex_lock(&o->lock);
	bool last = --m->refs == 0;
	pthread_mutex_unlock(&o->lock);
	if (!last)
		return;
	place_map_free(m->map);
	free(m->hashes);
	free(m);
}

static struct omap *omap_get(struct owners *o)
{
	pthread_mutex_lock(&o->lock);
	struct omap *m = o->cur;
	if (m)
		m->refs++;
	pthread_mutex_unlock(&o->lock);
	return m;
}

struct owners *owners_new(uint64_t chunk_size, unsigned replicas)
{
	struct owners *o = calloc(1, sizeof(*o));
	if (!o)
		return NULL;
	o->chunk_size = chunk_size;
	o->replicas = replicas ? replicas : 1;
	pthread_mutex_init(&o->build_lock, NULL);
	pthread_mutex_init(&o->lock, NULL);
	return o;
}

void owners_free(struct owners *o)
{
	if (!o)
		return;
	omap_put(o, o->cur);
	pthread_mutex_destroy(&o->lock);
	pthread_mutex_destroy(&o->build_lock);
	free(o);
}

/* Whether @m was built for the sorted set @sorted[0..n-1] and file generation @gen. */
static bool omap_same(const struct omap *m, const uint64_t *sorted, unsigned n, uint64_t gen)
{
	return m && m->n == n && m->files_gen == gen &&
	       !memcmp(m->hashes, sorted, n * sizeof(*sorted));
}

static struct omap *omap_build(struct owners *o, uint64_t *sorted, unsigned n,
			       const struct place_file *files, size_t nfiles, uint64_t gen)
{
	struct omap *m = calloc(1, sizeof(*m));
	if (!m)
		return NULL;
	m->map = place_map_new(sorted, n, files, nfiles, o->chunk_size, o->replicas);
	if (!m->map) {
		free(m);
		return NULL;
	}
	m->hashes = sorted;
	m->n = n;
	m->set_sum = set_sum(sorted, n);
	m->files_gen = gen;
	m->refs = 1;
	return m;
}

static int do_update(struct owners *o, const uint64_t *hashes, unsigned n, owners_list_fn list,
		     void *ctx)
{
	struct place_file *files = NULL;
	size_t nfiles = 0;
	uint64_t gen = 0;
	if (n < 2 || !list)
		return 0;
	uint64_t *sorted = malloc(n * sizeof(*sorted));
	if (!sorted)
		return -ENOMEM;
	memcpy(sorted, hashes, n * sizeof(*sorted));
	qsort(sorted, n, sizeof(*sorted), cmp_u64);
	int rc = list(ctx, &files, &nfiles, &gen);
	struct omap *cur = omap_get(o);
	bool same = omap_same(cur, sorted, n, gen);
	omap_put(o, cur);
	if (rc || same || nfiles == 0 || (gen == o->failed_gen && n == o->failed_n)) {
		free(sorted);
		free(files);
		return rc;
	}
	struct omap *m = omap_build(o, sorted, n, files, nfiles, gen);
	free(files);
	if (!m) {
		rc = -errno;
		log_warn("peers: cannot build the ownership map for %u members: %s; ranking by "
			 "rendezvous", n, strerror(errno));
		o->failed_gen = gen;
		o->failed_n = n;
		free(sorted);
		return rc;
	}
	log_info("peers: ownership map for %u members and %zu files (%zu chunks), digest %016"
		 PRIx64, n, nfiles, place_map_chunks(m->map), place_map_digest(m->map));
	pthread_mutex_lock(&o->lock);
	struct omap *old = o->cur;
	o->cur = m;
	pthread_mutex_unlock(&o->lock);
	omap_put(o, old);
	return 0;
}

int owners_update(struct owners *o, const uint64_t *hashes, unsigned n, owners_list_fn list,
		  void *ctx)
{
	pthread_mutex_lock(&o->build_lock);
	int rc = do_update(o, hashes, n, list, ctx);
	pthread_mutex_unlock(&o->build_lock);
	return rc;
}

bool owners_built_for(struct owners *o, const uint64_t *hashes, unsigned n)
{
	pthread_mutex_lock(&o->lock);
	bool same = o->cur && o->cur->n == n && o->cur->set_sum == set_sum(hashes, n);
	pthread_mutex_unlock(&o->lock);
	return same;
}

/* The map's ranking translated to indices of @hashes, when @m was built for that set. */
static bool rank_by_map(const struct omap *m, uint64_t file_key, uint64_t chunk,
			const uint64_t *hashes, unsigned n, unsigned *order)
{
	if (!m || m->n != n || place_map_owner(m->map, file_key, chunk) == PLACE_NONE)
		return false;
	struct ranked *r = malloc(n * sizeof(*r));
	if (!r)
		return false;
	for (unsigned i = 0; i < n; i++)
		r[i] = (struct ranked){ .hash = hashes[i], .idx = i };
	qsort(r, n, sizeof(*r), cmp_ranked);
	bool same = true;
	for (unsigned i = 0; i < n && same; i++)
		same = r[i].hash == m->hashes[i];
	if (same) {
		place_map_rank(m->map, file_key, chunk, order); /* indices of m->hashes */
		for (unsigned i = 0; i < n; i++)
			order[i] = r[order[i]].idx;  /* r[k] holds m->hashes[k] */
	}
	free(r);
	return same;
}

void owners_rank(struct owners *o, uint64_t file_key, uint64_t chunk, const uint64_t *hashes,
		 unsigned n, unsigned *order)
{
	struct omap *m = omap_get(o);
	if (!rank_by_map(m, file_key, chunk, hashes, n, order))
		place_rank(file_key, chunk, hashes, n, order);
	omap_put(o, m);
}

void owners_digest(struct owners *o, uint64_t *digest, unsigned *members)
{
	struct omap *m = omap_get(o);
	*digest = m ? place_map_digest(m->map) : 0;
	*members = m ? m->n : 0;
	omap_put(o, m);
}
