/* Rendezvous placement: see place.h for the definition all nodes share. */
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
