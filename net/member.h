/*
 * The member table: every node this one knows, where it was learnt (configured names and
 * peers_file, authenticated inbound peers), whether it is alive, and the pooled connections
 * to it. It is data and policy only: no I/O, no blocking, no lock of its own. Every function
 * must be called with the owner's lock held (peers->lock, see THREADS.md), and every field
 * below that is not marked otherwise is protected by that lock.
 *
 * Entries are heap objects with a reference count: the table holds one while the entry is
 * listed, and a thread that uses an entry without the lock (a fetch, a serving connection,
 * the heartbeat thread) holds another (member_get()/member_put()). Entries of departed
 * peers are unlisted by members_reclaim() and freed with their last reference, so memory is
 * bounded by the members alive or configured now, not by every address seen in the daemon's
 * life. MEMBERS_MAX bounds the table against a runaway name; hitting it logs once, loudly.
 */
#ifndef MOWS_NET_MEMBER_H
#define MOWS_NET_MEMBER_H

#include <netinet/in.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

#include "net/proto.h"

#define MEMBERS_MAX 16384
#define MEMBERS_PROBES 256        /* members not up that one heartbeat round probes at once */
#define MEMBERS_BACKOFF_MAX_SHIFT 4 /* a failing member is tried at least every 16 rounds */
#define MEMBER_MAX_IDLE 8         /* pooled RDMA connections kept per member */
#define MEMBER_ADDR_LEN (INET6_ADDRSTRLEN + 16)

struct transport_conn;
struct transport_ops;
struct link;
struct mux;

/* A pooled connection, the transport it speaks and when it went idle. */
struct pconn {
	struct transport_conn *c;
	const struct transport_ops *ops;
	uint64_t idle_since_ns;
	struct mux *mux;          /* instead of c and ops: a member's mux being dropped */
};
#define MEMBER_MAX_CONNS (MEMBER_MAX_IDLE + 1)   /* pooled ones and the mux */

struct member {
	/* Set once when the entry is made. */
	char addr[MEMBER_ADDR_LEN];       /* numeric HOST:PORT, "" for none */
	struct sockaddr_storage sa;
	socklen_t salen;
	uint32_t uid;             /* never 0, not reused in the table's life (chunk provenance) */
	/* Protected by the owner's lock. */
	unsigned refs;
	bool listed;              /* in the table; false once reclaimed */
	bool configured;          /* came from peers / peers_file */
	bool resolved;            /* configured: in the latest resolution */
	bool inbound;             /* an authenticated inbound peer told us this address */
	bool self, up, left;      /* left: it said LEAVE and is out until it answers again */
	char node_id[PROTO_NODE_ID_MAX + 1];
	uint64_t node_hash;
	uint64_t last_seen_ns;    /* last answer, 0 never */
	uint64_t last_probe_ns;   /* last heartbeat or probe attempt, 0 never */
	unsigned probe_fails;     /* probes in a row that got no answer */
	bool suspect;             /* a request failed: ping it this round */
	uint64_t gone_since_ns;   /* when it stopped being wanted (unresolved / down), 0 */
	uint64_t quarantine_until_ns;
	uint64_t bytes_in, bytes_out, fetches, served, errors, bad_crc;
	uint16_t caps;            /* from its HELLO */
	uint64_t started_ns;      /* when it started, in our mono_ns() (its HELLO's uptime); 0 */
	const char *transport;    /* of its last new connection: "tcp" or "rdma" */
	bool rdma_failed;         /* logged that RDMA to it failed */
	uint64_t rdma_retry_ns;   /* no RDMA connect attempt before this (it failed) */
	struct pconn idle[MEMBER_MAX_IDLE];   /* RDMA connections, one user each */
	unsigned nidle, busy;             /* busy: requests in flight, any transport */
	struct mux *mux;          /* the one TCP link that carries our requests, or NULL */
	bool mux_connecting;      /* a thread is making it */
	/* Gossip (net/gossip.h), used once it said PROTO_CAP_GOSSIP and its incarnation. */
	uint64_t g_inc;           /* its incarnation as we know it, 0: unknown */
	uint8_t g_state;          /* PROTO_GOSSIP_*: what we believe of it at g_inc */
	uint64_t g_since_ns;      /* when it became suspect, or was last heard of alive */
	uint64_t g_direct_ns;     /* last heard from directly: a PONG or a PING of its own */
	/* Owned by the heartbeat thread. */
	struct link *hb;
	uint32_t hb_id;
	uint64_t hb_sent_ns;      /* when the PING in progress was sent, 0: none */
};

struct members {
	struct member **v;        /* listed entries, unordered */
	unsigned n, cap;
	unsigned max;             /* MEMBERS_MAX unless a test sets less */
	bool full_logged;
	uint64_t added, reclaimed;    /* over the table's life */
};

void members_init(struct members *t);

/* Unlists every entry and drops the table's references; entries still referenced elsewhere
 * live until their last member_put(). Pooled connections must have been taken first. */
