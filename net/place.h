/*
 * Chunk placement: which node owns a chunk, and which nodes to ask next, by rendezvous
 * (highest random weight) hashing. Every node computes the same answer from the same member
 * list without talking to anyone, and a membership change moves only the chunks that must
 * move: a joining node takes about 1/n of all chunks, each from whoever owned it; a leaving
 * node's chunks spread over the others; no other chunk changes owner.
 *
 * The definition is part of the protocol (all nodes must agree), fixed for wire version 1:
 *
 *   fmix64(h)  MurmurHash3's 64-bit finalizer (see proto_file_key() in net/proto.h).
 *   FNV-1a-64  offset basis 0xcbf29ce484222325, prime 0x100000001b3.
 *   node hash  place_node_hash(id) = fmix64(FNV-1a-64("mows-node" || 0x00 || id))
 *   chunk key  k = fmix64(file_key ^ fmix64(chunk + 0x9e3779b97f4a7c15))  (mod 2^64)
 *   weight     w(node) = fmix64(node_hash ^ k)
 *
 * Nodes are ranked by descending weight. fmix64 is a bijection, so two nodes tie only when
 * their hashes are equal (the same id twice, which membership must refuse); such ties are
 * broken by ascending index. The order therefore depends only on the set of node hashes,
 * never on the order of the member list.
 *
 * Balanced ownership (struct place_map, below) builds on the same weights.
 *
 * All functions are pure and thread-safe; none allocates except place_rank(), through
 * qsort_r(), which falls back to an in-place sort when memory is short, and place_map_new().
 */
#ifndef MOWS_NET_PLACE_H
#define MOWS_NET_PLACE_H

#include <stdint.h>

#define PLACE_NONE	(~0u)

/* The node hash of @node_id (a valid id, see proto_node_id_ok()). Compute once per member. */
uint64_t place_node_hash(const char *node_id);

/*
 * Fills @order[0..n-1] with the indices 0..n-1 of @node_hashes, from the node that owns
 * (@file_key, @chunk) down to the least preferred. @order is the caller's array of @n
 * entries. O(n log n).
 */
void place_rank(uint64_t file_key, uint64_t chunk, const uint64_t *node_hashes, unsigned n,
		unsigned *order);

/* order[0] of place_rank(), in O(n) without sorting. Returns PLACE_NONE when @n is 0. */
unsigned place_owner(uint64_t file_key, uint64_t chunk, const uint64_t *node_hashes,
		     unsigned n);

/*
 * ---- Balanced ownership: bounded-load rendezvous over the whole model ----
 *
 * Plain rendezvous gives each node about 1/n of the chunks, but a model has few chunks per
 * node (500 MiB in 4 MiB chunks is 8 per node at 16 nodes), so the busiest node owns ~1.5x
 * the mean and its link sets the pace of a cold burst. A place_map assigns owners over the
 * whole model at once so that bytes owned per node stay within one chunk of the mean, while
 * keeping each chunk with its rendezvous favourite wherever that node has room, so a
 * membership change still moves few chunks. The definition, part of the protocol like the
 * one above (all nodes must build the same map from the same member set and file list):
 *
 *   input      member node hashes h[0..n-1] (distinct), files (file_key, size) (distinct
 *              keys), chunk size s, replicas r. A file has ceil(size / s) chunks; chunk c has
 *              min(s, size - c * s) bytes. T = sum of all sizes; cap = ceil(T / n).
 *   order      every chunk of every file, sorted by ascending chunk key k (as defined above),
 *              ties (never seen in practice) by ascending (file_key, chunk).
 *   levels     for level j = 0 .. min(r, n) - 1 (owner, then first replica, ...), each level
 *              with its own per-node byte load, starting at 0: for each chunk in order, among
 *              the nodes not already chosen for this chunk at a lower level,
 *                take the highest-weighted node w = fmix64(h ^ k) whose load + bytes <= cap;
 *                if there is none, take the node of least load (ties: highest weight);
 *              and add the chunk's bytes to that node's load.
 *
 * Guarantees: each node's owner bytes (level 0) are within one chunk size of T / n: a node
 * over the cap got its last chunk while below the mean, and a fallback happens only when
 * every node is within one chunk of the cap. Replica levels exclude the chunk's owners, so
 * their bound is looser (measured within 20% at 8 and 16 nodes). A chunk's owners are
 * distinct. The map depends on the sets of node hashes and files, never on list order, and
 * place_map_digest() lets nodes compare. When a node joins or leaves, more chunks move than
 * the 1/n that rendezvous moves, since loads shift along the order: measured on a 510 MiB
 * model in 4 MiB chunks, 20% of the bytes at 8 nodes (rendezvous 11%), 22% at 16 (6%), and
 * 0.6% at 1,000 nodes with 16,000 chunks (0.1%). Plain rendezvous on that model leaves the
 * busiest of 16 nodes owning +51% over the mean.
 *
 * Cost: place_map_new() is O(r * C * n) hashes for C chunks plus an O(C log C) sort; memory
 * is 4 * r * C bytes for the map plus a file table, and 32 bytes per chunk and 8 per node
 * while building. 1,000 nodes x 16,000 chunks: 0.1-0.3 s on one core here, a 60 KiB map.
 * Lookups are O(1) (file keys in an open-addressing table) plus O(r).
 *
 * Use: build a new map when the member set or the file list changes, away from the fill
 * path, and swap it in for the old one (readers take a reference; the map never changes).
 * Nodes agree only if they see the same members and the same files (sizes and mtimes are in
 * the file keys): exchange place_map_digest() with peers to notice when they do not. A
 * chunk the map lacks (a file that appeared since) falls back to place_owner().
 */

