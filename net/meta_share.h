/*
 * Metadata from peers: per refresh one node of the cluster lists the backing store, and
 * every other node copies its snapshot (the tree, crc32.txt and crc32.chunks: the shared
 * form defined in cache/tree.h) over the peer protocol (META_GET / META, net/proto.h).
 * A burst of N nodes starting at once lists the store once, not N times.
 *
 * Who lists: the live members, this node included, ranked for the fixed key META_SHARE_KEY,
 * chunk 0, by plain rendezvous (place_rank, net/place.h); every node computes the same
 * order from the same member set. The first, the lister, lists as before (every
 * metadata_ttl and when asked). The others form a tree of fan-out META_SHARE_FANOUT over
 * that order: the node at position i asks the one at (i - 1) / META_SHARE_FANOUT, so no
 * node answers more than META_SHARE_FANOUT others (one link each, polls included) and a new
 * listing reaches every node within a poll per level (log16 of the cluster: 3 levels for
 * 4,000 nodes). Below, "the lister" is that parent for every node but the lister's
 * children. Every node but the lister asks:
 *   - at mount (meta_share_first): at once when its parent has a snapshot already (a node
 *     joining a running cluster, found within two heartbeats), or, when the parent (even
 *     the lister) is another new node without one, from one of up to META_SHARE_OLDER
 *     members that ran PEER_OLDER_MS before it (a join burst neither waits nor lists);
 *     otherwise (a cold burst)
 *     after the member set has been stable for three
 *     heartbeats (at most META_SHARE_SETTLE_MAX_MS), it takes the lister's snapshot,
 *     waiting while the lister has none yet; it lists the backing itself when the lister
 *     cannot be reached, when its snapshot is older than metadata_ttl, or when the wait
 *     passes its deadline (META_SHARE_FIRST_MS after the settling);
 *   - every CACHE_TREE_POLL_MS (a META_GET naming the version it holds: SAME costs ~60
 *     bytes, no store access), so a new listing reaches every node within one poll;
 *   - on every refresh request (mowsctl refresh, a fill that found its file changed, a key
 *     miss): REFRESH, so the lister lists again and the cluster's snapshot is renewed
 *     (unless the asker is behind a listing younger than a poll: it takes that one, so one
 *     change found by fills on many nodes lists once);
 *     a refresh on the lister lists there, and the others pick it up at their next poll.
 * When the parent cannot be reached (it died and is still in the member set until
 * peer_timeout), a node asks the parent's parent, then the lowest positions (at most
 * META_SHARE_TRIES members in all), so a dead lister costs one listing (by the member in
 * position 1, whose only ancestor is the lister), not one per node. A REFRESH travels up the
 * tree (each node asks its parent before it answers, within request_timeout; past that it
 * answers with what it has, and the polls bring the new listing down). A node falls back to its own listing
 * (when due) whenever an answer fails, and the member set soon names another lister.
 *
 * What stays checked: a copied snapshot serves names and attributes; a fill still opens the
 * file on this node's backing, and a size or mtime that differs makes it a new version (and
 * asks for a refresh of the cluster's snapshot); chunks are still checked against the CRCs
 * from crc32.txt and crc32.chunks. A snapshot that does not decode is refused (logged) and
 * the node lists the backing itself.
 *
 * Threads: meta_share_answer() runs on peer serving threads; meta_share_first() on the main
 * thread before the FUSE session serves; the source callback on the metadata thread
 * (cache/tree.c). One fetch runs at a time (the metadata thread after the first load).
 * ms->lock is a leaf lock (THREADS.md), never held across I/O.
 */
#ifndef MOWS_NET_META_SHARE_H
#define MOWS_NET_META_SHARE_H

#include <stdint.h>

#include "cache/tree.h"
#include "common/config.h"

struct peers;
struct meta_share;

/* The key whose owner lists the store ("mows-met" in ASCII), fixed for protocol v1. */
#define META_SHARE_KEY 0x6d6f77732d6d6574ull
#define META_SHARE_SETTLE_MAX_MS 10000
#define META_SHARE_FIRST_MS 15000
#define META_SHARE_TRIES 3      /* the parent, then the next in order while unreachable */
#define META_SHARE_OLDER 3      /* members that ran before us a joiner asks (see below) */
#define META_SHARE_FANOUT 16    /* nodes that ask one node (MOWS_TEST_META_FANOUT in tests) */

/*
 * Sets up metadata sharing for @t over @p (both must outlive it): registers as the tree's
 * snapshot source (cache_tree_meta_set_source) and as the answerer of META_GET. Call before
 * peers_start() and before the tree takes a snapshot. Returns NULL with errno set.
 */
struct meta_share *meta_share_new(struct peers *p, struct cache_tree *t,
				  const struct mows_config *cfg);

/*
 * The first snapshot, at mount, once the peers run (see above). Returns 0, or the -errno of
 * the local listing it fell back to.
 */
int meta_share_first(struct meta_share *ms);

/*
 * Ends every fetch now (a fetch in progress fails at once) and makes later ones list
 * locally; call before peers_free(). meta_share_free() after cache_tree_free().
 */
void meta_share_stop(struct meta_share *ms);
void meta_share_free(struct meta_share *ms);

/*
 * Answers one META_GET (@len bytes of @payload) into a new buffer *@ans of *@anslen bytes,
 * a META payload (the caller frees it). A REFRESH waits for this node's listing, at most
 * request_timeout; nothing else blocks. Returns 0, or -EPROTO (a malformed request: close
 * the link) or -ENOMEM. Serving threads.
 */
int meta_share_answer(struct meta_share *ms, const void *payload, uint32_t len, uint8_t **ans,
		      uint32_t *anslen);

#endif
