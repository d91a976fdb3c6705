/*
 * Peers: nodes that share cached chunks. This header is the contract with the daemon; the
 * work is split by job: net/link.c (a connection: handshake and frames), net/member.c (the
 * member table), net/plan.c (the fetch plan), net/serve.c (answering peers) and net/peer.c
 * (the glue: lifecycle, heartbeats, resolution, fetching). Threads, what each owns, and the
 * one lock order: THREADS.md at the top of the tree.
 *
 * Membership. Members come from `peers` (HOST:PORT entries, every address of a name counts,
 * so a headless service names the whole set) and `peers_file` (one HOST:PORT a line), both
 * resolved again every resolve_interval and at once when a peer fails, and from
 * authenticated inbound peers (their address and HELLO listen port). Each wanted member has
 * a heartbeat link; a round (every `heartbeat`) pings only O(log n) of them: those a request
 * failed on, then those heard from longest ago (any answer or served request counts as
 * hearing from a member). A process that dies closes its link, noticed without a message.
 * Members without a link are probed in one batch of parallel connects, never-tried ones
 * first, dead ones backing off. A member that fails and has been silent for peer_timeout is
 * down and leaves placement until it answers. A node that stops cleanly
 * sends LEAVE on its heartbeat links, and its peers drop it at once. Departed entries are
 * reclaimed (net/member.h), so the table stays bounded however many addresses come and go.
 *
 * Authentication. Every connection, in and out, starts with HELLO and a mutual HMAC-SHA256
 * challenge-response over the shared secret (net/link.h, net/auth.h) before anything else;
 * a peer that fails gets AUTH_FAIL and is closed, having learnt nothing but our node id.
 *
 * Placement and fill (peers_source, a cache fill source). Chunks are placed by rendezvous
 * hashing (net/place.h) over the live members; whom to ask and who reads storage is the
 * fetch plan (net/plan.h). Every chunk arrives with the CRC the node that read it from the
 * backing computed; we recompute it, and a mismatch is never served: it is charged to the
 * peer (quarantined after PEER_BAD_LIMIT) and the next step of the plan, or the backing, is
 * tried. Every request has a deadline (request_timeout).
 *
 * Connections. All our requests to a member share one TCP link (net/mux.h: request ids,
 * answers in any order); RDMA connections are pooled per member. Threads and descriptors
 * grow with peers, not with peers x fill_threads.
 *
 * Serving (net/serve.c). Inbound connections get a small budget while unauthenticated (per
 * address too, with a short handshake deadline) and max_connections once authenticated.
 * GET looks the file up by key only (never by a path the peer chooses), pins the chunk and
 * sends it from the slab, on a fixed pool of serve workers. A GET that asks this node to
 * fill (as owner) reads the backing on that worker, never through the cache's fill queue,
 * whose threads may be waiting on peers: serving never waits on fetching.
 */
#ifndef MOWS_NET_PEER_H
#define MOWS_NET_PEER_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "cache/cache.h"
#include "common/config.h"
#include "net/member.h"
#include "net/place.h"
#include "net/rdma.h"

struct peers;

