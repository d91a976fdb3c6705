/*
 * Peers: nodes that share cached chunks.
 *
 * Membership. `peers` names HOST:PORT entries; each name is resolved (every address counts,
 * so a headless service names the whole set) and resolved again every resolve_interval.
 * A heartbeat connection to each address carries PING/PONG every `heartbeat`; a peer silent
 * for peer_timeout is down and leaves placement until it answers again. A peer whose HELLO
 * carries our own node id is ourselves and is skipped.
 *
 * Authentication. Every connection, in and out, starts with HELLO and a mutual HMAC-SHA256
 * challenge-response over the shared secret (net/auth.h) before anything else; a peer that
 * fails gets AUTH_FAIL and is closed, having learnt nothing but our node id.
 *
 * Placement and fill (peers_source, a cache fill source). A chunk's owners are the first
 * `replicas` live members (us included) by rendezvous hashing of (file key, chunk). On a
 * miss: if we own it, we first ask the next-ranked peer (which owned it before we joined, if
 * the cluster was warm) whether it holds it, and else let the cache read the backing; if we
 * do not own it, we ask its owners in rank order to send it, filling it from their backing
 * when they do not hold it, so that a burst of nodes reads each chunk from storage once.
 * Every chunk arrives with the CRC the node that read it from the backing computed; we
 * recompute it, and a mismatch is never served: it is charged to the peer (quarantined after
 * PEER_BAD_LIMIT) and the next holder, or the backing, is tried. Every request has a
 * deadline (request_timeout).
 *
 * Serving. An inbound connection is served by its own thread (at most max_connections): GET
 * looks the file up by key only (never by a path the peer chooses), pins the chunk in the
 * cache (filling it from the backing when asked as owner) and sends it from the slab.
 *
 * Threads: the listener, one per inbound connection, the heartbeat thread, and the cache's
 * fill threads calling peers_source. Lock order: peers->lock, then the cache's lock (never
 * the reverse); no lock is held across network I/O.
 */
#ifndef MOWS_NET_PEER_H
#define MOWS_NET_PEER_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "cache/cache.h"
#include "common/config.h"

struct peers;

/* Implemented by the daemon: files of the backing tree, found by key. */
struct peer_host_ops {
	/*
	 * Returns a referenced cache version of the backing file whose identity
	 * (proto_file_key of its relpath, size, mtime) is @key and whose size and mtime are
	 * these, or NULL when there is none. Called from serving threads.
	 */
	struct cache_file *(*open_key)(void *ctx, uint64_t key, uint64_t size, int64_t mtime_ns);
	void *ctx;
};

/* Quarantine a peer after this many chunks with a bad CRC. */
#define PEER_BAD_LIMIT 3

/*
 * Sets up peering from @cfg (listen, peers, node_id, secret_file, insecure, ...): loads the
 * secret, binds the listening socket. Returns NULL with a message in @err. The cache must
 * outlive the peers. Register peers_source with cache_add_source(c, &peers_source, p)
 * before the backing source.
 */
struct peers *peers_new(const struct mows_config *cfg, struct cache *c,
			const struct peer_host_ops *host, char *err, size_t errlen);

/* Starts the listener and heartbeat threads. Returns 0 or -errno. */
int peers_start(struct peers *p);

/* Stops every thread (bounded waits) and frees everything. */
void peers_free(struct peers *p);

/* The fill source that fetches chunks from peers. ctx = struct peers *. */
extern const struct cache_source_ops peers_source;

/*
 * Writes every peer's state to @out as mowsctl lines (". " prefix) or one JSON object:
 * node id, address, state (up, down, quarantined), transport, bytes in and out, fetches,
 * errors, bad CRCs.
 */
void peers_report(struct peers *p, FILE *out, bool json);

/*
 * For tools/mows-peerbench: fetches one chunk from the first peer that is up, exactly as a
 * fill would (transport choice, CRC check), into @dst, which must lie in the cache's slab.
 * Sets *@transport to the name of the transport that carried it. Returns 0 or -errno
 * (-EHOSTUNREACH when no peer is up).
 */
struct transport_chunk_req;
int peers_fetch_direct(struct peers *p, const struct transport_chunk_req *req, void *dst,
		       size_t len, const char **transport);

/* Whether some peer is up. */
bool peers_any_up(struct peers *p);

/* This node's id. */
const char *peers_node_id(const struct peers *p);

#endif