/* One file of the model, as every node sees it. */
struct place_file {
	uint64_t key;	/* proto_file_key() */
	uint64_t size;	/* bytes */
};

struct place_map;

/*
 * Builds the map for @n members (node hashes @node_hashes, distinct) and @nfiles files
 * (distinct keys), @chunk_size bytes per chunk, @replicas owners per chunk (at least 1; at
 * most n are used). Copies what it needs: the caller keeps its arrays. Returns the map, or
 * NULL with errno EINVAL (n or chunk_size or replicas 0, a duplicate node hash or file key,
 * more than 2^32 - 1 chunks) or ENOMEM. Any thread; the map is immutable once built, so any
 * number of threads may read it at once without a lock.
 */
struct place_map *place_map_new(const uint64_t *node_hashes, unsigned n,
				const struct place_file *files, size_t nfiles, uint64_t chunk_size,
				unsigned replicas);

void place_map_free(struct place_map *map);

/*
 * The owner of (@file_key, @chunk) as an index into the node_hashes the map was built from,
 * or PLACE_NONE when the map has no such file or chunk (a file that appeared or changed
 * since: callers fall back to place_owner()). O(1).
 */
unsigned place_map_owner(const struct place_map *map, uint64_t file_key, uint64_t chunk);

/*
 * Writes up to @max owners of (@file_key, @chunk) to @out, the owner first, and returns how
 * many: min(replicas, n, max), or 0 when the map has no such chunk. O(replicas).
 */
unsigned place_map_owners(const struct place_map *map, uint64_t file_key, uint64_t chunk,
			  unsigned *out, unsigned max);

/*
 * Fills @order[0..n-1] like place_rank(): the chunk's owners first (level order), then the
 * other nodes in rendezvous order. Falls back to place_rank() for a chunk the map lacks.
 * O(n log n).
 */
void place_map_rank(const struct place_map *map, uint64_t file_key, uint64_t chunk,
		    unsigned *order);

/* Bytes that node @node owns at level @level (0 = owner). 0 out of range. */
uint64_t place_map_load(const struct place_map *map, unsigned level, unsigned node);

/*
 * A digest of the assignment, so nodes and operators can check that they agree: d starts at
 * FNV64_BASIS, and for each chunk in the definition's order, for each level j, with h the
 * hash of the node chosen, d = fmix64((d ^ h) + 0x9e3779b97f4a7c15). Nodes with the same
 * members and files have the same digest whatever order they listed them in.
 */
uint64_t place_map_digest(const struct place_map *map);

/* The number of chunks, and of levels (min(replicas, n)), in @map. */
size_t place_map_chunks(const struct place_map *map);
unsigned place_map_levels(const struct place_map *map);

#endif