/* Implemented by the daemon: files of the backing tree, found by key. */
struct peer_host_ops {
	/*
	 * Returns a referenced cache version of the backing file whose identity
	 * (proto_file_key of its relpath, size, mtime) is @key and whose size and mtime are
	 * these, or NULL when there is none. Called from serving threads.
	 */
	struct cache_file *(*open_key)(void *ctx, uint64_t key, uint64_t size, int64_t mtime_ns);
	/*
	 * The model's files (key and size each), for balanced ownership (net/owners.h): see
	 * owners_list_fn. May be NULL: chunks are then ranked by rendezvous alone. Called from
	 * the heartbeat thread.
	 */
	int (*list_files)(void *ctx, struct place_file **files, size_t *n, uint64_t *gen);
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

/*
 * Tells every peer we leave (LEAVE on the heartbeat links), stops every thread, waits for
 * every serving thread to end (each is bounded by its deadlines) and frees everything.
 */
void peers_free(struct peers *p);

/* The fill source that fetches chunks from peers. ctx = struct peers *. */
extern const struct cache_source_ops peers_source;

/* One peer as `mowsctl peers` shows it: plain data, copied under the peers' lock. */
struct peer_info {
	char node_id[PROTO_NODE_ID_MAX + 1];
	char addr[MEMBER_ADDR_LEN];
	const char *state;        /* "up", "down", "quarantined", "gone", "left", "self" */
	const char *transport;    /* "tcp", "rdma" or "-" */
	const char *origin;       /* "configured", "inbound" or "configured+inbound" */
	uint64_t bytes_in, bytes_out, fetches, served, errors, bad_crc;
	bool quarantined;
	bool suspect;             /* liveness gossip: missed heartbeats, not refuted yet */
};

/* The swarm (net/swarm.h), since start. */
struct peers_swarm_counters {
	uint64_t redirects_sent;  /* as owner: GET FILLs answered with REDIRECT */
	uint64_t redirected;      /* as requester: REDIRECTs received */
	uint64_t from_holder;     /* as requester: chunks a named holder served */
	uint64_t fallbacks;       /* as requester: the holder failed, the owner asked again */
	uint64_t served_as_holder; /* as holder: GET WAITs served */
	uint64_t relayed;         /* of them, sent on while our own fill received the chunk */
	uint64_t relays_stopped;  /* relays broken off: our fill failed or started over */
	uint64_t holder_parked;   /* as holder: GET WAITs parked until our fill ended */
	uint64_t holder_misses;   /* as holder: GET WAITs answered ENOENT */
	uint64_t owner_relayed;   /* as owner: GET FILLs relayed while our own fill received
				     the chunk (not after it ended); also counted in relayed */
	uint64_t storage_unowned; /* as requester: no peer delivered a chunk we do not own, so
				     we read it from storage (its owner reads it too) */
};

/* Liveness (the heartbeat and gossip, net/gossip.h), since start. */
struct peers_liveness {
	bool gossip;              /* gossip = on */
	uint64_t incarnation;     /* this node's */
	uint64_t rounds;          /* heartbeat rounds */
	uint64_t pings;           /* PINGs sent on heartbeat links (probes' pings included) */
	uint64_t pongs;           /* PONGs sent: PINGs answered */
	uint64_t events_sent;     /* gossip events put into PINGs and PONGs */
	uint64_t events_learned;  /* gossip events that changed a belief here */
	uint64_t suspected;       /* members this node began to suspect itself */
	uint64_t declared_dead;   /* suspicions that ran out here */
	uint64_t refutations;     /* suspicions of this node it refuted */
	uint64_t ping_reqs;       /* PING_REQs sent: a heartbeat failed, others were asked */
	uint64_t indirect_alive;  /* failed heartbeats not suspected: another node heard the
				     member after our PING was sent */
	unsigned suspects;        /* members suspect now */
};

struct peers_snapshot {
	char node_id[PROTO_NODE_ID_MAX + 1];
	const char *listen;       /* from the configuration, lives as long as the peers */
	unsigned members;         /* the member set placement uses, this node included */
	uint64_t digest;          /* members_digest(): equal on nodes that agree on the set */
	uint64_t ownership_digest;    /* place_map_digest() of the map in use, 0 for none */
	unsigned ownership_members;   /* the members that map was built for */
	uint64_t entries_added, entries_reclaimed;
	uint64_t refused_unauth, refused_auth, accept_errors;
	uint64_t quarantines;     /* times a peer was quarantined for bad CRCs, since start */
	struct peers_swarm_counters swarm;
	struct peers_liveness liveness;
	bool has_rdma;
	char rdma_device[64];
	struct rdma_counters rdma;
	unsigned n;
	struct peer_info *peers;  /* n entries, owned by the snapshot */
};

/*
 * Copies the state of every peer into @s (allocated; release with peers_snapshot_release()).
 * Returns 0 or -ENOMEM. Any thread; takes the peers' lock for the copy only.
 */
int peers_snapshot(struct peers *p, struct peers_snapshot *s);
void peers_snapshot_release(struct peers_snapshot *s);

/*
 * For tools/mows-peerbench: fetches one chunk from the first peer that is up, exactly as a
 * fill would (transport choice, CRC check), into @dst, which must lie in the cache's slab.
 * Sets *@transport to the name of the transport that carried it. Returns 0 or -errno
 * (-EHOSTUNREACH when no peer is up).
 */
struct transport_chunk_req;
int peers_fetch_direct(struct peers *p, const struct transport_chunk_req *req, void *dst,
		       size_t len, const char **transport);

/* One version of a file to prefetch across the cluster (its proto_file_key() identity). */
struct peer_pf_file {
	uint64_t key, size;
	int64_t mtime_ns;
};

/* One node's part in a cluster prefetch: plain data, owned by the caller. */
struct peer_pf_node {
	char node_id[PROTO_NODE_ID_MAX + 1];
	uint64_t done, total;     /* bytes of its owned share filled, and the share's size */
	int err;                  /* 0, or -errno: why its share is not (all) filled */
	bool finished;
};

/* Called after every polling round; returning false cancels. @nodes: this node included. */
typedef bool (*peers_pf_progress)(void *arg, uint64_t done, uint64_t total, unsigned nodes);

/*
 * Cluster prefetch (mowsctl prefetch --cluster): asks every live member, this node
 * included, to fill its owned share of @files (the chunks balanced ownership gives it, so
 * storage is read about once for the cluster) and polls them until every share is filled.
 * @progress gets the bytes filled over the sum of the shares. Sets *@nodes (malloc'd, the
 * caller frees it) and *@nnodes to each node's result. Returns 0 when every share is
 * filled, -EIO when some node failed (its err says why; nodes is set), -ECANCELED (by
 * @progress, or the daemon stops), or -ENOMEM. Blocks the calling thread for as long as it
 * takes (each request bounded by request_timeout; 60 s without progress ends it); call it
 * from a control client's thread, never from a cache, FUSE or peer thread.
 */
int peers_prefetch_cluster(struct peers *p, const struct peer_pf_file *files, size_t nfiles,
			   peers_pf_progress progress, void *arg, struct peer_pf_node **nodes,
			   unsigned *nnodes);

/* Whether some peer is up. */
bool peers_any_up(struct peers *p);

/* This node's id. */
const char *peers_node_id(const struct peers *p);

#endif
