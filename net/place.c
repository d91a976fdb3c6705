/* Rendezvous placement: see place.h for the definition all nodes share. */
#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "common/hash.h"
#include "net/place.h"

#define GOLDEN64	0x9e3779b97f4a7c15ull

uint64_t place_node_hash(const char *node_id)
{
	static const char domain[] = "mows-node"; /* hashed with its NUL as the separator */

	return fmix64(fnv1a64(fnv1a64(FNV64_BASIS, domain, sizeof(domain)), node_id,
			      strlen(node_id)));
}

static uint64_t chunk_key(uint64_t file_key, uint64_t chunk)
{
	return fmix64(file_key ^ fmix64(chunk + GOLDEN64));
}

/* Whether node a (weight wa, index ia) ranks before node b. A strict total order. */
static bool ranks_before(uint64_t wa, unsigned ia, uint64_t wb, unsigned ib)
{
	return wa != wb ? wa > wb : ia < ib;
}

unsigned place_owner(uint64_t file_key, uint64_t chunk, const uint64_t *node_hashes,
		     unsigned n)
{
	uint64_t k = chunk_key(file_key, chunk);
	uint64_t best_w = 0;
	unsigned best = PLACE_NONE;

	for (unsigned i = 0; i < n; i++) {
		uint64_t w = fmix64(node_hashes[i] ^ k);

		if (best == PLACE_NONE || ranks_before(w, i, best_w, best)) {
			best = i;
			best_w = w;
		}
	}
	return best;
}

struct rank_ctx {
	uint64_t key;
	const uint64_t *hashes;
};

static int rank_cmp(const void *a, const void *b, void *arg)
{
	const struct rank_ctx *ctx = arg;
	unsigned ia = *(const unsigned *)a, ib = *(const unsigned *)b;
	uint64_t wa = fmix64(ctx->hashes[ia] ^ ctx->key);
	uint64_t wb = fmix64(ctx->hashes[ib] ^ ctx->key);

	if (ia == ib)
		return 0;
	return ranks_before(wa, ia, wb, ib) ? -1 : 1;
}

void place_rank(uint64_t file_key, uint64_t chunk, const uint64_t *node_hashes, unsigned n,
		unsigned *order)
{
	struct rank_ctx ctx = { .key = chunk_key(file_key, chunk), .hashes = node_hashes };

	for (unsigned i = 0; i < n; i++)
		order[i] = i;
	qsort_r(order, n, sizeof(*order), rank_cmp, &ctx);
}

/* ---- balanced ownership ---- */

struct map_file {
	uint64_t key;
	uint64_t nchunks;
	size_t first;		/* index of chunk 0 in the map's chunk numbering */
	bool used;
};

struct place_map {
	unsigned n, levels;
	uint64_t chunk_size;
	size_t nchunks;
	size_t tab_mask;	/* the file table has tab_mask + 1 slots, a power of two */
	struct map_file *tab;
	uint64_t *hashes;	/* n */
	uint32_t *owner;	/* nchunks * levels: owner[i * levels + j] */
	uint64_t *load;		/* levels * n */
	uint64_t digest;
};

/* A chunk while building: its key, identity, map index and bytes. */
struct build_chunk {
	uint64_t k, file_key, chunk;
	uint32_t idx, bytes;
};

static const struct map_file *map_find(const struct place_map *m, uint64_t key)
{
	for (size_t i = key & m->tab_mask;; i = (i + 1) & m->tab_mask) {
		if (!m->tab[i].used)
			return NULL;
		if (m->tab[i].key == key)
			return &m->tab[i];
	}
}

/* Index of (key, chunk) in the map, or SIZE_MAX. */
static size_t map_index(const struct place_map *m, uint64_t key, uint64_t chunk)
{
	const struct map_file *f = map_find(m, key);

	if (!f || chunk >= f->nchunks)
		return SIZE_MAX;
	return f->first + (size_t)chunk;
}

/* Fills the file table; -EINVAL on a duplicate key or too many chunks. */
static int map_add_files(struct place_map *m, const struct place_file *files, size_t nfiles)
{
	for (size_t f = 0; f < nfiles; f++) {
		uint64_t nc = files[f].size / m->chunk_size + (files[f].size % m->chunk_size != 0);
		size_t i = files[f].key & m->tab_mask;

		while (m->tab[i].used) {
			if (m->tab[i].key == files[f].key)
				return -EINVAL;
			i = (i + 1) & m->tab_mask;
		}
		if (nc >= UINT32_MAX - m->nchunks)
			return -EINVAL;
		m->tab[i] = (struct map_file){ .key = files[f].key, .nchunks = nc,
					       .first = m->nchunks, .used = true };
		m->nchunks += nc;
	}
	return 0;
}