void members_release(struct members *t);

/* References. member_put() frees the entry when the last goes (it must hold no pooled
 * connection and no heartbeat link by then). */
void member_get(struct member *m);
void member_put(struct member *m);

/* The listed entry with this address, or NULL. */
struct member *members_find_addr(struct members *t, const struct sockaddr *sa, socklen_t len);

/* The listed entry whose uid is @uid, or NULL (0, or reclaimed since). O(members). */
struct member *members_find_uid(struct members *t, uint32_t uid);

/* The listed entry with this node id (an up one preferred), or NULL. */
struct member *members_find_id(struct members *t, const char *node_id);

/*
 * Lists a new entry for @sa. Returns it (the table's reference only), or NULL when the
 * table is full (logged once) or out of memory.
 */
struct member *members_add(struct members *t, const struct sockaddr *sa, socklen_t len);

/* Sets an entry's node id (and hash). */
void member_set_id(struct member *m, const char *node_id);

/*
 * One resolution of the configured names: _begin() forgets which entries resolved,
 * _seen() lists or marks an address, _end() marks the rest unresolved as of @now.
 */
void members_resolve_begin(struct members *t);
struct member *members_resolve_seen(struct members *t, const struct sockaddr *sa,
				    socklen_t len);
void members_resolve_end(struct members *t, uint64_t now);

/* Whether the entry may be asked for chunks now: wanted, up, not us, not quarantined. */
bool member_usable(const struct member *m, uint64_t now);

/* Whether heartbeats should go to the entry: wanted and not ourselves. */
bool member_wanted(const struct member *m);

/*
 * Unlists entries that are no longer wanted (unresolved, or inbound-only and down) and
 * have been so for @linger_ns, plus entries that are ourselves and unresolved. Stores up
 * to @max of them in @out, each still referenced (the caller closes their connections
 * without the lock, then member_put()s them); returns how many.
 */
unsigned members_reclaim(struct members *t, uint64_t now, uint64_t linger_ns,
			 struct member **out, unsigned max);

/*
 * This round's heartbeat targets, referenced, in @out (@max long). Liveness costs
 * O(log n) messages a round, not O(n):
 *   - pings: members with a heartbeat link that are suspect (a request to them failed),
 *     then the ones heard from longest ago, @pings in all (members_ping_budget()); the
 *     others are known alive from recent traffic or a recent ping, and a process that dies
 *     closes its link, which the heartbeat thread notices without a message;
 *   - probes: wanted members without a heartbeat link (new, restarted, down), up to
 *     @probes, never-tried ones first, then the longest untried; one that keeps failing
 *     waits @backoff_ns << failures (at most 16x, plus up to a quarter at random) between
 *     tries; member_heard_from() ends the wait.
 * Marks them tried at @now. Returns how many were stored.
 */
unsigned members_pick_round(struct members *t, uint64_t now, unsigned pings, unsigned probes,
			    uint64_t backoff_ns, struct member **out, unsigned max);

/*
 * Lock held. @m just authenticated a connection to us: it is alive now, so a probe of it
 * is due at once whatever its earlier failures (a node that started after its peers had
 * backed off from its address is seen up within a round, not after the backoff).
 */
void member_heard_from(struct member *m);

/* Pings a round for a table of @n members: ceil(log2(n + 1)) + 2. */
unsigned members_ping_budget(unsigned n);

/*
 * Gossip beliefs (net/gossip.h), lock held like everything here.
 * member_gossiping(): beliefs about @m are kept and spread: it said PROTO_CAP_GOSSIP and we
 * know its incarnation. Members that did not (old nodes) are judged by this node alone.
 * member_gossip_apply(): merges the belief (@state, @inc) about @m by gossip_overrides();
 * returns true when ours changed. Becoming suspect, or an "alive" that wins (a refutation),
 * sets g_since_ns to @now: a suspicion runs from when this node began to hold it.
 * member_suspect_expired(): @m has been suspect for @timeout_ns with no refutation: declare
 * it dead.
 * members_suspects(): listed entries now suspect.
 */
bool member_gossiping(const struct member *m);
bool member_gossip_apply(struct member *m, uint8_t state, uint64_t inc, uint64_t now);
bool member_suspect_expired(const struct member *m, uint64_t now, uint64_t timeout_ns);
unsigned members_suspects(const struct members *t);

/*
 * The live members for placement, one per node id: usable entries, referenced, in @out
 * with their hashes in @hashes (both @max long). Returns how many.
 */
unsigned members_live(struct members *t, uint64_t now, struct member **out, uint64_t *hashes,
		      unsigned max);

/*
 * The member set as placement sees it: this node plus every usable node id. *@count gets
 * its size; returns a 64-bit FNV-1a digest of the sorted node ids (each followed by a NUL),
 * equal on nodes that agree on the set.
 */
uint64_t members_digest(struct members *t, const char *self_id, uint64_t now, unsigned *count);

#endif
