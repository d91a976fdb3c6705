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
 * All functions are pure and thread-safe; none allocates except place_rank(), through
 * qsort_r(), which falls back to an in-place sort when memory is short.
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

#endif