static int build_cmp(const void *a, const void *b)
{
	const struct build_chunk *x = a, *y = b;

	if (x->k != y->k)
		return x->k < y->k ? -1 : 1;
	if (x->file_key != y->file_key)
		return x->file_key < y->file_key ? -1 : 1;
	return x->chunk < y->chunk ? -1 : x->chunk > y->chunk;
}

/* Every chunk of every file, in the order of the definition. */
static struct build_chunk *map_order(const struct place_map *m, const struct place_file *files,
				     size_t nfiles)
{
	struct build_chunk *bc = calloc(m->nchunks ? m->nchunks : 1, sizeof(*bc));
	size_t i = 0;

	if (!bc)
		return NULL;
	for (size_t f = 0; f < nfiles; f++) {
		const struct map_file *mf = map_find(m, files[f].key);

		for (uint64_t c = 0; c < mf->nchunks; c++, i++) {
			uint64_t left = files[f].size - c * m->chunk_size;

			bc[i] = (struct build_chunk){
				.k = chunk_key(files[f].key, c), .file_key = files[f].key,
				.chunk = c, .idx = (uint32_t)(mf->first + c),
				.bytes = (uint32_t)(left < m->chunk_size ? left : m->chunk_size),
			};
		}
	}
	qsort(bc, m->nchunks, sizeof(*bc), build_cmp);
	return bc;
}

static bool chosen_below(const uint32_t *own, unsigned level, unsigned node)
{
	for (unsigned j = 0; j < level; j++)
		if (own[j] == node)
			return true;
	return false;
}

/* The node that takes a chunk of @bytes at @level, given the nodes' weights @w for it. */
static unsigned map_pick(const struct place_map *m, const uint64_t *w, const uint32_t *own,
			 unsigned level, uint64_t bytes, uint64_t cap)
{
	const uint64_t *load = m->load + (size_t)level * m->n;
	unsigned fit = PLACE_NONE, least = PLACE_NONE;

	for (unsigned i = 0; i < m->n; i++) {
		if (chosen_below(own, level, i))
			continue;
		if (load[i] + bytes <= cap && (fit == PLACE_NONE || ranks_before(w[i], i, w[fit], fit)))
			fit = i;
		if (least == PLACE_NONE || load[i] < load[least] ||
		    (load[i] == load[least] && ranks_before(w[i], i, w[least], least)))
			least = i;
	}
	return fit != PLACE_NONE ? fit : least;
}

static void map_assign(struct place_map *m, const struct build_chunk *bc, uint64_t *w,
		       uint64_t total)
{
	uint64_t cap = total / m->n + (total % m->n != 0);

	m->digest = FNV64_BASIS;
	for (size_t c = 0; c < m->nchunks; c++) {
		uint32_t *own = m->owner + (size_t)bc[c].idx * m->levels;

		for (unsigned i = 0; i < m->n; i++)
			w[i] = fmix64(m->hashes[i] ^ bc[c].k);
		for (unsigned j = 0; j < m->levels; j++) {
			unsigned o = map_pick(m, w, own, j, bc[c].bytes, cap);

			own[j] = o;
			m->load[(size_t)j * m->n + o] += bc[c].bytes;
			m->digest = fmix64((m->digest ^ m->hashes[o]) + GOLDEN64);
		}
	}
}

