/*
 * Balanced ownership in use: the place_map (net/place.h) this node ranks chunks with, built
 * for the live member set and the model's file list, and rebuilt when either changes.
 *
 * A map is only valid for the member set it was built for. A fetch ranks its chunk with the
 * map when the live members it sees are exactly that set, and with plain rendezvous
 * (place_rank) otherwise: during the moment a member comes or goes, and before the first
 * map exists, nodes rank as before. Every node builds the same map from the same members and
 * files, so they agree on owners; owners_digest() (shown by mowsctl peers) lets an operator
 * check that they do.
 *
 * A node builds its map on the heartbeat thread once a round, and also on a fetch that
 * finds the live members differ from its map's (or no map yet): the first reads of a cold
 * burst come as soon as the model's file list is there, often before the next round, and a
 * fetch that ranked by rendezvous then asked another owner than the nodes that had their
 * map, so two nodes read the same chunk from storage (5 of 36 chunks in a 16-node burst).
 *
 * Threads: any thread may call any of these. owners_update() calls run one at a time
 * (o->build_lock, held across the file list and the build, taken before o->lock); a rank
 * never waits for a build. The current map is reference counted under o->lock, so a rank
 * in progress keeps the map it started with. o->lock is a leaf lock (THREADS.md).
 */
#ifndef MOWS_NET_OWNERS_H
#define MOWS_NET_OWNERS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "net/place.h"

struct owners;

/*
 * The model's files as every node sees them: fills @*files (malloc'd; the caller frees it)
 * and @*n, and sets @*gen to a number that changes whenever the list may have. Returns 0
 * or -errno (no map is built then).
 */
typedef int (*owners_list_fn)(void *ctx, struct place_file **files, size_t *n, uint64_t *gen);

/* Returns a new, empty set of owners (every chunk ranked by rendezvous), or NULL. */
struct owners *owners_new(uint64_t chunk_size, unsigned replicas);
void owners_free(struct owners *o);

/*
 * Builds a new map when the member set @hashes[0..n-1] (this node included, any order) or
 * the file list's generation differs from the current map's. Logs each new map once (its
 * size, members and digest). Returns 0, or -errno when no new map could be built (the old
 * one stays in use for the set it was built for).
 */
int owners_update(struct owners *o, const uint64_t *hashes, unsigned n, owners_list_fn list,
		  void *ctx);

/*
 * Fills @order[0..n-1] with the indices of @hashes from the owner of (@file_key, @chunk)
 * down, like place_rank(): the map's ranking when the map was built for exactly this set
 * of hashes and has the chunk, else rendezvous. O(n log n).
 */
void owners_rank(struct owners *o, uint64_t file_key, uint64_t chunk, const uint64_t *hashes,
		 unsigned n, unsigned *order);

/* Whether the current map was built for the member set @hashes[0..n-1] (any order): when
 * not, the caller may owners_update() before it ranks. O(n), no allocation. */
bool owners_built_for(struct owners *o, const uint64_t *hashes, unsigned n);

/* The current map's place_map_digest() and member count, or 0 and 0 without a map. */
void owners_digest(struct owners *o, uint64_t *digest, unsigned *members);

#endif