static int u64_cmp(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

/* 0 when the @n hashes are distinct, -EINVAL when two are equal, -ENOMEM. */
static int hashes_distinct(const uint64_t *h, unsigned n)
{
	uint64_t *s = malloc(n * sizeof(*s));
	int rc = 0;

	if (!s)
		return -ENOMEM;
	memcpy(s, h, n * sizeof(*s));
	qsort(s, n, sizeof(*s), u64_cmp);
	for (unsigned i = 1; i < n && !rc; i++)
		if (s[i] == s[i - 1])
			rc = -EINVAL;
	free(s);
	return rc;
}

static struct place_map *map_alloc(unsigned n, size_t nfiles, uint64_t chunk_size,
				   unsigned replicas)
{
	struct place_map *m = calloc(1, sizeof(*m));
	size_t slots = 4;

	if (!m)
		return NULL;
	while (slots < 2 * nfiles)
		slots *= 2;
	m->n = n;
	m->levels = replicas < n ? replicas : n;
	m->chunk_size = chunk_size;
	m->tab_mask = slots - 1;
	m->tab = calloc(slots, sizeof(*m->tab));
	m->hashes = malloc(n * sizeof(*m->hashes));
	m->load = calloc((size_t)m->levels * n, sizeof(*m->load));
	if (!m->tab || !m->hashes || !m->load) {
		place_map_free(m);
		errno = ENOMEM;
		return NULL;
	}
	return m;
}

struct place_map *place_map_new(const uint64_t *node_hashes, unsigned n,
				const struct place_file *files, size_t nfiles, uint64_t chunk_size,
				unsigned replicas)
{
	struct place_map *m;
	struct build_chunk *bc;
	uint64_t *w, total = 0;
	int rc;

	if (!n || !chunk_size || !replicas || nfiles > SIZE_MAX / 4) {
		errno = EINVAL;
		return NULL;
	}
	rc = hashes_distinct(node_hashes, n);
	if (rc) {
		errno = -rc;
		return NULL;
	}
	m = map_alloc(n, nfiles, chunk_size, replicas);
	if (!m)
		return NULL;
	memcpy(m->hashes, node_hashes, n * sizeof(*m->hashes));
	rc = map_add_files(m, files, nfiles);
	if (rc)
		goto out_free_map;
	for (size_t f = 0; f < nfiles; f++)
		total += files[f].size;
	rc = -ENOMEM;
	m->owner = malloc((m->nchunks ? m->nchunks : 1) * m->levels * sizeof(*m->owner));
	if (!m->owner)
		goto out_free_map;
	bc = map_order(m, files, nfiles);
	if (!bc)
		goto out_free_map;
	w = malloc(n * sizeof(*w));
	if (!w)
		goto out_free_order;
	map_assign(m, bc, w, total);
	free(w);
	free(bc);
	return m;

out_free_order:
	free(bc);
out_free_map:
	place_map_free(m);
	errno = -rc;
	return NULL;
}

void place_map_free(struct place_map *map)
{
	if (!map)
		return;
	free(map->tab);
	free(map->hashes);
	free(map->owner);
	free(map->load);
	free(map);
}

unsigned place_map_owner(const struct place_map *map, uint64_t file_key, uint64_t chunk)
{
	size_t i = map_index(map, file_key, chunk);

	return i == SIZE_MAX ? PLACE_NONE : map->owner[i * map->levels];
}

unsigned place_map_owners(const struct place_map *map, uint64_t file_key, uint64_t chunk,
			  unsigned *out, unsigned max)
{
	size_t i = map_index(map, file_key, chunk);
	unsigned k = 0;

	if (i == SIZE_MAX)
		return 0;
	for (; k < map->levels && k < max; k++)
		out[k] = map->owner[i * map->levels + k];
	return k;
}

void place_map_rank(const struct place_map *map, uint64_t file_key, uint64_t chunk,
		    unsigned *order)
{
	size_t idx = map_index(map, file_key, chunk);
	unsigned n = map->n, w = n;
	const uint32_t *own;

	place_rank(file_key, chunk, map->hashes, n, order);
	if (idx == SIZE_MAX)
		return;
	own = map->owner + idx * map->levels;
	/* Stable: the others keep their rendezvous order behind the owners. */
	for (unsigned i = n; i-- > 0;)
		if (!chosen_below(own, map->levels, order[i]))
			order[--w] = order[i];
	for (unsigned j = 0; j < map->levels; j++)
		order[j] = own[j];
}

uint64_t place_map_load(const struct place_map *map, unsigned level, unsigned node)
{
	if (level >= map->levels || node >= map->n)
		return 0;
	return map->load[(size_t)level * map->n + node];
}

uint64_t place_map_digest(const struct place_map *map)
{
	return map->digest;
}

size_t place_map_chunks(const struct place_map *map)
{
	return map->nchunks;
}

unsigned place_map_levels(const struct place_map *map)
{
	return map->levels;
}
